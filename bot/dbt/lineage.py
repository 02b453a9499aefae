"""Column-level lineage across a dbt project's DAG (pure: model texts in, column origins out).

Comparing two revisions model by model misreads the commonest refactors: a typo fixed in an
intermediate model looks like a removal in every mart that selects the column through; a
`count` turned into a `sum` inside a CTE changes nothing in the final SELECT's text; swapping
`orders.x` for `o.x` changes every expression's text. So each output column is followed to where
its values come from: sqlglot's `qualify` resolves aliases and expands `*` (with the upstream
models', seeds' and sources' columns as its schema), `optimizer.scope` tells which source each
column reference reads, and the expression is inlined through CTEs and subqueries down to the
relations the model reads. Upstream model columns are then replaced by their own origins, so a
column's *key* says what it computes, whatever it is called and however it is spelled.

Names of relations are ids: `model:<name>`, `seed:<name>`, `source:<source>.<table>` and
`table:<name>` for a relation the project does not make.
"""
from __future__ import annotations

import ast
import csv
import functools
import hashlib
import io
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.tokens import TokenType

__all__ = [
    "ColumnOrigin",
    "ModelLineage",
    "ModelText",
    "ProjectLineage",
    "csv_header",
    "jinja_placeholders",
    "jinja_relation",
    "normalise_jinja",
    "read_model",
]

_JINJA = "__jinja__"        # a `{{ expression }}` in SQL: a call of this name on its normalised text
_LEAF = "__leaf__"          # table qualifier of an upstream column in a resolved expression
_MAX_DEPTH = 64             # nested CTEs/subqueries (and models) followed; deeper is surely a cycle


@dataclass(frozen=True)
class ColumnOrigin:
    """One output column: `resolved` is its expression inlined through the model's CTEs and
    subqueries, with every column it reads written `<relation id>.<column>` (shown to reviewers);
    `reads` lists those upstream columns."""

    name: str
    resolved: str
    reads: tuple[tuple[str, str], ...]
    tree: exp.Expression  # `resolved` as sqlglot's tree (upstream columns qualified by _LEAF)
    followed: bool = True  # every column it reads was followed to a relation (else its key is unknown)
    through_ctes: bool = False  # its definition reads CTEs or subqueries of the model (`resolved` inlines them)


@dataclass(frozen=True)
class ModelLineage:
    """`complete`: every output column is known (each `*` was expanded)."""

    columns: tuple[ColumnOrigin, ...]
    complete: bool

    def column(self, name: str) -> ColumnOrigin | None:
        wanted = name.lower()
        return next((c for c in self.columns if c.name.lower() == wanted), None)


# --------------------------------------------------------------------------
# Jinja
# --------------------------------------------------------------------------


def jinja_placeholders(text: str, masked: str, dialect: str) -> dict[str, str]:
    """Placeholder identifier → the Jinja it stands for (see model_sql.mask_jinja).

    Masking keeps offsets, so a token whose masked text differs from the file at the same offset is
    (or contains) a placeholder; a multi-line `{{ }}` masks only its first line, hence the extension
    to the closing `}}`.
    """
    found: dict[str, str] = {}
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(masked)
    except SqlglotError:
        return found
    for token in tokens:
        if token.token_type != TokenType.VAR:
            continue
        original = text[token.start:token.end + 1]
        if original == masked[token.start:token.end + 1] or "{{" not in original:
            continue
        if original.count("{{") > original.count("}}"):
            close = text.find("}}", token.end + 1)
            if close >= 0:
                original = text[token.start:close + 2]
        found[token.text.lower()] = original
    return found


def _jinja_call(jinja: str) -> ast.expr | None:
    inner = jinja.strip()
    if inner.startswith("{{") and inner.endswith("}}"):
        inner = inner[2:-2].strip("-+ \t\r\n")
    try:
        return ast.parse(inner, mode="eval").body
    except (SyntaxError, ValueError):
        return None


def normalise_jinja(jinja: str) -> str:
    """`{{ref('a')}}`, `{{ ref("a") }}` and `{{- ref('a') -}}` are one template: Jinja's expression
    syntax is Python's, so its AST is the comparable form; anything else keeps its words."""
    call = _jinja_call(jinja)
    if call is not None:
        return ast.dump(call, annotate_fields=False)
    inner = jinja.strip().removeprefix("{{").removesuffix("}}").strip("-+ \t\r\n")
    return " ".join(inner.split())


