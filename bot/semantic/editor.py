"""Minimal, comment-preserving edits of semantic-layer view files, for "pull from dbt".

When the dbt project changes, layersync opens a PR on the semantic-layer repo. Its edits must touch
only the lines they need: users' comments, key order, quoting, indentation, blank lines and line
endings (CRLF included) all survive. Every function here is a pure `text -> text` edit:

1. ruamel's round-trip composer (`YAML(typ="rt").compose`) tells where every key, value and list
   item starts and ends (line, column and character offset); YAML structure is never found with
   regular expressions;
2. the edit is spliced into the original text (whole new lines for new keys, characters for
   values, keys and list items);
3. the result is read back with the view's format (`fmt`, a `bot.semantic.formats.SemanticFormat`;
   None is the older `views` layout) and compared with the expected data: the intended field(s)
   changed as intended and nothing else did, or `SemanticError` is raised.

Every function returns `text` unchanged (the very same string) when there is nothing to do, so
calling it twice is the same as calling it once. Invalid YAML, or a file that is no view, raises
`SemanticError` with the file and line (as the reader does).

The format decides what is written. Omni's own files (`fmt` omni) never get `${TABLE}` (Omni has
none) or `type:` (Omni takes types from the warehouse); their columns are bare or quoted names and
a bare column is `name: {}`; dbt's `accepted_values` are `all_values:`; a description copied from
dbt carries Omni's marker line `#This description was pulled from dbt.` right above the key; the
view's name is Omni's (`<schema>__<stem>`), so its self-qualified `${view.field}` follow renames; the
read-only `dbt:` block is never touched. The `views` layout keeps `${TABLE}.col`, `type:` and
`allowed_values:`. Topics and `relationships.yaml` follow a renamed field through
`rename_field_in_topic` / `rename_field_in_relationships`.

Decisions (see each function for details):

* `add_dimension` on a name that is already a dimension (case-insensitively) is a no-op, so "pull
  from dbt" can run repeatedly; its attributes are not compared (use the `set_*` functions). A name
  that is a measure or another field's alias raises `SemanticError`.
* `rename_column_refs` only rewrites explicit references (`${TABLE}.col`; Omni's bare `col` /
  `"COL"`). A dimension without `sql:` whose name is the column reads it implicitly: the caller
  decides whether the field follows the column (`rename_field`, which needs no `sql:` then: the
  implicit column follows the name) or keeps its name (`set_field_sql` with the new column).
* `rename_field` keeps the old name in `aliases:` (so saved content keeps working) and renaming back
  to an alias removes it again; `rename(a -> b)` then `rename(b -> a)` restores the original bytes
  (for both functions, and for the pair used together), as long as `b` is a fresh name.
* `mark_broken` writes `# layersync: broken — <reason>` on the line above the field's key.
* `set_allowed_values` writes `all_values: [a, b]` in Omni's files and `allowed_values: [a, b]` in
  the `views` layout (flow style).
"""
from __future__ import annotations

import bisect
import copy
import re
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any, Callable

import sqlglot
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.errors import SemanticError
from bot.semantic.model import View
from bot.semantic.reader import FIELD_SECTIONS, OmniYamlReader, load_view_yaml
from bot.semantic.refs import Ref, scan
from bot.yamlbounds import bounded

__all__ = [
    "add_dimension", "set_description", "rename_column_refs", "rename_field", "rename_field_refs",
    "mark_broken", "unmark", "set_primary_key", "set_allowed_values", "label_from_name",
    "BROKEN_PREFIX", "DBT_DESCRIPTION_MARK", "description_from_dbt", "rename_field_in_topic",
    "rename_field_in_relationships",
]

BROKEN_PREFIX = "# layersync: broken — "
_BROKEN_RE = re.compile(r"^\s*#\s*layersync:\s*broken\b")

# ruamel counts these as line breaks (a lone `\r` too), so line numbers agree with its marks.
_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
_LINE_ENDS = ("\n", "\r", "\x85", "\u2028", "\u2029")

# Key order when the file's own fields give no evidence; keys not listed go after these.
_DEFAULT_ORDER = ("primary_key", "sql", "label", "description", "type", "aliases", "allowed_values", "all_values")
# Omni writes this comment line right above a `description:` it copied from dbt: a description so
# marked is dbt's (a later dbt change may replace it); an unmarked one is the analyst's.
DBT_DESCRIPTION_MARK = "#This description was pulled from dbt."
_DBT_MARK_RE = re.compile(r"^\s*#\s*This description was pulled from dbt\.?\s*$", re.IGNORECASE)
_ACRONYMS = {"id", "ids", "url", "uri", "ip", "utc", "sku", "usd", "api", "uuid", "ltv", "kpi"}
_YAML11_SPECIAL = re.compile(
    r"(?:y|n|yes|no|true|false|on|off|null|~|[-+]?\.?\d[\d_.:eE+-]*|0[xob][0-9a-fA-F_]+|[-+]?\.(?:inf|nan))",
    re.IGNORECASE,
)
_SIMPLE_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters a renamed identifier may contain and still be spliced into any scalar style as is.
_SPLICE_SAFE = re.compile(r"[\w .$-]*")


# --------------------------------------------------------------------------------------------
# Rendering scalars


def _safe_load(snippet: str) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(snippet)
    except YAMLError:
        return _INVALID
    except Exception:  # noqa: BLE001 - ruamel raises a few unmarked errors
        return _INVALID


_INVALID = object()


def _printable(value: str) -> bool:
    for char in value:
        code = ord(char)
        if char in "\t":
            continue
        if code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029\ufeff" or 0xD800 <= code <= 0xDFFF:
            return False
        if code in (0xFFFE, 0xFFFF):
            return False
    return True


def _double_quoted(value: str) -> str:
    out = []
    for char in value:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029\ufeff" or 0xD800 <= code <= 0xDFFF \
                or code in (0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@lru_cache(maxsize=4096)
def _plain_ok(value: str, flow: bool) -> bool:
    if not value or value != value.strip() or "\n" in value or not _printable(value) or "\t" in value:
        return False
    if _YAML11_SPECIAL.fullmatch(value):  # other YAML 1.1 readers would not see a string
        return False
    if flow:
        return _safe_load(f"[{value}]") == [value]
    return _safe_load(f"k: {value}") == {"k": value}


def _inline(value: Any, flow: bool = False) -> str | None:
    """One-line YAML for `value`, quoted only where YAML needs it; None when a block scalar is better."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_inline(item, flow=True)) for item in value) + "]"
    text = str(value)
    if _plain_ok(text, flow):
        return text
    if "\n" in text and not flow and _printable(text.replace("\n", "")):
        return None
    if _printable(text) and "\n" not in text:
        return "'" + text.replace("'", "''") + "'"
    return _double_quoted(text)


def _block_scalar(value: str, relative_indent: int) -> tuple[str, list[str]] | None:
    """A literal block scalar (`|`, `|-`, `|+`) for a multi-line string, or None if none fits."""
    stripped = value.rstrip("\n")
    trailing = len(value) - len(stripped)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    body = stripped.split("\n") + [""] * max(0, trailing - 1)
    first = next((line for line in body if line), "")
    indicator = str(relative_indent) if first[:1] in (" ", "\t") else ""
    if relative_indent > 9 and indicator:
        return None
    header = f"|{indicator}{chomp}"
    probe = f"k: {header}\n" + "".join((" " * relative_indent + line if line else "") + "\n" for line in body)
    if _safe_load(probe) != {"k": value}:
        return None
    return header, body


@lru_cache(maxsize=4096)
def _render_key(name: str, like_style: str | None = None) -> str:
    """A mapping key: in the quoting style of the key it replaces, else plain when YAML allows."""
    if like_style == '"':
        return _double_quoted(name)
    if like_style == "'" and _printable(name) and "\n" not in name:
        return "'" + name.replace("'", "''") + "'"
    if _plain_ok(name, flow=False) and _safe_load(f"{name}: x") == {name: "x"}:
        return name
    if _printable(name) and "\n" not in name:
        return "'" + name.replace("'", "''") + "'"
    return _double_quoted(name)


def label_from_name(name: str) -> str:
    """A human label: `customer_lifetime_value` -> `Customer lifetime value`, `order_id` -> `Order ID`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    words = [word for word in re.split(r"[_\s\-]+", spaced) if word]
    if not words:
        return name
    out = []
    for index, word in enumerate(words):
        lowered = word.lower()
        if lowered in _ACRONYMS:
            out.append(lowered.upper())
        elif index == 0:
            out.append(lowered[:1].upper() + lowered[1:])
        else:
            out.append(lowered)
    return " ".join(out)


