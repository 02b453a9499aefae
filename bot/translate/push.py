"""Semantic fields → edits of a dbt project (pure: texts in, texts out).

Each field is planned on top of the edits of the fields before it, and either all of its
edits (model SQL and YAML) go in or none do: a field that fails leaves the project as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable, Iterable, Literal

from sqlglot import exp

from bot.dbt import model_sql, schema_yaml
from bot.dbt.project import DbtProject, FileStore, MemoryStore, Model, Source
from bot.errors import LayersyncError, TranslationError
from bot.semantic.model import Field, SemanticModel, View
from bot.semantic.refs import JOIN_PREFIX, Ref, Resolver, scan
from bot.translate import joins

Action = Literal["added", "replaced", "documented", "unchanged"]
# Reasons that mean "nothing to do here" rather than "could not do it".
NOT_APPLICABLE = {"aggregate", "removed", "nothing-to-push"}
# PostgreSQL cuts identifiers at 63 bytes (NAMEDATALEN - 1): a longer column would silently be another name.
MAX_COLUMN_BYTES = 63


@dataclass(frozen=True)
class FieldRequest:
    view: View
    field: Field
    previous: Field | None = None   # the field before the change, when it existed


@dataclass(frozen=True)
class PushedField:
    id: str
    file: str
    line: int
    model: str
    column: str
    action: Action
    semantic_sql: str | None
    dbt_sql: str | None
    previous_dbt_sql: str | None
    files: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    id: str
    file: str | None
    line: int | None
    reason: str
    code: str = "error"

    @property
    def is_failure(self) -> bool:
        return self.code not in NOT_APPLICABLE


@dataclass
class PushPlan:
    files: dict[str, str] = dc_field(default_factory=dict)
    pushed: list[PushedField] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    # field id -> the column edit written for it (what it computes over its model's columns), for checks
    # that read the model as dbt compiles it (bot.translate.compiled)
    edits: dict[str, model_sql.ColumnEdit] = dc_field(default_factory=dict, compare=False, repr=False)

    @property
    def models(self) -> list[str]:
        return sorted({p.model for p in self.pushed if p.action != "unchanged"})


@dataclass
class _Draft:
    """A field's planned edit, before its YAML file is written (all of a file's fields at once)."""

    request: FieldRequest
    model: Model
    column: str
    doc: schema_yaml.ColumnDoc
    yaml_path: str
    sql_changed: bool = False
    dbt_sql: str | None = None
    previous_dbt_sql: str | None = None
    yaml_changed: bool = False
    sql_edit: model_sql.ColumnEdit | None = None   # the column it writes, spliced with its model's others

    def pushed(self) -> PushedField:
        field = self.request.field
        if self.sql_changed:
            action: Action = "added" if self.previous_dbt_sql is None else "replaced"
        else:
            action = "documented" if self.yaml_changed else "unchanged"
        files = tuple(p for p, changed in ((self.model.path, self.sql_changed), (self.yaml_path, self.yaml_changed))
                      if changed)
        return PushedField(field.id, field.location.file, field.location.line, self.model.name, self.column, action,
                           field.sql, self.dbt_sql, self.previous_dbt_sql if action == "replaced" else None, files)


def skip_for(request: FieldRequest, reason: str, code: str = "error") -> Skipped:
    loc = request.field.location
    return Skipped(request.field.id, loc.file, loc.line, reason, code)


def name_problem(name: str) -> str | None:
    """Why a field name cannot be a dbt column name, if it cannot.

    The name is written into the model SQL, its YAML and the branch name, so it must be a plain
    identifier: no quote, space, comment opener or Jinja brace can then come along with it.
    """
    if not name.isidentifier():
        return (f"`{name[:80]}` is not a plain identifier (letters, digits and `_`, not starting with a digit); "
                f"a dbt column needs one")
    size = len(name.encode())
    if size > MAX_COLUMN_BYTES:
        return (f"`{name[:40]}…` is {size} bytes long; warehouses cut column names at {MAX_COLUMN_BYTES} bytes "
                f"(PostgreSQL), so the column would get another name")
    return None


def fields_read(view: View, field: Field) -> list[Field]:
    """The field and every field of its view its `${}` references reach, each once, itself first:
    all of their SQL ends up in the column."""
    found: dict[str, Field] = {}
    pending = [field]
    while pending:
        current = pending.pop(0)
        if current.name in found:
            continue
        found[current.name] = current
        try:
            parts = scan(current.sql or "")
        except ValueError:
            continue  # the resolver reports the malformed reference with its place
        for part in parts:
            if isinstance(part, Ref) and not part.is_table and part.view in (None, view.name):
                target = view.field_named(part.field)
                if target is not None:
                    pending.append(target)
    return list(found.values())


def unsafe_text(view: View, field: Field) -> str | None:
    """Why the field's text could make dbt run something, if it could.

    dbt renders models and their YAML (descriptions included, with `env_var` and `run_query` at
    hand) as Jinja templates, so a delimiter anywhere, even in a string literal or a comment,
    would run as code when the check compiles the model. Semantic-layer text is data: it is
    refused, not escaped, because no escaping survives every later edit of the file.
    """
    why = "dbt would run it as a template; semantic-layer SQL is data, so it is not pushed"
    for key in ("description", "label"):
        delimiter = model_sql.jinja_delimiter(getattr(field, key) or "")
        if delimiter:
            return (f"the {key} of `{field.name}` contains Jinja `{delimiter}`: dbt renders descriptions as "
                    f"templates; semantic-layer text is data, so it is not pushed")
    for source in fields_read(view, field):
        delimiter = model_sql.jinja_delimiter(source.sql or "")
        if delimiter is None:
            continue
        if source is field:
            return f"the SQL of `{field.name}` contains Jinja `{delimiter}`: {why}"
        return (f"`{field.name}` reads `${{{source.name}}}`, whose SQL ({source.location}) contains Jinja "
                f"`{delimiter}`: {why}")
    return None


def unsafe_expression(expression: exp.Expression, dialect: str) -> str | None:
    """Why the resolved expression cannot be written as one select item, if it cannot: the text
    written is sqlglot's, so escapes it decodes (`U&'\\007B'`) are judged as written."""
    if any(isinstance(node, exp.Block) for node in expression.walk()):
        return "the SQL is more than one SQL expression (statements separated by `;`); a column is one expression"
    delimiter = model_sql.jinja_delimiter(expression.sql(dialect=dialect))
    if delimiter:
        return (f"the SQL, as it would be written to the model, contains Jinja `{delimiter}`: dbt would run it "
                f"as a template; semantic-layer SQL is data, so it is not pushed")
    return None


