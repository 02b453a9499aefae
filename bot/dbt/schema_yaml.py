"""Minimal-diff edits of dbt properties YAML (``models:`` / ``columns:``).

layersync opens pull requests against files people maintain by hand, so a
reviewer must see only the lines the bot had to touch: comments, key order,
quoting, blank lines and indentation all have to survive.  The strategy:

1. Load with ruamel.yaml round-trip mode and find the indentation setting
   whose dump of the *unmodified* document reproduces the file byte for byte.
2. Edit the tree, dump it again with the same setting.
3. Diff "dump before" against "dump after" and splice only those hunks into
   the original text.  Inserted blocks are moved above comments/blank lines
   that ruamel attached to the preceding node (they usually belong to what
   follows); deleted blocks keep such comments.
4. When no setting reproduces the file (mixed styles, `~`, odd spacing), a
   few settings that together reproduce the most lines are tried.  Lines
   that differ only in indentation still anchor a hunk, whose lines are then
   re-indented the way the file indents their neighbours; a hunk next to a
   line ruamel rewrites anyway takes that line along.  The cheapest splice wins.
5. Re-load the result and check it means the same as the edited tree (PyYAML,
   which dbt uses, with duplicate keys refused; ruamel when they disagree on
   YAML 1.1 scalars).  If no splice does, fall back to the plain dump.
"""

from __future__ import annotations

import bisect
import difflib
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    PlainScalarString,
    ScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tokens import CommentToken

from bot.yamlbounds import bounded

__all__ = [
    "SchemaYamlError",
    "column_entry",
    "model_names",
    "remove_column",
    "upsert_column",
    "upsert_columns",
    "upsert_columns_changes",
]

Indent = tuple[int, int, int]  # (mapping, sequence, offset) as in YAML.indent()

_DBT_INDENT: Indent = (2, 4, 2)
_COMMON_INDENTS: tuple[Indent, ...] = ((2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 2))
_WIDTH = 1 << 30  # never re-wrap long lines
# dbt parses with PyYAML (YAML 1.1); libyaml's loader when present, for speed.
_FAST_LOADER = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)
_TEST_KEYS = ("data_tests", "tests")


class SchemaYamlError(ValueError):
    """A YAML file layersync cannot edit; .line is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


# --------------------------------------------------------------------------
# Text envelope: line endings, BOM and final newline are restored verbatim.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    """What we strip before handing text to ruamel, so it can be put back."""

    bom: bool
    crlf: bool
    final_newline: bool

    @classmethod
    def of(cls, text: str) -> tuple[_Envelope, str]:
        bom = text.startswith("\ufeff")
        body = text[1:] if bom else text
        crlf = "\r\n" in body and "\n" not in body.replace("\r\n", "")
        if crlf:
            body = body.replace("\r\n", "\n")
        final_newline = body.endswith("\n") or not body
        if not final_newline:
            body += "\n"
        return cls(bom, crlf, final_newline), body

    def wrap(self, body: str) -> str:
        if not self.final_newline and body.endswith("\n"):
            body = body[:-1]
        if self.crlf:
            body = body.replace("\n", "\r\n")
        return ("\ufeff" if self.bom else "") + body


# --------------------------------------------------------------------------
# Loading, dumping, layout detection
# --------------------------------------------------------------------------


def _yaml(indent: Indent = _DBT_INDENT, explicit_start: bool = False) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = _WIDTH
    yaml.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    yaml.explicit_start = explicit_start
    return yaml


def _load(body: str) -> Any:
    """Parse, translating ruamel's errors so callers get a line to point at."""
    try:
        return bounded(_yaml().load(body))
    except DuplicateKeyError as exc:
        raise SchemaYamlError(_problem(exc, "duplicate key"), _mark_line(exc)) from exc
    except MarkedYAMLError as exc:
        raise SchemaYamlError(_problem(exc, "invalid YAML"), _mark_line(exc)) from exc
    except YAMLError as exc:
        raise SchemaYamlError(f"invalid YAML: {exc}") from exc


def _problem(exc: MarkedYAMLError, prefix: str) -> str:
    detail = " ".join(p for p in (exc.context, exc.problem) if p)
    return f"{prefix}: {detail}" if detail else prefix