def jinja_relation(jinja: str) -> str | None:
    """The relation id `{{ ref('m') }}`, `{{ ref('pkg', 'm') }}` or `{{ source('s', 't') }}` names."""
    call = _jinja_call(jinja)
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return None
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) != len(call.args) or not args:
        return None
    if call.func.id == "ref" and len(args) in (1, 2):
        return f"model:{args[-1].lower()}"
    if call.func.id == "source" and len(args) == 2:
        return f"source:{args[0].lower()}.{args[1].lower()}"
    return None


def csv_header(text: str) -> tuple[str, ...]:
    """A seed's columns: its CSV header, as dbt reads it."""
    try:
        row = next(csv.reader(io.StringIO(text.lstrip("\ufeff"))), [])
    except csv.Error:
        return ()
    return tuple(name.strip() for name in row if name.strip())


# --------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------


def _restore_literals(tree: exp.Expression, text: str, masked: str, jinja_key: Callable[[str], str]) -> None:
    """A string literal holding Jinja (`'{{ var("x") }}'`) was masked to filler: put the
    (normalised) Jinja back, so two literals that differ only in Jinja do differ."""
    for literal in list(tree.find_all(exp.Literal)):
        start, end = literal.meta.get("start"), literal.meta.get("end")
        if literal.is_string and start is not None and end is not None \
                and text[start:end + 1] != masked[start:end + 1]:
            written = text[start + 1:end]
            literal.set("this", jinja_key(written) if "{{" in written else written)


def _mark_jinja(tree: exp.Expression, jinja: Mapping[str, str]) -> dict[str, str]:
    """`{{ expression }}` where SQL has a value becomes `__jinja__('<normalised>')`: a call qualify
    leaves alone (a placeholder identifier would be taken for a column of the only table), equal for
    equal templates whatever their spacing. Returns normalised → the Jinja as written."""
    originals: dict[str, str] = {}
    for column in list(tree.find_all(exp.Column)):
        name = column.name.lower()
        if column.table or name not in jinja:
            continue
        normalised = normalise_jinja(jinja[name])
        originals.setdefault(normalised, jinja[name])
        call = exp.Anonymous(this=_JINJA, expressions=[exp.Literal.string(normalised)])
        if column is tree:
            return originals
        column.replace(call)
    return originals


_UNNAMED = "__unnamed_"


def _opaque_ctes(tree: exp.Expression) -> None:
    """A CTE whose whole body a macro writes (`days as ({{ dbt_date.get_base_dates(...) }})`) is
    a relation of unknown columns: read as `select * from` a table named after the macro call."""
    for cte in list(tree.find_all(exp.CTE)):
        if isinstance(cte.this, exp.Query):
            continue
        name = "jinja_" + _digest(cte.this.sql())
        cte.set("this", exp.select("*").from_(exp.Table(this=exp.to_identifier(name))))


