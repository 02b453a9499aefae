"""What changed in a dbt project between two revisions, column by column.

"Pull from dbt" keeps the semantic layer in step with the dbt project: when a model's column is
renamed, dropped, retyped or re-documented, the views that read it must follow in a PR. That PR
needs facts a reviewer can check, so everything here is read from the files (SQL and YAML, plus
dbt's manifest when one is committed) without a warehouse or a dbt run, and every change points
at the file and line it comes from.

Renames are read from the SQL, never guessed from names: a column that disappears while another
appears with the very same expression (normalised by sqlglot) is the same column under a new
name. Where the files cannot say (a model that does not parse, a YAML file that does not load),
the change is not claimed: the problem is reported instead, with its file and line.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Literal, Mapping

import sqlglot
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from bot import repo_paths
from bot.dbt import compiled, lineage as dag, model_sql
from bot.dbt.project import YAML_SUFFIXES, DbtProject, FileStore, MemoryStore, config_alias, project_store
from bot.errors import RepoError
from bot.gitops import RevisionReader
from bot.yamlbounds import bounded
from bot.yamledit import plain

__all__ = [
    "ColumnChange",
    "ColumnInfo",
    "ModelChange",
    "ModelSnapshot",
    "Problem",
    "ProjectChanges",
    "ProjectSnapshot",
    "changes_between",
    "describe",
    "diff_projects",
    "snapshot_project",
]

ColumnKind = Literal["added", "removed", "renamed", "description_changed", "type_changed",
                     "expression_changed", "tests_changed", "meta_changed"]
ModelKind = Literal["model_added", "model_removed", "model_renamed"]

MANIFEST_PATH = "target/manifest.json"
_TEST_KEYS = ("data_tests", "tests")
_MAX_STAR_DEPTH = 32  # CTEs chained through `select *`; deeper is surely a cycle
_KIND_ORDER = {kind: index for index, kind in enumerate(
    ("removed", "renamed", "added", "expression_changed", "type_changed", "description_changed",
     "tests_changed", "meta_changed"))}


# --------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something that could not be read; reported so a reviewer knows what the diff could not see."""

    file: str
    line: int | None
    message: str
    model: str | None = None     # the model it is about, if any
    touched: bool = True         # False: a model whose file the change left as it was

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a model as the project's files describe it.

    `file`/`line` point where a reviewer would look first: the projection in the SQL when the
    final SELECT names the column, else its YAML entry; `yaml_file`/`yaml_line` always point at
    the YAML entry (None when undocumented), since that is where doc changes happen.
    """

    model: str
    name: str
    expression: str | None = None
    description: str | None = None
    data_type: str | None = None
    tests: tuple[str, ...] = ()
    accepted_values: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    file: str | None = None
    line: int | None = None
    yaml_file: str | None = None
    yaml_line: int | None = None
    # what the column computes, followed through CTEs and upstream models (bot.dbt.lineage): equal
    # keys mean the same values under any name or spelling; None where the lineage is unknown
    key: str | None = field(default=None, compare=False)
    resolved: str | None = field(default=None, compare=False)   # its expression inlined through the CTEs

    @property
    def in_sql(self) -> bool:
        return self.expression is not None

    @property
    def documented(self) -> bool:
        return self.yaml_file is not None


@dataclass(frozen=True)
class ModelSnapshot:
    """A model at one revision.

    `complete` says the final SELECT lists every output column explicitly (no `*` that could not be
    followed into a CTE, no Jinja-generated columns): only then does a column missing from the SQL
    mean the model does not have it. `sql_ok` is False when the SQL did not parse, so the SQL can
    neither prove nor disprove any column.
    """

    name: str
    path: str
    columns: dict[str, ColumnInfo] = field(default_factory=dict, hash=False)  # lower-case name → info
    complete: bool = False
    sql_ok: bool = True
    sql_key: str | None = None  # normalised SQL: equal keys mean the same model under another name
    yaml_file: str | None = None
    yaml_line: int | None = None
    star_free: bool = False     # every `*` resolved: a column named in the SQL before and not now is gone
    relation: str = ""  # the warehouse relation's name (dbt's alias), lower case; "" means the name
    text_hash: str = field(default="", compare=False)  # of the file: equal means the change left it as it was

    @property
    def relation_name(self) -> str:
        """The name a view uses for this model's relation."""
        return self.relation or self.name.lower()


@dataclass(frozen=True)
class ProjectSnapshot:
    models: dict[str, ModelSnapshot] = field(default_factory=dict, hash=False)  # lower-case name → model
    problems: tuple[Problem, ...] = ()
    unreadable: frozenset[str] = frozenset()  # YAML files that did not load: their docs are unknown
    dialect: str = "duckdb"
    others: frozenset[str] = frozenset()  # relations dbt makes or reads that are not models: seeds, sources, snapshots
    lineage: dag.ProjectLineage | None = field(default=None, compare=False, repr=False)

    def models_by_relation(self) -> dict[str, str]:
        """Aliased models by the relation name a view sees (`fct_orders` → `orders`)."""
        return {m.relation: key for key, m in self.models.items() if m.relation and m.relation != key}

    def knows(self, relation: str) -> bool:
        """Whether a view naming `relation` reads something this project makes or declares."""
        wanted = relation.lower()
        return wanted in self.models or wanted in self.models_by_relation() or wanted in self.others


@dataclass(frozen=True)
class ColumnChange:
    """One column-level change; `column` is the name at the base revision (the name the semantic
    layer still uses), `new_column` the new name when the column was renamed."""

    kind: ColumnKind
    model: str
    column: str
    new_column: str | None = None
    before: ColumnInfo | None = None
    after: ColumnInfo | None = None
    detail: str = ""
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ModelChange:
    kind: ModelKind
    model: str
    new_model: str | None = None
    file: str | None = None
    line: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class ProjectChanges:
    changes: list[ColumnChange | ModelChange] = field(default_factory=list, hash=False)
    problems: list[Problem] = field(default_factory=list, hash=False)
    before: ProjectSnapshot | None = field(default=None, compare=False, repr=False)
    after: ProjectSnapshot | None = field(default=None, compare=False, repr=False)

    @property
    def column_changes(self) -> list[ColumnChange]:
        return [c for c in self.changes if isinstance(c, ColumnChange)]

    @property
    def model_changes(self) -> list[ModelChange]:
        return [c for c in self.changes if isinstance(c, ModelChange)]

    def __bool__(self) -> bool:
        return bool(self.changes)


# --------------------------------------------------------------------------
# Reading a model's SQL
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _SqlColumn:
    name: str | None  # None: the warehouse names it (unaliased expression) or Jinja does
    expression: str
    line: int | None


@dataclass(frozen=True)
class _SqlShape:
    columns: tuple[_SqlColumn, ...]
    complete: bool
    key: str
    star_free: bool = False   # no `*` left unresolved (a Jinja loop may still add columns)
    star_line: int | None = None  # the final SELECT's first `*`