def _mark_line(exc: MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _dump(data: Any, indent: Indent, explicit_start: bool) -> str:
    stream = io.StringIO()
    _yaml(indent, explicit_start).dump(data, stream)
    return stream.getvalue()


@dataclass
class _Doc:
    """A loaded document plus the layouts that best reproduce its text.

    `layouts` maps indent settings to the dump of the *unmodified* tree, best
    first; a byte-identical one, if any, is the only entry.
    """

    body: str
    data: Any
    explicit_start: bool = False
    layouts: dict[Indent, str] = field(default_factory=dict)

    @property
    def indent(self) -> Indent:
        return next(iter(self.layouts), _DBT_INDENT)

    @property
    def lines(self) -> list[str]:
        return self.body.splitlines(keepends=True)

    def dump(self, indent: Indent | None = None) -> str:
        return _dump(self.data, indent or self.indent, self.explicit_start)


_DASH_RE = re.compile(r"^( *)- +(?=\S)")
_KEY_RE = re.compile(r"^( *)[^\s#-][^#]*:\s*(#.*)?$")


def _observed_indents(body: str) -> list[Indent]:
    """Indent settings read off the text, most used first, so the common case
    costs one dump and a file mixing styles offers each of its styles."""
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mappings: Counter[int] = Counter()
    sequences: Counter[tuple[int, int]] = Counter()
    for prev, cur in zip(lines, lines[1:]):
        key = _KEY_RE.match(prev)
        if key is None:
            continue
        parent = len(key.group(1))
        dash = _DASH_RE.match(cur)
        if dash and len(dash.group(1)) >= parent:
            sequences[(len(dash.group(0)) - parent, len(dash.group(1)) - parent)] += 1
        elif not dash and _indent_of(cur) > parent:
            mappings[_indent_of(cur) - parent] += 1
    seqs = [pair for pair, _ in sequences.most_common(3)] or [(_DBT_INDENT[1], _DBT_INDENT[2])]
    maps = [m for m, _ in mappings.most_common(2)] or [seqs[0][0] - seqs[0][1] or 2]
    return [(m, seq, offset) for seq, offset in seqs for m in maps]


def _indent_candidates(body: str) -> Iterator[Indent]:
    seen: set[Indent] = set()
    for cand in (*_observed_indents(body), *_COMMON_INDENTS):
        if cand not in seen and cand[1] >= cand[2] + 2 and cand[0] > 0:
            seen.add(cand)
            yield cand


def _has_explicit_start(body: str) -> bool:
    for line in body.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped == "---" or stripped.startswith("--- ")
    return False


def _parse(text: str) -> tuple[_Envelope, _Doc]:
    envelope, body = _Envelope.of(text)
    doc = _Doc(body=body, data=_load(body), explicit_start=_has_explicit_start(body))
    if doc.data is not None:
        doc.layouts = _rank_layouts(doc)
    return envelope, doc


def _rank_layouts(doc: _Doc, keep: int = 4) -> dict[Indent, str]:
    """The indent whose round trip is byte-identical, else a few that together
    reproduce the most lines.

    Hand-edited files mix styles (one model's lists at offset 0, another's at
    2), so the picks are greedy by lines not yet covered: the splice later uses
    whichever setting reproduces the lines around each edit.
    """
    body_lines = doc.body.splitlines()
    covered_by: dict[str, tuple[Indent, set[int]]] = {}
    for cand in _indent_candidates(doc.body):
        try:
            out = doc.dump(cand)
        except YAMLError:  # pragma: no cover - exotic settings ruamel rejects
            continue
        if out == doc.body:
            return {cand: out}
        if out not in covered_by:
            covered_by[out] = (cand, _reproduced_lines(out.splitlines(), body_lines))
    picks: dict[Indent, str] = {}
    covered: set[int] = set()
    while covered_by and len(picks) < keep:
        out, (cand, lines) = max(covered_by.items(), key=lambda item: len(item[1][1] - covered))
        if picks and not lines - covered:
            break
        picks[cand] = out
        covered |= lines
        del covered_by[out]
    return picks


def _reproduced_lines(dumped: list[str], original: list[str]) -> set[int]:
    return set(_align(dumped, original).values())


# --------------------------------------------------------------------------
# Navigating the dbt structure (with validation that yields line numbers)
# --------------------------------------------------------------------------


def _line_of_key(node: Any, key: Any) -> int | None:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _line_of_item(node: Any, index: int) -> int | None:
    try:
        return node.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _line_of_node(node: Any) -> int | None:
    try:
        return node.lc.line + 1
    except (AttributeError, TypeError):
        return None


def _root(data: Any) -> CommentedMap | None:
    """The top-level mapping; a document of only comments counts as absent."""
    if data is None:
        return None
    if not isinstance(data, CommentedMap):
        raise SchemaYamlError("top level of a dbt properties file must be a mapping", _line_of_node(data) or 1)
    return data


def _models(root: CommentedMap | None) -> CommentedSeq | None:
    if root is None or root.get("models") is None:
        return None
    models = root["models"]
    if not isinstance(models, CommentedSeq):
        raise SchemaYamlError("`models:` must be a list", _line_of_key(root, "models"))
    _check_entries(models, "models")
    return models


def _check_entries(seq: CommentedSeq, what: str) -> None:
    for index, entry in enumerate(seq):
        if not isinstance(entry, CommentedMap):
            raise SchemaYamlError(f"entry {index + 1} of `{what}:` is not a mapping", _line_of_item(seq, index))


def _find_model(models: CommentedSeq | None, model: str) -> CommentedMap | None:
    for entry in models or ():
        if str(entry.get("name")) == model:
            return entry
    return None


def _columns(model: CommentedMap) -> CommentedSeq | None:
    columns = model.get("columns")
    if columns is None:
        return None
    if not isinstance(columns, CommentedSeq):
        raise SchemaYamlError("`columns:` must be a list", _line_of_key(model, "columns"))
    _check_entries(columns, "columns")
    return columns


def _find_column_index(columns: CommentedSeq | None, column: str) -> int | None:
    """Exact name first; dbt column names are usually case-insensitive, so fall back."""
    names = [str(entry.get("name")) for entry in columns or ()]
    if column in names:
        return names.index(column)
    folded = [i for i, name in enumerate(names) if name.casefold() == column.casefold()]
    return folded[0] if len(folded) == 1 else None


def _locate(root: CommentedMap | None, model: str, column: str) -> tuple[CommentedMap | None, CommentedSeq | None, int | None]:
    entry = _find_model(_models(root), model)
    columns = _columns(entry) if entry is not None else None
    return entry, columns, _find_column_index(columns, column)


def _walk_entries(root: CommentedMap | None) -> Iterator[CommentedMap]:
    """Model and column entries in document order: where file conventions live."""
    for model in _models(root) or ():
        yield model
        columns = model.get("columns")
        if isinstance(columns, list):
            yield from (c for c in columns if isinstance(c, CommentedMap))


# --------------------------------------------------------------------------
# Plain views and value styling
# --------------------------------------------------------------------------


_NAN = object()


def _plain(node: Any) -> Any:
    """ruamel's tree as builtins, so 'same meaning' can be checked with ==."""
    if isinstance(node, Mapping):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, float):
        return _NAN if math.isnan(node) else float(node)
    if isinstance(node, int):
        return int(node)
    return node