def _name_unnamed(tree: exp.Expression) -> None:
    """Projections of the final SELECT that the SQL does not name (`count(*)`, a bare
    `{{ dbt_utils.star(...) }}`) get a marked alias, so that after qualify (which names them
    `_col_N`) they are known for what they are: the warehouse's or dbt's to name."""
    node = tree
    while isinstance(node, exp.Subquery):
        node = node.this
    branches = [node]
    while branches and isinstance(branches[0], exp.SetOperation):
        top = branches.pop(0)
        branches[:0] = [top.this, top.expression]
    for branch in branches:
        while isinstance(branch, exp.Subquery):
            branch = branch.this
        if not isinstance(branch, exp.Select):
            continue
        for index, projection in enumerate(list(branch.expressions)):
            if isinstance(projection, (exp.Alias, exp.Star)) or (
                    isinstance(projection, exp.Column) and not isinstance(projection.this, exp.Star)) or (
                    isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
                continue
            projection.replace(exp.alias_(projection.copy(), f"{_UNNAMED}{index}", quoted=False))


def _physical_tables(tree: exp.Expression) -> list[exp.Table]:
    """Tables that are no CTE of the query they sit in."""
    names: set[str] = set()
    for cte in tree.find_all(exp.CTE):
        names.add(cte.alias_or_name.lower())
    return [t for t in tree.find_all(exp.Table)
            if isinstance(t.this, exp.Identifier) and not (not t.args.get("db") and t.name.lower() in names)]


def _swap_tables(tree: exp.Expression, relation_of: Callable[[exp.Table], str | None],
                 columns_of: Callable[[str], Sequence[str] | None]) -> tuple[dict[str, str], dict]:
    """Every physical table becomes `__rN` (aliased as it was written), so qualifiers like
    `orders.x` still resolve and the schema is flat; returns `__rN` → relation id and the schema."""
    ids: dict[str, str] = {}
    schema: dict[str, dict[str, str]] = {}
    by_relation: dict[str, str] = {}
    for table in _physical_tables(tree):
        relation = relation_of(table)
        if relation is None:
            relation = "table:" + ".".join(p.name.lower() for p in table.parts)
        synthetic = by_relation.setdefault(relation, f"__r{len(by_relation)}")
        ids[synthetic] = relation
        alias = table.alias or table.name
        table.set("this", exp.to_identifier(synthetic))
        table.set("db", None)
        table.set("catalog", None)
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        columns = columns_of(relation)
        if columns is not None:
            schema[synthetic] = {c.lower(): "UNKNOWN" for c in columns}
    return ids, schema


def _is_star(node: exp.Expression) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _set_branches(scope: Scope) -> list[Scope]:
    """The SELECTs of a set operation, left to right (a plain SELECT is its own)."""
    if not scope.set_operation_scopes:
        return [scope]
    return [branch for child in scope.set_operation_scopes for branch in _set_branches(child)]


class _Resolver:
    """Inlines a scope's output columns through its CTEs and subqueries, memoised per scope."""

    def __init__(self, ids: Mapping[str, str]):
        self.ids = ids
        self.memo: dict[tuple[int, str], exp.Expression | None] = {}

    def output(self, scope: Scope, name: str, depth: int = 0) -> exp.Expression | None:
        key = (id(scope), name.lower())
        if key not in self.memo:
            self.memo[key] = None          # a reference to itself resolves to nothing
            self.memo[key] = self._output(scope, name.lower(), depth)
        return self.memo[key]

    def _output(self, scope: Scope, name: str, depth: int) -> exp.Expression | None:
        if depth > _MAX_DEPTH:
            return None
        if scope.set_operation_scopes:
            parts = [self.output(s, name, depth + 1) for s in _set_branches(scope)]
            if any(p is None for p in parts):
                return None
            return exp.Anonymous(this="union", expressions=parts)
        select = scope.expression
        if not isinstance(select, exp.Select):
            return None
        for projection in select.expressions:
            if projection.alias_or_name.lower() == name and not _is_star(projection):
                inner = projection.this if isinstance(projection, exp.Alias) else projection
                return self.expression(scope, inner, depth)
        return self._through_star(scope, select, name, depth)

    def _through_star(self, scope: Scope, select: exp.Select, name: str, depth: int) -> exp.Expression | None:
        """A name a `*` of unknown columns passes on (`select * from source`, the source's columns
        unknown): it is the star's source's column of that name, when the star has one source."""
        stars = [p for p in select.expressions if _is_star(p)]
        if len(stars) != 1:
            return None
        star = stars[0]
        candidates = [k for k in scope.sources if k]
        table = star.table if isinstance(star, exp.Column) and star.table else (
            candidates[0] if len(candidates) == 1 else None)
        source = scope.sources.get(table) if table else None
        if isinstance(source, Scope):
            return self.output(source, name, depth + 1)
        if isinstance(source, exp.Table):
            return exp.column(name, table=_LEAF, db=self.ids.get(source.name, "table:" + source.name), quoted=False)
        return None

    def expression(self, scope: Scope, node: exp.Expression, depth: int) -> exp.Expression:
        node = node.copy()
        sources = scope.sources
        for column in list(node.find_all(exp.Column)):
            if isinstance(column.this, exp.Star):
                continue
            table = column.table.lower() if column.table else ""
            if not table:
                candidates = [k for k in sources if k]
                if len(candidates) != 1:
                    continue                # ambiguous or a correlated name: left as written
                table = candidates[0]
            source = sources.get(table) or sources.get(column.table)
            replacement: exp.Expression | None
            if isinstance(source, Scope):
                inner = self.output(source, column.name, depth + 1)
                replacement = None if inner is None else inner.copy() if _atomic(inner) \
                    else exp.Paren(this=inner.copy())
            elif isinstance(source, exp.Table):
                relation = self.ids.get(source.name, "table:" + source.name)
                replacement = exp.column(column.name.lower(), table=_LEAF, db=relation, quoted=False)
            else:
                replacement = None
            if replacement is None:
                continue
            if column is node:
                node = replacement
            else:
                column.replace(replacement)
        return node


def _reads_scopes(scope: Scope, index: int) -> bool:
    """Whether the SELECT's projection at `index` reads a CTE or subquery (not only tables)."""
    select = scope.expression
    if not isinstance(select, exp.Select) or len(select.expressions) <= index:
        return False
    sources = scope.sources
    candidates = [k for k in sources if k]
    for column in select.expressions[index].find_all(exp.Column):
        table = column.table or (candidates[0] if len(candidates) == 1 else "")
        if isinstance(sources.get(table), Scope):
            return True
    return False


def _leaf_reads(tree: exp.Expression) -> tuple[tuple[str, str], ...]:
    found: dict[tuple[str, str], None] = {}
    for column in tree.find_all(exp.Column):
        if column.table == _LEAF:
            found.setdefault((column.db, column.name), None)
    return tuple(found)


def _shown(tree: exp.Expression, dialect: str, originals: Mapping[str, str]) -> str:
    """The resolved expression for a reviewer: upstream columns as `relation.column`, Jinja as written."""
    def show(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.table == _LEAF:
            return exp.column(node.name, table=node.db.split(":", 1)[-1], quoted=False)
        if isinstance(node, exp.Anonymous) and node.name == _JINJA and node.expressions:
            written = originals.get(node.expressions[0].name, node.expressions[0].name)
            return exp.column(written, quoted=False)
        return node

    shown = tree.copy().transform(show)
    while isinstance(shown, exp.Paren):
        shown = shown.this
    try:
        return shown.sql(dialect=dialect, comments=False)
    except SqlglotError:
        return shown.sql(comments=False)


def _atomic(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Identifier, exp.Null,
                             exp.Boolean, exp.Cast, exp.Subquery))


def read_model(text: str, masked: str, dialect: str, *,
               relation_of: Callable[[exp.Table, Mapping[str, str]], str | None],
               columns_of: Callable[[str], Sequence[str] | None]) -> ModelLineage:
    """The lineage of one model. `masked`: its text with Jinja masked (offsets kept), or its
    compiled SQL (then `text` is the same). `relation_of(table, jinja)`: the relation id a table of
    the SQL names (jinja: placeholder → Jinja text); `columns_of(relation id)`: its columns, None
    when unknown (a `*` over it then stays unexpanded and the lineage is incomplete).

    Raises SqlglotError when the SQL does not parse."""
    jinja = jinja_placeholders(text, masked, dialect) if text != masked else {}
    tree = sqlglot.parse_one(masked, read=dialect)
    _restore_literals(tree, text, masked, normalise_jinja)
    originals = _mark_jinja(tree, jinja)
    _name_unnamed(tree)
    _opaque_ctes(tree)
    ids, schema = _swap_tables(tree, lambda t: relation_of(t, jinja), columns_of)
    options = dict(dialect=dialect, schema=schema, validate_qualify_columns=False, quote_identifiers=False,
                   identify=False)
    try:
        qualified = qualify(tree.copy(), **options)
    except (SqlglotError, KeyError, ValueError, TypeError, AttributeError, RecursionError):
        # a correlated name over a table of unknown columns: tables only, columns as written
        qualified = qualify(tree.copy(), **options, qualify_columns=False)
    root = build_scope(qualified)
    if root is None:
        return ModelLineage((), False)
    branches = _set_branches(root)
    first = branches[0].expression
    if not isinstance(first, exp.Select):
        return ModelLineage((), False)
    resolver = _Resolver(ids)
    columns: list[ColumnOrigin] = []
    complete = True
    for scope in branches:
        select = scope.expression
        if isinstance(select, exp.Select) and any(isinstance(p, exp.Star) or (
                isinstance(p, exp.Column) and isinstance(p.this, exp.Star)) for p in select.expressions):
            complete = False
    seen: set[str] = set()
    for projection in first.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and isinstance(projection.this,
                                                                                                  exp.Star)):
            continue
        name = projection.alias_or_name
        if name.lower().startswith(_UNNAMED) or name.lower() in jinja:
            complete = False   # `{{ dbt_utils.star(...) }}`, `as {{ name }}`, or the warehouse names it
            continue
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        index = first.expressions.index(projection)
        through = any(_reads_scopes(scope, index) for scope in branches)
        if len(branches) > 1:
            parts = []
            for scope in branches:
                select = scope.expression
                inner = select.expressions[index] if isinstance(select, exp.Select) and \
                    len(select.expressions) > index else None
                if inner is None:
                    parts = []
                    break
                inner = inner.this if isinstance(inner, exp.Alias) else inner
                parts.append(resolver.expression(scope, inner, 0))
            if not parts:
                continue
            tree_ = exp.Anonymous(this="union", expressions=parts)
        else:
            resolved = resolver.output(root, name)
            if resolved is None:
                continue
            tree_ = resolved
        followed = all(c.table == _LEAF or isinstance(c.this, exp.Star) for c in tree_.find_all(exp.Column))
        columns.append(ColumnOrigin(name, _shown(tree_, dialect, originals), _leaf_reads(tree_), tree_, followed,
                                    through))
    return ModelLineage(tuple(columns), complete)