class _Reader:
    """The masked model and what is needed to show its expressions as written (with Jinja)."""

    def __init__(self, text: str, masked: str, dialect: str):
        self.text = text
        self.masked = masked
        self.dialect = dialect
        self.jinja = dag.jinja_placeholders(text, masked, dialect)
        self.hidden_star = False   # a `*` whose columns come from a table we cannot see

    def is_jinja(self, node: exp.Expression) -> bool:
        """Whether the text under a parsed identifier was Jinja: a name dbt renders is no name we know."""
        start, end = node.meta.get("start"), node.meta.get("end")
        if start is None or end is None:
            return False
        return self.text[start:end + 1] != self.masked[start:end + 1]

    def normalise(self, node: exp.Expression) -> str:
        """Comparable text: sqlglot's rendering, with the file's Jinja put back, so that two
        expressions differing only in Jinja (even inside a string literal) do differ."""
        node = node.copy()
        for literal in list(node.find_all(exp.Literal)):
            if literal.is_string and self.is_jinja(literal):
                start, end = literal.meta["start"], literal.meta["end"]
                literal.set("this", self.text[start + 1:end])  # the literal as written, without its quotes
        sql = node.sql(dialect=self.dialect, normalize=True, comments=False)
        return _restore_jinja(sql, self.jinja, self.dialect) if self.jinja else sql


def _restore_jinja(sql: str, jinja: Mapping[str, str], dialect: str) -> str:
    pieces: list[str] = []
    pos = 0
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except SqlglotError:
        return sql
    for token in tokens:
        original = jinja.get(token.text.lower()) if token.token_type == TokenType.VAR else None
        if original is not None:
            pieces.append(sql[pos:token.start])
            pieces.append(original)
            pos = token.end + 1
    pieces.append(sql[pos:])
    return "".join(pieces)


def _branches(node: exp.Expression) -> list[exp.Select]:
    while isinstance(node, exp.Subquery):
        node = node.this
    if isinstance(node, exp.SetOperation):
        return _branches(node.this) + _branches(node.expression)
    if isinstance(node, exp.Select):
        return [node]
    return []


def _by_name(node: exp.Expression) -> bool:
    while isinstance(node, exp.Subquery):
        node = node.this
    return isinstance(node, exp.SetOperation) and bool(node.args.get("by_name"))


def _ctes(node: exp.Expression, outer: Mapping[str, exp.Expression]) -> dict[str, exp.Expression]:
    scope = dict(outer)
    with_ = node.args.get("with_") or node.args.get("with")
    for cte in with_.expressions if isinstance(with_, exp.With) else []:
        scope[cte.alias_or_name.lower()] = cte.this
    return scope


def _line(node: exp.Expression) -> int | None:
    lines = [n.meta["line"] for n in node.walk() if isinstance(n, exp.Expression) and "line" in n.meta]
    return min(lines) if lines else None


def _is_star(node: exp.Expression) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _query_columns(reader: _Reader, query: exp.Expression, ctes: Mapping[str, exp.Expression],
                   depth: int) -> tuple[list[_SqlColumn], bool]:
    """Named output columns of a query (the first branch names them, as the warehouse does) and
    whether those are all of them; a set operation's column expression lists every branch's, so a
    change in any branch shows."""
    scope = _ctes(query, ctes)
    branches = _branches(query)
    if not branches:
        return [], False
    results = [_select_columns(reader, select, _ctes(select, scope), depth) for select in branches]
    first, first_ok = results[0]
    complete = all(ok for _, ok in results) and all(c.name is not None for c in first)
    if len(results) == 1:
        return [c for c in first if c.name is not None], complete
    by_name = _by_name(query)
    merged: list[_SqlColumn] = []
    for index, column in enumerate(first):
        if column.name is None:
            continue
        expressions = [column.expression]
        for other, other_ok in results[1:]:
            if by_name:
                match = next((c for c in other if (c.name or "").lower() == column.name.lower()), None)
            else:  # positional: only trustworthy when every column of both branches is visible
                match = other[index] if first_ok and other_ok and len(other) == len(first) else None
            expressions.append(match.expression if match else "?")
        merged.append(_SqlColumn(column.name, " | ".join(expressions), column.line))
    return merged, complete


def _select_columns(reader: _Reader, select: exp.Select, ctes: Mapping[str, exp.Expression],
                    depth: int) -> tuple[list[_SqlColumn], bool]:
    """Every projection in order (unnamed ones too, so set operations line up by position), and
    whether no `*` hid any."""
    columns: list[_SqlColumn] = []
    stars_ok = True
    for projection in select.expressions:
        if _is_star(projection):
            followed = _follow_star(reader, select, projection, ctes, depth)
            if followed is None:
                stars_ok = False
                reader.hidden_star = True
            else:
                columns += followed[0]
                stars_ok = stars_ok and followed[1]
            continue
        if isinstance(projection, exp.Alias):
            name_node, inner = projection.args.get("alias"), projection.this
        elif isinstance(projection, exp.Column):
            name_node, inner = projection.this, projection
        else:  # an unaliased expression: its name is the warehouse's choice
            name_node, inner = None, projection
        name = None
        if isinstance(name_node, exp.Identifier) and not reader.is_jinja(name_node):
            name = name_node.name  # not `as {{ method }}_amount` in a loop, nor `{{ dbt_utils.star(...) }}`
        columns.append(_SqlColumn(name, reader.normalise(inner), _line(projection)))
    return columns, stars_ok


def _follow_star(reader: _Reader, select: exp.Select, star: exp.Expression, ctes: Mapping[str, exp.Expression],
                 depth: int) -> tuple[list[_SqlColumn], bool] | None:
    """Columns behind `select * from cte` (the dbt idiom `select * from final`); None when they
    come from a table we cannot see."""
    if depth >= _MAX_STAR_DEPTH:
        return None
    node = star.this if isinstance(star, exp.Column) else star
    if node.args.get("replace") or node.args.get("rename"):
        return None
    qualifier = star.table if isinstance(star, exp.Column) else ""
    from_ = select.args.get("from_") or select.args.get("from")
    sources = ([from_.this] if isinstance(from_, exp.From) else []) + [j.this for j in select.args.get("joins") or []]
    if qualifier:
        sources = [s for s in sources if s.alias_or_name.lower() == qualifier.lower()]
    if len(sources) != 1:
        return None
    source = sources[0]
    if isinstance(source, exp.Subquery):
        query = source.this
    elif isinstance(source, exp.Table) and not source.args.get("db") and source.name.lower() in ctes:
        query = ctes[source.name.lower()]
    else:
        return None
    scope = {k: v for k, v in ctes.items() if v is not query}  # a CTE cannot see itself
    columns, complete = _query_columns(reader, query, scope, depth + 1)
    excluded = {e.name.lower() for e in node.args.get("except_") or node.args.get("except") or []}
    return [c for c in columns if (c.name or "").lower() not in excluded], complete