# --------------------------------------------------------------------------------------------
# `${...}` rewriting (positions recovered from refs.scan's pieces)


def _ref_spans(text: str) -> list[tuple[int, int, Ref]] | None:
    """(start, end, ref) of every `${...}` in `text`, found by `refs.scan`; None if it cannot scan."""
    try:
        parts = scan(text)
    except ValueError:
        return None
    spans = []
    pos = 0
    for part in parts:
        if isinstance(part, Ref):
            end = text.find("}", pos + 2) + 1
            spans.append((pos, end, part))
            pos = end
        else:
            pos += len(part)
    return spans


def _case_like(written: str, old: str, new: str) -> str:
    """`new` spelt the way `written` spells `old` (exact, upper or lower case), so renames reverse."""
    if written == old:
        return new
    if written == written.upper() and written != written.lower():
        return new.upper()
    if written == written.lower() and written != written.upper():
        return new.lower()
    return new


def _apply_spans(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


_COLUMN_PLAIN = re.compile(r'\.(?:(?P<bare>[^\W\d]\w*)|"(?P<dq>(?:[^"]|"")*)"|`(?P<bt>(?:[^`]|``)*)`)')
_COLUMN_ESCAPED = re.compile(r'\.(?:(?P<bare>[^\W\d]\w*)|\\"(?P<dq>[^"\\]*)\\"|`(?P<bt>(?:[^`]|``)*)`)')


def _rewrite_table_refs(text: str, old: str, new: str, escaped: bool = False) -> tuple[str, int]:
    """`${TABLE}.old` (any case, bare or quoted) -> `${TABLE}.new`; `escaped` is for the source of a
    double-quoted YAML scalar, where a `"` is written `\\"`. Returns the text and the count."""
    spans = _ref_spans(text)
    if not spans:
        return text, 0
    edits = []
    pattern = _COLUMN_ESCAPED if escaped else _COLUMN_PLAIN
    quote = '\\"' if escaped else '"'
    for _start, end, ref in spans:
        if not ref.is_table:
            continue
        match = pattern.match(text, end)
        if match is None:
            continue
        if match.group("bare") is not None:
            name = match.group("bare")
            if name.lower() != old.lower():
                continue
            if _SIMPLE_IDENT.fullmatch(new):
                replacement = "." + _case_like(name, old, new)
            else:
                replacement = "." + quote + new.replace('"', '""') + quote
        elif match.group("dq") is not None:
            name = match.group("dq").replace('""', '"')
            if name.lower() != old.lower():
                continue
            replacement = "." + quote + _case_like(name, old, new).replace('"', '""') + quote
        else:
            name = match.group("bt").replace("``", "`")
            if name.lower() != old.lower():
                continue
            replacement = ".`" + _case_like(name, old, new).replace("`", "``") + "`"
        edits.append((match.start(), match.end(), replacement))
    return _apply_spans(text, edits), len(edits)


_LOCAL_TARGET = re.compile(r"(\s*)(.*?)(\s*)", re.DOTALL)
_QUALIFIED_TARGET = re.compile(r"(\s*)([^.]*?)(\s*\.\s*)(.*?)(\s*)", re.DOTALL)


def _field_ref_matches(text: str, view: str, old: str, local: bool) -> list[tuple[int, int, str]]:
    """(start, end, written name) of the field part of `${old}` (when `local`) and `${view.old}`."""
    found = []
    for start, end, _ref in _ref_spans(text) or []:
        inner_start = start + 2
        inner = text[inner_start:end - 1]
        if "." in inner:
            match = _QUALIFIED_TARGET.fullmatch(inner)
            if match and match.group(2) == view and match.group(4).lower() == old.lower():
                found.append((inner_start + match.start(4), inner_start + match.end(4), match.group(4)))
        elif local:
            match = _LOCAL_TARGET.fullmatch(inner)
            if match and match.group(2).lower() == old.lower() and match.group(2).upper() != "TABLE":
                found.append((inner_start + match.start(2), inner_start + match.end(2), match.group(2)))
    return found


def _rewrite_field_refs(text: str, view: str, old: str, new: str, local: bool,
                        escaped: bool = False) -> tuple[str, int]:
    """`${old}` (when `local`) and `${view.old}` -> `new`, each spelt in the case it was written."""
    matches = _field_ref_matches(text, view, old, local)
    edits = []
    for start, end, written in matches:
        replacement = _case_like(written, old, new)
        if escaped:
            replacement = replacement.replace("\\", "\\\\").replace('"', '\\"')
        edits.append((start, end, replacement))
    return _apply_spans(text, edits), len(edits)


# --------------------------------------------------------------------------------------------
# The document: lines, composed nodes, splices, verification


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if hasattr(value, "value") and not isinstance(value, (str, int, float)):
        return value.value
    return value


def _normalized(data: Any) -> Any:
    """The view's data with `field:` (null) and `field: {}` made equal, as the reader treats them."""
    data = copy.deepcopy(data)
    if isinstance(data, dict):
        for section in FIELD_SECTIONS:
            block = data.get(section)
            if isinstance(block, dict):
                for name in block:
                    if block[name] is None:
                        block[name] = {}
    return data


class _Capture:
    """A format's view reader, also handing back the data it loaded (one YAML parse instead of two)."""

    def _load(self, text: str, path: str) -> Any:
        data = super()._load(text, path)
        self.loaded = data
        return data

    def read_with_data(self, text: str, path: str) -> tuple[View, Any]:
        self.loaded = None
        view = self.read(text, path)
        data = self.loaded
        if data is None:  # the reader stopped using `_load`: parse once more
            data = bounded(YAML(typ="rt").load(text))
        return view, data


class _Reader(_Capture, OmniYamlReader):
    """The `views` layout's reader (the default when no format is given)."""


@lru_cache(maxsize=None)
def _reader_class(fmt_class: type) -> type:
    """`fmt_class` reading as `_Reader` does: the format names the view (Omni: `<schema>__<stem>`)
    and says what its SQL may hold, so edits resolve references as that format reads them."""
    if fmt_class is OmniYamlReader or not hasattr(fmt_class, "_load"):
        return _Reader
    return type(f"_{fmt_class.__name__}Reader", (_Capture, fmt_class), {})


def _reader_for(fmt: Any) -> _Capture:
    """The reader of `fmt` (a `bot.semantic.formats.SemanticFormat`); None: the `views` layout."""
    if fmt is None:
        return _Reader()
    cls = _reader_class(type(fmt))
    if cls is _Reader and not isinstance(fmt, OmniYamlReader):
        raise SemanticError(f"the `{getattr(fmt, 'name', fmt)}` format is not a YAML view format", None)
    return cls(getattr(fmt, "root", ""))


@dataclass
class _Field:
    name: str
    section: str
    key: ScalarNode
    value: Node


class _Doc:
    """One view file being edited: its lines, its composed YAML nodes and the pending splices."""

    def __init__(self, text: str, path: str, fmt: Any = None):
        self.original = text
        self.path = path
        self.reader = _reader_for(fmt)
        self.view, data = self.reader.read_with_data(text, path)  # invalid -> SemanticError with line
        self.data = _plain(data)
        match = _BREAK.search(text)
        self.nl = match.group() if match else "\n"
        self.added_final_break = bool(text) and not text.endswith(_LINE_ENDS)
        self.text = text + self.nl if self.added_final_break else text
        self.lines: list[str] = []
        pos = 0
        for found in _BREAK.finditer(self.text):
            self.lines.append(self.text[pos:found.end()])
            pos = found.end()
        if pos < len(self.text):
            self.lines.append(self.text[pos:])
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        try:
            self.root = YAML(typ="rt").compose(self.text)
        except YAMLError as exc:  # the reader accepted it, so this should not happen
            raise SemanticError(f"invalid YAML: {exc}", path) from None
        if not isinstance(self.root, MappingNode):
            raise SemanticError("a view file must be a mapping (table_name, dimensions, measures)", path, 1)
        self.sections: dict[str, tuple[ScalarNode, Node]] = {}
        self.fields: dict[str, _Field] = {}
        for key, value in self.root.value:
            if isinstance(key, ScalarNode) and key.value in FIELD_SECTIONS:
                self.sections[key.value] = (key, value)
                if isinstance(value, MappingNode):
                    for field_key, field_value in value.value:
                        name = str(field_key.value)
                        self.fields[name] = _Field(name, key.value, field_key, field_value)
        self.edits: list[tuple[int, int, str]] = []
        self.votes = self._key_votes()

    # ---- lines and nodes

    def line_text(self, index: int) -> str:
        return self.lines[index].rstrip("".join(_LINE_ENDS))

    def line_break(self, index: int) -> str:
        line = self.lines[min(index, len(self.lines) - 1)] if self.lines else ""
        body = line.rstrip("".join(_LINE_ENDS))
        return line[len(body):] or self.nl

    def is_blank(self, index: int) -> bool:
        return not self.line_text(index).strip()

    def is_comment(self, index: int) -> bool:
        return self.line_text(index).lstrip().startswith("#")

    def indent(self, index: int) -> int:
        text = self.line_text(index)
        return len(text) - len(text.lstrip(" "))

    def line_at(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index) - 1

    @staticmethod
    def is_empty(node: Node) -> bool:
        tag = str(getattr(node.tag, "value", node.tag))  # a `Tag` object in some ruamel versions
        return isinstance(node, ScalarNode) and tag.endswith(":null") and node.value == "" and not node.style

    def node_last_line(self, node: Node) -> int:
        """0-based line of the node's last character (not counting comments or blank lines)."""
        start, end = node.start_mark, node.end_mark
        if isinstance(node, ScalarNode):
            if node.style in ("|", ">"):
                line = end.line if end.column > 0 else end.line - 1
                header = self.line_text(start.line)[start.column:].split("#", 1)[0]
                if "+" not in header:
                    while line > start.line and self.is_blank(line):
                        line -= 1
                return line
            return self.line_at(end.index - 1) if end.index > start.index else start.line
        if getattr(node, "flow_style", False) or not node.value:
            return self.line_at(end.index - 1) if end.index > start.index else start.line
        if isinstance(node, MappingNode):
            return max(self.pair_last_line(k, v) for k, v in node.value)
        return max(self.node_last_line(item) for item in node.value)

    def pair_last_line(self, key: Node, value: Node) -> int:
        last = self.node_last_line(key)
        if not self.is_empty(value):
            last = max(last, self.node_last_line(value))
        return last

    def field_end(self, field: _Field) -> int:
        """Line after the field: its content and the deeper-indented comments right below it."""
        index = self.pair_last_line(field.key, field.value) + 1
        while index < len(self.lines) and self.is_comment(index) and self.indent(index) > field.key.start_mark.column:
            index += 1
        return index

    def leading_comments_start(self, key: Node) -> int:
        """First line of the comment lines right above `key` (no blank line between), at most as deep."""
        index = key.start_mark.line
        while index > 0 and self.is_comment(index - 1) and self.indent(index - 1) <= key.start_mark.column:
            index -= 1
        return index

    def field(self, name: str) -> _Field:
        found = self.fields.get(name)
        if found is None:
            target = self.view.field_named(name)
            found = self.fields.get(target.name) if target is not None else None
        if found is None:
            raise SemanticError(f"no field `{name}` in view `{self.view.name}`", self.path)
        return found

    def pairs(self, field: _Field) -> list[tuple[str, ScalarNode, Node]]:
        if isinstance(field.value, MappingNode):
            return [(str(k.value), k, v) for k, v in field.value.value]
        return []

    def pair(self, field: _Field, key: str) -> tuple[ScalarNode, Node] | None:
        for name, key_node, value_node in self.pairs(field):
            if name == key:
                return key_node, value_node
        return None

    def field_line(self, field: _Field) -> int:
        return field.key.start_mark.line + 1

    def key_prefix(self, field: _Field) -> str:
        """The indentation in front of the field's key; the key must start its line."""
        line = field.key.start_mark.line
        prefix = self.line_text(line)[: field.key.start_mark.column]
        if prefix.strip():
            raise SemanticError(
                f"field `{field.name}` is written in flow style; layersync only edits block-style fields",
                self.path, line + 1,
            )
        return prefix

    # ---- conventions

    def _key_votes(self) -> Counter:
        votes: Counter = Counter()
        for field in self.fields.values():
            keys = [name for name, _k, _v in self.pairs(field)]
            for i, first in enumerate(keys):
                for second in keys[i + 1:]:
                    votes[(first, second)] += 1
        return votes

    def before(self, first: str, second: str) -> bool:
        """Whether the file's convention writes key `first` before key `second`."""
        ahead, behind = self.votes[(first, second)], self.votes[(second, first)]
        if ahead != behind:
            return ahead > behind
        if first in _DEFAULT_ORDER and second in _DEFAULT_ORDER:
            return _DEFAULT_ORDER.index(first) < _DEFAULT_ORDER.index(second)
        return first not in _DEFAULT_ORDER  # with no evidence, new keys go after unknown ones

    def order_keys(self, keys: list[str]) -> list[str]:
        def compare(first: str, second: str) -> int:
            if self.before(first, second):
                return -1
            if self.before(second, first):
                return 1
            return 0
        return sorted(keys, key=cmp_to_key(compare))

    def insert_position(self, existing: list[str], key: str) -> int:
        return max((i + 1 for i, name in enumerate(existing) if self.before(name, key)), default=0)

    def block_fields(self) -> list[_Field]:
        return [f for f in self.fields.values()
                if isinstance(f.value, MappingNode) and not f.value.flow_style and f.value.value]

    def key_step(self) -> int:
        """How much deeper a field's keys are than the field (the file's indentation unit)."""
        steps = Counter(f.value.value[0][0].start_mark.column - f.key.start_mark.column for f in self.block_fields())
        steps.pop(0, None)
        if steps:
            return steps.most_common(1)[0][0]
        for key, value in self.sections.values():
            if isinstance(value, MappingNode) and value.value and not value.flow_style:
                step = value.value[0][0].start_mark.column - key.start_mark.column
                if step > 0:
                    return step
        return 2

    def key_column(self, field: _Field) -> int:
        pairs = self.pairs(field)
        if pairs and not field.value.flow_style:
            return pairs[0][1].start_mark.column
        return field.key.start_mark.column + self.key_step()

    # ---- splices

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text))

    def insert_lines(self, at_line: int, lines: list[str]) -> None:
        newline = self.line_break(at_line - 1 if at_line > 0 else 0)
        self.replace(self.starts[at_line], self.starts[at_line], "".join(line + newline for line in lines))

    def delete_lines(self, first: int, end: int) -> None:
        self.replace(self.starts[first], self.starts[end], "")

    def result(self, keep_break: bool = False) -> str:
        ordered = sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True)
        text = self.text
        limit = len(text) + 1
        for start, end, replacement in ordered:
            if end > limit:
                raise SemanticError("internal error: overlapping edits", self.path)
            text = text[:start] + replacement + text[end:]
            limit = start
        if self.added_final_break and text.endswith(self.nl) and not keep_break:
            text = text[: -len(self.nl)]
        return text

    def finish(self, expected: Any, what: str) -> str:
        """Apply the splices, read the result back and prove only the intended change was made.

        A file without a final line break is given back without one — unless the edit ends the file in
        a block scalar (`description: |`) whose last line break is part of its value: then, and only
        when the file without it does not read as intended, the break stays."""
        if not self.edits:
            return self.original
        results = [self.result()] + ([self.result(keep_break=True)] if self.added_final_break else [])
        for result in results:
            if result == self.original:
                return self.original
            try:
                _view, data = self.reader.read_with_data(result, self.path)
            except SemanticError as exc:
                raise SemanticError(f"{what}: the edited file would not read back ({exc.message})",
                                    self.path, exc.line) from None
            after = _plain(data)
            want, got = _normalized(expected), _normalized(after)
            if want == got and all(
                list(want.get(s) or {}) == list(got.get(s) or {}) for s in FIELD_SECTIONS
                if isinstance(want.get(s) or {}, dict) and isinstance(got.get(s) or {}, dict)
            ):
                return result
        raise SemanticError(f"{what}: could not edit the file without touching other fields", self.path)

    def expected(self) -> Any:
        return _normalized(self.data)

    # ---- edits of a field's keys

    def render_pair(self, indent: int, key: str, value: Any) -> list[str]:
        """The lines of `key: value` in a block mapping at column `indent`."""
        pad = " " * indent
        inline = _inline(value)
        if inline is not None:
            return [f"{pad}{key}: {inline}"]
        step = self.key_step()
        block = _block_scalar(str(value), step)
        if block is None:
            return [f"{pad}{key}: {_double_quoted(str(value))}"]
        header, body = block
        return [f"{pad}{key}: {header}"] + [pad + " " * step + line if line else "" for line in body]

    def set_key(self, field: _Field, key: str, value: Any) -> None:
        found = self.pair(field, key)
        if found is not None:
            self.replace_value(field, found[0], found[1], value)
        else:
            self.add_key(field, key, value)

    def replace_value(self, field: _Field, key_node: ScalarNode, value_node: Node, value: Any) -> None:
        flow = bool(getattr(field.value, "flow_style", False))
        if flow:
            inline = _inline(value, flow=True)
            if inline is None:
                inline = _double_quoted(str(value))
        else:
            inline = _inline(value)
        first_line = key_node.start_mark.line
        last_line = self.pair_last_line(key_node, value_node)
        if inline is not None and (flow or last_line == first_line):
            if self.is_empty(value_node):
                start = value_node.start_mark.index
                spacer = " " if self.text[start - 1:start] == ":" else ""
                self.replace(start, start, spacer + inline)
            else:
                self.replace(value_node.start_mark.index, value_node.end_mark.index, inline)
            return
        key_src = self.text[key_node.start_mark.index:key_node.end_mark.index]
        lines = self.render_pair(key_node.start_mark.column, key_src, value)
        prefix = self.line_text(first_line)[: key_node.start_mark.column]
        lines[0] = prefix + lines[0][key_node.start_mark.column:]
        self.delete_lines(first_line, last_line + 1)
        self.insert_lines(first_line, lines)

    def add_key(self, field: _Field, key: str, value: Any, comment: str | None = None) -> None:
        """`comment`: a line written right above the new key (Omni's dbt-description marker)."""
        pairs = self.pairs(field)
        existing = [name for name, _k, _v in pairs]
        position = self.insert_position(existing, key)
        above = [] if comment is None else [" " * self.key_column(field) + comment]
        if isinstance(field.value, MappingNode) and field.value.flow_style and not pairs \
                and self.view.format == "omni":
            # Omni writes a bare column as `name: {}` and its attributes in block style: `{}` opens up.
            self.key_prefix(field)
            start = field.value.start_mark.index
            while start > 0 and self.text[start - 1] == " ":
                start -= 1
            self.replace(start, field.value.end_mark.index, "")
            self.insert_lines(field.key.start_mark.line + 1,
                              above + self.render_pair(self.key_column(field), _render_key(key), value))
            return
        if isinstance(field.value, MappingNode) and field.value.flow_style:
            if comment is not None:
                raise SemanticError(f"field `{field.name}` is written in flow style; layersync cannot put "
                                    f"`{comment}` above its `{key}`", self.path, self.field_line(field))
            inline = _inline(value, flow=True) or _double_quoted(str(value))
            item = f"{_render_key(key)}: {inline}"
            spans = [(k.start_mark.index, (k if self.is_empty(v) else v).end_mark.index) for _n, k, v in pairs]
            self._flow_insert(field.value, spans, position, item)
            return
        if not isinstance(field.value, MappingNode) and not self.is_empty(field.value):
            raise SemanticError(f"field `{field.name}` must be a mapping of attributes", self.path,
                                self.field_line(field))
        self.key_prefix(field)
        self.insert_lines(self.key_insert_line(field, pairs, position),
                          above + self.render_pair(self.key_column(field), _render_key(key), value))

    def ends_open_block(self, node: Node) -> bool:
        """A `|`/`>` scalar (clip chomping) that ends the file with no line break: a line added
        after it would give its value a final line break."""
        if not (self.added_final_break and isinstance(node, ScalarNode) and node.style in ("|", ">")):
            return False
        header = self.line_text(node.start_mark.line)[node.start_mark.column:].split("#", 1)[0]
        return self.node_last_line(node) == len(self.lines) - 1 and "-" not in header

    def key_insert_line(self, field: _Field, pairs: list, position: int) -> int:
        """The line a new key at `position` among the field's keys goes on."""
        while position > 0 and self.ends_open_block(pairs[position - 1][2]):
            position -= 1  # never after a block scalar that ends the file (see ends_open_block)
        if position > 0:
            return self.pair_last_line(pairs[position - 1][1], pairs[position - 1][2]) + 1
        return field.key.start_mark.line + 1

    def remove_key(self, field: _Field, key: str) -> None:
        pairs = self.pairs(field)
        for index, (name, key_node, value_node) in enumerate(pairs):
            if name != key:
                continue
            if field.value.flow_style:
                spans = [(k.start_mark.index, (k if self.is_empty(v) else v).end_mark.index) for _n, k, v in pairs]
                self._flow_remove(spans, index)
            else:
                self.delete_lines(key_node.start_mark.line, self.pair_last_line(key_node, value_node) + 1)
                colon = self.text.find(":", field.key.end_mark.index)
                if len(pairs) == 1 and self.view.format == "omni" and colon >= 0 \
                        and self.line_at(colon) == field.key.start_mark.line:
                    self.replace(colon + 1, colon + 1, " {}")     # Omni's bare column: `name: {}`
            return

    def _flow_insert(self, node: Node, spans: list[tuple[int, int]], position: int, item: str) -> None:
        if not spans:
            self.replace(node.start_mark.index + 1, node.start_mark.index + 1, item)
            return
        separator = self.text[spans[0][1]:spans[1][0]] if len(spans) > 1 else ", "
        if "\n" in separator or "\r" in separator:
            separator = ", "
        if position == 0:
            self.replace(spans[0][0], spans[0][0], item + separator)
        else:
            at = spans[position - 1][1]
            self.replace(at, at, separator + item)

    def _flow_remove(self, spans: list[tuple[int, int]], index: int) -> None:
        if index > 0:
            self.replace(spans[index - 1][1], spans[index][1], "")
        elif len(spans) > 1:
            self.replace(spans[0][0], spans[1][0], "")
        else:
            self.replace(spans[0][0], spans[0][1], "")

    # ---- `${...}` in `sql:`

    def rewrite_sql(self, field: _Field, new_value: str,
                    source_rewrite: Callable[[str, bool], tuple[str, int]], expected_count: int,
                    inserted: str) -> None:
        """Change one field's `sql:` from the source (keeping its style), else re-render the value."""
        found = self.pair(field, "sql")
        assert found is not None
        key_node, value_node = found
        start = value_node.start_mark.index
        # A block scalar's end mark lies past its trailing blank lines, where other edits may insert.
        end = min(value_node.end_mark.index, self.starts[self.node_last_line(value_node) + 1])
        source = self.text[start:end]
        rewritten, count = source_rewrite(source, value_node.style == '"')
        if count == expected_count and _SPLICE_SAFE.fullmatch(inserted):
            self.replace(start, end, rewritten)
        else:
            self.replace_value(field, key_node, value_node, new_value)


