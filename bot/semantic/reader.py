"""YAML view files, read safely into `View`s: the bounds every format's loader goes through, and the
parsing of `dimensions:` / `measures:` that the YAML formats share.

The formats themselves (Omni's layout, the older `views/` layout) are plug-ins in
`bot.semantic.formats`; `reader_for(name, root)` is the registry's door, kept for old callers.
"""
from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.composer import Composer, ComposerError, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent

from bot.errors import SemanticError
from bot.semantic.model import Field, FieldKind, Location, Problem, View
from bot.yamledit import plain as to_plain

FIELD_SECTIONS: dict[str, FieldKind] = {"dimensions": "dimension", "measures": "measure"}
# Any PR author's file is read by the automatic dry run, so what one file may cost is bounded.
# Omni's own largest views are a few hundred fields; these leave room for generated ones.
MAX_VIEW_FILE_BYTES = 2 * 1024 * 1024
MAX_FIELDS_PER_FILE = 5_000
MAX_YAML_DEPTH = 64  # view files nest four levels; deep nesting only exhausts the stack
# Keys, values and list items in one file. A field is about ten; the bound stops a file of tiny
# entries during the parse, before building what MAX_FIELDS_PER_FILE would refuse anyway.
MAX_YAML_NODES = 20 * MAX_FIELDS_PER_FILE


class _Refused(ComposerError):
    """YAML a view file may not contain, found while composing: nothing has been built or expanded yet."""


