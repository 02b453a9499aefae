"""Minimal, comment-preserving edits of semantic-layer view files, for "pull from dbt".

When the dbt project changes, layersync opens a PR on the semantic-layer repo. Its edits must touch
only the lines they need: users' comments, key order, quoting, indentation, blank lines and line
endings (CRLF included) all survive. Every function here is a pure `text -> text` edit: the view is
read by its format (`fmt`, a `bot.semantic.formats.SemanticFormat`; None is the older `views`
layout), which knows its fields, names and aliases; the edit itself is made by `bot.yamledit`,
which splices it into the original text and proves by a re-read that nothing else changed. What
stays here is the policy: which key, where in the field's key order, which marker comment, how a
column or a `${...}` reference is written (`bot.semantic.rewrite`).

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

import re
from collections import Counter
from functools import cmp_to_key
from typing import Any, Callable

from bot.errors import SemanticError
from bot.semantic.model import View
from bot.semantic.reader import FIELD_SECTIONS, YamlViewParser, load_view_yaml
from bot.semantic.rewrite import (
    SIMPLE_IDENT, SPLICE_SAFE, case_like, field_ref_matches, is_own_column, own_column_style, rewrite_bare_columns,
    rewrite_field_refs, rewrite_table_refs,
)
from bot.yamledit import Commented, Document, Flow, Path, YamlEditError, printable

__all__ = [
    "add_dimension", "set_description", "rename_column_refs", "rename_field", "rename_field_refs",
    "mark_broken", "unmark", "set_primary_key", "set_allowed_values", "set_table_name", "set_field_sql",
    "label_from_name", "BROKEN_PREFIX", "DBT_DESCRIPTION_MARK", "description_from_dbt", "rename_field_in_topic",
    "rename_field_in_relationships",
]

BROKEN_PREFIX = "# layersync: broken — "
_BROKEN_RE = re.compile(r"^\s*#\s*layersync:\s*broken\b")
# Key order when the file's own fields give no evidence; keys not listed go after these.
_DEFAULT_ORDER = ("primary_key", "sql", "label", "description", "type", "aliases", "allowed_values", "all_values")
# Omni writes this comment line right above a `description:` it copied from dbt: a description so
# marked is dbt's (a later dbt change may replace it); an unmarked one is the analyst's.
DBT_DESCRIPTION_MARK = "#This description was pulled from dbt."
_DBT_MARK_RE = re.compile(r"^\s*#\s*This description was pulled from dbt\.?\s*$", re.IGNORECASE)
_ACRONYMS = {"id", "ids", "url", "uri", "ip", "utc", "sku", "usd", "api", "uuid", "ltv", "kpi"}
_FIELD_ENTRY = re.compile(r"(\s*-?\s*)([^.\s]+)(\s*\.\s*)(.+?)(\s*)", re.DOTALL)
_FILTER_KEYS = ("default_filters", "always_where_filters")


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
# A view file being edited


def _open(text: str, path: str) -> Document:
    try:
        return Document(text, path)
    except YamlEditError as exc:
        raise SemanticError(exc.message, path, exc.line) from None


class _View:
    """One view file: the view as its format reads it, and the kit's document of its text."""

    def __init__(self, text: str, path: str, fmt: Any = None):
        if fmt is None:
            from bot.semantic.formats.views import ViewsFormat
            fmt = ViewsFormat()
        if not isinstance(fmt, YamlViewParser):
            raise SemanticError(f"the `{getattr(fmt, 'name', fmt)}` format is not a YAML view format", None)
        self.text, self.path = text, path
        self.view: View = fmt.read(text, path)     # invalid -> SemanticError with its line
        self.doc = _open(text, path)
        self.omni = self.view.format == "omni"
        data = self.doc.data
        self.section: dict[str, str] = {}            # field name -> its section
        for section in FIELD_SECTIONS:
            block = data.get(section)
            if isinstance(block, dict):
                self.section.update((str(name), section) for name in block)
        self.votes: Counter = Counter()
        for name in self.section:
            keys = self.keys(name)
            for i, first in enumerate(keys):
                for second in keys[i + 1:]:
                    self.votes[(first, second)] += 1

    # ---- fields

    def field(self, name: str) -> str:
        """The field's own name (`name` may be one of its aliases)."""
        if name in self.section:
            return name
        target = self.view.field_named(name)
        if target is None or target.name not in self.section:
            raise SemanticError(f"no field `{name}` in view `{self.view.name}`", self.path)
        return target.name

    def at(self, name: str, *keys: str) -> Path:
        return (self.section[name], name, *keys)

    def spec(self, name: str) -> dict:
        spec = self.doc.data[self.section[name]][name]
        return spec if isinstance(spec, dict) else {}

    def keys(self, name: str) -> list[str]:
        return [str(k) for k in self.spec(name)]

    def sql(self, name: str) -> str | None:
        sql = self.spec(name).get("sql")
        return sql if isinstance(sql, str) else None

    def line(self, name: str) -> int | None:
        return self.doc.line(self.at(name))

    def dimensions(self) -> list[str]:
        return [name for name, section in self.section.items() if section == "dimensions"]

    # ---- the file's key order

    def before(self, first: str, second: str) -> bool:
        """Whether the file's convention writes key `first` before key `second`."""
        ahead, behind = self.votes[(first, second)], self.votes[(second, first)]
        if ahead != behind:
            return ahead > behind
        if first in _DEFAULT_ORDER and second in _DEFAULT_ORDER:
            return _DEFAULT_ORDER.index(first) < _DEFAULT_ORDER.index(second)
        return first not in _DEFAULT_ORDER  # with no evidence, new keys go after unknown ones

    def order_keys(self, keys: list[str]) -> list[str]:
        return sorted(keys, key=cmp_to_key(lambda a, b: -1 if self.before(a, b) else 1 if self.before(b, a) else 0))

    # ---- edits

    def set_key(self, name: str, key: str, value: Any) -> None:
        """Set one attribute: replaced where it is, or added where the file's key order puts it."""
        existing = self.keys(name)
        if key in existing:
            self.edit(lambda: self.doc.set(self.at(name, key), value, keep_style=False))
            return
        position = max((i + 1 for i, other in enumerate(existing) if self.before(other, key)), default=0)
        after = existing[position - 1] if position else None
        before = existing[0] if not position and existing else None
        self.edit(lambda: self.doc.set(self.at(name, key), value, after=after, before=before,
                                       open_empty=self.omni, keep_style=False))

    def remove_key(self, name: str, key: str) -> None:
        """Omni writes a field left without attributes as `name: {}`; the `views` layout as `name:`."""
        self.edit(lambda: self.doc.remove(self.at(name, key), empty="{}" if self.omni else None))

    def edit(self, change: Callable[[], None]) -> None:
        try:
            change()
        except YamlEditError as exc:
            raise SemanticError(exc.message, self.path, exc.line) from None

    def comment_lines(self, path: Path, pattern: re.Pattern) -> list[int]:
        return [i for i in self.doc.comment_lines(path) if pattern.match(self.doc.line_text(i))]

    def rewrite_sql(self, name: str, new_value: str, rewrite: Callable[[str, bool], tuple[str, int]], count: int,
                    inserted: str) -> None:
        """Change one field's `sql:` inside its source (keeping its style), else write the value anew."""
        path = self.at(name, "sql")
        node = self.doc.node(path)
        rewritten, found = rewrite(self.doc.source(path), getattr(node, "style", None) == '"')
        if found == count and SPLICE_SAFE.fullmatch(inserted):
            self.edit(lambda: self.doc.set_source(path, rewritten, new_value))
        else:
            self.edit(lambda: self.doc.set(path, new_value, keep_style=False))

    def rewrite_every_sql(self, rewrite: Callable[[str, bool], tuple[str, int]], inserted: str) -> None:
        """Apply `rewrite(source, escaped)` to every field's `sql:`."""
        for name in self.section:
            sql = self.sql(name)
            if sql is not None:
                new_sql, count = rewrite(sql, False)
                if count:
                    self.rewrite_sql(name, new_sql, rewrite, count, inserted)

    def finish(self, what: str) -> str:
        try:
            return self.doc.result(what)
        except YamlEditError as exc:
            raise SemanticError(exc.message, self.path, exc.line) from None