def _sql_of(doc: _Doc, field: _Field) -> str | None:
    found = doc.pair(field, "sql")
    if found is None or not isinstance(found[1], ScalarNode) or doc.is_empty(found[1]):
        return None
    value = doc.data[field.section][field.name]["sql"]
    return value if isinstance(value, str) else None


def _spec(expected: Any, field: _Field) -> dict:
    block = expected.setdefault(field.section, {}) if isinstance(expected, dict) else {}
    if block is None:
        block = expected[field.section] = {}
    if block.get(field.name) is None:
        block[field.name] = {}
    return block[field.name]


def _rewrite_every_sql(doc: _Doc, expected: Any, rewrite: Callable[[str, bool], tuple[str, int]], inserted: str,
                       spec_of: Callable[[_Field], dict] | None = None) -> None:
    """Apply `rewrite(source, escaped)` to every field's `sql:`, in the file and in `expected` (found
    there by `spec_of`, by default under the field's own name)."""
    for field in doc.fields.values():
        sql = _sql_of(doc, field)
        if sql is None:
            continue
        new_sql, count = rewrite(sql, False)
        if count:
            (spec_of or (lambda f: _spec(expected, f)))(field)["sql"] = new_sql
            doc.rewrite_sql(field, new_sql, rewrite, count, inserted)


