"""Semantic fields → edits of a dbt project (pure: texts in, texts out).

Each field is planned on top of the edits of the fields before it, and either all of its
edits (model SQL and YAML) go in or none do: a field that fails leaves the project as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Iterable, Literal

from sqlglot import exp

from bot.dbt import model_sql, schema_yaml
from bot.dbt.project import DbtProject, FileStore, MemoryStore, Model
from bot.errors import LayersyncError, TranslationError
from bot.semantic.model import Field, View
from bot.semantic.refs import Resolver

Action = Literal["added", "replaced", "documented", "unchanged"]
# Reasons that mean "nothing to do here" rather than "could not do it".
NOT_APPLICABLE = {"aggregate", "removed", "nothing-to-push"}


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

    @property
    def models(self) -> list[str]:
        return sorted({p.model for p in self.pushed if p.action != "unchanged"})


def skip_for(request: FieldRequest, reason: str, code: str = "error") -> Skipped:
    loc = request.field.location
    return Skipped(request.field.id, loc.file, loc.line, reason, code)


def _is_plain_column(expression: exp.Expression) -> str | None:
    if isinstance(expression, exp.Column) and not expression.table:
        return expression.name
    return None


class PushPlanner:
    """Plans the dbt edits for semantic fields, against a dbt project read through a FileStore."""

    def __init__(self, store: FileStore, *, dialect: str = "duckdb", dbt_dialect: str = "duckdb",
                 base_store: FileStore | None = None):
        self.base_store = base_store or store
        self.overlay = MemoryStore({}, base=store)
        self.project = DbtProject(self.overlay)
        self.dialect = dialect
        self.dbt_dialect = dbt_dialect

    def plan(self, requests: Iterable[FieldRequest]) -> PushPlan:
        plan = PushPlan()
        for request in requests:
            try:
                outcome = self._plan_field(request)
            except LayersyncError as exc:
                plan.skipped.append(Skipped(request.field.id, exc.file or request.field.location.file,
                                            exc.line or request.field.location.line, exc.message))
                continue
            if isinstance(outcome, Skipped):
                plan.skipped.append(outcome)
                continue
            pushed, edits = outcome
            self.overlay.files.update(edits)
            plan.pushed.append(pushed)
        plan.files = {path: text for path, text in self.overlay.files.items()
                      if text != self.base_store.read_text(path)}
        return plan

    def _plan_field(self, request: FieldRequest) -> Skipped | tuple[PushedField, dict[str, str]]:
        view, field = request.view, request.field
        if field.kind == "measure":
            return skip_for(request, f"not pushed (aggregate): measure `{field.name}` aggregates rows "
                                     f"({field.aggregate_type or 'aggregate'}); a dbt column holds one value per row",
                            "aggregate")
        model = self.project.find_model(view.table_name)
        if model is None:
            return Skipped(field.id, view.file, view.line,
                           f"view `{view.name}` reads table `{view.table_name}`, which is not a model of the dbt project",
                           "unknown-model")
        expression = Resolver(view, self.dialect).resolve(field)
        plain = _is_plain_column(expression)
        try:
            if plain is not None:
                return self._document_plain(request, model, plain)
            return self._add_column(request, model, expression)
        except model_sql.ModelSqlError as exc:
            # Name the dbt file too: the problem may sit in the model, not in the analyst's SQL.
            where = f"{model.path}:{exc.line}" if exc.line else model.path
            raise TranslationError(f"{where}: {exc.message}", field.location.file, field.location.line) from None

    def _document_plain(self, request: FieldRequest, model: Model, column: str):
        field = request.field
        if column.lower() != field.name.lower():
            return skip_for(request, f"`{field.name}` only renames column `{column}` of `{model.name}`; "
                                     f"there is no logic to push", "nothing-to-push")
        shape = model_sql.analyse(self._read(model.path), self.dbt_dialect)
        if not shape.has_star and column.lower() not in {c.lower() for c in shape.output_columns}:
            raise TranslationError(f"unknown column `{column}`: model `{model.name}` has "
                                   f"{', '.join(shape.output_columns)}", field.location.file, field.location.line)
        if not (field.description or field.label or field.primary_key):
            return skip_for(request, f"`{field.name}` is column `{column}` of `{model.name}` as it is; nothing to push",
                            "nothing-to-push")
        yaml_path, yaml_text, yaml_new = self._yaml_edit(model, column, field)
        edits = {yaml_path: yaml_new} if yaml_new != yaml_text else {}
        action: Action = "documented" if edits else "unchanged"
        return PushedField(field.id, field.location.file, field.location.line, model.name, column, action,
                           field.sql, None, None, tuple(edits)), edits

    def _add_column(self, request: FieldRequest, model: Model, expression: exp.Expression):
        field = request.field
        text = self._read(model.path)
        before = model_sql.column_sql(text, field.name, self.dbt_dialect)
        new_text = model_sql.upsert_column(text, field.name, expression, self.dbt_dialect)
        if before is not None and new_text != text and not self._may_replace(request, model, text, expression):
            raise TranslationError(
                f"model `{model.name}` already has a column `{field.name}` (`{before}`) that layersync did not "
                f"write; rename the field or change the column in dbt", field.location.file, field.location.line)
        yaml_path, yaml_text, yaml_new = self._yaml_edit(model, field.name, field)
        edits = {}
        if new_text != text:
            edits[model.path] = new_text
        if yaml_new != yaml_text:
            edits[yaml_path] = yaml_new
        if not edits:
            action: Action = "unchanged"
        elif before is None:
            action = "added"
        elif new_text != text:
            action = "replaced"
        else:
            action = "documented"
        after = model_sql.column_sql(new_text, field.name, self.dbt_dialect)
        return PushedField(field.id, field.location.file, field.location.line, model.name, field.name, action,
                           field.sql, after, before if action == "replaced" else None, tuple(edits)), edits

    def _may_replace(self, request: FieldRequest, model: Model, text: str, expression: exp.Expression) -> bool:
        """Replace a column only when it is ours: added on the bot's branch, or the old field's translation."""
        base_text = self.base_store.read_text(model.path)
        if base_text is None or model_sql.column_sql(base_text, request.field.name, self.dbt_dialect) is None:
            return True
        previous = request.previous
        if previous is None or previous.kind != "dimension":
            return False
        try:
            old_expression = Resolver(request.view, self.dialect).resolve(previous)
        except LayersyncError:
            return False
        return model_sql.upsert_column(text, request.field.name, old_expression, self.dbt_dialect) == text

    def _yaml_edit(self, model: Model, column: str, field: Field) -> tuple[str, str | None, str]:
        path, _declared = self.project.properties_file(model)
        current = self._read_optional(path)
        tests = ("unique", "not_null") if field.primary_key else ()
        try:
            updated = schema_yaml.upsert_column(current, model.name, column,
                                                description=field.description or field.label, tests=tests)
        except schema_yaml.SchemaYamlError as exc:
            raise TranslationError(f"cannot edit {path}: {exc.message}", path, exc.line) from None
        return path, current, updated

    def _read(self, path: str) -> str:
        text = self.overlay.read_text(path)
        if text is None:
            raise TranslationError(f"cannot read `{path}`", path)
        return text

    def _read_optional(self, path: str) -> str | None:
        return self.overlay.read_text(path)