def _to_yaml(value: Any) -> Any:
    """Plain Python → ruamel nodes, so new nested values dump in block style."""
    if isinstance(value, Mapping):
        return CommentedMap((k, _to_yaml(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return CommentedSeq(_to_yaml(v) for v in value)
    return value


def _round_trips(value: str, indent: Indent) -> bool:
    """Read back by ruamel *and* by PyYAML (YAML 1.1, what dbt parses with):
    a plain `yes` or `on` is a string to one and a boolean to the other."""
    try:
        text = _dump({"m": [{"d": value}]}, indent, False)
        if _yaml().load(text)["m"][0]["d"] != value:
            return False
    except (YAMLError, TypeError, KeyError, IndexError):
        return False
    try:
        return pyyaml.load(text, Loader=_FAST_LOADER)["m"][0]["d"] == value
    except (pyyaml.YAMLError, TypeError, KeyError, IndexError):
        return False


def _styled(description: str, old: Any, indent: Indent) -> str:
    """Literal block for multi-line text, else the old value's style, else plain.

    Always a ScalarString: ruamel would otherwise coerce a plain str to the
    old value's style on assignment, bypassing the round-trip check.
    """
    options: list[str] = []
    block_ok = _block_safe(description)
    if "\n" in description and block_ok:
        options.append(LiteralScalarString(description))
    if isinstance(old, ScalarString) and type(old) is not PlainScalarString:
        if block_ok or not isinstance(old, (LiteralScalarString, FoldedScalarString)):
            options.append(type(old)(description))
    options += [PlainScalarString(description), DoubleQuotedScalarString(description)]
    return next((o for o in options if _round_trips(o, indent)), options[-1])


def _block_safe(text: str) -> bool:
    """Block scalars whose edges are blank (`|+`, indentation indicators) can
    swallow or shed the blank lines around them in a real file; quote those."""
    return bool(text.strip()) and not text.endswith("\n\n") and not text[0].isspace()


def _test_name(test: Any) -> str:
    """`unique`, `{accepted_values: {...}}` and `{name: x, test_name: y}` all name a test."""
    if isinstance(test, Mapping):
        if "test_name" in test:
            return str(test["test_name"])
        return str(next(iter(test), ""))
    return str(test)


def _tests_key(entry: CommentedMap | None, root: CommentedMap | None) -> str:
    """Follow the file: `tests:` in legacy projects, `data_tests:` (dbt ≥ 1.8) otherwise."""
    candidates = ([entry] if entry is not None else []) + list(_walk_entries(root))
    for node in candidates:
        for key in node:
            if key in _TEST_KEYS:
                return str(key)
    return "data_tests"


def _meta_in_config(entry: CommentedMap | None, root: CommentedMap | None) -> bool:
    """dbt ≥ 1.10 wants `config: {meta: ...}`; keep a file's older `meta:` habit."""
    return _prefers_config_meta(([entry] if entry is not None else []) + list(_walk_entries(root)))


def _prefers_config_meta(nodes: Iterable[Mapping]) -> bool:
    """The first model or column entry that writes `meta` says how the file writes it (either tree)."""
    for node in nodes:
        if "meta" in node:
            return False
        config = node.get("config")
        if isinstance(config, Mapping) and "meta" in config:
            return True
    return True


# --------------------------------------------------------------------------
# Tree edits (each returns whether anything changed, for idempotence)
# --------------------------------------------------------------------------


def _blank_line() -> CommentToken:
    return CommentToken("\n", CommentMark(0), None)


def _blank_above(lines: list[str], line: int | None) -> bool | None:
    """Is there a blank line above 1-based `line`, looking past its header comments?"""
    if line is None:
        return None
    index = line - 2
    while index >= 0 and _is_comment(lines[index]):
        index -= 1
    return index >= 0 and _is_blank(lines[index])


def _separated(seq: CommentedSeq, lines: list[str], default: bool) -> bool:
    """Do existing items of this list have blank lines between them? Copy that.

    Judged on the last item read from the file (not one added in this run),
    so a batch of edits formats like the same edits made one call at a time.
    """
    for index in range(len(seq) - 1, 0, -1):
        line = _line_of_item(seq, index)
        if line is not None:
            return bool(_blank_above(lines, line))
    return default


def _append_item(seq: CommentedSeq, item: Any, blank_before: bool) -> None:
    seq.append(item)
    if blank_before and len(seq) > 1:
        seq.ca.items[len(seq) - 1] = [None, [_blank_line()], None, None]


def _new_column(column: str, description: str | None, tests: Sequence[str], meta: Mapping[str, Any] | None,
                tests_key: str, meta_in_config: bool, indent: Indent) -> CommentedMap:
    entry = CommentedMap(name=column)
    if description is not None:
        entry["description"] = _styled(description, None, indent)
    if meta:
        if meta_in_config:
            entry["config"] = CommentedMap(meta=_to_yaml(meta))
        else:
            entry["meta"] = _to_yaml(meta)
    if tests:
        entry[tests_key] = CommentedSeq(list(dict.fromkeys(tests)))
    return entry


def _set_description(entry: CommentedMap, description: str, indent: Indent) -> bool:
    old = entry.get("description")
    if old is not None and str(old) == description:
        return False
    value = _styled(description, old, indent)
    if "description" in entry:
        entry["description"] = value
    else:  # right after `name:`, where dbt docs put it
        entry.insert(_key_position(entry, "name") + 1, "description", value)
    return True


def _key_position(entry: CommentedMap, key: str) -> int:
    keys = list(entry)
    return keys.index(key) if key in keys else -1


def _add_tests(entry: CommentedMap, tests: Sequence[str], key: str) -> bool:
    present = next((k for k in _TEST_KEYS if k in entry), None)
    current = entry.get(present) if present else None
    if current is not None and not isinstance(current, list):
        raise SchemaYamlError(f"`{present}:` must be a list", _line_of_key(entry, present))
    names = {_test_name(t) for t in current or ()}
    missing = [t for t in dict.fromkeys(tests) if t not in names]
    if not missing:
        return False
    if current is None:
        entry[present or key] = CommentedSeq(missing)
    else:
        current.extend(missing)
    return True


def _merge_meta(entry: CommentedMap, meta: Mapping[str, Any], in_config: bool) -> bool:
    target = _meta_target(entry, in_config)
    changed = False
    for key, value in meta.items():
        if key not in target or _plain(target[key]) != _plain(value):
            target[key] = _to_yaml(value)
            changed = True
    return changed


def _meta_target(entry: CommentedMap, in_config: bool) -> CommentedMap:
    if isinstance(entry.get("meta"), CommentedMap):
        return entry["meta"]
    config = entry.get("config")
    if isinstance(config, CommentedMap) and isinstance(config.get("meta"), CommentedMap):
        return config["meta"]
    if not in_config or "meta" in entry:
        entry["meta"] = CommentedMap()
        return entry["meta"]
    if not isinstance(config, CommentedMap):
        entry["config"] = config = CommentedMap()
    config["meta"] = CommentedMap()
    return config["meta"]


def _update_column(entry: CommentedMap, description: str | None, tests: Sequence[str],
                   meta: Mapping[str, Any] | None, root: CommentedMap, indent: Indent) -> bool:
    changed = False
    if description is not None:
        changed |= _set_description(entry, description, indent)
    if meta:
        changed |= _merge_meta(entry, meta, _meta_in_config(entry, root))
    if tests:
        changed |= _add_tests(entry, tests, _tests_key(entry, root))
    return changed


def _attach_columns(model: CommentedMap, columns: CommentedSeq) -> None:
    """`columns:` goes after `description:` when there is one, else last."""
    if "columns" in model:
        model["columns"] = columns
    elif "description" in model:
        model.insert(_key_position(model, "description") + 1, "columns", columns)
    else:
        model["columns"] = columns


def _upsert_in_tree(doc: _Doc, model: str, column: str, description: str | None,
                    tests: Sequence[str], meta: Mapping[str, Any] | None) -> bool:
    root: CommentedMap = doc.data
    entry, columns, index = _locate(root, model, column)
    if index is not None and columns is not None:
        return _update_column(columns[index], description, tests, meta, root, doc.indent)
    new_col = _new_column(column, description, tests, meta, _tests_key(None, root),
                          _meta_in_config(None, root), doc.indent)
    if entry is None:
        _add_model(doc, model, new_col)
    elif columns is None:
        _attach_columns(entry, CommentedSeq([new_col]))
    else:
        _append_item(columns, new_col, _separated(columns, doc.lines, default=False))
    return True


def _add_model(doc: _Doc, model: str, new_col: CommentedMap) -> None:
    root: CommentedMap = doc.data
    new_model = CommentedMap(name=model)
    new_model["columns"] = CommentedSeq([new_col])
    models = _models(root)
    if models is None:
        is_new_key = "models" not in root
        root["models"] = models = CommentedSeq()
        if is_new_key and _top_level_separated(root, doc.lines):
            root.ca.items["models"] = [None, [_blank_line()], None, None]
    _append_item(models, new_model, _separated(models, doc.lines, default=True))


def _top_level_separated(root: CommentedMap, lines: list[str]) -> bool:
    """dbt files usually leave a blank line between top-level keys; follow the file."""
    keys = [k for k in root if k != "models"]
    if len(keys) >= 2:
        return bool(_blank_above(lines, _line_of_key(root, keys[-1])))
    return any(_is_blank(line) for line in lines)


def _remove_in_tree(doc: _Doc, model: str, column: str) -> bool:
    entry, columns, index = _locate(_root(doc.data), model, column)
    if entry is None or columns is None or index is None:
        return False
    del columns[index]
    if not columns:
        del entry["columns"]
    return True


# --------------------------------------------------------------------------
# Splicing the dump diff back into the original text
# --------------------------------------------------------------------------


@dataclass
class _Hunk:
    start: int  # [start, end) in the "before" dump's lines
    end: int
    lines: list[str]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _hunks(before: list[str], after: list[str]) -> list[_Hunk]:
    """The non-equal stretches between aligned lines, in order."""
    hunks: list[_Hunk] = []
    i = j = 0
    for a, b in sorted(_align(before, after).items()) + [(len(before), len(after))]:
        if a > i or b > j:
            hunks.append(_Hunk(i, a, after[j:b]))
        i, j = a + 1, b + 1
    return hunks


_SMALL_GAP = 40_000  # lines × lines below which difflib's exact matcher is cheap


def _align(a: list[str], b: list[str]) -> dict[int, int]:
    """Monotone line alignment (patience diff), index in `a` → index in `b`.

    difflib alone is quadratic on dbt files, whose lines repeat by the
    hundred (`- not_null`); lines unique on both sides anchor the alignment
    and difflib only fills the small gaps between anchors.
    """
    mapping: dict[int, int] = {}
    stack = [(0, len(a), 0, len(b))]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        while alo < ahi and blo < bhi and a[alo] == b[blo]:
            mapping[alo] = blo
            alo, blo = alo + 1, blo + 1
        while ahi > alo and bhi > blo and a[ahi - 1] == b[bhi - 1]:
            ahi, bhi = ahi - 1, bhi - 1
            mapping[ahi] = bhi
        if alo == ahi or blo == bhi:
            continue
        anchors = _unique_anchors(a, b, alo, ahi, blo, bhi)
        if anchors:
            bounds = [(alo - 1, blo - 1), *anchors, (ahi, bhi)]
            for (i0, j0), (i1, j1) in zip(bounds, bounds[1:]):
                if i1 < ahi:
                    mapping[i1] = j1
                stack.append((i0 + 1, i1, j0 + 1, j1))
        else:
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi],
                                              autojunk=(ahi - alo) * (bhi - blo) > _SMALL_GAP)
            for block in matcher.get_matching_blocks():
                mapping.update({alo + block.a + k: blo + block.b + k for k in range(block.size)})
    return mapping


def _unique_anchors(a: list[str], b: list[str], alo: int, ahi: int, blo: int, bhi: int) -> list[tuple[int, int]]:
    """Lines occurring once in each slice, longest increasing run of them."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    where_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1}
    pairs = [(i, where_b[a[i]]) for i in range(alo, ahi) if count_a[a[i]] == 1 and a[i] in where_b]
    return _longest_increasing(pairs)


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pairs sorted by first item; the longest subsequence increasing in the second."""
    tails: list[int] = []  # tails[k]: index into pairs ending the best run of length k+1
    tail_values: list[int] = []
    back: list[int] = []
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tail_values, j)
        back.append(tails[k - 1] if k else -1)
        if k == len(tails):
            tails.append(n)
            tail_values.append(j)
        else:
            tails[k], tail_values[k] = n, j
    run: list[tuple[int, int]] = []
    n = tails[-1] if tails else -1
    while n >= 0:
        run.append(pairs[n])
        n = back[n]
    return run[::-1]