# --------------------------------------------------------------------------------------------
# 1. add_dimension


def _own_column_style(sql: str, name: str) -> str | None:
    """How `sql` names the column `name` on its own: `table` (`${TABLE}.name`), `bare` (`name`),
    `quoted` (`"NAME"`, any case), else None (an expression, or another column)."""
    spans = _ref_spans(sql)
    if spans is None:
        return None
    if not spans:
        text = sql.strip()
        if _SIMPLE_IDENT.fullmatch(text):
            return "bare" if text.lower() == name.lower() else None
        if len(text) > 2 and text[0] == text[-1] == '"' and '"' not in text[1:-1].replace('""', ""):
            return "quoted" if text[1:-1].replace('""', '"').lower() == name.lower() else None
        return None
    if len(spans) != 1 or spans[0][0] != sql.index("${") or not spans[0][2].is_table:
        return None
    if sql[: spans[0][0]].strip():
        return None
    match = _COLUMN_PLAIN.match(sql, spans[0][1])
    if match is None or sql[match.end():].strip():
        return None
    written = match.group("bare") or (match.group("dq") or "").replace('""', '"') or match.group("bt") or ""
    return "table" if written.lower() == name.lower() else None


def _is_own_column(sql: str, name: str) -> bool:
    return _own_column_style(sql, name) == "table"