def _model_error(request: FieldRequest, model: Model, exc: model_sql.ModelSqlError) -> TranslationError:
    """Name the dbt file too: the problem may sit in the model, not in the analyst's SQL."""
    where = f"{model.path}:{exc.line}" if exc.line else model.path
    loc = request.field.location
    return TranslationError(f"{where}: {exc.message}", loc.file, loc.line)


def _is_plain_column(expression: exp.Expression) -> str | None:
    if isinstance(expression, exp.Column) and not expression.table:
        return expression.name
    return None


def layout_source(field: Field) -> str | None:
    """The field's SQL as the analyst laid it out, each `${}` written as the name it refers to: the
    lines the new column is written on (bot.dbt.sql_layout). None for one line: nothing to keep."""
    text = (field.sql or "").strip()
    if "\n" not in text:
        return None
    try:
        parts = scan(text)
    except ValueError:
        return None
    names = []
    for part in parts:
        if isinstance(part, Ref):
            names.append(part.field if part.field.isidentifier() and not part.is_table else "__layersync_ref__")
        else:
            names.append(part)
    return "".join(names)


def _joined_views(expression: exp.Expression) -> list[str]:
    """The views a resolved expression reads through joins, in order, each once."""
    found: dict[str, None] = {}
    for column in expression.find_all(exp.Column):
        if column.table.startswith(JOIN_PREFIX):
            found.setdefault(column.table[len(JOIN_PREFIX):], None)
    return list(found)


def _once(load: Callable[[], SemanticModel]) -> Callable[[], SemanticModel]:
    """The semantic model read at most once per planner, however many fields need joins."""
    held: list[SemanticModel] = []

    def read() -> SemanticModel:
        if not held:
            held.append(load())
        return held[0]

    return read