def _tidy_insert(hunk: _Hunk, before: list[str], floor: int) -> _Hunk:
    """Put an inserted block right after the content it follows.

    ruamel emits a new node after the comments attached to its predecessor;
    those comments (and blank separators) normally introduce what comes next,
    so the block is moved above them — but not above deeper-indented comments,
    which annotate the predecessor itself.
    """
    start, lines = hunk.start, list(hunk.lines)
    while start < len(before) and lines and lines[0] == before[start]:
        lines = lines[1:] + [before[start]]
        start += 1
    head = next((ln for ln in lines if not _is_blank(ln)), "")
    depth = _indent_of(head)
    while start > floor and (
        _is_blank(before[start - 1]) or (_is_comment(before[start - 1]) and _indent_of(before[start - 1]) <= depth)
    ):
        start -= 1
    return _Hunk(start, start, lines)


def _tidy_delete(hunk: _Hunk, before: list[str], floor: int) -> _Hunk:
    """Delete the removed node's own lines and header comment, nothing around it.

    ruamel drops comments attached to a deleted node, including ones that
    introduce the next node; and two blank separators must not end up adjacent.
    """
    start, end = hunk.start, hunk.end
    while start > floor and before[start - 1] == before[end - 1]:
        start, end = start - 1, end - 1
    while start < end and (_is_blank(before[start]) or _is_comment(before[start])):
        start += 1
    if start == end:
        return hunk
    depth = _indent_of(before[start])
    while end > start and (_is_blank(before[end - 1]) or (_is_comment(before[end - 1]) and _indent_of(before[end - 1]) <= depth)):
        end -= 1
    while start > floor and _is_comment(before[start - 1]) and _indent_of(before[start - 1]) == depth:
        start -= 1  # a comment sitting right on top of the entry is its header
    prev_blank = start > 0 and _is_blank(before[start - 1])
    next_blank = end < len(before) and _is_blank(before[end])
    opener = start > 0 and before[start - 1].split("#")[0].rstrip().endswith(":")
    was_last = end == len(before) or (not next_blank and _indent_of(before[end]) < depth)
    if next_blank and (prev_blank or opener):
        end += 1
    elif prev_blank and was_last:
        start -= 1
    return _Hunk(start, end, [])


def _tidy_replace(hunk: _Hunk, before: list[str]) -> _Hunk:
    """Keep the blank separator ruamel counts as part of a replaced block scalar."""
    end = hunk.end
    if hunk.lines and not _is_blank(hunk.lines[-1]):
        while end - 1 > hunk.start and _is_blank(before[end - 1]):
            end -= 1
    return _Hunk(hunk.start, end, hunk.lines)


def _tidy(hunks: list[_Hunk], before: list[str]) -> list[_Hunk]:
    tidied: list[_Hunk] = []
    for hunk in hunks:
        floor = tidied[-1].end if tidied else 0
        if hunk.start == hunk.end:
            hunk = _tidy_insert(hunk, before, floor)
        elif not hunk.lines:
            hunk = _tidy_delete(hunk, before, floor)
        else:
            hunk = _tidy_replace(hunk, before)
        tidied.append(hunk)
    return tidied


class _Ambiguous(Exception):
    """An insertion whose two neighbours disagree on where it goes."""