def _omni(doc: _Doc) -> bool:
    """Omni's own files: no `${TABLE}`, no `type:`, `all_values`, dbt's descriptions marked."""
    return doc.view.format == "omni"


def _values_key(doc: _Doc) -> str:
    """Where dbt's `accepted_values` go: Omni's `all_values`; layersync's own key in the `views` layout."""
    return "all_values" if _omni(doc) else "allowed_values"


def _column_sql(doc: _Doc, dims: list[_Field], name: str) -> str | None:
    """`sql:` for a new dimension reading the column `name`, written the way the file's dimensions
    that read their own column write it; None when most of them leave `sql:` out (the column of the
    field's name, in both layouts)."""
    omitted = sum(1 for f in dims if doc.pair(f, "sql") is None)
    styles = Counter(style for f in dims if (s := _sql_of(doc, f)) is not None
                     and (style := _own_column_style(s, f.name)) is not None and (style != "table") == _omni(doc))
    if sum(styles.values()) <= omitted:
        return None
    if not _omni(doc):
        return f"${{TABLE}}.{name}" if _SIMPLE_IDENT.fullmatch(name) else '${TABLE}."' + name.replace('"', '""') + '"'
    if styles["bare"] >= styles["quoted"] and _SIMPLE_IDENT.fullmatch(name):
        return name
    quoted = [str(_sql_of(doc, f)).strip()[1:-1] for f in dims if (s := _sql_of(doc, f)) is not None
              and _own_column_style(s, f.name) == "quoted"]
    upper = bool(quoted) and all(q == q.upper() and q != q.lower() for q in quoted)
    column = name.upper() if upper else name
    return '"' + column.replace('"', '""') + '"'


def add_dimension(text: str, path: str, name: str, *, sql: str | None = None, label: str | None = None,
                  description: str | None = None, type: str | None = None,  # noqa: A002 - the views key
                  primary_key: bool = False, allowed_values: list[str] | None = None,
                  meta_comment: str | None = None, dbt_description: bool = False, fmt: Any = None) -> str:
    """Add dimension `name`, placed and written like the view's existing dimensions.

    * appended after the last dimension (after its own deeper-indented comments, so comments and
      blank lines that lead into `measures:` stay with it); `dimensions:` is created (before
      `measures:`, with the file's blank-line convention between top-level sections) when missing;
    * indentation of the field and of its keys, blank lines between fields and the order of keys
      follow the neighbours (majority vote of the key orders written in the file);
    * `sql` None or the column of the field's own name is omitted when the view's other
      plain-column dimensions omit it, else written as they write it: `${TABLE}.<name>` in the
      `views` layout; in Omni's (`fmt` omni) the bare name or the quoted one (`"NAME"`), never `${TABLE}`;
    * without `label`, one is derived from the name (`label_from_name`) only when most existing
      dimensions have a label;
    * `allowed_values` is written as a flow list under `allowed_values:` (`all_values:` in Omni's
      files), `meta_comment` as `# ...` line(s) above the key;
    * `type` is never written in Omni's files (Omni takes types from the warehouse);
      `dbt_description`: the description is dbt's, and in Omni's files gets Omni's marker line
      (`DBT_DESCRIPTION_MARK`) right above `description:`, as Omni writes it;
    * a dimension already named `name` (case-insensitively) makes this a no-op (its attributes are
      left alone: use the `set_*` functions); a measure or an alias by that name raises SemanticError.
    """
    doc = _Doc(text, path, fmt)
    clash = doc.view.field_named(name)
    if clash is not None:
        if clash.kind == "dimension" and clash.name.lower() == name.lower():
            return text
        what = f"{clash.kind} `{clash.name}`" + ("" if clash.name.lower() == name.lower() else " (as an alias)")
        raise SemanticError(f"cannot add dimension `{name}`: {what} already uses that name", path,
                            clash.location.line)
    dims = [f for f in doc.fields.values() if f.section == "dimensions"]
    values: dict[str, Any] = {}
    own = sql is not None and (_own_column_style(sql, name) is not None if _omni(doc) else _is_own_column(sql, name))
    if sql is not None and not own:
        values["sql"] = sql
    elif (column_sql := _column_sql(doc, dims, name)) is not None:
        values["sql"] = column_sql if sql is None or _omni(doc) else sql
    if label is None and dims:
        labelled = sum(1 for f in dims if doc.pair(f, "label") is not None)
        if labelled * 2 > len(dims):
            label = label_from_name(name)
    if label is not None:
        values["label"] = label
    if description is not None:
        values["description"] = description
    if type is not None and not _omni(doc):
        values["type"] = type
    if primary_key:
        values["primary_key"] = True
    if allowed_values:
        values[_values_key(doc)] = [str(v) for v in allowed_values]
    ordered = {key: values[key] for key in doc.order_keys(list(values))}
    marks = {"description": DBT_DESCRIPTION_MARK} if dbt_description and description is not None and _omni(doc) \
        else {}

    section = doc.sections.get("dimensions")
    step = doc.key_step()
    if section is not None and isinstance(section[1], MappingNode) and section[1].value and section[1].flow_style:
        raise SemanticError("`dimensions` is written in flow style; layersync only edits block-style sections",
                            path, section[0].start_mark.line + 1)
    if section is not None and isinstance(section[1], MappingNode) and section[1].value:
        last = dims[-1]
        field_col = last.key.start_mark.column
        key_col = doc.key_column(last) if doc.pairs(last) and not last.value.flow_style else field_col + step
        gaps = [any(doc.is_blank(i) for i in range(doc.field_end(a), b.key.start_mark.line))
                for a, b in zip(dims, dims[1:])]
        separated = (sum(gaps) * 2 > len(gaps) or (sum(gaps) * 2 == len(gaps) and gaps[-1])) if gaps else False
        at = doc.field_end(last)
        last_pairs = doc.pairs(last)
        if last_pairs and doc.ends_open_block(last_pairs[-1][2]):  # keep its value: `|` -> `|-`
            header = last_pairs[-1][2].start_mark.index + 1
            while doc.text[header:header + 1].isdigit():
                header += 1
            doc.replace(header, header, "-")
        empty_style = " {}" if any(isinstance(f.value, MappingNode) for f in dims if not doc.pairs(f)) \
            or not any(doc.is_empty(f.value) for f in dims) else ""
        lines = [""] if separated else []
        lines += _field_lines(doc, name, ordered, field_col, key_col, meta_comment, empty_style, marks)
        doc.insert_lines(at, lines)
    elif section is not None:
        key, value = section
        if isinstance(value, MappingNode):  # `dimensions: {}`
            start = value.start_mark.index
            while start > 0 and doc.text[start - 1] == " ":
                start -= 1
            doc.replace(start, value.end_mark.index, "")
        elif not doc.is_empty(value):
            raise SemanticError("`dimensions` must be a mapping of field names", path, key.start_mark.line + 1)
        field_col = key.start_mark.column + step
        doc.insert_lines(key.start_mark.line + 1,
                         _field_lines(doc, name, ordered, field_col, field_col + step, meta_comment, " {}", marks))
    else:
        top = doc.root.value[0][0].start_mark.column if doc.root.value else 0
        lines = [" " * top + "dimensions:"] + _field_lines(doc, name, ordered, top + step, top + 2 * step,
                                                           meta_comment, " {}", marks)
        measures = doc.sections.get("measures")
        if measures is not None:
            at = doc.leading_comments_start(measures[0])
            if at > 0 and doc.is_blank(at - 1):
                lines.append("")
        else:
            at = len(doc.lines)
            spaced = any(doc.is_blank(k.start_mark.line - 1) for k, _v in doc.root.value[1:]
                         if k.start_mark.line > 0)
            if spaced and doc.lines and not doc.is_blank(len(doc.lines) - 1):
                lines.insert(0, "")
        doc.insert_lines(at, lines)

    expected = doc.expected()
    if not isinstance(expected.get("dimensions"), dict):
        expected["dimensions"] = {}
    expected["dimensions"][name] = dict(ordered)
    return doc.finish(expected, f"adding dimension `{name}`")


def _field_lines(doc: _Doc, name: str, values: dict[str, Any], field_col: int, key_col: int,
                 meta_comment: str | None, empty_style: str, marks: dict[str, str] | None = None) -> list[str]:
    pad = " " * field_col
    lines = []
    if meta_comment:
        for comment in meta_comment.splitlines():
            comment = comment.strip()
            lines.append(pad + (comment if comment.startswith("#") else f"# {comment}".rstrip()))
    key = _render_key(name)
    if not values:
        return lines + [f"{pad}{key}:{empty_style}"]
    lines.append(f"{pad}{key}:")
    for attribute, value in values.items():
        if attribute in (marks or {}):
            lines.append(" " * key_col + (marks or {})[attribute])
        lines += doc.render_pair(key_col, attribute, value)
    return lines