# --------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelText:
    """What the lineage reads of a model: its file text, and the SQL to parse (masked Jinja, or
    dbt's compiled SQL when the file cannot be read statically)."""

    text: str
    sql: str


class ProjectLineage:
    """Every model's lineage, read in dependency order (a model's `*` expands to its upstream's
    columns) and memoised; and each column's key: its resolved expression with upstream model
    columns replaced by their keys, so equal keys mean the same values under any name."""

    def __init__(self, models: Mapping[str, ModelText], dialect: str, *,
                 relations: Mapping[str, str] | None = None,
                 external: Mapping[str, Sequence[str]] | None = None,
                 source_identifiers: Mapping[str, str] | None = None):
        """`models`: lower-case name → text. `relations`: relation name → model, for aliased models
        and compiled SQL. `external`: relation id (`seed:x`, `source:s.t`) → its known columns.
        `source_identifiers`: `source:s.t` → the relation it names (a seed's, often)."""
        self.models = dict(models)
        self.dialect = dialect
        self.relations = {k.lower(): v.lower() for k, v in (relations or {}).items()}
        self.external = {k: tuple(v) for k, v in (external or {}).items()}
        self.source_identifiers = dict(source_identifiers or {})
        self._lineage: dict[str, ModelLineage | None] = {}
        self._errors: dict[str, SqlglotError] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._reading: set[str] = set()

    def relation_of(self, table: exp.Table, jinja: Mapping[str, str], compiled: bool = False) -> str | None:
        """The relation a table of a model's SQL reads: a `ref()`/`source()` in the file's Jinja; in
        dbt's compiled SQL, the relation name (the last part of `db.schema.name`). A table the file
        names literally is no model's (dbt would not order the models by it)."""
        name = table.name.lower()
        if not table.args.get("db") and name in jinja:
            relation = jinja_relation(jinja[name])
            if relation is not None and relation.startswith("model:"):
                target = relation[len("model:"):]
                if target not in self.models and f"seed:{target}" in self.external:
                    return f"seed:{target}"          # `ref()` of a seed
            return relation
        if not compiled:
            return None
        if name in self.relations:
            return f"model:{self.relations[name]}"
        if name in self.models:
            return f"model:{name}"
        if f"seed:{name}" in self.external:
            return f"seed:{name}"
        return None

    def columns_of(self, relation: str) -> tuple[str, ...] | None:
        kind, _, name = relation.partition(":")
        if kind == "model":
            lineage = self.lineage(name)
            return tuple(c.name for c in lineage.columns) if lineage is not None and lineage.complete else None
        if relation in self.external:
            return self.external[relation]
        target = self.source_identifiers.get(relation)
        return self.external.get(target) if target else None

    def lineage(self, model: str) -> ModelLineage | None:
        """None when the model's SQL cannot be read (see `error`) or it reads itself through a cycle."""
        model = model.lower()
        if model in self._lineage:
            return self._lineage[model]
        source = self.models.get(model)
        if source is None or model in self._reading:
            return None
        self._reading.add(model)
        try:
            result: ModelLineage | None = _read_cached(source.text, source.sql, self.dialect, self)
        except SqlglotError as error:
            self._errors[model] = error
            result = None
        except RecursionError:
            result = None
        finally:
            self._reading.discard(model)
        self._lineage[model] = result
        return result

    def error(self, model: str) -> SqlglotError | None:
        return self._errors.get(model.lower())

    def key(self, model: str, column: str, depth: int = 0) -> str | None:
        """What the column computes, as a digest; None when its model cannot be read."""
        wanted = (model.lower(), column.lower())
        if wanted in self._keys:
            return self._keys[wanted]
        lineage = self.lineage(model)
        origin = lineage.column(column) if lineage is not None else None
        if origin is None or not origin.followed or depth > _MAX_DEPTH:
            return None
        self._keys[wanted] = _digest(f"cycle:{wanted}")   # a cycle computes nothing we can compare
        found = self._key_of(origin.tree, depth)
        if found is None:
            del self._keys[wanted]
        else:
            self._keys[wanted] = found
        return found

    def _key_of(self, tree: exp.Expression, depth: int) -> str | None:
        keyed = _unparenthesised(tree.copy())      # the tree holds precedence; parentheses are spelling
        for call in keyed.find_all(exp.Anonymous):
            if isinstance(call.this, str):
                call.set("this", call.this.upper())   # `safe_offset(0)` is `SAFE_OFFSET(0)`
        leaves: set[str] = set()
        for column in list(keyed.find_all(exp.Column)):
            if column.table != _LEAF:
                continue
            kind, _, name = column.db.partition(":")
            target = self.source_identifiers.get(column.db, column.db)
            upstream = self.key(name, column.name, depth + 1) if kind == "model" else None
            if kind == "model" and upstream is None:
                lineage = self.lineage(name)
                if lineage is not None and (lineage.complete or lineage.column(column.name) is not None):
                    return None   # a column it lacks, or one it computes in ways not followed: unknown
                upstream = f"{column.db}.{column.name}"   # an upstream model that cannot be read
            value = upstream or _digest(f"{target}.{column.name}")
            leaves.add(value)
            replacement = exp.column(value, quoted=True)
            if column is keyed:
                return value             # a pass-through computes what it reads
            column.replace(replacement)
        return _digest(repr(keyed))

    def keys_of(self, model: str) -> dict[str, str]:
        """Every output column's key, by lower-case name."""
        lineage = self.lineage(model)
        keys: dict[str, str] = {}
        for origin in lineage.columns if lineage is not None else ():
            key = self.key(model, origin.name)
            if key is not None:
                keys[origin.name.lower()] = key
        return keys

    def changed_upstream(self, model: str, column: str, other: "ProjectLineage") -> list[tuple[str, str]]:
        """The upstream columns (model, column) this column reads whose keys differ in `other`."""
        lineage = self.lineage(model)
        origin = lineage.column(column) if lineage is not None else None
        found: list[tuple[str, str]] = []
        for relation, name in origin.reads if origin is not None else ():
            kind, _, upstream = relation.partition(":")
            if kind == "model" and other.key(upstream, name) != self.key(upstream, name):
                found.append((upstream, name))
        return found