class _Splicer:
    """Applies the before→after dump diff of one layout to the original text.

    `mapping` pairs dump lines with identical original lines; `loose` also
    pairs lines that differ only in indentation, which lets an insertion into
    a part of the file written in another style find its place and copy the
    local indentation.
    """

    def __init__(self, original: str, before: str, after: str):
        self.before = before.splitlines(True)
        self.original = original.splitlines(True)
        self.hunks = _hunks(self.before, after.splitlines(True))
        self.tidied = _tidy(self.hunks, self.before)
        self.exact_layout = self.before == self.original
        if self.exact_layout:
            self.mapping = {i: i for i in range(len(self.before))}
            self.loose = self.mapping
        else:
            self.mapping = _align(self.before, self.original)
            self.loose = _loose_align(self.before, self.original, self.mapping)

    def splice(self, tidy: bool, widen: bool) -> tuple[str, float] | None:
        """The spliced text and its cost (see `_anchored`), or None if it cannot be done cleanly."""
        result, limit, cost = list(self.original), len(self.original), 0.0
        for hunk in reversed(self.tidied if tidy else self.hunks):
            anchored = self._anchored(hunk, widen)
            if anchored is None or anchored[0].end > limit:
                return None
            span, extra = anchored
            result[span.start:span.end] = span.lines
            limit, cost = span.start, cost + extra
        return "".join(result), cost

    def _anchored(self, hunk: _Hunk, widen: bool) -> tuple[_Hunk, float] | None:
        """Translate a hunk of the dump diff into a hunk of the original text.

        The cost counts neighbouring lines re-emitted, plus one half for each
        compromise: an insertion placed against only one neighbour, or lines
        matched or re-indented while ignoring indentation.  None when
        ambiguous: lines only the original has sit at the edit.  With `widen`,
        an insertion beside a line ruamel rewrites takes that line along.
        """
        if hunk.start < hunk.end:
            return self._replaced(hunk)
        try:
            placed = self._insertion_point(hunk, widen)
        except _Ambiguous:
            return None
        if placed is None:
            return self._widened(hunk)
        position, cost = placed
        lines, shifted = self._reindented(hunk.lines, hunk.start - 1)
        return _Hunk(position, position, lines), cost + (0.5 if shifted else 0.0)

    def _replaced(self, hunk: _Hunk) -> tuple[_Hunk, float] | None:
        for pairs, cost in ((self.mapping, 0.0), (self.loose, 0.5)):
            first = pairs.get(hunk.start)
            size = hunk.end - hunk.start
            if first is not None and all(pairs.get(hunk.start + k) == first + k for k in range(size)):
                lines, _ = self._reindented(hunk.lines, hunk.start)
                return _Hunk(first, first + size, lines), cost
        return self._widened(hunk)

    def _insertion_point(self, hunk: _Hunk, widen: bool) -> tuple[int, float] | None:
        n_before = len(self.before)
        for pairs, base_cost in ((self.mapping, 0.0), (self.loose, 0.5)):
            left = 0 if hunk.start == 0 else _after(pairs.get(hunk.start - 1))
            right = pairs.get(hunk.start) if hunk.start < n_before else None  # appending: trailing lines stay last
            if left is not None and right is not None:
                if left != right:
                    raise _Ambiguous
                return left, base_cost
            if hunk.start == n_before and left is not None:
                return left, base_cost
            position = left if left is not None else right
            if position is not None and not widen:
                return position, base_cost + 0.5
        return None

    def _reindented(self, lines: list[str], reference: int) -> tuple[list[str], bool]:
        """Re-indent a block as the file indents the lines it hangs under.

        Each line hanging under a dump line above the block (a previous
        sibling, else the parent; searched upwards from `reference`) moves by
        that line's indentation difference, dump vs file; lines nested under
        an earlier line of the block move with it.
        """
        if self.exact_layout:
            return lines, False
        out: list[str] = []
        stack: list[tuple[int, int]] = []  # (indent, shift) of block lines still open
        for line in lines:
            if _is_blank(line):
                out.append(line)
                continue
            depth = _indent_of(line)
            while stack and stack[-1][0] >= depth:
                stack.pop()
            shift = stack[-1][1] if stack else self._shift_under(reference, depth)
            if depth + shift < 0:
                return lines, False
            stack.append((depth, shift))
            out.append(" " * (depth + shift) + line.lstrip(" "))
        return out, out != lines

    def _shift_under(self, reference: int, depth: int) -> int:
        index, twin = self._hanger(reference, depth)
        return 0 if twin is None else _indent_of(self.original[twin]) - _indent_of(self.before[index])

    def _hanger(self, index: int, depth: int) -> tuple[int, int | None]:
        """The nearest dump line at or above `index` that a block at `depth`
        hangs under and that has a twin in the file: a sibling, else the parent."""
        while index >= 0:
            line = self.before[index]
            if not (_is_blank(line) or _is_comment(line)) and _indent_of(line) <= depth:
                twin = self.loose.get(index)
                if twin is not None or _indent_of(line) < depth:
                    return index, twin
            index -= 1
        return index, None

    def _widened(self, hunk: _Hunk) -> tuple[_Hunk, float] | None:
        """Widen to the nearest lines the file shares with the dump (ignoring
        indentation), so lines ruamel would rewrite anyway (odd spacing, `~`)
        change only where they touch the edit."""
        prev = hunk.start - 1
        while prev >= 0 and prev not in self.loose:
            prev -= 1
        nxt = hunk.end
        while nxt < len(self.before) and nxt not in self.loose:
            nxt += 1
        start = self.loose[prev] + 1 if prev >= 0 else 0
        end = self.loose[nxt] if nxt < len(self.before) else len(self.original)
        if end < start:
            return None
        lines = self.before[prev + 1:hunk.start] + hunk.lines + self.before[hunk.end:nxt]
        lines, shifted = self._reindented(lines, prev)
        return _Hunk(start, end, lines), (hunk.start - prev - 1) + (nxt - hunk.end) + (0.5 if shifted else 0.0)


def _after(index: int | None) -> int | None:
    return None if index is None else index + 1


def _loose_align(before: list[str], original: list[str], mapping: dict[int, int]) -> dict[int, int]:
    """`mapping` plus, between its pairs, lines equal once indentation is ignored."""
    loose = dict(mapping)
    bounds = [(-1, -1), *sorted(mapping.items()), (len(before), len(original))]
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:]):
        if i1 - i0 > 1 and j1 - j0 > 1:
            gap = _align([ln.strip() for ln in before[i0 + 1:i1]], [ln.strip() for ln in original[j0 + 1:j1]])
            loose.update({i0 + 1 + i: j0 + 1 + j for i, j in gap.items()})
    return loose


def _means(text: str, expected: Any) -> bool:
    """Does the spliced text load to the edited tree? libyaml answers most cases ten times faster
    than a second round-trip load; only when it disagrees (YAML 1.1 vs 1.2 scalars) does ruamel judge."""
    try:
        if pyyaml.load(text, Loader=_StrictFastLoader) == expected:
            return True
    except pyyaml.YAMLError:
        pass
    try:
        return _plain(_yaml().load(text)) == expected
    except YAMLError:
        return False