@functools.lru_cache(maxsize=4096)
def _sql_shape(text: str, dialect: str) -> _SqlShape:
    """Cached by content: between two revisions most models are byte-identical."""
    shape = model_sql.analyse(text, dialect)  # the same reading of the model as every edit makes
    masked = model_sql.mask_jinja(text)
    try:
        tree = sqlglot.parse_one(masked, read=dialect)
    except SqlglotError as error:
        raise model_sql.ModelSqlError(f"invalid SQL: {error}") from error
    reader = _Reader(text, masked, dialect)
    columns, complete = _query_columns(reader, tree, {}, 0)
    star_free = not reader.hidden_star
    first = _branches(tree)[:1]
    if shape.has_star and first and not any(_is_star(p) for p in first[0].expressions):
        complete = False  # a `{% for %}` loop in the select list: its columns are dbt's to render
    unique: dict[str, _SqlColumn] = {}
    for column in columns:
        unique.setdefault((column.name or "").lower(), column)
    stars = [p for p in first[0].expressions if _is_star(p)] if first else []
    return _SqlShape(tuple(unique.values()), complete, reader.normalise(tree), star_free,
                     _line(stars[0]) if stars else None)


# --------------------------------------------------------------------------
# Reading properties YAML
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _YamlColumn:
    name: str
    description: str | None
    data_type: str | None
    tests: tuple[str, ...]
    accepted_values: tuple[str, ...] | None
    meta: Mapping[str, Any]
    line: int | None


@dataclass(frozen=True)
class _YamlModel:
    name: str
    line: int | None
    columns: tuple[_YamlColumn, ...]
    alias: str | None = None


def _node_line(node: Any) -> int | None:
    try:
        return node.lc.line + 1
    except AttributeError:
        return None


def _key_line(node: Any, key: str) -> int | None:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _text(value: Any) -> str | None:
    """YAML null and "" both mean "no description" to dbt; folded scalars end in a newline."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _test_of(test: Any) -> tuple[str, tuple[str, ...] | None]:
    """Name and accepted values of one test, in any of dbt's spellings:
    `unique`; `{accepted_values: {values: [...]}}`; dbt ≥ 1.10's
    `{accepted_values: {arguments: {values: [...]}}}`; `{name: x, test_name: accepted_values, ...}`."""
    if not isinstance(test, Mapping):
        return str(test), None
    if "test_name" in test:
        name, body = str(test["test_name"]), test
    elif test:
        name = str(next(iter(test)))
        body = test[name]
    else:
        return "", None
    values = None
    if isinstance(body, Mapping):
        arguments = body.get("arguments")
        source = arguments if isinstance(arguments, Mapping) and "values" in arguments else body
        if isinstance(source.get("values"), list):
            values = tuple(_scalar(v) for v in source["values"])
    return name, values


def _yaml_column(entry: Mapping[str, Any], line: int | None) -> _YamlColumn:
    names: list[str] = []
    accepted: tuple[str, ...] | None = None
    for key in _TEST_KEYS:
        for test in entry.get(key) or [] if isinstance(entry.get(key), list) else []:
            name, values = _test_of(test)
            if not name:
                continue
            names.append(name)
            if values is not None and name.split(".")[-1] == "accepted_values" and accepted is None:
                accepted = values
    meta = dict(plain(entry.get("meta"))) if isinstance(entry.get("meta"), Mapping) else {}
    config = entry.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("meta"), Mapping):
        meta.update(plain(config["meta"]))  # dbt ≥ 1.10's home for meta wins, as in dbt
    data_type = entry.get("data_type")
    return _YamlColumn(str(entry.get("name")), _text(entry.get("description")),
                       None if data_type is None else str(data_type).strip() or None,
                       tuple(sorted(names)), accepted, meta, line)


@dataclass(frozen=True)
class _YamlFile:
    models: tuple[_YamlModel, ...] = ()
    problems: tuple[tuple[int | None, str], ...] = ()
    loaded: bool = True
    others: tuple[str, ...] = ()  # source tables (their identifiers) and snapshots it declares
    sources: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (`source:s.t`, identifier, declared columns)


def _config_value(entry: Mapping, key: str) -> str | None:
    config = entry.get("config")
    value = config.get(key) if isinstance(config, Mapping) else None
    return str(value) if isinstance(value, str) and value.strip() else None


def _declared_sources(data: Mapping) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Source tables with the relation they name and the columns they declare: what a
    `select * from {{ source(...) }}` expands to, when the project says."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for source in data.get("sources") or [] if isinstance(data.get("sources"), list) else []:
        if not isinstance(source, Mapping) or source.get("name") is None:
            continue
        tables = source.get("tables")
        for table in tables if isinstance(tables, list) else []:
            if not isinstance(table, Mapping) or table.get("name") is None:
                continue
            columns = table.get("columns")
            names = tuple(str(c["name"]) for c in columns if isinstance(c, Mapping) and c.get("name") is not None) \
                if isinstance(columns, list) else ()
            found.append((f"source:{str(source['name']).lower()}.{str(table['name']).lower()}",
                          str(table.get("identifier") or table["name"]).lower(), names))
    return tuple(found)


def _declared_others(data: Mapping) -> tuple[str, ...]:
    """Relations a properties file declares that are not models: a view may read them, and the
    pull must not call that a missing model. Malformed entries are dbt's to report."""
    names: list[str] = []
    for source in data.get("sources") or [] if isinstance(data.get("sources"), list) else []:
        tables = source.get("tables") if isinstance(source, Mapping) else None
        for table in tables if isinstance(tables, list) else []:
            if isinstance(table, Mapping) and table.get("name") is not None:
                names.append(str(table.get("identifier") or table["name"]))
    for snapshot in data.get("snapshots") or [] if isinstance(data.get("snapshots"), list) else []:
        if isinstance(snapshot, Mapping) and snapshot.get("name") is not None:
            names.append(_config_value(snapshot, "alias") or str(snapshot["name"]))
    return tuple(n.lower() for n in names)