# --------------------------------------------------------------------------------------------
# 2. set_description


def _dbt_mark_lines(doc: _Doc, key: ScalarNode) -> list[int]:
    """Omni's `#This description was pulled from dbt.` among the comment lines right above `key`."""
    found = []
    index = key.start_mark.line - 1
    while index >= 0 and doc.is_comment(index):
        if _DBT_MARK_RE.match(doc.line_text(index)):
            found.append(index)
        index -= 1
    return found


def description_from_dbt(text: str, path: str, field: str, *, fmt: Any = None) -> bool:
    """Whether the field's description carries Omni's marker line, which says dbt wrote it (so a later
    dbt change may replace it); an unmarked description is the analyst's."""
    doc = _Doc(text, path, fmt)
    found = doc.pair(doc.field(field), "description")
    return found is not None and bool(_dbt_mark_lines(doc, found[0]))


def set_description(text: str, path: str, field: str, description: str | None, *, from_dbt: bool = False,
                    fmt: Any = None) -> str:
    """Add or replace the field's `description:` (None removes it, with Omni's marker above it if any).

    A one-line value replaces the old one in place (a trailing comment survives); a multi-line
    description becomes a literal block scalar (`|`, `|-` or `|+`, indented one step deeper than
    the key), or a double-quoted string when no block scalar can hold it exactly. A new key goes
    where the file's key order puts it. `from_dbt` in Omni's files: the description is dbt's, so
    Omni's marker line (`DBT_DESCRIPTION_MARK`) is kept, or written, right above the key.
    """
    doc = _Doc(text, path, fmt)
    target = doc.field(field)
    spec = _spec(doc.expected(), target)
    found = doc.pair(target, "description")
    marks = _dbt_mark_lines(doc, found[0]) if found is not None else []
    want_mark = from_dbt and description is not None and _omni(doc)
    if description is None:
        if found is None:
            return text
        doc.remove_key(target, "description")
        for index in marks:
            doc.delete_lines(index, index + 1)
    else:
        same = spec.get("description") == description and isinstance(spec.get("description"), str)
        if same and (marks or not want_mark):
            return text
        if found is None:
            doc.add_key(target, "description", description, DBT_DESCRIPTION_MARK if want_mark else None)
        else:
            if not same:
                doc.replace_value(target, found[0], found[1], description)
            if want_mark and not marks:
                if doc.line_text(found[0].start_mark.line)[: found[0].start_mark.column].strip():
                    raise SemanticError(f"field `{target.name}` is written in flow style; layersync cannot put "
                                        f"`{DBT_DESCRIPTION_MARK}` above its description", path, doc.field_line(target))
                doc.insert_lines(found[0].start_mark.line, [" " * found[0].start_mark.column + DBT_DESCRIPTION_MARK])
    expected = doc.expected()
    if description is None:
        _spec(expected, target).pop("description", None)
    else:
        _spec(expected, target)["description"] = description
    result = doc.finish(expected, f"setting the description of `{target.name}`")
    if want_mark and not description_from_dbt(result, path, target.name, fmt=fmt):
        raise SemanticError(f"setting the description of `{target.name}`: Omni's dbt marker did not land above "
                            f"it", path, doc.field_line(target))
    return result


# --------------------------------------------------------------------------------------------
# 3. rename_column_refs


def rename_column_refs(text: str, path: str, old: str, new: str, *, fmt: Any = None, dialect: str = "duckdb") -> str:
    """Rewrite every reference to column `old` in any field's `sql:` (dimensions and measures) to `new`.

    The `views` layout names columns `${TABLE}.old`; Omni's files (`fmt` omni) by their bare or
    quoted name (`old`, `"OLD"`), found with the SQL tokenizer of `dialect` (string literals,
    functions, qualified names `t.old` and types `AS old`/`::old` are not columns of the view).
    References are found with `refs.scan`; the column name matches case-insensitively, bare or
    quoted (`${TABLE}."old"`, `${TABLE}.\\`old\\``), and is rewritten in the case and quoting it
    was written in (`OLD` -> `NEW`), so renaming back restores the text byte for byte. The value is
    edited inside its YAML scalar, whatever its style. A dimension with no `sql:` whose name is `old`
    reads the column implicitly and is NOT changed here: the caller either renames the field
    too (`rename_field`) or pins it to the new column (`writer.set_field_sql`).
    """
    doc = _Doc(text, path, fmt)
    if old == new:
        return text
    expected = doc.expected()
    if _omni(doc):
        _rewrite_every_sql(doc, expected, lambda src, esc: _rewrite_bare_columns(src, old, new, esc, dialect), new)
    else:
        _rewrite_every_sql(doc, expected, lambda src, esc: _rewrite_table_refs(src, old, new, esc), new)
    return doc.finish(expected, f"renaming column `{old}` to `{new}`")


_NOT_A_COLUMN_BEFORE = {TokenType.DOT, TokenType.ALIAS, TokenType.DCOLON}
_NOT_A_COLUMN_AFTER = {TokenType.DOT, TokenType.L_PAREN}


def _rewrite_bare_columns(text: str, old: str, new: str, escaped: bool, dialect: str) -> tuple[str, int]:
    """Omni's raw columns, `old` or `"OLD"` in the SQL between `${...}` references -> `new`, in the case
    and quoting they were written in. The source of a double-quoted YAML scalar (`escaped`) is
    left to the caller's re-rendering (its `\\"` are no SQL)."""
    spans = _ref_spans(text)
    if spans is None or escaped:
        return text, 0
    pieces, pos = [], 0
    for start, end, _ref in spans:
        pieces.append((pos, start))
        pos = end
    pieces.append((pos, len(text)))
    tokenizer = sqlglot.Dialect.get_or_raise(dialect)
    edits = []
    for first, last in pieces:
        chunk = text[first:last]
        if not chunk.strip():
            continue
        try:
            tokens = tokenizer.tokenize(chunk)
        except (TokenError, ValueError):
            return text, 0
        for index, token in enumerate(tokens):
            raw = chunk[token.start:token.end + 1]
            quoted = token.token_type == TokenType.IDENTIFIER and raw[:1] == '"'
            if not quoted and not _SIMPLE_IDENT.fullmatch(raw):
                continue
            written = token.text if quoted else raw
            if written.lower() != old.lower():
                continue
            before = tokens[index - 1].token_type if index else None
            after = tokens[index + 1].token_type if index + 1 < len(tokens) else None
            if before in _NOT_A_COLUMN_BEFORE or after in _NOT_A_COLUMN_AFTER:
                continue
            renamed = _case_like(written, old, new)
            if quoted or not _SIMPLE_IDENT.fullmatch(renamed):
                renamed = '"' + renamed.replace('"', '""') + '"'
            edits.append((first + token.start, first + token.end + 1, renamed))
    return _apply_spans(text, edits), len(edits)


# --------------------------------------------------------------------------------------------
# 4. rename_field, rename_field_refs


def _alias_style(doc: _Doc) -> tuple[bool, int]:
    """(flow?, dash column relative to the `aliases:` key) from the file's existing aliases lists."""
    flow = block = 0
    offset = Counter()
    for target in doc.fields.values():
        found = doc.pair(target, "aliases")
        if found is None or not isinstance(found[1], SequenceNode):
            continue
        if found[1].flow_style:
            flow += 1
        else:
            block += 1
            item = found[1].value[0] if found[1].value else None
            if item is not None:
                dash = doc.line_text(item.start_mark.line)[: item.start_mark.column].rstrip().rfind("-")
                offset[dash - found[0].start_mark.column] += 1
    relative = offset.most_common(1)[0][0] if offset else doc.key_step()
    return flow >= block, relative


def _seq_item_spans(node: SequenceNode) -> list[tuple[int, int]]:
    return [(item.start_mark.index, item.end_mark.index) for item in node.value]