class PushPlanner:
    """Plans the dbt edits for semantic fields, against a dbt project read through a FileStore."""

    def __init__(self, store: FileStore, *, dialect: str = "duckdb", dbt_dialect: str = "duckdb",
                 base_store: FileStore | None = None, semantic: Callable[[], SemanticModel] | None = None):
        """`semantic`: reads the whole semantic model (its views and relationships), called only when a
        field reads another view; without it such a field is refused as needing a join."""
        self.base_store = base_store or store
        self.semantic = _once(semantic) if semantic is not None else None
        self.overlay = MemoryStore({}, base=store)
        self.project = DbtProject(self.overlay)
        self.dialect = dialect
        self.dbt_dialect = dbt_dialect
        self._resolvers: dict[int, tuple[View, Resolver]] = {}
        self._editors: dict[str, model_sql.ModelEditor] = {}
        self._base_editors: dict[str, model_sql.ModelEditor | None] = {}

    def _resolver(self, view: View) -> Resolver:
        """One per view, so a field's references are parsed once per plan, not once per field reaching them."""
        held = self._resolvers.get(id(view))
        if held is None or held[0] is not view:
            finder = joins.finder(self.semantic, view) if self.semantic is not None else None
            held = self._resolvers[id(view)] = (view, Resolver(view, self.dialect, finder))
        return held[1]

    def plan(self, requests: Iterable[FieldRequest]) -> PushPlan:
        """SQL edits field by field, each model spliced once for all its fields, then each YAML
        file edited once for all its fields.

        One parse per model and one edit per YAML file, not per field, keeps a batch's cost at
        what it touches. A field whose column does not survive its model's splice is skipped
        with its reason, the others still go in. A field that fails after some of its edits
        are written — a YAML file that cannot be edited, or a joined column refused at the splice,
        whose join is in the model by then — fails, and the plan is made again without it, so
        none of its edits stay behind (its join only when another field reads through it).
        """
        requests = list(requests)
        failed: dict[str, Skipped] = {}
        while True:
            self.overlay.files.clear()
            self._editors.clear()
            drafts, skipped = self._draft_all([r for r in requests if r.field.id not in failed])
            drafts, joined_failures = self._write_models(drafts, skipped)
            if joined_failures:
                failed.update(joined_failures)
                continue
            yaml_failures = self._apply_yaml(drafts)
            if not yaml_failures:
                break
            failed.update(yaml_failures)
        plan = PushPlan(skipped=skipped + list(failed.values()))
        plan.pushed = [draft.pushed() for draft in drafts]
        plan.edits = {draft.request.field.id: draft.sql_edit for draft in drafts
                      if draft.sql_edit is not None and draft.sql_changed}
        plan.files = {path: text for path, text in self.overlay.files.items()
                      if text != self.base_store.read_text(path)}
        return plan

    def _draft_all(self, requests: list[FieldRequest]) -> tuple[list["_Draft"], list[Skipped]]:
        drafts: list[_Draft] = []
        skipped: list[Skipped] = []
        for request in requests:
            try:
                outcome = self._draft(request)
            except LayersyncError as exc:
                skipped.append(Skipped(request.field.id, exc.file or request.field.location.file,
                                       exc.line or request.field.location.line, exc.message,
                                       getattr(exc, "code", "error")))
                continue
            if isinstance(outcome, Skipped):
                skipped.append(outcome)
            else:
                drafts.append(outcome)
        return drafts, skipped

    def _draft(self, request: FieldRequest) -> "Skipped | _Draft":
        view, field = request.view, request.field
        if field.kind == "measure":
            return skip_for(request, f"not pushed (aggregate): measure `{field.name}` aggregates rows "
                                     f"({field.aggregate_type or 'aggregate'}); a dbt column holds one value per row",
                            "aggregate")
        problem = name_problem(field.name)
        if problem:
            return skip_for(request, problem, "invalid-name")
        problem = unsafe_text(view, field)
        if problem:
            return skip_for(request, problem, "unsafe-sql")
        model = self.project.find_model(view.model_name)
        if model is None:
            return Skipped(field.id, view.file, view.line,
                           f"view `{view.name}` reads table `{view.model_name}`, which is not a model of the dbt project",
                           "unknown-model")
        resolver = self._resolver(view)
        expression = resolver.resolve(field)
        problem = unsafe_expression(expression, self.dbt_dialect)
        if problem:
            return skip_for(request, problem, "unsafe-sql")
        plain = _is_plain_column(expression)
        try:
            if _joined_views(expression):
                return self._add_joined_column(request, model, expression, resolver)
            if plain is not None:
                return self._document_plain(request, model, plain)
            return self._add_column(request, model, expression)
        except model_sql.ModelSqlError as exc:
            raise _model_error(request, model, exc) from None

    def _document_plain(self, request: FieldRequest, model: Model, column: str) -> "Skipped | _Draft":
        field = request.field
        if column.lower() != field.name.lower():
            return skip_for(request, f"`{field.name}` only renames column `{column}` of `{model.name}`; "
                                     f"there is no logic to push", "nothing-to-push")
        shape = self._editor(model).shape()
        if not shape.has_star and column.lower() not in {c.lower() for c in shape.output_columns}:
            raise TranslationError(f"unknown column `{column}`: model `{model.name}` has "
                                   f"{', '.join(shape.output_columns)}", field.location.file, field.location.line)
        if not (field.description or field.label or field.primary_key):
            return skip_for(request, f"`{field.name}` is column `{column}` of `{model.name}` as it is; nothing to push",
                            "nothing-to-push")
        return _Draft(request, model, column, self._column_doc(model, column, field), self._yaml_path(model))

    def _editor(self, model: Model) -> model_sql.ModelEditor:
        """The model parsed once per plan; its fields' columns are planned on it in turn."""
        editor = self._editors.get(model.path)
        if editor is None:
            editor = self._editors[model.path] = model_sql.ModelEditor(self._read(model.path), self.dbt_dialect)
        return editor

    def _add_column(self, request: FieldRequest, model: Model, expression: exp.Expression,
                    foreign: frozenset[str] = frozenset()) -> "_Draft":
        field = request.field
        editor = self._editor(model)
        edit = editor.plan(field.name, expression, foreign, layout=layout_source(field))
        if edit.before is not None and edit.changed and not self._may_replace(request, model, editor):
            raise TranslationError(
                f"model `{model.name}` already has a column `{field.name}` (`{edit.before}`) that layersync did not "
                f"write; rename the field or change the column in dbt", field.location.file, field.location.line)
        editor.accept(edit)
        return _Draft(request, model, field.name, self._column_doc(model, field.name, field), self._yaml_path(model),
                      sql_changed=edit.changed, dbt_sql=edit.after, previous_dbt_sql=edit.before, sql_edit=edit)

    def _add_joined_column(self, request: FieldRequest, model: Model, expression: exp.Expression,
                           resolver: Resolver) -> "_Draft":
        """A column reading joined views: each join written once into the model's final select (a later
        field reading the same view reuses it), then the column over it; a column that cannot be
        written takes its joins back out."""
        editor = self._editor(model)
        checkpoint = editor.checkpoint()
        aliases: dict[str, str] = {}
        try:
            for name in _joined_views(expression):
                aliases[name] = self._join(request, model, resolver, resolver.joined[name], editor)
            for column in expression.find_all(exp.Column):
                if column.table.startswith(JOIN_PREFIX):
                    column.set("table", exp.to_identifier(aliases[column.table[len(JOIN_PREFIX):]]))
            return self._add_column(request, model, expression, frozenset(aliases.values()))
        except (LayersyncError, model_sql.ModelSqlError):
            editor.rollback(checkpoint)
            raise

    def _join(self, request: FieldRequest, model: Model, resolver: Resolver, join: joins.Join,
              editor: model_sql.ModelEditor) -> str:
        """The alias of the joined view's relation in `model`, the join written when it is new."""
        field, other = request.field, join.view
        where = (field.location.file, field.location.line)
        target = self.project.find_model(other.model_name)
        seed = None if target is not None else self.project.find_seed(other.model_name)
        source = None if target is not None or seed is not None else self._source(request, other)
        if target is None and seed is None and source is None:
            raise joins.JoinRefused(
                f"`{field.name}` reads view `{other.name}`, whose table `{other.model_name}` is no model, seed or "
                f"source of the dbt project: `{model.name}` cannot ref it", "unknown-model", *where)
        if source is not None:
            on = joins.condition(join, resolver, self.dialect)
            return editor.join(source.table, on, joins.marker(join), list(source.columns or ()) or None,
                               source=source.source)
        ref_name = target.name if target is not None else seed.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if target is not None:
            chain = [model.name.lower()] if target.path == model.path else \
                self.project.dependency_path(target.name, model.name)
            if chain is not None:
                cycle = " -> ".join([model.name.lower(), *chain] if target.path != model.path else chain * 2)
                raise joins.JoinRefused(
                    f"joining `{other.name}` would make a cycle in the dbt DAG: {cycle} (`{model.name}` would ref "
                    f"`{target.name}`, which already depends on it)", "join-cycle", *where)
        marker = joins.marker(join)
        on = joins.condition(join, resolver, self.dialect)
        return editor.join(ref_name, on, marker, self._columns_of(target, seed))

    def _source(self, request: FieldRequest, other: View) -> Source | None:
        """The dbt source table the other view reads, if one does: by name, and by the view's schema when
        several sources declare that name (a source depends on no model, so no join to it is a cycle)."""
        found = self.project.find_source(other.table_name)
        if len(found) > 1 and other.dbt_schema:
            found = [s for s in found if other.dbt_schema.lower() in (s.schema.lower(), s.source.lower())] or found
        if len(found) > 1:
            loc = request.field.location
            names = ", ".join(f"source('{s.source}', '{s.table}') ({s.path})" for s in found)
            raise joins.JoinRefused(f"`{request.field.name}` reads view `{other.name}`, whose table "
                                    f"`{other.table_name}` is declared by several dbt sources: {names}; give the "
                                    f"view its `schema`", "ambiguous-source", loc.file, loc.line)
        return found[0] if found else None

    def _columns_of(self, target: Model | None, seed: str | None) -> list[str] | None:
        """The joined relation's columns, when they can be known without running dbt."""
        if target is not None:
            try:
                shape = model_sql.analyse(self._read(target.path), self.dbt_dialect)
            except model_sql.ModelSqlError:
                return None
            return None if shape.has_star else shape.output_columns
        header = (self._read(seed or "").splitlines() or [""])[0]
        return [c.strip().strip('"') for c in header.split(",") if c.strip()]

    def _write_models(self, drafts: list["_Draft"], skipped: list[Skipped]
                      ) -> tuple[list["_Draft"], dict[str, Skipped]]:
        """Splice each model's accepted columns; a field whose column failed there is skipped. Returned
        apart: the failed fields whose column read a join, which the model holds already."""
        for path, editor in self._editors.items():
            text = editor.finish()
            if text != self._read(path):
                self.overlay.files[path] = text
        kept: list[_Draft] = []
        joined: dict[str, Skipped] = {}
        for draft in drafts:
            if draft.sql_edit is not None:   # planned again under a join that came after it
                draft.sql_edit = self._editors[draft.model.path].current(draft.sql_edit)
                draft.dbt_sql = draft.sql_edit.after
            error = self._editors[draft.model.path].failure(draft.sql_edit) if draft.sql_edit else None
            if error is None:
                kept.append(draft)
                continue
            exc = _model_error(draft.request, draft.model, error)
            skip = Skipped(draft.request.field.id, exc.file, exc.line, exc.message)
            if draft.sql_edit is not None and draft.sql_edit.foreign:
                joined[skip.id] = skip
            else:
                skipped.append(skip)
        return kept, joined

    def _column_doc(self, model: Model, column: str, field: Field) -> schema_yaml.ColumnDoc:
        tests = ("unique", "not_null") if field.primary_key else ()
        return schema_yaml.ColumnDoc(model.name, column, description=field.description or field.label, tests=tests)

    def _yaml_path(self, model: Model) -> str:
        return self.project.properties_file(model)[0]

    def _apply_yaml(self, drafts: list["_Draft"]) -> dict[str, Skipped]:
        """Edit each YAML file once; returns the fields whose file could not be edited."""
        by_path: dict[str, list[_Draft]] = {}
        for draft in drafts:
            by_path.setdefault(draft.yaml_path, []).append(draft)
        failures: dict[str, Skipped] = {}
        for path, group in by_path.items():
            current = self.overlay.read_text(path)
            try:
                updated, changed = schema_yaml.upsert_columns_changes(current, [d.doc for d in group])
            except schema_yaml.SchemaYamlError as exc:
                where = f"{path}:{exc.line}" if exc.line else path
                for d in group:
                    loc = d.request.field.location
                    failures[d.request.field.id] = Skipped(d.request.field.id, loc.file, loc.line,
                                                           f"cannot edit {where}: {exc.message}")
                continue
            if updated == current:
                continue
            self.overlay.files[path] = updated
            for d in group:
                d.yaml_changed = (d.model.name, d.column.lower()) in changed
        return failures

    def _may_replace(self, request: FieldRequest, model: Model, editor: model_sql.ModelEditor) -> bool:
        """Replace a column only when it is ours: added on the bot's branch, or the old field's translation."""
        base = self._base_editor(model)
        if base is None or base.column_sql(request.field.name) is None:
            return True
        previous = request.previous
        if previous is None or previous.kind != "dimension":
            return False
        try:
            old_expression = Resolver(request.view, self.dialect).resolve(previous)
            return not editor.plan(request.field.name, old_expression).changed
        except (LayersyncError, model_sql.ModelSqlError):
            return False  # an old translation that cannot be written was never layersync's column

    def _base_editor(self, model: Model) -> model_sql.ModelEditor | None:
        """The model as the base revision has it, parsed once per planner (it does not change)."""
        if model.path not in self._base_editors:
            base_text = self.base_store.read_text(model.path)
            self._base_editors[model.path] = (None if base_text is None
                                              else model_sql.ModelEditor(base_text, self.dbt_dialect))
        return self._base_editors[model.path]

    def _read(self, path: str) -> str:
        text = self.overlay.read_text(path)
        if text is None:
            raise TranslationError(f"cannot read `{path}`", path)
        return text