class _BoundedComposer(Composer):
    """Omni never writes anchors' aliases, and expanding them is how a 600-byte file becomes gigabytes
    ("billion laughs"), so the first alias event stops the parse, at its own line; so does the node
    past MAX_YAML_NODES."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(None, None, f"YAML aliases are not allowed in view files (found `*{event.anchor}`)",
                           event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise _Refused(None, None, f"more than {MAX_YAML_NODES:,} YAML values in one view file "
                                       f"(split the view into several files)", event.start_mark)
        return super().compose_node(parent, index)


def _check_size(text: str, path: str) -> None:
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_VIEW_FILE_BYTES:
        line = encoded.count(b"\n", 0, MAX_VIEW_FILE_BYTES) + 1
        raise SemanticError(f"view file is {len(encoded):,} bytes; layersync reads at most {MAX_VIEW_FILE_BYTES:,} "
                            f"(split the view into several files)", path, line)


def load_view_yaml(text: str, path: str) -> Any:
    """Round-trip YAML of a semantic-layer file, refusing what makes reading it cost more than its size.

    Every reader and writer of view files loads through here, so the bounds hold on every path.
    """
    _check_size(text, path)
    yaml = YAML(typ="rt")
    yaml.Composer = _BoundedComposer
    yaml.max_depth = MAX_YAML_DEPTH
    try:
        return yaml.load(text)
    except _Refused as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise SemanticError(str(exc.problem), path, line) from None
    except MaxDepthExceededError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise SemanticError(f"YAML nested more than {MAX_YAML_DEPTH} levels deep", path, line) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SemanticError(f"invalid YAML: {problem}", path, line) from None
    except RecursionError:
        raise SemanticError("invalid YAML: nested too deeply", path, None) from None
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad encodings)
        raise SemanticError(f"invalid YAML: {exc}", path, None) from None


def _line_of(mapping: Any, key: str, default: int) -> int:
    """1-based line of `key` in a ruamel mapping; ruamel counts from 0."""
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _type_name(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__


def _optional_str(value: Any, key: str, path: str, line: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise SemanticError(f"`{key}` must be text, not {_type_name(value)}", path, line)
    return str(value)




def _optional_number(value: Any, key: str, path: str, line: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SemanticError(f"`{key}` must be a number, not {_type_name(value)}", path, line)
    return float(value)


class YamlViewParser:
    """What the YAML formats share: one file's `dimensions:` and `measures:` as `Field`s, every
    attribute kept as written. Formats differ in layout and naming, which they pass in."""

    def _load(self, text: str, path: str) -> CommentedMap:
        data = load_view_yaml(text, path)
        if data is None:
            raise SemanticError("empty view file", path, 1)
        if not isinstance(data, dict):
            raise SemanticError("a view file must be a mapping (table_name, dimensions, measures)", path, 1)
        return data

    def fields(self, data: CommentedMap, view: str, path: str) -> dict[str, Field]:
        fields: dict[str, Field] = {}
        seen: dict[int, Any] = {}
        count = 0
        for section, kind in FIELD_SECTIONS.items():
            block = data.get(section)
            if block is None:
                continue
            section_line = _line_of(data, section, 1)
            if not isinstance(block, dict):
                raise SemanticError(f"`{section}` must be a mapping of field names", path, section_line)
            for field_name, spec in block.items():
                line = _line_of(block, field_name, section_line)
                count += 1
                if count > MAX_FIELDS_PER_FILE:
                    raise SemanticError(f"more than {MAX_FIELDS_PER_FILE:,} fields in one view file "
                                        f"(split the view into several files)", path, line)
                if str(field_name) in fields:
                    raise SemanticError(
                        f"field `{field_name}` is declared twice (also at line {fields[str(field_name)].location.line})",
                        path, line,
                    )
                fields[str(field_name)] = self._field(view, str(field_name), kind, spec, path, line, seen)
        return fields

    def _field(self, view: str, name: str, kind: FieldKind, spec: Any, path: str, line: int,
              seen: dict[int, Any] | None = None) -> Field:
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise SemanticError(f"field `{name}` must be a mapping of attributes", path, line)
        plain = to_plain(spec, seen, path, SemanticError)
        sql = spec.get("sql")
        if sql is not None and not isinstance(sql, (str, int, float)):
            raise SemanticError(f"`sql` of `{name}` must be text", path, _line_of(spec, "sql", line))
        aliases = plain.get("aliases") or []
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list):
            raise SemanticError(f"`aliases` of `{name}` must be a list", path, _line_of(spec, "aliases", line))
        filters = plain.get("filters") or {}
        if not isinstance(filters, dict):
            raise SemanticError(f"`filters` of `{name}` must map fields to conditions (`{{is_churned: {{is: 1}}}}`), "
                                f"not {_type_name(filters)}", path, _line_of(spec, "filters", line))
        return Field(
            view=view,
            name=name,
            kind=kind,
            location=Location(path, line),
            sql=None if sql is None else str(sql),
            label=_optional_str(spec.get("label"), "label", path, line),
            description=_optional_str(spec.get("description"), "description", path, line),
            type=_optional_str(spec.get("type"), "type", path, line),
            primary_key=bool(spec.get("primary_key", False)),
            aggregate_type=_optional_str(spec.get("aggregate_type"), "aggregate_type", path, line),
            aliases=tuple(str(a) for a in aliases),
            percentile=_optional_number(plain.get("percentile"), "percentile", path,
                                        _line_of(spec, "percentile", line)),
            filters=filters,
            attributes=plain,
        )

    def text_key(self, data: CommentedMap, key: str, path: str) -> str | None:
        return _optional_str(data.get(key), key, path, _line_of(data, key, 1))


def reader_for(format_name: str = "views", root: str = ""):  # -> bot.semantic.formats.SemanticFormat
    """The format registered as `format_name`, reading the model whose root folder is `root`."""
    from bot.semantic.formats import format_for

    return format_for(format_name, root)


def __getattr__(name: str) -> Any:
    """`OmniYamlReader` was the `views/` layout's reader before Omni's own layout existed; old imports
    get that format (`bot.semantic.formats.views.ViewsFormat`). Lazy, because the formats import
    this module."""
    if name in ("OmniYamlReader", "ViewReader"):
        from bot.semantic.formats import SemanticFormat
        from bot.semantic.formats.views import ViewsFormat

        return ViewsFormat if name == "OmniYamlReader" else SemanticFormat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