# --------------------------------------------------------------------------------------------
# 1. add_dimension


def _column_sql(doc: _View, name: str) -> str | None:
    """`sql:` for a new dimension reading the column `name`, written the way the file's dimensions
    that read their own column write it; None when most of them leave `sql:` out (the column of the
    field's name, in both layouts)."""
    dims = doc.dimensions()
    omitted = sum(1 for f in dims if "sql" not in doc.spec(f))
    styles = Counter(style for f in dims if (s := doc.sql(f)) is not None
                     and (style := own_column_style(s, f)) is not None and (style != "table") == doc.omni)
    if sum(styles.values()) <= omitted:
        return None
    if not doc.omni:
        return f"${{TABLE}}.{name}" if SIMPLE_IDENT.fullmatch(name) else '${TABLE}."' + name.replace('"', '""') + '"'
    if styles["bare"] >= styles["quoted"] and SIMPLE_IDENT.fullmatch(name):
        return name
    quoted = [str(doc.sql(f)).strip()[1:-1] for f in dims
              if (s := doc.sql(f)) is not None and own_column_style(s, f) == "quoted"]
    upper = bool(quoted) and all(q == q.upper() and q != q.lower() for q in quoted)
    column = name.upper() if upper else name
    return '"' + column.replace('"', '""') + '"'