@functools.lru_cache(maxsize=1024)
def _yaml_models(text: str) -> _YamlFile:
    """The models (and problems) of one properties file: cached by content like the SQL."""
    body = text[1:] if text.startswith("\ufeff") else text
    yaml = YAML(typ="rt")
    try:
        data = bounded(yaml.load(body))
    except DuplicateKeyError as exc:
        return _YamlFile(problems=((_mark_line(exc), f"duplicate key: {exc.problem}"),), loaded=False)
    except MarkedYAMLError as exc:
        detail = " ".join(p for p in (exc.context, exc.problem) if p)
        return _YamlFile(problems=((_mark_line(exc), f"invalid YAML: {detail}"),), loaded=False)
    except YAMLError as exc:
        return _YamlFile(problems=((None, f"invalid YAML: {exc}"),), loaded=False)
    if data is None:
        return _YamlFile()
    if not isinstance(data, Mapping):
        return _YamlFile(problems=((_node_line(data) or 1, "the top level of a dbt properties file must be a mapping"),),
                         loaded=False)
    others = _declared_others(data)
    sources = _declared_sources(data)
    entries = data.get("models")
    if entries is None:
        return _YamlFile(others=others, sources=sources)
    if not isinstance(entries, list):
        return _YamlFile(problems=((_key_line(data, "models"), "`models:` must be a list"),), loaded=False,
                         others=others, sources=sources)
    models: list[_YamlModel] = []
    problems: list[tuple[int | None, str]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or entry.get("name") is None:
            problems.append((_item_line(entries, index), f"entry {index + 1} of `models:` is not a model with a name"))
            continue
        columns: list[_YamlColumn] = []
        raw = entry.get("columns")
        if raw is not None and not isinstance(raw, list):
            problems.append((_key_line(entry, "columns"), f"`columns:` of model {entry['name']} must be a list"))
            raw = []
        for position, column in enumerate(raw or []):
            if isinstance(column, Mapping) and column.get("name") is not None:
                columns.append(_yaml_column(column, _node_line(column)))
            else:
                problems.append((_item_line(raw, position),
                                 f"entry {position + 1} of the columns of model {entry['name']} has no name"))
        models.append(_YamlModel(str(entry["name"]), _node_line(entry), tuple(columns),
                                 alias=_config_value(entry, "alias")))
    return _YamlFile(tuple(models), tuple(problems), True, others, sources)


def _mark_line(exc: MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _item_line(seq: Any, index: int) -> int | None:
    try:
        return seq.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------


def _manifest_models(manifest: Mapping[str, Any] | None) -> tuple[dict[str, Mapping], dict[str, Mapping]]:
    """Model nodes by file path and by name: the path is unambiguous, the name the fallback."""
    by_path: dict[str, Mapping] = {}
    by_name: dict[str, Mapping] = {}
    nodes = manifest.get("nodes") if isinstance(manifest, Mapping) else None
    for node in (nodes or {}).values() if isinstance(nodes, Mapping) else []:
        if not isinstance(node, Mapping) or node.get("resource_type") != "model":
            continue
        if node.get("original_file_path"):
            by_path[str(node["original_file_path"]).replace("\\", "/")] = node
        if node.get("name"):
            by_name.setdefault(str(node["name"]).lower(), node)
    return by_path, by_name


def _with_manifest(info: ColumnInfo, node_column: Mapping[str, Any]) -> ColumnInfo:
    """dbt's own reading wins where it has one: descriptions with `{{ doc() }}` rendered, types
    and meta after config inheritance."""
    meta = dict(node_column.get("meta") or {})
    config = node_column.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("meta"), Mapping):
        meta.update(config["meta"])
    data_type = node_column.get("data_type")
    manifest_type = str(data_type).strip() if data_type is not None else ""
    return replace(info, description=_text(node_column.get("description")) or info.description,
                   data_type=manifest_type or info.data_type, meta=meta or info.meta)


# --------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------


def _properties_files(project: DbtProject, store: FileStore) -> list[str]:
    return sorted({path for root in project.model_paths for path in store.list_files(root)
                   if path.endswith(YAML_SUFFIXES)})


def _project(store: FileStore, problems: list[Problem]) -> DbtProject:
    """An unreadable dbt_project.yml must not hide the models: fall back to dbt's default paths."""
    try:
        return DbtProject(store)
    except RepoError as error:
        if store.read_text("dbt_project.yml") is None:
            raise
        problems.append(Problem(error.file or "dbt_project.yml", error.line, error.message))
        return DbtProject(MemoryStore({"dbt_project.yml": "name: unknown\n"}, base=store))


def snapshot_project(store: FileStore, manifest: dict | None = None, dialect: str = "duckdb") -> ProjectSnapshot:
    """Every model with its columns, from the final SELECTs and the properties YAML.

    Nothing here aborts on a bad file: a model or YAML file that cannot be read becomes a
    `Problem` and the rest of the project is still read, so one broken file cannot hide the
    changes in all the others.
    """
    problems: list[Problem] = []
    project = _project(store, problems)
    models = project.models()

    docs: dict[str, tuple[str, _YamlModel]] = {}
    unreadable: set[str] = set()
    for path in _properties_files(project, store):
        text = store.read_text(path)
        if text is None:
            continue
        parsed = _yaml_models(text)
        problems += [Problem(path, line, message) for line, message in parsed.problems]
        if not parsed.loaded:
            unreadable.add(path)
        for entry in parsed.models:
            key = entry.name.lower()
            if key in docs:
                first_file, first = docs[key]
                problems.append(Problem(path, entry.line, f"model {entry.name} is already documented in "
                                                          f"{first_file}:{first.line}; this entry is ignored"))
                continue
            docs[key] = (path, entry)

    by_path, by_name = _manifest_models(manifest)
    read: dict[str, tuple[str, str, _SqlShape | None, Mapping | None]] = {}  # key → text, SQL read, shape, node
    sources: dict[str, dag.ModelText] = {}
    for key, model in sorted(models.items()):
        text = store.read_text(model.path) or ""
        node = by_path.get(model.path) or by_name.get(key)
        shape, source, sql, problem = _read_model(model.name, model.path, text, dialect, _compiled_code(node))
        if problem is not None:
            problems.append(problem)
        read[key] = (text, sql, shape, node)
        if shape is not None:
            sources[key] = dag.ModelText(source, sql)

    aliases: dict[str, str] = {}
    for key, (text, _, _, node) in read.items():
        yaml_model = docs.get(key, (None, None))[1]
        alias = (node or {}).get("alias") or (yaml_model.alias if yaml_model else None) or config_alias(text)
        if alias and str(alias).lower() != key:
            aliases[key] = str(alias).lower()
    lineage = _project_lineage(project, store, sources, aliases, dialect)

    snapshots: dict[str, ModelSnapshot] = {}
    for key, model in sorted(models.items()):
        text, _, shape, node = read[key]
        yaml_file, yaml_model = docs.get(key, (None, None))
        flow = lineage.lineage(key) if shape is not None else None
        columns = _merge(model.name, model.path, shape, yaml_file, yaml_model, flow, lineage.keys_of(key) if flow else {})
        if node is not None:
            node_columns = {str(k).lower(): v for k, v in (node.get("columns") or {}).items() if isinstance(v, Mapping)}
            columns = {k: _with_manifest(c, node_columns[k]) if k in node_columns else c for k, c in columns.items()}
        complete = bool(shape and (shape.complete or (flow is not None and flow.complete)))
        snapshots[key] = ModelSnapshot(
            name=model.name, path=model.path, columns=columns,
            complete=complete, sql_ok=shape is not None,
            star_free=bool(shape and (shape.star_free or complete)),
            sql_key=shape.key if shape else None,
            yaml_file=yaml_file, yaml_line=yaml_model.line if yaml_model else None,
            relation=aliases.get(key, ""), text_hash=hashlib.sha1(text.encode("utf-8")).hexdigest(),
        )
    return ProjectSnapshot(snapshots, tuple(problems), frozenset(unreadable), dialect,
                           frozenset(_other_relations(project, store)), lineage)


def _compiled_code(node: Mapping | None) -> str | None:
    """dbt's rendering of the model, when the manifest has one (`dbt compile` writes it)."""
    code = (node or {}).get("compiled_code") or (node or {}).get("compiled_sql")
    return code if isinstance(code, str) and code.strip() else None


def _read_model(name: str, path: str, text: str, dialect: str,
                compiled: str | None) -> tuple[_SqlShape | None, str, str, Problem | None]:
    """The model's shape and the SQL its lineage reads: the file (Jinja masked), else dbt's compiled
    SQL (a model that is one macro call, CTEs a macro writes), else the reason it cannot be read."""
    try:
        return _sql_shape(text, dialect), text, model_sql.mask_jinja(text), None
    except model_sql.ModelSqlError as error:
        problem = Problem(path, error.line, f"cannot read model {name}: {error.message}", name)
    except SqlglotError as error:
        problem = Problem(path, None, f"cannot read model {name}: {error}", name)
    except Exception as error:  # noqa: BLE001 - one odd model must not hide the others' changes
        problem = Problem(path, None, f"cannot read model {name}: {type(error).__name__}: {error}", name)
    if compiled is not None:
        try:
            shape = _sql_shape(compiled, dialect)
        except Exception:  # noqa: BLE001 - dbt's SQL that sqlglot cannot read: the file's reason stands
            shape = None
        if shape is not None:    # its lines are the compiled SQL's, not the file's
            return replace(shape, columns=tuple(replace(c, line=None) for c in shape.columns)), compiled, compiled, None
    return None, "", "", problem


def _project_lineage(project: DbtProject, store: FileStore, models: Mapping[str, dag.ModelText],
                     aliases: Mapping[str, str], dialect: str) -> dag.ProjectLineage:
    """Lineage over every readable model, with the seeds' headers and the sources' declared columns
    (a source whose table is a seed of the project has the seed's) as the columns a `*` expands to."""
    external: dict[str, tuple[str, ...]] = {}
    for root in project.seed_paths:
        for path in store.list_files(root):
            if path.endswith(".csv"):
                try:
                    text = store.read_text(path) or ""
                except (ValueError, OSError):   # a blob a partial clone lacks: that seed's columns stay unknown
                    continue
                header = dag.csv_header(text.split("\n", 1)[0])
                if header:
                    external[f"seed:{PurePosixPath(path).stem.lower()}"] = header
    identifiers: dict[str, str] = {}
    for path in _properties_files(project, store):
        for relation, identifier, columns in _yaml_models(store.read_text(path) or "").sources:
            if columns:
                external.setdefault(relation, columns)
            identifiers[relation] = f"seed:{identifier}"
    return dag.ProjectLineage(models, dialect, relations={alias: key for key, alias in aliases.items()},
                              external=external, source_identifiers=identifiers)


def _other_relations(project: DbtProject, store: FileStore) -> set[str]:
    """Seeds (their CSV files), sources and snapshots: relations a view may read that no model makes."""
    names: set[str] = set()
    for path in project.model_paths + project.snapshot_paths:
        for file in store.list_files(path):
            if file.endswith(YAML_SUFFIXES):
                names.update(_yaml_models(store.read_text(file) or "").others)
            elif file.endswith(".sql") and any(file.startswith(root + "/") for root in project.snapshot_paths):
                names.update(_snapshot_blocks(store.read_text(file) or ""))
    for path in project.seed_paths:
        names.update(PurePosixPath(f).stem.lower() for f in store.list_files(path) if f.endswith(".csv"))
    return names


def _snapshot_blocks(text: str) -> list[str]:
    """Names of `{% snapshot name %}` blocks: Jinja tags, read token by token (this is not SQL)."""
    names: list[str] = []
    start = text.find("{%")
    while start >= 0:
        end = text.find("%}", start)
        if end < 0:
            break
        words = text[start + 2:end].strip("-+ \t\r\n").split()
        if len(words) >= 2 and words[0] == "snapshot":
            names.append(words[1].lower())
        start = text.find("{%", end)
    return names


def _merge(model: str, path: str, shape: _SqlShape | None, yaml_file: str | None,
           yaml_model: _YamlModel | None, flow: dag.ModelLineage | None = None,
           keys: Mapping[str, str] | None = None) -> dict[str, ColumnInfo]:
    """SQL columns in SELECT order (with those a `*` brings from upstream models, seeds and sources,
    as the lineage expands it), then the ones only YAML knows, each with its YAML docs and lineage."""
    documented = {c.name.lower(): c for c in reversed(yaml_model.columns)} if yaml_model else {}
    keys = keys or {}
    columns: dict[str, ColumnInfo] = {}
    origins = {c.name.lower(): c for c in flow.columns} if flow is not None else {}
    sql_columns = {(c.name or "").lower(): c for c in shape.columns} if shape else {}
    order = list(origins) if flow is not None and flow.complete else list(sql_columns)
    order += [k for k in list(sql_columns) + list(origins) if k not in order]
    for name in order:
        sql, origin = sql_columns.get(name), origins.get(name)
        shown = sql.expression if sql is not None else origin.resolved if origin is not None else None
        info = _info(model, sql.name if sql is not None and sql.name else origin.name if origin else name,
                     shown, path, sql.line if sql is not None else _star_line(shape), yaml_file, documented.get(name))
        columns[name] = replace(info, key=keys.get(name),
                                resolved=origin.resolved if origin is not None and origin.through_ctes else None)
    for key, doc in sorted(documented.items(), key=lambda pair: pair[1].line or 0):
        if key not in columns:
            columns[key] = _info(model, doc.name, None, yaml_file, doc.line, yaml_file, doc)
    return columns


def _star_line(shape: _SqlShape | None) -> int | None:
    """Where a column a `*` brings in is selected: the line of the final SELECT's `*`, if known."""
    return shape.star_line if shape is not None else None


def _info(model: str, name: str, expression: str | None, file: str | None, line: int | None,
          yaml_file: str | None, doc: _YamlColumn | None) -> ColumnInfo:
    if doc is None:
        return ColumnInfo(model, name, expression, file=file, line=line)
    return ColumnInfo(model, name, expression, doc.description, doc.data_type, doc.tests, doc.accepted_values,
                      copy.deepcopy(dict(doc.meta)), file, line, yaml_file, doc.line)


# --------------------------------------------------------------------------
# Diff
# --------------------------------------------------------------------------


def _short(value: object, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[:limit - 1] + "…")


def _same_text(a: str | None, b: str | None) -> bool:
    """Re-wrapping a folded YAML description is no change."""
    return (" ".join(a.split()) if a else None) == (" ".join(b.split()) if b else None)


def _type_key(data_type: str | None, dialect: str) -> str | None:
    """`varchar` and `VARCHAR` are one type; aliases the dialect folds (`text`) too."""
    if data_type is None:
        return None
    try:
        return exp.DataType.build(data_type, dialect=dialect).sql(dialect=dialect).upper()
    except (SqlglotError, ValueError):
        return " ".join(data_type.upper().split())


_PRESENT, _ABSENT, _UNKNOWN = "present", "absent", "unknown"


def _status(model: ModelSnapshot | None, key: str, docs_ok: bool) -> str:
    """Whether the model has the column, as far as its files can tell.

    In a complete SELECT the SQL decides (a YAML entry for a column the SQL does not produce is a
    stale doc); behind a `*` the YAML decides; where the SQL did not parse, or the YAML did not
    load, the files cannot disprove a column.
    """
    if model is None:
        return _ABSENT
    column = model.columns.get(key)
    if column is not None and column.in_sql:
        return _PRESENT
    if not model.sql_ok:
        return _PRESENT if column is not None and column.documented and docs_ok else _UNKNOWN
    if model.complete:
        return _ABSENT
    if not docs_ok:
        return _UNKNOWN
    return _PRESENT if column is not None and column.documented else _ABSENT


def _docs_ok(side: ProjectSnapshot, before: ModelSnapshot, after: ModelSnapshot) -> bool:
    files = {f for f in (before.yaml_file, after.yaml_file) if f}
    return not (files & side.unreadable)


def _yaml_where(after: ColumnInfo, before: ColumnInfo) -> tuple[str | None, int | None]:
    if after.yaml_file:
        return after.yaml_file, after.yaml_line
    if before.yaml_file:
        return before.yaml_file, before.yaml_line
    return after.file, after.line


def _tests_detail(before: ColumnInfo, after: ColumnInfo) -> str | None:
    parts: list[str] = []
    added = sorted(set(after.tests) - set(before.tests))
    removed = sorted(set(before.tests) - set(after.tests))
    if added:
        parts.append("tests added: " + ", ".join(added))
    if removed:
        parts.append("tests removed: " + ", ".join(removed))
    if not added and not removed and sorted(before.tests) != sorted(after.tests):
        parts.append(f"tests: {', '.join(before.tests)} → {', '.join(after.tests)}")
    old = sorted(before.accepted_values) if before.accepted_values is not None else None
    new = sorted(after.accepted_values) if after.accepted_values is not None else None
    if old != new and (before.accepted_values is not None and after.accepted_values is not None):
        gained = sorted(set(new or ()) - set(old or ()))
        lost = sorted(set(old or ()) - set(new or ()))
        bits = ([f"+{', '.join(gained)}"] if gained else []) + ([f"-{', '.join(lost)}"] if lost else [])
        parts.append(f"accepted_values: {' '.join(bits) or 'reordered'}")
    return "; ".join(parts) or None


_UNSET = object()


def _meta_detail(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    keys = sorted({k for k in set(before) | set(after) if before.get(k, _UNSET) != after.get(k, _UNSET)})
    if not keys:
        return None
    parts = []
    for key in keys:
        old, new = before.get(key, _UNSET), after.get(key, _UNSET)
        if old is _UNSET:
            parts.append(f"+{key}={json.dumps(new, default=str)}")
        elif new is _UNSET:
            parts.append(f"-{key}")
        else:
            parts.append(f"{key}: {json.dumps(old, default=str)} → {json.dumps(new, default=str)}")
    return "meta " + ", ".join(parts)



def _computes_same(old: ColumnInfo, new: ColumnInfo) -> bool:
    """Same values: by lineage where both sides have it (aliases resolved, CTEs and upstream models
    followed, Jinja compared by its syntax), else by the final SELECT's normalised expression."""
    if old.key is not None and new.key is not None:
        return old.key == new.key
    return old.expression == new.expression


def _same_key(column: ColumnInfo) -> str | None:
    return column.key if column.key is not None else column.expression


@functools.lru_cache(maxsize=4096)
def _unqualified(sql: str | None, dialect: str) -> str | None:
    """An expression without table qualifiers or outer parentheses: what it computes from which
    column names (None when it does not parse, e.g. a Jinja call)."""
    try:
        node = sqlglot.parse_one(sql or "", read=dialect)
    except SqlglotError:
        return None
    while isinstance(node, exp.Paren):
        node = node.this
    for column in node.find_all(exp.Column):
        column.set("table", None)
        column.set("db", None)
        column.set("catalog", None)
    return node.sql(dialect=dialect, normalize=True)


def _inlines_more(info: ColumnInfo, dialect: str) -> bool:
    """Whether the expression inlined through the CTEs says more than the final SELECT's does."""
    shown, resolved = _unqualified(info.expression, dialect), _unqualified(info.resolved, dialect)
    return shown is not None and resolved is not None and shown != resolved


def _expression_detail(old: ColumnInfo, new: ColumnInfo, upstream: list[tuple[str, str]], dialect: str) -> str:
    """Where the definition changed: the final SELECT, a CTE it reads, or an upstream model."""
    through = old.resolved is not None and new.resolved is not None and old.resolved != new.resolved
    locally = [_unqualified(c.resolved or c.expression, dialect) for c in (old, new)]
    if upstream and locally[0] is not None and locally[0] == locally[1]:
        return "upstream: " + ", ".join(f"{m}.{c}" for m, c in upstream) + " changed"   # computed alike here
    if old.expression != new.expression:
        shown = f"{old.expression} → {new.expression}"
        if through and (_inlines_more(old, dialect) or _inlines_more(new, dialect)):
            return f"{shown} (through its CTEs: {old.resolved} → {new.resolved})"   # the CTE holds the change
        return shown
    if through:
        return f"through its CTEs: {old.resolved} → {new.resolved}"
    if upstream:
        return "upstream: " + ", ".join(f"{m}.{c}" for m, c in upstream) + " changed"
    return f"its lineage changed: {old.resolved or old.expression}"


def _attribute_changes(model: str, old: ColumnInfo, new: ColumnInfo, *, compare_sql: bool, compare_docs: bool,
                       dialect: str, renamed_to: str | None = None,
                       upstream: Any = None) -> Iterator[ColumnChange]:
    def change(kind: ColumnKind, detail: str, where: tuple[str | None, int | None]) -> ColumnChange:
        return ColumnChange(kind, model, old.name, renamed_to, old, new, detail, *where)

    if compare_sql and old.in_sql and new.in_sql and not _computes_same(old, new):
        changed = upstream(old, new) if upstream is not None else []
        yield change("expression_changed", _expression_detail(old, new, changed, dialect), (new.file, new.line))
    if not compare_docs:
        return
    yaml_where = _yaml_where(new, old)
    if _type_key(old.data_type, dialect) != _type_key(new.data_type, dialect):
        yield change("type_changed", f"data_type {old.data_type or 'unset'} → {new.data_type or 'unset'}", yaml_where)
    if not _same_text(old.description, new.description):
        detail = (f"description {_short(old.description) if old.description else 'unset'} → "
                  f"{_short(new.description) if new.description else 'unset'}")
        yield change("description_changed", detail, yaml_where)
    tests = _tests_detail(old, new)
    if tests:
        yield change("tests_changed", tests, yaml_where)
    meta = _meta_detail(old.meta, new.meta)
    if meta:
        yield change("meta_changed", meta, yaml_where)


def _column_changes(before_project: ProjectSnapshot, after_project: ProjectSnapshot,
                    before: ModelSnapshot, after: ModelSnapshot) -> list[ColumnChange]:
    model = after.name
    docs_before = _docs_ok(before_project, before, after)
    docs_after = _docs_ok(after_project, before, after)
    compare_sql = before.sql_ok and after.sql_ok
    compare_docs = docs_before and docs_after
    dialect = after_project.dialect

    def upstream(old: ColumnInfo, new: ColumnInfo) -> list[tuple[str, str]]:
        flows = (after_project.lineage, before_project.lineage)
        return flows[0].changed_upstream(after.name, new.name, flows[1]) if all(flows) else []

    changes: list[ColumnChange] = []
    removed: list[ColumnInfo] = []
    uncertain: set[str] = set()  # may still come through the model's `*`: only a rename may claim them
    added: list[ColumnInfo] = []
    for key in sorted(set(before.columns) | set(after.columns)):
        old_status = _status(before, key, docs_before)
        new_status = _status(after, key, docs_after)
        old, new = before.columns.get(key), after.columns.get(key)
        if old is not None and old.in_sql and after.star_free and (new is None or not new.in_sql):
            new_status = _ABSENT   # selected by name before, gone from a SELECT with no `*`: removed, stale doc or not
        if new is not None and new.in_sql and before.star_free and (old is None or not old.in_sql):
            old_status = _ABSENT   # and the other way round: newly selected by name (its doc may be older)
        if old_status == _PRESENT and new_status == _PRESENT and old is not None and new is not None:
            changes += _attribute_changes(model, old, new, compare_sql=compare_sql, compare_docs=compare_docs,
                                          dialect=dialect, upstream=upstream)
        elif old_status == _PRESENT and new_status == _ABSENT and old is not None and old.documented \
                and not old.in_sql and not after.complete and not after.star_free:
            # behind a `*` of unknown columns: only its doc is known gone, and a lost YAML entry is a
            # documentation change, never a removed column
            changes += _attribute_changes(model, old, replace(ColumnInfo(after.name, old.name), file=after.path),
                                          compare_sql=False, compare_docs=True, dialect=dialect)
        elif old_status == _PRESENT and new_status == _ABSENT and old is not None:
            removed.append(old)
            if not after.complete and not old.documented and not (old.in_sql and after.star_free):
                uncertain.add(key)
        elif old_status == _ABSENT and new_status == _PRESENT and new is not None:
            added.append(new)

    renames: dict[str, ColumnInfo] = {}
    for old in removed:
        if old.expression is None:
            continue
        targets = [new for new in added if new.expression is not None and _same_key(new) == _same_key(old)]
        rivals = [other for other in removed if other.expression is not None and _same_key(other) == _same_key(old)]
        if len(targets) == 1 and len(rivals) == 1:
            renames[old.name.lower()] = targets[0]
    renamed_to = {new.name.lower() for new in renames.values()}

    for old in removed:
        new = renames.get(old.name.lower())
        if new is None and old.name.lower() in uncertain:
            continue
        if new is None:
            changes.append(ColumnChange("removed", model, old.name, None, old, None, _removed_detail(old, after),
                                        old.file, old.line))
            continue
        changes.append(ColumnChange("renamed", model, old.name, new.name, old, new,
                                    f"{old.name} → {new.name} (same expression {new.expression})",
                                    new.file, new.line))
        changes += _attribute_changes(model, old, new, compare_sql=False, compare_docs=compare_docs,
                                      dialect=dialect, renamed_to=new.name)
    for new in added:
        if new.name.lower() in renamed_to:
            continue
        detail = f"selected as {new.expression}" if new.in_sql else f"documented in {new.yaml_file}"
        changes.append(ColumnChange("added", model, new.name, None, None, new, detail, new.file, new.line))
    return changes


def _removed_detail(old: ColumnInfo, after: ModelSnapshot) -> str:
    still = after.columns.get(old.name.lower())
    if still is not None and still.documented:
        return f"no longer selected by the model; still documented at {still.yaml_file}:{still.yaml_line}"
    return f"was selected as {old.expression}" if old.in_sql else f"no longer documented in {old.yaml_file}"


def _sort_key(change: ColumnChange | ModelChange) -> tuple:
    if isinstance(change, ModelChange):
        return (change.model.lower(), 0, "", 0)
    return (change.model.lower(), 1, change.column.lower(), _KIND_ORDER[change.kind])


def diff_projects(before: ProjectSnapshot, after: ProjectSnapshot) -> ProjectChanges:
    """Column and model changes from `before` to `after`, sorted by model then column.

    Changes are claimed only where both sides' files can tell: a model whose SQL did not parse
    gets no SQL-derived changes, a model whose YAML did not load no doc changes.
    """
    changes: list[ColumnChange | ModelChange] = []
    gone = sorted(set(before.models) - set(after.models))
    new = sorted(set(after.models) - set(before.models))

    moved: dict[str, str] = {}
    for old_key in gone:
        key = before.models[old_key].sql_key
        if key is None:
            continue
        targets = [k for k in new if after.models[k].sql_key == key]
        rivals = [k for k in gone if before.models[k].sql_key == key]
        if len(targets) == 1 and len(rivals) == 1:
            moved[old_key] = targets[0]

    for old_key in gone:
        old = before.models[old_key]
        if old_key in moved:
            target = after.models[moved[old_key]]
            changes.append(ModelChange("model_renamed", old.name, target.name, target.path, 1,
                                       f"{old.path} → {target.path} (same SQL)"))
            changes += _column_changes(before, after, old, target)
        else:
            changes.append(ModelChange("model_removed", old.name, None, old.path, 1, f"{old.path} deleted"))
    arrived = set(moved.values())
    for new_key in new:
        if new_key not in arrived:
            model = after.models[new_key]
            changes.append(ModelChange("model_added", model.name, None, model.path, 1, f"{model.path} added"))
    for key in sorted(set(before.models) & set(after.models)):
        old, now = before.models[key], after.models[key]
        if old.relation_name != now.relation_name:   # a new alias: views name the relation, not the model
            changes.append(ModelChange("model_renamed", old.name, now.name, now.path, 1,
                                       f"its relation {old.relation_name} → {now.relation_name} (alias)"))
        changes += _column_changes(before, after, old, now)

    changes.sort(key=_sort_key)
    problems = list(after.problems) + [p for p in before.problems if p not in set(after.problems)]
    return ProjectChanges(changes, [_touched(p, before, after) for p in problems], before, after)


def _touched(problem: Problem, before: ProjectSnapshot, after: ProjectSnapshot) -> Problem:
    """Whether the change touched the model a problem is about (its file differs, or is new or gone)."""
    if problem.model is None:
        return problem
    old, new = before.models.get(problem.model.lower()), after.models.get(problem.model.lower())
    touched = old is None or new is None or old.text_hash != new.text_hash
    return problem if touched == problem.touched else replace(problem, touched=touched)


# --------------------------------------------------------------------------
# Git
# --------------------------------------------------------------------------


def _manifest(store: FileStore, problems: list[Problem]) -> dict | None:
    text = store.read_text(MANIFEST_PATH)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as error:
        problems.append(Problem(MANIFEST_PATH, getattr(error, "lineno", None), f"invalid JSON: {error}"))
        return None
    return data if isinstance(data, dict) else None


def _snapshot_at(reader: RevisionReader, rev: str, dialect: str, root: str = "",
                 compiled: Mapping[str, str] | None = None) -> ProjectSnapshot:
    """`compiled`: dbt's SQL for some models (project path → compiled code), read where the file cannot be."""
    store = project_store(reader.store(rev), root)
    problems: list[Problem] = []
    manifest = _manifest(store, problems)
    if compiled:
        manifest = _with_compiled_code(manifest, compiled)
    snapshot = snapshot_project(store, manifest, dialect)
    if not problems:
        return snapshot
    return replace(snapshot, problems=tuple(problems) + snapshot.problems)


def _with_compiled_code(manifest: dict | None, compiled: Mapping[str, str]) -> dict:
    """The committed manifest (if any) with dbt's fresh compiled SQL added to the models' nodes."""
    data = copy.deepcopy(manifest) if isinstance(manifest, dict) else {}
    nodes = data.setdefault("nodes", {}) if isinstance(data.get("nodes", {}), dict) else {}
    by_path = {str(n.get("original_file_path")): n for n in nodes.values()
               if isinstance(n, dict) and n.get("resource_type") == "model"}
    for path, sql in compiled.items():
        node = by_path.get(path)
        if node is None:
            name = PurePosixPath(path).stem
            node = nodes[f"model.layersync.{name}"] = {"resource_type": "model", "name": name,
                                                      "original_file_path": path}
        node["compiled_code"] = sql
    data["nodes"] = nodes
    return data


def _unreadable_touched(side: ProjectSnapshot, other: ProjectSnapshot) -> list[ModelSnapshot]:
    """Models of `side` whose SQL could not be read statically and that the change touched."""
    return [m for key, m in sorted(side.models.items()) if not m.sql_ok
            and (key not in other.models or other.models[key].text_hash != m.text_hash)]


def _compiled_at(reader: RevisionReader, rev: str, root: str, models: list[ModelSnapshot],
                 log: Callable[[str], None] | None) -> tuple[dict[str, str], str | None]:
    """dbt's compiled SQL of `models` at `rev` (the project's files written to a scratch folder)."""
    inside = repo_paths.under(root)
    paths = reader.list_files(rev, inside)
    texts = reader.read_many(rev, paths, unreadable={})
    files = {repo_paths.inside(root, p) or p: t for p, t in texts.items() if t is not None}
    store = MemoryStore(files)
    profile = DbtProject(store).profile if store.read_text("dbt_project.yml") is not None else "layersync"
    result = compiled.compile_models(files, [m.name for m in models], profile=profile, log=log)
    return result.sql, result.error


def changes_between(repo_path: Path | str, base_rev: str, head_rev: str, dialect: str = "duckdb",
                    root: str = "", *, compile_unreadable: bool = True,
                    log: Callable[[str], None] | None = None) -> ProjectChanges:
    """The dbt project's changes from `base_rev` to `head_rev`, read from git objects (no checkout),
    with each revision's committed `target/manifest.json` when there is one.

    A touched model that cannot be read statically (one macro call, CTEs a macro writes) is read from
    dbt's compiled SQL (`dbt compile` in a scratch copy of that revision; `compile_unreadable=False`
    skips it); if dbt cannot compile it either, the problem says why.

    `root`: the project's folder in a monorepo. Only files under it are read (a change elsewhere in
    the repository is no dbt change); the paths in the changes name the repository's files."""
    reader = RevisionReader(repo_path, "dbt repo")
    try:
        before = _snapshot_at(reader, base_rev, dialect, root)
        after = _snapshot_at(reader, head_rev, dialect, root)
        if compile_unreadable:
            sides = {}
            for name, rev, side, other in (("before", base_rev, before, after), ("after", head_rev, after, before)):
                models = _unreadable_touched(side, other)
                if models:
                    sql, error = _compiled_at(reader, rev, root, models, log)
                    snapshot = _snapshot_at(reader, rev, dialect, root, sql) if sql else side
                    sides[name] = _with_compile_error(snapshot, models, error) if error else snapshot
            before, after = sides.get("before", before), sides.get("after", after)
        changes = diff_projects(before, after)
    except RepoError as error:          # no dbt_project.yml in the folder: named as the repository has it
        if not root or not error.file:
            raise
        raise RepoError(error.message, f"{root}/{error.file}", error.line) from None
    return _in_repo(changes, root) if root else changes


def _with_compile_error(snapshot: ProjectSnapshot, models: list[ModelSnapshot], error: str) -> ProjectSnapshot:
    names = {m.name.lower() for m in models}
    problems = tuple(replace(p, message=f"{p.message} ({error})")
                     if p.model is not None and p.model.lower() in names and not snapshot.models[p.model.lower()].sql_ok
                     else p for p in snapshot.problems)
    return replace(snapshot, problems=problems)


def _in_repo(changes: ProjectChanges, root: str) -> ProjectChanges:
    """Project-relative paths (what dbt and the manifest say) as the repository's, for reviewers and links."""
    def path(value: str | None) -> str | None:
        return f"{root}/{value}" if value else value

    def info(value: ColumnInfo | None) -> ColumnInfo | None:
        return None if value is None else replace(value, file=path(value.file), yaml_file=path(value.yaml_file))

    moved: list[ColumnChange | ModelChange] = []
    for change in changes.changes:
        if isinstance(change, ColumnChange):
            moved.append(replace(change, file=path(change.file), before=info(change.before), after=info(change.after)))
        else:
            moved.append(replace(change, file=path(change.file)))
    problems = [replace(p, file=path(p.file) or p.file) for p in changes.problems]
    return replace(changes, changes=moved, problems=problems)


def describe(change: ColumnChange | ModelChange) -> str:
    """One line for a PR body: what changed, and where a reviewer can see it."""
    where = f" ({change.file}:{change.line})" if change.line else f" ({change.file})" if change.file else ""
    if isinstance(change, ModelChange):
        name = f"{change.model} → {change.new_model}" if change.new_model else change.model
        return f"{change.kind.replace('_', ' ')}: {name}: {change.detail}{where}"
    return f"{change.kind.replace('_', ' ')}: {change.model}.{change.column}: {change.detail}{where}"