def _edit_aliases(doc: _Doc, target: _Field, old: str, new: str, keep_alias: bool) -> list[str] | None:
    """Splice the aliases change; returns the new aliases list, None when the key is removed."""
    found = doc.pair(target, "aliases")
    current = doc.data[target.section][target.name] or {}
    aliases = current.get("aliases")
    aliases = [] if aliases is None else ([aliases] if isinstance(aliases, str) else [str(a) for a in aliases])
    matches = [i for i, a in enumerate(aliases) if a == new] or \
        [i for i, a in enumerate(aliases) if a.lower() == new.lower()]
    if matches:  # renaming back: the alias goes, the intermediate name is not kept
        index = matches[0]
        remaining = aliases[:index] + aliases[index + 1:]
        if not remaining:
            doc.remove_key(target, "aliases")
            return None
        key_node, value_node = found
        if isinstance(value_node, SequenceNode):
            if value_node.flow_style:
                doc._flow_remove(_seq_item_spans(value_node), index)
            else:
                item = value_node.value[index]
                doc.delete_lines(item.start_mark.line, doc.node_last_line(item) + 1)
        else:
            doc.replace_value(target, key_node, value_node, remaining)
        return remaining
    if not keep_alias or old.lower() == new.lower() or any(a.lower() == old.lower() for a in aliases):
        return aliases if found is not None else None
    item = _inline(old, flow=True)
    if found is None:
        flow, dash = _alias_style(doc)
        if flow or isinstance(target.value, MappingNode) and target.value.flow_style:
            doc.add_key(target, "aliases", [old])
        else:
            doc.key_prefix(target)
            pairs = doc.pairs(target)
            position = doc.insert_position([n for n, _k, _v in pairs], "aliases")
            at = doc.key_insert_line(target, pairs, position)
            column = doc.key_column(target)
            doc.insert_lines(at, [" " * column + "aliases:", " " * (column + dash) + "- " + item])
        return [old]
    key_node, value_node = found
    if isinstance(value_node, SequenceNode) and value_node.flow_style:
        doc._flow_insert(value_node, _seq_item_spans(value_node), len(value_node.value), item)
    elif isinstance(value_node, SequenceNode) and value_node.value:
        last = value_node.value[-1]
        prefix = doc.line_text(last.start_mark.line)[: last.start_mark.column]
        if prefix.strip() != "-":
            doc.replace_value(target, key_node, value_node, aliases + [old])
        else:
            doc.insert_lines(doc.node_last_line(last) + 1, [prefix + item])
    else:
        doc.replace_value(target, key_node, value_node, aliases + [old])
    return aliases + [old]


def rename_field(text: str, path: str, old: str, new: str, *, keep_alias: bool = True, fmt: Any = None) -> str:
    """Rename field `old` to `new` (its key only: position, quoting style and comments stay).

    * `keep_alias`: `old` is appended to the field's `aliases:` (the key is created in the flow or
      block style of the file's other aliases lists, flow when there are none) so saved content
      keeps resolving. Renaming to a name the field lists in `aliases:` removes that alias (and the
      key once empty) and does not add the intermediate name: rename(a -> b) then rename(b -> a)
      restores the original bytes.
    * A field without `sql:` reads `${TABLE}.<its name>`; no `sql:` is added, because this is meant
      for a dbt column renamed old -> new that the field follows: the implicit column follows the
      new name. (To keep a field reading the old column, use `writer.set_field_sql` instead.)
    * `${old}` and `${<view>.old}` in every `sql:` of this file become `${new}` / `${<view>.new}`
      (in the case they were written); use `rename_field_refs` for the other view files.
    * Already renamed (no `old`, and `new` exists) -> unchanged. `new` naming another field or alias,
      or already appearing as `${new}` (a table column) -> SemanticError, since the rename would
      change what existing SQL means.
    """
    doc = _Doc(text, path, fmt)
    if old == new:
        return text
    target = doc.fields.get(old)
    if target is None:
        renamed = doc.view.field_named(new)
        if renamed is not None and doc.view.field_named(old) in (None, renamed):
            return text
        raise SemanticError(f"no field `{old}` to rename in view `{doc.view.name}`", path)
    other = doc.view.field_named(new)
    if other is not None and other.name != old:
        raise SemanticError(f"cannot rename `{old}` to `{new}`: field `{other.name}` already uses that name",
                            path, other.location.line)
    own = doc.view.fields[old]
    view = doc.view.name
    if new.lower() not in (a.lower() for a in own.aliases) and new.lower() != old.lower():
        for field in doc.fields.values():
            sql = _sql_of(doc, field)
            if sql and _field_ref_matches(sql, view, new, local=True):
                raise SemanticError(
                    f"cannot rename `{old}` to `{new}`: `{field.name}` already refers to `${{{new}}}`, "
                    f"which would then mean the renamed field", path, doc.field_line(field))
    # A key quoted because YAML needed it (`'n'`, which YAML 1.1 reads as false) is no chosen style.
    style = target.key.style if _render_key(old) == old else None
    doc.replace(target.key.start_mark.index, target.key.end_mark.index, _render_key(new, style))
    aliases = _edit_aliases(doc, target, old, new, keep_alias)

    expected = doc.expected()
    block = expected[target.section]
    spec = block[old]
    if aliases is None:
        spec.pop("aliases", None)
    else:
        spec["aliases"] = aliases
    expected[target.section] = {(new if key == old else key): value for key, value in block.items()}
    _rewrite_every_sql(doc, expected, lambda src, esc: _rewrite_field_refs(src, view, old, new, True, esc), new,
                       lambda f: expected[f.section][new if f.name == old else f.name])
    return doc.finish(expected, f"renaming field `{old}` to `{new}`")


def rename_field_refs(text: str, path: str, view: str, old: str, new: str, *, fmt: Any = None) -> str:
    """In another view file: `${view.old}` -> `${view.new}` in every `sql:` (unqualified `${old}`
    there means that file's own field or column and is left alone)."""
    doc = _Doc(text, path, fmt)
    if old == new:
        return text
    expected = doc.expected()
    _rewrite_every_sql(doc, expected, lambda src, esc: _rewrite_field_refs(src, view, old, new, False, esc), new)
    return doc.finish(expected, f"renaming `${{{view}.{old}}}` to `${{{view}.{new}}}`")


# --------------------------------------------------------------------------------------------
# 5. mark_broken, unmark


def _marker_lines(doc: _Doc, target: _Field) -> list[int]:
    """The `# layersync: broken` lines among the comment lines right above the field's key."""
    found = []
    index = target.key.start_mark.line - 1
    while index >= 0 and doc.is_comment(index):
        if _BROKEN_RE.match(doc.line_text(index)):
            found.append(index)
        index -= 1
    return found


def _comment_text(reason: str) -> str:
    """The reason on one line, with characters YAML does not allow in a file escaped."""
    folded = " ".join(str(reason).split())
    return "".join(char if _printable(char) else (f"\\x{ord(char):02x}" if ord(char) <= 0xFF else
                                                  f"\\u{ord(char):04x}") for char in folded)


def mark_broken(text: str, path: str, field: str, reason: str, *, fmt: Any = None) -> str:
    """Put `# layersync: broken — <reason>` on the line above the field's key, at its indentation.

    The reason is folded onto one line (characters a YAML file cannot hold are escaped). An existing `# layersync: broken` comment right above the
    key is replaced (never stacked), so re-marking with the same reason changes nothing.
    """
    doc = _Doc(text, path, fmt)
    target = doc.field(field)
    prefix = doc.key_prefix(target)
    line = prefix + BROKEN_PREFIX + _comment_text(reason)
    key_line = target.key.start_mark.line
    markers = _marker_lines(doc, target)
    if markers == [key_line - 1] and doc.line_text(key_line - 1) == line:
        return text
    for index in markers:
        doc.delete_lines(index, index + 1)
    doc.insert_lines(key_line, [line])
    result = doc.finish(doc.expected(), f"marking `{target.name}` broken")
    check = _Doc(result, path, fmt)
    marked = check.fields[target.name]
    if _marker_lines(check, marked) != [marked.key.start_mark.line - 1]:
        raise SemanticError(f"marking `{target.name}` broken: the comment did not land above the field", path)
    return result


def unmark(text: str, path: str, field: str, *, fmt: Any = None) -> str:
    """Remove the `# layersync: broken` comment(s) right above the field's key (no-op if none)."""
    doc = _Doc(text, path, fmt)
    target = doc.field(field)
    markers = _marker_lines(doc, target)
    if not markers:
        return text
    for index in markers:
        doc.delete_lines(index, index + 1)
    return doc.finish(doc.expected(), f"unmarking `{target.name}`")


# --------------------------------------------------------------------------------------------
# 6. set_primary_key, set_allowed_values


def set_primary_key(text: str, path: str, field: str, value: bool = True, *, fmt: Any = None) -> str:
    """`primary_key: true` on the field (added where the key order puts it, or `false` replaced).

    `value=False` removes a `primary_key: true` (false is the default), so set(True) then
    set(False) restores the file; an existing `primary_key: false` is left alone. Other fields'
    primary keys are not touched (a view may have a composite key).
    """
    doc = _Doc(text, path, fmt)
    target = doc.field(field)
    current = _spec(doc.expected(), target).get("primary_key")
    if value:
        if current is True:
            return text
        doc.set_key(target, "primary_key", True)
    else:
        if current is not True:
            return text
        doc.remove_key(target, "primary_key")
    expected = doc.expected()
    if value:
        _spec(expected, target)["primary_key"] = True
    else:
        _spec(expected, target).pop("primary_key", None)
    return doc.finish(expected, f"setting the primary key of `{target.name}`")