def _values_key(doc: _View) -> str:
    """Where dbt's `accepted_values` go: Omni's `all_values`; layersync's own key in the `views` layout."""
    return "all_values" if doc.omni else "allowed_values"


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
    doc = _View(text, path, fmt)
    clash = doc.view.field_named(name)
    if clash is not None:
        if clash.kind == "dimension" and clash.name.lower() == name.lower():
            return text
        what = f"{clash.kind} `{clash.name}`" + ("" if clash.name.lower() == name.lower() else " (as an alias)")
        raise SemanticError(f"cannot add dimension `{name}`: {what} already uses that name", path,
                            clash.location.line)
    dims = doc.dimensions()
    values: dict[str, Any] = {}
    own = sql is not None and (own_column_style(sql, name) is not None if doc.omni else is_own_column(sql, name))
    if sql is not None and not own:
        values["sql"] = sql
    elif (column_sql := _column_sql(doc, name)) is not None:
        values["sql"] = column_sql if sql is None or doc.omni else sql
    if label is None and dims and sum(1 for f in dims if "label" in doc.spec(f)) * 2 > len(dims):
        label = label_from_name(name)
    if label is not None:
        values["label"] = label
    if description is not None:
        values["description"] = Commented(description, (DBT_DESCRIPTION_MARK,)) \
            if dbt_description and doc.omni else description
    if type is not None and not doc.omni:
        values["type"] = type
    if primary_key:
        values["primary_key"] = True
    if allowed_values:
        values[_values_key(doc)] = Flow(str(v) for v in allowed_values)
    ordered: Any = {key: values[key] for key in doc.order_keys(list(values))}
    if not ordered:
        bare = [doc.doc.node(doc.at(f)) for f in dims if not doc.spec(f)]
        ordered = None if bare and all(getattr(n, "tag", "").endswith(":null") for n in bare) else {}
    if meta_comment:
        comments = tuple(c.strip() if c.strip().startswith("#") else f"# {c.strip()}".rstrip()
                         for c in meta_comment.splitlines())
        ordered = Commented(ordered, comments)
    section = doc.doc.node(("dimensions",))
    if section is not None and getattr(section, "flow_style", False) and section.value:
        raise SemanticError("`dimensions` is written in flow style; layersync only edits block-style sections",
                            path, doc.doc.line(("dimensions",)))
    if section is not None and not isinstance(doc.doc.data.get("dimensions") or {}, dict):
        raise SemanticError("`dimensions` must be a mapping of field names", path, doc.doc.line(("dimensions",)))
    measures = "measures" if section is None and "measures" in doc.doc.data else None
    doc.edit(lambda: doc.doc.set(("dimensions", name), ordered) if section is not None else
             doc.doc.set(("dimensions",), {name: ordered}, before=measures))
    return doc.finish(f"adding dimension `{name}`")


# --------------------------------------------------------------------------------------------
# 2. set_description


def description_from_dbt(text: str, path: str, field: str, *, fmt: Any = None) -> bool:
    """Whether the field's description carries Omni's marker line, which says dbt wrote it (so a later
    dbt change may replace it); an unmarked description is the analyst's."""
    doc = _View(text, path, fmt)
    name = doc.field(field)
    return "description" in doc.spec(name) and bool(doc.comment_lines(doc.at(name, "description"), _DBT_MARK_RE))