class _StrictFastLoader(_FAST_LOADER):  # type: ignore[misc, valid-type]
    """PyYAML keeps the last of two equal keys, so a splice that left a stale
    `description:` above the new one would pass; ruamel (and we) reject that."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, pyyaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise pyyaml.constructor.ConstructorError(None, None, "duplicate key", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _apply(doc: _Doc, mutate: Callable[[_Doc], bool]) -> str | None:
    """Run an edit; the new body, or None when nothing changed.

    Every candidate layout is tried; the splice with the lowest cost (fewest
    untouched lines re-emitted) wins, and only splices that re-load to the
    edited tree count.  The plain dump is the last resort.
    """
    if not mutate(doc):
        return None
    expected = _plain(doc.data)
    best: tuple[float, str] | None = None
    for indent, before in doc.layouts.items():
        splicer = _Splicer(doc.body, before, doc.dump(indent))
        for tidy, widen in ((True, False), (True, True), (False, False), (False, True)):
            spliced = splicer.splice(tidy, widen)
            if spliced is None or (best is not None and spliced[1] >= best[0]):
                continue
            if _means(spliced[0], expected):
                if spliced[1] == 0:
                    return spliced[0]
                best = (spliced[1], spliced[0])
    if best is not None:
        return best[1]
    dumped = doc.dump()
    if not _means(dumped, expected):  # pragma: no cover - guards against ruamel emitter bugs
        raise SchemaYamlError("cannot write this edit so that it reads back unchanged")
    return dumped


def _fresh_file(model: str, column: str, description: str | None, tests: Sequence[str],
                meta: Mapping[str, Any] | None) -> str:
    new_col = _new_column(column, description, tests, meta, "data_tests", True, _DBT_INDENT)
    model_entry = CommentedMap(name=model)
    model_entry["columns"] = CommentedSeq([new_col])
    root = CommentedMap(version=2)
    root["models"] = CommentedSeq([model_entry])
    return _dump(root, _DBT_INDENT, False)


# --------------------------------------------------------------------------
# Fast path: locate with libyaml's composer, splice text, verify by re-reading
# --------------------------------------------------------------------------
#
# A ruamel round trip (load, rank layouts by dumping, dump, diff) costs about as much as the
# file is long, per file edited: a push touching fifty 50-model files paid it fifty times.
# The common edits (a column appended to a model's block `columns:` list, a model appended to
# `models:`, a one-line description set) need none of it: libyaml's composer gives every node
# with its position, the new entry is rendered by ruamel on its own (a few lines, in the layout
# its siblings use) and spliced in, and the result must re-read, strictly, to the edited data.
# Anything else (flow style, an entry on the line after its dash, a multi-line value, tests or
# meta added to an existing column, a layout the siblings do not agree on) returns None, and
# the round-trip engine above decides, so the texts written are the ones it would write.

_SCALAR_STYLES: dict[str | None, type] = {
    None: PlainScalarString, "'": SingleQuotedScalarString, '"': DoubleQuotedScalarString,
    "|": LiteralScalarString, ">": FoldedScalarString,
}


class _NoFastPath(Exception):
    """The edit is outside what the fast path does; the round-trip engine takes it."""


@dataclass
class _FastSeq:
    """A block sequence of the file (`models:` or a model's `columns:`) that new entries join."""

    node: pyyaml.SequenceNode
    key_column: int          # where the key owning the list is written
    default_separated: bool  # blank lines between entries when the file shows none to copy
    pending: list[Any] = field(default_factory=list)   # ruamel maps to append, in order


def _fast_mapping_items(node: pyyaml.Node) -> list[tuple[str, pyyaml.Node]]:
    if not isinstance(node, pyyaml.MappingNode) or node.flow_style:
        raise _NoFastPath
    return [(k.value, v) for k, v in node.value if isinstance(k, pyyaml.ScalarNode)]


def _fast_value(node: pyyaml.Node, key: str) -> pyyaml.Node | None:
    return next((v for k, v in _fast_mapping_items(node) if k == key), None)


def _fast_block_seq(node: pyyaml.Node | None) -> pyyaml.SequenceNode:
    if not isinstance(node, pyyaml.SequenceNode) or node.flow_style or not node.value:
        raise _NoFastPath
    return node


def _fast_end(node: pyyaml.Node, body: str) -> int:
    """Offset just past the last character of the node's own text (its trailing comments and
    blank lines, which libyaml counts into enclosing block nodes, excluded)."""
    while isinstance(node, (pyyaml.MappingNode, pyyaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    if isinstance(node, pyyaml.ScalarNode) and node.style in ("|", ">"):
        header = body[node.start_mark.index:body.find("\n", node.start_mark.index)]
        if "+" in header:
            raise _NoFastPath  # kept trailing blank lines belong to the value
        return len(body[:node.end_mark.index].rstrip())
    return node.end_mark.index


def _fast_insertion_point(body: str, lines: list[str], after: int, depth: int) -> int:
    """Where a new entry at `depth` goes after the content ending at `after`: the end of that
    line, past comments indented deeper (they annotate what is above), before blank lines and
    shallower comments (they introduce what follows) — where the round-trip engine puts it."""
    line = body.count("\n", 0, after)
    position = line + 1
    index = position
    while index < len(lines) and (_is_blank(lines[index]) or _is_comment(lines[index])):
        if _is_comment(lines[index]) and _indent_of(lines[index]) > depth:
            position = index + 1
        index += 1
    return sum(len(ln) for ln in lines[:position])


def _fast_dash_layout(body: str, lines: list[str], seq: _FastSeq) -> tuple[int, int]:
    """(sequence, offset) of the list as its last entry writes it: `- ` and the entry on one line."""
    last = seq.node.value[-1]
    if not isinstance(last, pyyaml.MappingNode) or last.flow_style:
        raise _NoFastPath
    line = lines[last.start_mark.line]
    content = last.start_mark.column
    prefix = line[:content]
    dash = prefix.find("-")
    if dash < seq.key_column or prefix[:dash].strip() or prefix[dash + 1:].strip() or dash + 2 > content:
        raise _NoFastPath
    return content - seq.key_column, dash - seq.key_column


def _fast_separated(lines: list[str], seq: _FastSeq) -> bool:
    """`_separated` on the composed list: judged on its last entry, past its header comments."""
    if len(seq.node.value) < 2:
        return seq.default_separated
    return bool(_blank_above(lines, seq.node.value[-1].start_mark.line + 1))


def _fast_render(seq: _FastSeq, body: str, lines: list[str], indent: Indent) -> str:
    """The pending entries as the round trip would dump them into this list."""
    sequence, offset = _fast_dash_layout(body, lines, seq)
    if sequence < offset + 2:
        raise _NoFastPath
    nested = any(isinstance(v, (Mapping, list)) for entry in seq.pending for v in entry.values())
    if nested and indent[1:] != (sequence, offset):
        raise _NoFastPath  # a list inside the entry: the file's layouts disagree on how to write it
    blank = "\n" if _fast_separated(lines, seq) else ""
    out: list[str] = []
    for entry in seq.pending:
        dumped = _dump(CommentedMap(k=CommentedSeq([entry])), (indent[0], sequence, offset), False)
        entry_lines = dumped.splitlines(True)[1:]
        out.append(blank + "".join(" " * seq.key_column + ln if ln.strip() else ln for ln in entry_lines))
    return "".join(out)


def _fast_scalar(value: str, old: pyyaml.ScalarNode | None, indent: Indent) -> str:
    """The description as `_styled` would write it, on one line (else the round trip decides)."""
    old_value = _SCALAR_STYLES.get(old.style, PlainScalarString)(old.value) if old is not None else None
    styled = _styled(value, old_value, indent)
    dumped = _dump(CommentedMap(d=styled), indent, False)
    if dumped.count("\n") != 1 or not dumped.startswith("d: "):
        raise _NoFastPath
    return dumped[3:-1]


def _fast_find_column(columns: list[Any], column: str) -> int | None:
    names = [entry.get("name") for entry in columns]
    if not all(isinstance(name, str) for name in names):
        raise _NoFastPath  # ruamel (YAML 1.2) and libyaml (1.1) may read such names differently
    return _find_column_index(columns, column)


class _FastEdit:
    """One batch of column docs against one file, as text splices and the data they must give."""

    def __init__(self, body: str):
        self.body = body
        self.lines = body.splitlines(True)
        loader = _StrictFastLoader(body)
        try:
            self.root = loader.get_single_node()
            self.data = bounded(loader.construct_document(self.root)) if self.root is not None else None
        except pyyaml.YAMLError:
            raise _NoFastPath from None  # the round trip reports it, with its line
        finally:
            loader.dispose()
        if not isinstance(self.data, dict) or not isinstance(self.root, pyyaml.MappingNode):
            raise _NoFastPath
        models = self.data.get("models")
        models_node = _fast_value(self.root, "models")
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                                   for m in models):
            raise _NoFastPath  # YAML 1.1 and 1.2 may read a name like `yes` differently: the round trip decides
        self.models_seq = _FastSeq(_fast_block_seq(models_node), self._key_column(self.root, "models"), True)
        self.model_nodes = list(zip(models, self.models_seq.node.value))
        self.indent = next(iter(_observed_indents(body)), _DBT_INDENT)
        self.replacements: list[_Edit] = []
        self.column_seqs: dict[int, _FastSeq] = {}
        self.new_models: dict[str, CommentedMap] = {}
        self.touched: set[tuple[str, str]] = set()
        self.changed: set[tuple[str, str]] = set()   # (model, column lower-cased) whose entry changed
        self.tests_key = self._tests_key()
        self.meta_in_config = self._meta_in_config()

    @staticmethod
    def _key_column(node: pyyaml.MappingNode, key: str) -> int:
        return next(k.start_mark.column for k, _ in node.value if isinstance(k, pyyaml.ScalarNode) and k.value == key)

    def _entries(self) -> Iterator[dict]:
        for model in self.data["models"]:
            yield model
            columns = model.get("columns")
            if isinstance(columns, list):
                yield from (c for c in columns if isinstance(c, dict))

    def _tests_key(self) -> str:
        return next((str(k) for node in self._entries() for k in node if k in _TEST_KEYS), "data_tests")

    def _meta_in_config(self) -> bool:
        return _prefers_config_meta(self._entries())

    def add(self, doc: ColumnDoc) -> None:
        key = (doc.model, doc.column.casefold())
        if key in self.touched:
            raise _NoFastPath  # the second edit of one column sees the first: the round trip orders them
        self.touched.add(key)
        found = next(((m, n) for m, n in self.model_nodes if m["name"] == doc.model), None)
        if found is None:
            self._add_to_new_model(doc)
            return
        model, node = found
        columns = model.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
            raise _NoFastPath
        index = _fast_find_column(columns, doc.column)
        if index is None:
            seq = self._column_seq(node)
            seq.pending.append(self._new_column(doc))
            columns.append(_plain(seq.pending[-1]))
            self.changed.add((doc.model, doc.column.lower()))
            return
        if doc.tests or doc.meta:
            raise _NoFastPath
        if doc.description is not None and self._set_description(
                columns[index], _fast_block_seq(_fast_value(node, "columns")).value[index], doc.description):
            self.changed.add((doc.model, str(columns[index]["name"]).lower()))

    def _new_column(self, doc: ColumnDoc) -> CommentedMap:
        return _new_column(doc.column, doc.description, doc.tests, doc.meta, self.tests_key, self.meta_in_config,
                           self.indent)

    def _add_to_new_model(self, doc: ColumnDoc) -> None:
        entry = self.new_models.get(doc.model)
        if entry is None:
            entry = self.new_models[doc.model] = CommentedMap(name=doc.model)
            entry["columns"] = CommentedSeq()
            self.models_seq.pending.append(entry)
            self.data["models"].append({"name": doc.model, "columns": []})
        entry["columns"].append(self._new_column(doc))
        self.changed.add((doc.model, doc.column.lower()))
        next(m for m in reversed(self.data["models"]) if m["name"] == doc.model)["columns"].append(
            _plain(entry["columns"][-1]))

    def _column_seq(self, model_node: pyyaml.MappingNode) -> _FastSeq:
        seq = self.column_seqs.get(id(model_node))
        if seq is None:
            nodes = _fast_block_seq(_fast_value(model_node, "columns"))
            seq = self.column_seqs[id(model_node)] = _FastSeq(nodes, self._key_column(model_node, "columns"), False)
        return seq

    def _set_description(self, column: dict, node: pyyaml.Node, description: str) -> bool:
        old = column.get("description")
        if old is not None and str(old) == description:
            return False
        value_node = _fast_value(node, "description")
        name_node = _fast_value(node, "name")
        if value_node is not None:
            if not isinstance(value_node, pyyaml.ScalarNode) or value_node.start_mark.line != value_node.end_mark.line:
                raise _NoFastPath
            text = _fast_scalar(description, value_node, self.indent)
            self.replacements.append(self._replace_keeping_comment(value_node, text))
        else:
            if not isinstance(name_node, pyyaml.ScalarNode) or name_node.start_mark.line != name_node.end_mark.line:
                raise _NoFastPath
            key_column = next(k.start_mark.column for k, _ in node.value)
            text = _fast_scalar(description, None, self.indent)
            at = _fast_insertion_point(self.body, self.lines, name_node.end_mark.index, key_column)
            if _fast_insertion_point(self.body, self.lines, name_node.end_mark.index, -1) != at:
                raise _NoFastPath  # comments under `name:`: which side the key goes is the round trip's call
            self.replacements.append(_Edit(at, at, f"{' ' * key_column}description: {text}\n"))
        column["description"] = description
        return True

    def _replace_keeping_comment(self, node: pyyaml.ScalarNode, text: str) -> _Edit:
        """Replace a one-line value; a comment after it keeps its column while the value leaves
        room (one space when it does not), as ruamel's emitter writes it."""
        start, end = node.start_mark.index, node.end_mark.index
        rest = self.lines[node.end_mark.line][node.end_mark.column:]
        gap = len(rest) - len(rest.lstrip(" "))
        if not rest[gap:].startswith("#"):
            return _Edit(start, end, text)
        comment_column = node.end_mark.column + gap
        spaces = max(1, comment_column - (node.start_mark.column + len(text)))
        return _Edit(start, end + gap, text + " " * spaces)

    def result(self) -> str:
        edits = list(self.replacements)
        for seq in [*self.column_seqs.values(), self.models_seq]:
            if seq.pending:
                depth = seq.key_column + _fast_dash_layout(self.body, self.lines, seq)[1]
                at = _fast_insertion_point(self.body, self.lines, _fast_end(seq.node, self.body), depth)
                edits.append(_Edit(at, at, _fast_render(seq, self.body, self.lines, self.indent)))
        text = _apply_edits(self.body, edits)
        try:
            if text != self.body and pyyaml.load(text, Loader=_StrictFastLoader) != self.data:
                raise _NoFastPath
        except pyyaml.YAMLError:
            raise _NoFastPath from None
        return text


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _apply_edits(text: str, edits: list[_Edit]) -> str:
    """Splice edits made against `text`; insertions at one offset keep their order (a model's new
    columns before the new model that follows it)."""
    ordered = sorted(edits, key=lambda e: e.start)
    for earlier, later in zip(ordered, ordered[1:]):
        if later.start < earlier.end or (later.start == earlier.start and earlier.end > earlier.start):
            raise _NoFastPath  # overlapping edits: not the common case this path is for
    pieces, pos = [], 0
    for edit in ordered:
        pieces += [text[pos:edit.start], edit.text]
        pos = edit.end
    return "".join(pieces + [text[pos:]])


def _fast_upsert(body: str, columns: Sequence[ColumnDoc]) -> str | None:
    """The edited body by splicing, or None when the round-trip engine must decide."""
    done = _fast_upsert_changes(body, columns)
    return None if done is None else done[0]


def _fast_upsert_changes(body: str, columns: Sequence[ColumnDoc]) -> tuple[str, set[tuple[str, str]]] | None:
    try:
        edit = _FastEdit(body)
        for doc in columns:
            edit.add(doc)
        return edit.result(), edit.changed
    except _NoFastPath:
        return None


def _column_entries(text: str) -> dict[tuple[str, str], Any]:
    """(model, column lower-cased) → the column's entry, read fast: only to tell which changed."""
    try:
        data = bounded(pyyaml.load(text, Loader=_FAST_LOADER)) if text.strip() else None
    except pyyaml.YAMLError:
        data = None
    found: dict[tuple[str, str], Any] = {}
    for model in (data.get("models") if isinstance(data, dict) else None) or []:
        if isinstance(model, dict) and isinstance(model.get("columns"), list):
            for column in model["columns"]:
                if isinstance(column, dict) and column.get("name") is not None:
                    found[(str(model.get("name")), str(column["name"]).lower())] = column
    return found


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def model_names(text: str) -> list[str]:
    """Names of the models declared in a dbt properties YAML text (the `models:` list); [] if none. Raises SchemaYamlError (with line) on invalid YAML, including duplicate keys."""
    _, body = _Envelope.of(text)
    models = _models(_root(_load(body)))
    return [str(entry["name"]) for entry in models or () if entry.get("name") is not None]


def upsert_column(text: str | None, model: str, column: str, *, description: str | None = None,
                  tests: Sequence[str] = (), meta: Mapping[str, Any] | None = None) -> str:
    """Return the YAML text with `column` documented under `model`.

    Creates the file (`text` None/empty), the `models:` key, the model entry,
    its `columns:` and the column entry as needed; on an existing column sets
    the description when it differs, merges `meta` keys and appends missing
    tests (by test name, never removing or reordering).  Tests go under the
    key the file already uses (`data_tests:` or legacy `tests:`), meta under
    `meta:` or `config: meta:` likewise (default: `config:`, dbt >= 1.10).

    Why the care: the result lands in a reviewed pull request, so only the
    lines the change requires differ from `text`, and a repeated call with
    the same arguments returns `text` itself.
    """
    if isinstance(tests, str):  # a lone "unique" would otherwise be split into letters
        tests = (tests,)
    return upsert_columns(text, [ColumnDoc(model, column, description, tuple(tests), meta)])


@dataclass(frozen=True)
class ColumnDoc:
    """One column to document: the arguments of `upsert_column`, for batches."""

    model: str
    column: str
    description: str | None = None
    tests: tuple[str, ...] = ()
    meta: Mapping[str, Any] | None = None


def upsert_columns(text: str | None, columns: Sequence[ColumnDoc]) -> str:
    """`upsert_column` for several columns in one round trip: a batch that touches one file many
    times costs one parse and one splice, not one per column. Same result as calling it in turn."""
    return upsert_columns_changes(text, columns)[0]


def upsert_columns_changes(text: str | None, columns: Sequence[ColumnDoc]) -> tuple[str, set[tuple[str, str]]]:
    """`upsert_columns`, and which entries it changed, as (model, column lower-cased): a planner
    reports a field as documented only when its entry changed. Known without re-reading the file
    when the edit was spliced."""
    updated, changed = _upsert_columns(text, list(columns))
    if changed is None:
        before, after = _column_entries(text or ""), _column_entries(updated)
        changed = {key for key, entry in after.items() if before.get(key) != entry}
    return updated, changed


def _upsert_columns(text: str | None, columns: list[ColumnDoc]) -> tuple[str, set[tuple[str, str]] | None]:
    """The edited text, and the entries changed when the fast path knows them."""
    if not columns:
        return text or "", set()
    created: set[tuple[str, str]] = set()
    if text is None or not text.strip():
        first = columns.pop(0)
        text = _fresh_file(first.model, first.column, first.description, first.tests, first.meta)
        created.add((first.model, first.column.lower()))
        if not columns:
            return text, created
    envelope, body = _Envelope.of(text)
    fast = _fast_upsert_changes(body, columns)
    if fast is not None:
        return (text if fast[0] == body else envelope.wrap(fast[0])), fast[1] | created
    return _round_trip_upsert(text, columns), None


def _round_trip_upsert(text: str, columns: list[ColumnDoc]) -> str:
    """The ruamel engine: load, edit the tree, splice the dump's diff (see the module docstring)."""
    envelope, doc = _parse(text)
    if _root(doc.data) is None:  # only comments: keep them, add the document below
        first = columns.pop(0)
        text = envelope.wrap(doc.body + _fresh_file(first.model, first.column, first.description, first.tests,
                                                    first.meta))
        return upsert_columns(text, columns) if columns else text

    def mutate(d: _Doc) -> bool:
        changed = [_upsert_in_tree(d, c.model, c.column, c.description, c.tests, c.meta) for c in columns]
        return any(changed)

    body = _apply(doc, mutate)
    return text if body is None else envelope.wrap(body)


def remove_column(text: str, model: str, column: str) -> str:
    """Drop the column's entry (used when a pushed field is withdrawn); unchanged text if absent."""
    if not text.strip():
        return text
    envelope, doc = _parse(text)
    body = _apply(doc, lambda d: _remove_in_tree(d, model, column))
    return text if body is None else envelope.wrap(body)


def column_entry(text: str, model: str, column: str) -> dict | None:
    """Plain-Python view of the column's entry, or None.

    Keys: ``name``, ``description`` (str or None), ``tests`` (list of str or
    mappings, from ``data_tests:`` or ``tests:``) and ``meta`` (``meta:`` merged
    with ``config: meta:``; the latter wins).
    """
    _, body = _Envelope.of(text or "")
    _, columns, index = _locate(_root(_load(body)), model, column)
    if columns is None or index is None:
        return None
    entry = columns[index]
    description = entry.get("description")
    tests = next((entry[k] for k in _TEST_KEYS if entry.get(k) is not None), [])
    config = entry.get("config")
    meta = dict(_plain(entry.get("meta") or {}))
    if isinstance(config, Mapping) and isinstance(config.get("meta"), Mapping):
        meta.update(_plain(config["meta"]))
    return {
        "name": str(entry.get("name")),
        "description": None if description is None else str(description),
        "tests": _plain(tests),
        "meta": meta,
    }