def _unparenthesised(tree: exp.Expression) -> exp.Expression:
    while isinstance(tree, exp.Paren):
        tree = tree.this
    for paren in list(tree.find_all(exp.Paren)):
        if paren is not tree:
            paren.replace(paren.this)
    return tree


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


@functools.lru_cache(maxsize=2048)
def _read_cached_inner(text: str, sql: str, dialect: str, upstream: tuple) -> ModelLineage:
    relations = dict(upstream[0])
    columns = dict(upstream[1])
    return read_model(text, sql, dialect,
                      relation_of=lambda table, jinja: relations.get(_table_key(table, jinja)),
                      columns_of=lambda relation: columns.get(relation))


def _table_key(table: exp.Table, jinja: Mapping[str, str]) -> str:
    name = table.name.lower()
    if not table.args.get("db") and name in jinja:
        return "jinja:" + jinja[name]
    return ".".join(p.name.lower() for p in table.parts)


@functools.lru_cache(maxsize=4096)
def _tables(text: str, sql: str, dialect: str) -> tuple[tuple[str, exp.Table, tuple[tuple[str, str], ...]], ...]:
    """The relations a model's SQL names (parsed once per content): key, table, the Jinja it holds."""
    tree = sqlglot.parse_one(sql, read=dialect)
    jinja = jinja_placeholders(text, sql, dialect) if text != sql else {}
    items = tuple(sorted(jinja.items()))
    return tuple((_table_key(t, jinja), t, items) for t in _physical_tables(tree))


def _read_cached(text: str, sql: str, dialect: str, project: ProjectLineage) -> ModelLineage:
    """Cached by the model's text and what its upstream relations look like: between two revisions
    most models and their inputs are the same."""
    relations: dict[str, str | None] = {}
    for key, table, jinja in _tables(text, sql, dialect):
        relations[key] = project.relation_of(table, dict(jinja), compiled=text == sql)
    columns = {r: project.columns_of(r) for r in set(relations.values()) if r is not None}
    upstream = (tuple(sorted((k, v) for k, v in relations.items() if v is not None)),
                tuple(sorted(columns.items())))
    return _read_cached_inner(text, sql, dialect, upstream)