def set_allowed_values(text: str, path: str, field: str, values: list[str], *, fmt: Any = None) -> str:
    """Write dbt's `accepted_values` as a flow list (items quoted only where YAML needs it).

    In Omni's files (`fmt` omni) the key is Omni's `all_values`. The `views` layout has no standard
    key for them, so layersync keeps them under its own `allowed_values:` there; the reader keeps
    either in the field's attributes. An empty list removes the key.
    """
    doc = _Doc(text, path, fmt)
    target = doc.field(field)
    key = _values_key(doc)
    wanted = [str(v) for v in values]
    current = _spec(doc.expected(), target).get(key)
    if not wanted:
        if doc.pair(target, key) is None:
            return text
        doc.remove_key(target, key)
    else:
        if isinstance(current, list) and [str(v) for v in current] == wanted and \
                all(isinstance(v, str) for v in current):
            return text
        doc.set_key(target, key, wanted)
    expected = doc.expected()
    if wanted:
        _spec(expected, target)[key] = wanted
    else:
        _spec(expected, target).pop(key, None)
    return doc.finish(expected, f"setting the {'values' if key == 'all_values' else 'allowed values'} of "
                                f"`{target.name}`")


def set_table_name(text: str, path: str, relation: str, *, fmt: Any = None) -> str:
    """Point the view at the relation dbt now builds: the last part of `table_name` becomes
    `relation`; a schema (or database.schema) before it and the quoting of that part are kept."""
    doc = _Doc(text, path, fmt)
    found = next(((k, v) for k, v in doc.root.value
                  if isinstance(k, ScalarNode) and k.value in ("table_name", "sql_table_name")), None)
    if found is None or not isinstance(found[1], ScalarNode):
        raise SemanticError("the view has no `table_name` to point at the renamed model", path, 1)
    key, value = found
    old = str(value.value)
    head, dot, last = old.rpartition(".")
    quote = last[0] if last[:1] in ('"', "`") and last.endswith(last[0]) and len(last) > 1 else ""
    new = f"{head}{dot}{quote}{relation}{quote}"
    if new == old:
        return text
    doc.replace(value.start_mark.index, value.end_mark.index, _inline(new) or _double_quoted(new))
    expected = doc.expected()
    expected[key.value] = new
    return doc.finish(expected, f"pointing `{key.value}` at `{relation}`")


# --------------------------------------------------------------------------------------------
# 7. topics and relationships: a renamed field followed where the model names it


_FIELD_ENTRY = re.compile(r"(\s*-?\s*)([^.\s]+)(\s*\.\s*)(.+?)(\s*)", re.DOTALL)
_FILTER_KEYS = ("default_filters", "always_where_filters")


def _ordered(value: Any) -> Any:
    """Plain data with every mapping's key order made part of its value (a rename keeps its place)."""
    if isinstance(value, dict):
        return [(key, _ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def _scalar_like(node: ScalarNode, value: str, flow: bool) -> str:
    """`value` in the quoting style of the scalar it replaces (plain only where YAML keeps it text)."""
    if node.style == '"':
        return _double_quoted(value)
    if node.style is None and _plain_ok(value, flow):
        return value
    if _printable(value) and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    return _double_quoted(value)


class _ModelFile:
    """A topic or `relationships.yaml` being edited: splices at composed nodes' marks, then a re-read
    that must equal the expected data (in key order), as for view files."""

    def __init__(self, text: str, path: str):
        self.text, self.path = text, path
        self.data = _plain(load_view_yaml(text, path))   # bounded, alias-free; invalid -> SemanticError
        try:
            self.root = YAML(typ="rt").compose(text)
        except YAMLError as exc:
            raise SemanticError(f"invalid YAML: {exc}", path) from None
        self.expected = copy.deepcopy(self.data)
        self.edits: list[tuple[int, int, str]] = []

    def rename_scalar(self, node: Node, value: str, flow: bool) -> None:
        self.edits.append((node.start_mark.index, node.end_mark.index, _scalar_like(node, value, flow)))

    def rewrite_sql(self, node: Node, view: str, old: str, new: str) -> str | None:
        """`${view.old}` -> `${view.new}` in one SQL scalar, edited inside its source (any style)."""
        if not isinstance(node, ScalarNode) or not isinstance(node.value, str):
            return None
        value, count = _rewrite_field_refs(node.value, view, old, new, local=False)
        if not count:
            return None
        start, end = node.start_mark.index, node.end_mark.index
        source, found = _rewrite_field_refs(self.text[start:end], view, old, new, False, node.style == '"')
        if found == count and _SIMPLE_IDENT.fullmatch(new):
            self.edits.append((start, end, source))
        elif "\n" not in self.text[start:end]:
            self.rename_scalar(node, value, flow=False)
        else:
            raise SemanticError(f"cannot rewrite `${{{view}.{old}}}` inside this multi-line value; rename it by "
                                f"hand", self.path, node.start_mark.line + 1)
        return value

    def finish(self, what: str) -> str:
        if not self.edits:
            return self.text
        result = _apply_spans(self.text, self.edits)
        try:
            after = _plain(load_view_yaml(result, self.path))
        except SemanticError as exc:
            raise SemanticError(f"{what}: the edited file would not read back ({exc.message})", self.path,
                                exc.line) from None
        if _ordered(after) != _ordered(self.expected):
            raise SemanticError(f"{what}: could not edit the file without touching anything else", self.path)
        return result


def _renamed_entry(entry: str, view: str, old: str, new: str) -> str | None:
    """A topic's `view.old` / `-view.old` entry with the field renamed (None: it names another field)."""
    match = _FIELD_ENTRY.fullmatch(entry)
    if match is None or match.group(2) != view or match.group(4).lower() != old.lower():
        return None
    return entry[:match.start(4)] + _case_like(match.group(4), old, new) + entry[match.end(4):]


def rename_field_in_topic(text: str, path: str, view: str, old: str, new: str) -> str:
    """Follow the rename of field `view.old` to `view.new` in a `<Name>.topic.yaml`: its `fields:`
    entries (`view.old`, `-view.old`), the keys of `default_filters` / `always_where_filters`, and
    `${view.old}` in every `*_sql` value (`always_where_sql`). Byte-identical elsewhere."""
    doc = _ModelFile(text, path)
    if old == new or not isinstance(doc.root, MappingNode):
        return text
    for key, value in doc.root.value:
        name = str(key.value)
        if name == "fields" and isinstance(value, SequenceNode):
            for index, item in enumerate(value.value):
                if isinstance(item, ScalarNode) and isinstance(doc.data["fields"][index], str):
                    renamed = _renamed_entry(doc.data["fields"][index], view, old, new)
                    if renamed is not None:
                        doc.rename_scalar(item, renamed, flow=bool(value.flow_style))
                        doc.expected["fields"][index] = renamed
        elif name in _FILTER_KEYS and isinstance(value, MappingNode):
            block = doc.expected[name]
            renames = {}
            for filter_key, _condition in value.value:
                renamed = _renamed_entry(str(filter_key.value), view, old, new)
                if renamed is not None and isinstance(filter_key, ScalarNode):
                    doc.rename_scalar(filter_key, renamed, flow=bool(value.flow_style))
                    renames[str(filter_key.value)] = renamed
            doc.expected[name] = {renames.get(k, k): v for k, v in block.items()}
        elif name.endswith("_sql"):
            rewritten = doc.rewrite_sql(value, view, old, new)
            if rewritten is not None:
                doc.expected[name] = rewritten
    return doc.finish(f"renaming `{view}.{old}` to `{view}.{new}` in the topic")


def rename_field_in_relationships(text: str, path: str, view: str, old: str, new: str) -> str:
    """Follow the rename of field `view.old` in `relationships.yaml`: `${view.old}` in each join's
    `on_sql` (and any other `*_sql`). Byte-identical elsewhere."""
    doc = _ModelFile(text, path)
    if old == new or not isinstance(doc.root, SequenceNode):
        return text
    for index, entry in enumerate(doc.root.value):
        if not isinstance(entry, MappingNode):
            continue
        for key, value in entry.value:
            if str(key.value).endswith("_sql"):
                rewritten = doc.rewrite_sql(value, view, old, new)
                if rewritten is not None:
                    doc.expected[index][str(key.value)] = rewritten
    return doc.finish(f"renaming `{view}.{old}` to `{view}.{new}` in relationships")