def set_description(text: str, path: str, field: str, description: str | None, *, from_dbt: bool = False,
                    fmt: Any = None) -> str:
    """Add or replace the field's `description:` (None removes it, with Omni's marker above it if any).

    A one-line value replaces the old one in place (a trailing comment survives); a multi-line
    description becomes a literal block scalar (`|`, `|-`, with an indentation indicator when it
    starts with a space, indented one step deeper than the key), or a double-quoted string when no
    block scalar can hold it exactly. A new key goes where the file's key order puts it. `from_dbt`
    in Omni's files: the description is dbt's, so Omni's marker line (`DBT_DESCRIPTION_MARK`) is
    kept, or written, right above the key.
    """
    doc = _View(text, path, fmt)
    name = doc.field(field)
    spec = doc.spec(name)
    where = doc.at(name, "description")
    marks = doc.comment_lines(where, _DBT_MARK_RE) if "description" in spec else []
    want_mark = from_dbt and description is not None and doc.omni
    if description is None:
        if "description" not in spec:
            return text
        doc.remove_key(name, "description")      # its comment lines, Omni's marker among them, go with it
        return doc.finish(f"removing the description of `{name}`")
    same = spec.get("description") == description and isinstance(spec.get("description"), str)
    if same and (marks or not want_mark):
        return text
    if "description" not in spec:
        doc.set_key(name, "description", Commented(description, (DBT_DESCRIPTION_MARK,)) if want_mark else description)
    else:
        if not same:
            doc.set_key(name, "description", description)
        if want_mark and not marks:
            doc.edit(lambda: doc.doc.add_comment(where, DBT_DESCRIPTION_MARK))
    result = doc.finish(f"setting the description of `{name}`")
    if want_mark and not description_from_dbt(result, path, name, fmt=fmt):
        raise SemanticError(f"setting the description of `{name}`: Omni's dbt marker did not land above it",
                            path, doc.line(name))
    return result


# --------------------------------------------------------------------------------------------
# 3. rename_column_refs, rename_field, rename_field_refs


def rename_column_refs(text: str, path: str, old: str, new: str, *, fmt: Any = None, dialect: str = "duckdb") -> str:
    """Rewrite every reference to column `old` in any field's `sql:` (dimensions and measures) to `new`.

    The `views` layout names columns `${TABLE}.old`; Omni's files (`fmt` omni) by their bare or
    quoted name (`old`, `"OLD"`), found with the SQL tokenizer of `dialect` (string literals,
    functions, qualified names `t.old` and types `AS old`/`::old` are not columns of the view).
    The column name matches case-insensitively, bare or quoted (`${TABLE}."old"`,
    `${TABLE}.\\`old\\``), and is rewritten in the case and quoting it was written in (`OLD` -> `NEW`),
    so renaming back restores the text byte for byte. The value is edited inside its YAML scalar,
    whatever its style. A dimension with no `sql:` whose name is `old` reads the column implicitly
    and is NOT changed here: the caller either renames the field too (`rename_field`) or pins it to
    the new column (`set_field_sql`).
    """
    doc = _View(text, path, fmt)
    if old == new:
        return text
    if doc.omni:
        doc.rewrite_every_sql(lambda src, esc: rewrite_bare_columns(src, old, new, esc, dialect), new)
    else:
        doc.rewrite_every_sql(lambda src, esc: rewrite_table_refs(src, old, new, esc), new)
    return doc.finish(f"renaming column `{old}` to `{new}`")


def _aliases_flow(doc: _View) -> bool:
    """Whether the file writes its `aliases:` lists in flow style (the default when it has none)."""
    styles = Counter(bool(node.flow_style) for name in doc.section
                     if hasattr(node := doc.doc.node(doc.at(name, "aliases")), "flow_style"))
    return styles[True] >= styles[False]


def _edit_aliases(doc: _View, name: str, old: str, new: str, keep_alias: bool) -> None:
    """Renaming back to an alias removes it (and the key once empty); else `old` joins the aliases."""
    where = doc.at(name, "aliases")
    current = doc.spec(name).get("aliases")
    aliases = [] if current is None else ([current] if isinstance(current, str) else [str(a) for a in current])
    matches = [i for i, a in enumerate(aliases) if a == new] or \
        [i for i, a in enumerate(aliases) if a.lower() == new.lower()]
    if matches:  # renaming back: the alias goes, the intermediate name is not kept
        remaining = aliases[:matches[0]] + aliases[matches[0] + 1:]
        if not remaining:
            doc.remove_key(name, "aliases")
        elif isinstance(current, list):
            doc.edit(lambda: doc.doc.remove((*where, matches[0])))
        else:
            doc.set_key(name, "aliases", Flow(remaining))
        return
    if not keep_alias or old.lower() == new.lower() or any(a.lower() == old.lower() for a in aliases):
        return
    if current is None:
        field_flow = getattr(doc.doc.node(doc.at(name)), "flow_style", False) and doc.spec(name)
        doc.set_key(name, "aliases", Flow([old]) if _aliases_flow(doc) or field_flow else [old])
    elif isinstance(current, list):
        doc.edit(lambda: doc.doc.append(where, old))
    else:
        doc.set_key(name, "aliases", Flow(aliases + [old]))


