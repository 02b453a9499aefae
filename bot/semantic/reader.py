"""Readers turn one semantic-layer file into a `View`; each format is one class behind one interface.

Only the Omni-style YAML view format exists today; LookML, Cube or MetricFlow readers plug in
by implementing `ViewReader` and registering in `READERS`.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError

from bot.errors import SemanticError
from bot.semantic.model import Field, FieldKind, Location, View

FIELD_SECTIONS: dict[str, FieldKind] = {"dimensions": "dimension", "measures": "measure"}
KNOWN_FIELD_KEYS = {
    "sql", "label", "description", "type", "primary_key", "aggregate_type", "aliases",
    "format", "hidden", "group_label", "tags", "filters", "links", "values", "all_values",
    "timeframes", "convert_tz", "meta", "display_order", "synonyms", "ai_context",
}


class ViewReader(Protocol):
    """One semantic-layer file format."""

    def is_view_file(self, path: str) -> bool: ...

    def read(self, text: str, path: str) -> View: ...


def _line_of(mapping: Any, key: str, default: int) -> int:
    """1-based line of `key` in a ruamel mapping; ruamel counts from 0."""
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain Python, so diffs compare values not comments."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value
    return value


def _optional_str(value: Any, key: str, path: str, line: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise SemanticError(f"`{key}` must be text, not {type(_plain(value)).__name__}", path, line)
    return str(value)


class OmniYamlReader:
    """Omni-style view files: `views/<name>.view.yaml` with `dimensions:` and `measures:`."""

    suffixes = (".view.yaml", ".view.yml")

    def is_view_file(self, path: str) -> bool:
        return path.endswith(self.suffixes)

    def view_name_from_path(self, path: str) -> str:
        name = PurePosixPath(path).name
        for suffix in self.suffixes:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return PurePosixPath(path).stem

    def read(self, text: str, path: str) -> View:
        data = self._load(text, path)
        name = str(data.get("name") or self.view_name_from_path(path))
        table = data.get("table_name") or data.get("sql_table_name") or name
        fields: dict[str, Field] = {}
        for section, kind in FIELD_SECTIONS.items():
            block = data.get(section)
            if block is None:
                continue
            section_line = _line_of(data, section, 1)
            if not isinstance(block, dict):
                raise SemanticError(f"`{section}` must be a mapping of field names", path, section_line)
            for field_name, spec in block.items():
                line = _line_of(block, field_name, section_line)
                if str(field_name) in fields:
                    raise SemanticError(
                        f"field `{field_name}` is declared twice (also at line {fields[str(field_name)].location.line})",
                        path, line,
                    )
                fields[str(field_name)] = self._field(name, str(field_name), kind, spec, path, line)
        return View(
            name=name,
            table_name=str(table),
            file=path,
            schema=_optional_str(data.get("schema"), "schema", path, _line_of(data, "schema", 1)),
            label=_optional_str(data.get("label"), "label", path, _line_of(data, "label", 1)),
            fields=fields,
        )

    def _load(self, text: str, path: str) -> CommentedMap:
        yaml = YAML(typ="rt")
        try:
            data = yaml.load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise SemanticError(f"invalid YAML: {problem}", path, line) from None
        except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad encodings)
            raise SemanticError(f"invalid YAML: {exc}", path, None) from None
        if data is None:
            raise SemanticError("empty view file", path, 1)
        if not isinstance(data, dict):
            raise SemanticError("a view file must be a mapping (table_name, dimensions, measures)", path, 1)
        return data

    def _field(self, view: str, name: str, kind: FieldKind, spec: Any, path: str, line: int) -> Field:
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise SemanticError(f"field `{name}` must be a mapping of attributes", path, line)
        plain = _plain(spec)
        sql = spec.get("sql")
        if sql is not None and not isinstance(sql, (str, int, float)):
            raise SemanticError(f"`sql` of `{name}` must be text", path, _line_of(spec, "sql", line))
        aliases = plain.get("aliases") or []
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list):
            raise SemanticError(f"`aliases` of `{name}` must be a list", path, _line_of(spec, "aliases", line))
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
            attributes=plain,
        )


READERS: dict[str, ViewReader] = {"omni": OmniYamlReader()}


def reader_for(format_name: str = "omni") -> ViewReader:
    try:
        return READERS[format_name]
    except KeyError:
        raise SemanticError(f"unknown semantic-layer format `{format_name}` (known: {', '.join(READERS)})") from None