def rename_field(text: str, path: str, old: str, new: str, *, keep_alias: bool = True, fmt: Any = None) -> str:
    """Rename field `old` to `new` (its key only: position, quoting style and comments stay).

    * `keep_alias`: `old` is appended to the field's `aliases:` (the key is created in the flow or
      block style of the file's other aliases lists, flow when there are none) so saved content
      keeps resolving. Renaming to a name the field lists in `aliases:` removes that alias (and the
      key once empty) and does not add the intermediate name: rename(a -> b) then rename(b -> a)
      restores the original bytes.
    * A field without `sql:` reads the column of its name; no `sql:` is added, because this is meant
      for a dbt column renamed old -> new that the field follows: the implicit column follows the
      new name. (To keep a field reading the old column, use `set_field_sql` instead.)
    * `${old}` and `${<view>.old}` in every `sql:` of this file become `${new}` / `${<view>.new}`
      (in the case they were written); use `rename_field_refs` for the other view files.
    * Already renamed (no `old`, and `new` exists) -> unchanged. `new` naming another field or alias,
      or already appearing as `${new}` (a table column) -> SemanticError, since the rename would
      change what existing SQL means.
    """
    doc = _View(text, path, fmt)
    if old == new:
        return text
    if old not in doc.section:
        renamed = doc.view.field_named(new)
        if renamed is not None and doc.view.field_named(old) in (None, renamed):
            return text
        raise SemanticError(f"no field `{old}` to rename in view `{doc.view.name}`", path)
    other = doc.view.field_named(new)
    if other is not None and other.name != old:
        raise SemanticError(f"cannot rename `{old}` to `{new}`: field `{other.name}` already uses that name",
                            path, other.location.line)
    view = doc.view.name
    if new.lower() not in (a.lower() for a in doc.view.fields[old].aliases) and new.lower() != old.lower():
        for name in doc.section:
            sql = doc.sql(name)
            if sql and field_ref_matches(sql, view, new, local=True):
                raise SemanticError(
                    f"cannot rename `{old}` to `{new}`: `{name}` already refers to `${{{new}}}`, "
                    f"which would then mean the renamed field", path, doc.line(name))
    doc.edit(lambda: doc.doc.rename(doc.at(old), new))
    _edit_aliases(doc, old, old, new, keep_alias)
    doc.rewrite_every_sql(lambda src, esc: rewrite_field_refs(src, view, old, new, True, esc), new)
    return doc.finish(f"renaming field `{old}` to `{new}`")


def rename_field_refs(text: str, path: str, view: str, old: str, new: str, *, fmt: Any = None) -> str:
    """In another view file: `${view.old}` -> `${view.new}` in every `sql:` (unqualified `${old}`
    there means that file's own field or column and is left alone)."""
    doc = _View(text, path, fmt)
    if old == new:
        return text
    doc.rewrite_every_sql(lambda src, esc: rewrite_field_refs(src, view, old, new, False, esc), new)
    return doc.finish(f"renaming `${{{view}.{old}}}` to `${{{view}.{new}}}`")


# --------------------------------------------------------------------------------------------
# 4. mark_broken, unmark


def _comment_text(reason: str) -> str:
    """The reason on one line, with characters YAML does not allow in a file escaped."""
    folded = " ".join(str(reason).split())
    return "".join(char if printable(char) else (f"\\x{ord(char):02x}" if ord(char) <= 0xFF else
                                                 f"\\u{ord(char):04x}") for char in folded)


def _flow_field(doc: _View, name: str) -> SemanticError:
    return SemanticError(f"field `{name}` is written in flow style; layersync only edits block-style fields",
                         doc.path, doc.line(name))


def mark_broken(text: str, path: str, field: str, reason: str, *, fmt: Any = None) -> str:
    """Put `# layersync: broken — <reason>` on the line above the field's key, at its indentation.

    The reason is folded onto one line (characters a YAML file cannot hold are escaped). An existing
    `# layersync: broken` comment right above the key is replaced (never stacked), so re-marking
    with the same reason changes nothing.
    """
    doc = _View(text, path, fmt)
    name = doc.field(field)
    key_line = (doc.line(name) or 1) - 1
    key_text_line = doc.doc.line_text(key_line)
    prefix = key_text_line[: len(key_text_line) - len(key_text_line.lstrip(" "))]
    line = prefix + BROKEN_PREFIX + _comment_text(reason)
    markers = doc.comment_lines(doc.at(name), _BROKEN_RE)
    if markers == [key_line - 1] and doc.doc.line_text(key_line - 1) == line:
        return text
    for index in markers:
        doc.doc.remove_line(index)
    try:
        doc.doc.add_comment(doc.at(name), line[len(prefix):])
    except YamlEditError:
        raise _flow_field(doc, name) from None
    result = doc.finish(f"marking `{name}` broken")
    check = _View(result, path, fmt)
    if check.comment_lines(check.at(name), _BROKEN_RE) != [(check.line(name) or 1) - 2]:
        raise SemanticError(f"marking `{name}` broken: the comment did not land above the field", path)
    return result


def unmark(text: str, path: str, field: str, *, fmt: Any = None) -> str:
    """Remove the `# layersync: broken` comment(s) right above the field's key (no-op if none)."""
    doc = _View(text, path, fmt)
    name = doc.field(field)
    markers = doc.comment_lines(doc.at(name), _BROKEN_RE)
    if not markers:
        return text
    for index in markers:
        doc.doc.remove_line(index)
    return doc.finish(f"unmarking `{name}`")


# --------------------------------------------------------------------------------------------
# 5. set_primary_key, set_allowed_values, set_table_name, set_field_sql


def set_primary_key(text: str, path: str, field: str, value: bool = True, *, fmt: Any = None) -> str:
    """`primary_key: true` on the field (added where the key order puts it, or `false` replaced).

    `value=False` removes a `primary_key: true` (false is the default), so set(True) then
    set(False) restores the file; an existing `primary_key: false` is left alone. Other fields'
    primary keys are not touched (a view may have a composite key).
    """
    doc = _View(text, path, fmt)
    name = doc.field(field)
    current = doc.spec(name).get("primary_key")
    if value == (current is True) or not value and current is not True:
        return text
    if value:
        doc.set_key(name, "primary_key", True)
    else:
        doc.remove_key(name, "primary_key")
    return doc.finish(f"setting the primary key of `{name}`")


def set_allowed_values(text: str, path: str, field: str, values: list[str], *, fmt: Any = None) -> str:
    """Write dbt's `accepted_values` as a flow list (items quoted only where YAML needs it).

    In Omni's files (`fmt` omni) the key is Omni's `all_values`. The `views` layout has no standard
    key for them, so layersync keeps them under its own `allowed_values:` there; the reader keeps
    either in the field's attributes. An empty list removes the key.
    """
    doc = _View(text, path, fmt)
    name = doc.field(field)
    key = _values_key(doc)
    wanted = [str(v) for v in values]
    current = doc.spec(name).get(key)
    if not wanted:
        if key not in doc.spec(name):
            return text
        doc.remove_key(name, key)
    else:
        if isinstance(current, list) and current == wanted and all(isinstance(v, str) for v in current):
            return text
        doc.set_key(name, key, Flow(wanted))
    return doc.finish(f"setting the {'values' if key == 'all_values' else 'allowed values'} of `{name}`")


def set_table_name(text: str, path: str, relation: str, *, fmt: Any = None) -> str:
    """Point the view at the relation dbt now builds: the last part of `table_name` becomes
    `relation`; a schema (or database.schema) before it and the quoting of that part are kept."""
    doc = _View(text, path, fmt)
    key = next((k for k in ("table_name", "sql_table_name") if isinstance(doc.doc.data.get(k), str)), None)
    if key is None:
        raise SemanticError("the view has no `table_name` to point at the renamed model", path, 1)
    old = doc.doc.data[key]
    head, dot, last = old.rpartition(".")
    quote = last[0] if last[:1] in ('"', "`") and last.endswith(last[0]) and len(last) > 1 else ""
    new = f"{head}{dot}{quote}{relation}{quote}"
    if new == old:
        return text
    doc.edit(lambda: doc.doc.set((key,), new, keep_style=False))
    return doc.finish(f"pointing `{key}` at `{relation}`")


def set_field_sql(text: str, path: str, field: str, sql: str, *, fmt: Any = None) -> str:
    """Replace one field's `sql:` (the field must have one): every other byte kept."""
    doc = _View(text, path, fmt)
    if field not in doc.section:
        raise SemanticError(f"no field `{field}`", path)
    if "sql" not in doc.spec(field):
        raise SemanticError(f"field `{field}` has no `sql:` to replace", path, doc.line(field))
    doc.set_key(field, "sql", sql)
    return doc.finish(f"setting the SQL of `{field}`")


# --------------------------------------------------------------------------------------------
# 6. topics and relationships: a renamed field followed where the model names it


def _model_file(text: str, path: str) -> Document:
    load_view_yaml(text, path)     # the bounds every semantic-layer file is read with; invalid -> SemanticError
    return _open(text, path)


def _renamed_entry(entry: str, view: str, old: str, new: str) -> str | None:
    """A topic's `view.old` / `-view.old` entry with the field renamed (None: it names another field)."""
    match = _FIELD_ENTRY.fullmatch(entry)
    if match is None or match.group(2) != view or match.group(4).lower() != old.lower():
        return None
    return entry[:match.start(4)] + case_like(match.group(4), old, new) + entry[match.end(4):]


def _rewrite_model_sql(doc: Document, where: Path, view: str, old: str, new: str) -> None:
    """`${view.old}` -> `${view.new}` in one SQL scalar, edited inside its source (any style)."""
    value = doc.get(where)
    if not isinstance(value, str):
        return
    rewritten, count = rewrite_field_refs(value, view, old, new, local=False)
    if not count:
        return
    source = doc.source(where)
    spliced, found = rewrite_field_refs(source, view, old, new, False, getattr(doc.node(where), "style", None) == '"')
    if found == count and SIMPLE_IDENT.fullmatch(new):
        doc.set_source(where, spliced, rewritten)
    elif "\n" not in source:
        doc.set(where, rewritten)
    else:
        raise SemanticError(f"cannot rewrite `${{{view}.{old}}}` inside this multi-line value; rename it by hand",
                            doc.path, doc.line(where))


def _finish(doc: Document, what: str) -> str:
    try:
        return doc.result(what)
    except YamlEditError as exc:
        raise SemanticError(exc.message, doc.path, exc.line) from None


def rename_field_in_topic(text: str, path: str, view: str, old: str, new: str) -> str:
    """Follow the rename of field `view.old` to `view.new` in a `<Name>.topic.yaml`: its `fields:`
    entries (`view.old`, `-view.old`), the keys of `default_filters` / `always_where_filters`, and
    `${view.old}` in every `*_sql` value (`always_where_sql`). Byte-identical elsewhere."""
    doc = _model_file(text, path)
    if old == new or not isinstance(doc.data, dict):
        return text
    for name, value in doc.data.items():
        if name == "fields" and isinstance(value, list):
            for index, entry in enumerate(value):
                renamed = _renamed_entry(entry, view, old, new) if isinstance(entry, str) else None
                if renamed is not None:
                    doc.set(("fields", index), renamed)
        elif name in _FILTER_KEYS and isinstance(value, dict):
            for key in value:
                renamed = _renamed_entry(str(key), view, old, new)
                if renamed is not None:
                    doc.rename((name, key), renamed)
        elif str(name).endswith("_sql"):
            _rewrite_model_sql(doc, (name,), view, old, new)
    return _finish(doc, f"renaming `{view}.{old}` to `{view}.{new}` in the topic")


def rename_field_in_relationships(text: str, path: str, view: str, old: str, new: str) -> str:
    """Follow the rename of field `view.old` in `relationships.yaml`: `${view.old}` in each join's
    `on_sql` (and any other `*_sql`). Byte-identical elsewhere."""
    doc = _model_file(text, path)
    if old == new or not isinstance(doc.data, list):
        return text
    for index, entry in enumerate(doc.data):
        for key in entry if isinstance(entry, dict) else ():
            if str(key).endswith("_sql"):
                _rewrite_model_sql(doc, (index, key), view, old, new)
    return _finish(doc, f"renaming `{view}.{old}` to `{view}.{new}` in relationships")
