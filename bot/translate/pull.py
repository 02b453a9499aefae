"""dbt changes → edits of the semantic layer's view files, each explained (pure: texts in, texts out).

What follows dbt and what does not (the view's format decides how it is written):
- a new column of a model a view reads becomes a dimension (description, type, primary key and
  allowed values from dbt), unless a field already reads it or its meta says `layersync: {ignore: true}`;
  in Omni's files no `type:` (Omni takes types from the warehouse; the PR still says it) and the
  column written as the file writes bare columns (`name: {}`), never `${TABLE}`;
- a description follows dbt only into fields that have none or whose description was dbt's before:
  in the `views` layout, dbt's previous text; in Omni's files, one marked with Omni's
  `#This description was pulled from dbt.` line, which the pull writes with every description it
  copies. An analyst's own words are kept (and the PR says so);
- a rename (read from the SQL by bot.dbt.changes) rewrites every reference to the column (`${TABLE}.old`;
  Omni's bare `old` / `"OLD"`), and a field named after the column follows it, keeping the old name
  under `aliases:`; `${view.old}` in other views, topics (`fields`, filters, `always_where_sql`) and
  relationships' `on_sql` follows;
- a removed column or model deletes nothing: every field that breaks, directly or through `${}`
  chains, is marked with a YAML comment and listed for the dbt commit's author to answer, with the
  topics and joins that name it;
- `unique` + `not_null` → `primary_key`, `accepted_values` → `allowed_values` (Omni's `all_values`);
- a retyped column or a changed expression is reported with the fields it alters, not edited;
- Omni's `dbt:` block is read (`dbt.name` is the view's model), never edited.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field, replace

from bot.dbt.changes import ColumnChange, ColumnInfo, ModelChange, ProjectChanges, ProjectSnapshot
from bot.dbt.catalog import Catalog, sql_type
from bot.dbt.project import normalise_table_name
from bot.errors import SemanticError
from bot.semantic import editor
from bot.semantic.dependents import DependencyIndex, Mention, model_mentions
from bot.semantic.model import Field, View
from bot.semantic.formats import TOPIC_SUFFIXES, SemanticFormat, detect_format, format_for
from bot.semantic.refs import plain_column

TYPE_MAP = (("bool", "yesno"), ("timestamp", "timestamp"), ("datetime", "timestamp"), ("date", "date"),
            ("int", "number"), ("numeric", "number"), ("decimal", "number"), ("double", "number"),
            ("float", "number"), ("real", "number"), ("bigint", "number"), ("hugeint", "number"),
            ("char", "string"), ("text", "string"), ("string", "string"), ("uuid", "string"))


def semantic_type(data_type: str | None) -> str | None:
    """dbt/warehouse type → the view format's field type (None when unknown: the BI tool infers it)."""
    lowered = (data_type or "").lower()
    for needle, kind in TYPE_MAP:
        if needle in lowered:
            return kind
    return None


@dataclass(frozen=True)
class Note:
    """One line of the PR body: what changed in the semantic layer, and which dbt change caused it."""
    kind: str            # added | description | description_kept | renamed | broken | primary_key |
                         # allowed_values | altered | skipped | problem
    text: str
    dbt_file: str | None = None
    dbt_line: int | None = None
    file: str | None = None       # semantic file
    line: int | None = None
    field: str | None = None      # semantic field id
    via: tuple[str, ...] = ()


@dataclass
class PullPlan:
    files: dict[str, str] = dc_field(default_factory=dict)     # semantic file (view, topic, …) → new text
    notes: list[Note] = dc_field(default_factory=list)

    @property
    def broken(self) -> list[Note]:
        return [n for n in self.notes if n.kind == "broken"]

    @property
    def problems(self) -> list[Note]:
        return [n for n in self.notes if n.kind == "problem"]


class _Files:
    """The model's texts as edited so far; every edit re-reads the file, so later edits see earlier ones."""

    def __init__(self, texts: dict[str, str]):
        self.original = dict(texts)
        self.texts = dict(texts)

    def apply(self, path: str, edit, *args, **kwargs) -> bool:
        before = self.texts[path]
        self.texts[path] = edit(before, path, *args, **kwargs)
        return self.texts[path] != before

    def changed(self) -> dict[str, str]:
        return {p: t for p, t in self.texts.items() if t != self.original[p]}


def _read_views(texts: dict[str, str], notes: list[Note], reader: SemanticFormat) -> list[View]:
    views = []
    for path in sorted(texts):
        if not reader.is_view_file(path):
            continue                                 # the model's topics, relationships and settings
        try:
            views.append(reader.read(texts[path], path))
        except SemanticError as exc:
            notes.append(Note("problem", f"cannot read `{path}`: {exc.message}",
                              file=path, line=getattr(exc, "line", None)))
    return views


def _where(change: ColumnChange | ModelChange) -> tuple[str | None, int | None]:
    return change.file, change.line


def _meta_of(info: ColumnInfo | None) -> dict:
    meta = dict((info.meta if info else None) or {})
    nested = meta.get("layersync") if isinstance(meta.get("layersync"), dict) else {}
    return {**meta, **nested}


class PullPlanner:
    def __init__(self, view_texts: dict[str, str], *, dbt_commit: str, dialect: str = "duckdb",
                 catalog: Catalog | None = None, fmt: SemanticFormat | None = None):
        """`view_texts`: the model's files by path (views, and Omni's topics and relationships, which
        follow renames). `catalog`: column types as the warehouse has them (see bot.dbt.catalog),
        preferred to dbt's declared `data_type`. `fmt`: the semantic layer's format
        (bot.selection.format_at); None detects it from the paths, for a model at the repo's root."""
        self.fmt = fmt or format_for(detect_format(view_texts))
        self.files = _Files(view_texts)
        self.commit = dbt_commit
        self.dialect = dialect
        self.catalog = catalog or {}
        self.notes: list[Note] = []
        self.views = _read_views(view_texts, self.notes, self.fmt)
        self.index = DependencyIndex((), dialect)   # built in plan(), once dbt's aliases are known
        self.marked: set[str] = set()
        self.after: ProjectSnapshot | None = None
        self.omni = self.fmt.name == "omni"
        self.topic_files = sorted(p for p in view_texts if p.endswith(TOPIC_SUFFIXES) and self.fmt.is_model_file(p))
        self.relationship_files = sorted(p for p in view_texts if self.fmt.is_model_file(p)
                                         and p.rsplit("/", 1)[-1] in ("relationships.yaml", "relationships.yml"))
        self.mentions: dict[str, list[Mention]] = {}

    def _edit(self, path: str, edit, *args, **kwargs) -> bool:
        """An edit of a view file, made as the view's format writes it."""
        return self.files.apply(path, edit, *args, fmt=self.fmt, **kwargs)

    def plan(self, changes: ProjectChanges) -> PullPlan:
        self.after = changes.after
        relations = {**(changes.before.models_by_relation() if changes.before else {}),
                     **(changes.after.models_by_relation() if changes.after else {})}
        self.index = DependencyIndex(self.views, self.dialect, relations)
        self.mentions = model_mentions(self.files.original, self.index.views, self.fmt.root)
        read = {self.index.model_of(view) for view in self.views}
        for problem in changes.problems:
            if problem.model is not None and not problem.touched and problem.model.lower() not in read:
                continue      # a model the change left alone and no view reads: nothing to see here
            self.notes.append(Note("problem", f"dbt: {problem}", dbt_file=problem.file, dbt_line=problem.line))
        removed = {c.model.lower() for c in changes.model_changes if c.kind in ("model_removed", "model_renamed")}
        if changes.after is not None and changes.after.models:
            for view in self.views:
                table = self.index.model_of(view)
                if not changes.after.knows(table) and table not in removed:
                    self.notes.append(Note("problem", f"view `{view.name}` reads `{view.table_name}`, which is "
                                           "no model, seed, source or snapshot of the dbt project",
                                           file=view.file, line=view.line))
        for change in changes.changes:
            try:
                self._one(change)
            except SemanticError as exc:
                self.notes.append(Note("problem", f"could not apply “{self._short(change)}”: {exc}",
                                       *_where(change), file=getattr(exc, "file", None),
                                       line=getattr(exc, "line", None)))
        return PullPlan(files=self.files.changed(), notes=self._final_lines())

    def _final_lines(self) -> list[Note]:
        """Lines as they are in the edited files (marks and new keys move fields down); a note on
        another file (a topic naming the field) keeps its own line."""
        located: dict[str, tuple[str, int]] = {}
        for path, text in self.files.texts.items():
            if not self.fmt.is_view_file(path):
                continue
            try:
                view = self.fmt.read(text, path)
            except SemanticError:
                continue
            for item in view.fields.values():
                located[item.id] = (path, item.location.line)
                for alias in item.aliases:
                    located.setdefault(f"{view.name}.{alias}", (path, item.location.line))
        return [replace(n, line=located[n.field][1]) if n.field in located and located[n.field][0] == n.file
                else n for n in self.notes]

    # -------------------------------------------------------------- dispatch

    def _one(self, change: ColumnChange | ModelChange) -> None:
        if isinstance(change, ModelChange):
            if change.kind == "model_removed":
                self._broken(change.model, None, f"dbt model `{change.model}` was removed", change)
            elif change.kind == "model_renamed":
                self._model_renamed(change)
            return
        handler = getattr(self, f"_{change.kind}", None)
        if handler is not None:
            handler(change)

    def _short(self, change: ColumnChange | ModelChange) -> str:
        if isinstance(change, ModelChange):
            return f"{change.kind.replace('_', ' ')} {change.model}"
        return f"{change.kind.replace('_', ' ')} {change.model}.{change.column}"

    def _current(self, view: View) -> View:
        """The view as edited so far (field lines move when lines are added above them)."""
        return self.fmt.read(self.files.texts[view.file], view.file)

    def _plain_readers(self, view: View, column: str) -> list[Field]:
        return [f for f in view.fields.values() if f.kind == "dimension"
                and (plain_column(f, self.dialect) or "").lower() == column.lower()]

    # -------------------------------------------------------------- column changes

    def _added(self, change: ColumnChange) -> None:
        info = change.after
        meta = _meta_of(info)
        for view in self.index.views_reading(change.model):
            if meta.get("ignore") is True:
                self.notes.append(Note("skipped", f"`{change.model}.{change.column}` has `layersync: ignore` in "
                                       "its dbt meta: no dimension added", *_where(change), file=view.file))
                continue
            current = self._current(view)
            if current.field_named(change.column) is not None or self.index.direct_readers(change.model, change.column):
                continue                                   # the view already reads it
            tests = set(info.tests if info else ())
            values = list(info.accepted_values) if info and info.accepted_values else None
            label = meta.get("label") if isinstance(meta.get("label"), str) else None
            data_type, source = self._type_of(change)
            kind = semantic_type(data_type)
            self._edit(view.file, editor.add_dimension, change.column, label=label,
                       description=info.description if info else None, type=None if self.omni else kind,
                       primary_key={"unique", "not_null"} <= tests or meta.get("primary_key") is True,
                       allowed_values=values, dbt_description=True)
            added = self._current(view).field_named(change.column)
            if self.omni:      # Omni takes types from the warehouse: said here, never written
                typed = f" ({data_type} in {source}; Omni reads the type from the warehouse)" if data_type else ""
            else:
                typed = f" (type {kind}: {data_type} in {source})" if kind else ""
            self.notes.append(Note("added", f"dimension `{view.name}.{change.column}` for the new dbt column "
                                   f"`{change.model}.{change.column}`{typed}", *_where(change), file=view.file,
                                   line=added.location.line if added else None, field=f"{view.name}.{change.column}"))

    def _type_of(self, change: ColumnChange) -> tuple[str | None, str]:
        """The new column's type and where it was read: the warehouse, dbt's YAML, or the SQL's shape."""
        info = change.after
        found = (self.catalog.get(change.model.lower()) or {}).get(change.column.lower())
        if found:
            return found, "the warehouse catalog"
        if info and info.data_type:
            return info.data_type, "dbt's data_type"
        dbt_dialect = self.after.dialect if self.after is not None else self.dialect   # the model's SQL
        inferred = sql_type(info.expression if info else None, dbt_dialect)
        return (inferred, "the model's SQL") if inferred else (None, "")

    def _description_changed(self, change: ColumnChange) -> None:
        old = change.before.description if change.before else None
        new = change.after.description if change.after else None
        column = change.new_column or change.column
        for view in self.index.views_reading(change.model):
            for item in self._plain_readers(self._current(view), column):
                if self._descriptions_dbts(view, item, old):
                    if item.description == new and (not self.omni or new is None or self._marked(view, item)):
                        continue
                    self._edit(view.file, editor.set_description, item.name, new, from_dbt=True)
                    marked = " (marked as dbt's, as Omni marks it)" if self.omni and new is not None else ""
                    self.notes.append(Note("description", f"`{item.id}`: description synced from dbt "
                                           f"`{change.model}.{column}`{marked}", *_where(change), file=view.file,
                                           line=item.location.line, field=item.id))
                elif not (self.omni and item.description == new):
                    self.notes.append(Note("description_kept", f"`{item.id}` keeps its own description (written "
                                           f"in the semantic layer); dbt's for `{change.model}.{column}` changed",
                                           *_where(change), file=view.file, line=item.location.line, field=item.id))

    def _descriptions_dbts(self, view: View, item: Field, old: str | None) -> bool:
        """Whether dbt may write the field's description: it has none, or the one it has is dbt's
        (Omni's files: marked so; the `views` layout: dbt's previous text)."""
        if item.description is None:
            return True
        return self._marked(view, item) if self.omni else item.description == old

    def _marked(self, view: View, item: Field) -> bool:
        return editor.description_from_dbt(self.files.texts[view.file], view.file, item.name, fmt=self.fmt)

    def _renamed(self, change: ColumnChange) -> None:
        """Descriptions, tests and meta that moved with the column come as changes of their own."""
        old, new = change.column, str(change.new_column)
        renamed_fields: list[tuple[View, str]] = []
        for view in self.index.views_reading(change.model):
            self._edit(view.file, editor.rename_column_refs, old, new, dialect=self.dialect)
            current = self._current(view)
            item = current.fields.get(old) or next((f for f in current.fields.values()
                                                    if f.name.lower() == old.lower()), None)
            follows = item is not None and item.kind == "dimension" and current.field_named(new) in (None, item) \
                and (plain_column(item, self.dialect) or "").lower() in (old.lower(), new.lower())
            if follows:
                self._edit(view.file, editor.rename_field, item.name, new, keep_alias=True)
                renamed_fields.append((view, item.name))
            after = self._current(view)
            for reader in self.index.direct_readers(change.model, old):
                if reader.view != view.name:
                    continue
                text = f"`{reader.id}` now reads `{change.model}.{new}` (renamed from `{old}` in dbt)"
                if follows and reader.name == item.name:
                    moved = after.fields.get(new)
                    text += f"; the field is renamed to `{view.name}.{new}`" + (
                        f" and keeps `{old}` as an alias" if moved is not None and old in moved.aliases else
                        " (back to its earlier name: the alias is dropped)")
                self.notes.append(Note("renamed", text, *_where(change), file=view.file,
                                       line=reader.location.line, field=reader.id))
        for view, name in renamed_fields:                 # `${view.old}` in the other view files
            for other in self.views:
                if other.file != view.file:
                    self._edit(other.file, editor.rename_field_refs, view.name, name, new)
            self._follow_in_model_files(view, name, new, change)

    def _follow_in_model_files(self, view: View, old: str, new: str, change: ColumnChange) -> None:
        """Topics and relationships name fields `view.field`: they follow the rename too."""
        edits = [(path, editor.rename_field_in_topic, "topic") for path in self.topic_files] + \
                [(path, editor.rename_field_in_relationships, "relationships") for path in self.relationship_files]
        for path, edit, what in edits:
            before = self.files.texts[path]
            try:
                if not self.files.apply(path, edit, view.name, old, new):
                    continue
            except SemanticError as exc:      # this file is left as it is; the views' renames stand
                self.notes.append(Note("problem", f"{what} `{path}` could not follow the rename of "
                                       f"`{view.name}.{old}` to `{new}`: {exc.message}", *_where(change),
                                       file=exc.file or path, line=exc.line))
                continue
            self.notes.append(Note("renamed", f"{what} `{path.rsplit('/', 1)[-1]}` follows: `{view.name}.{old}` is "
                                   f"now `{view.name}.{new}`", *_where(change), file=path,
                                   line=_first_changed_line(before, self.files.texts[path]),
                                   field=f"{view.name}.{old}"))

    def _model_renamed(self, change: ModelChange) -> None:
        """Views follow the relation dbt now builds; their fields keep their names."""
        after = self.after.models.get(str(change.new_model).lower()) if self.after else None
        relation = after.relation_name if after else str(change.new_model).lower()
        for view in self.index.views_reading(change.model):
            if normalise_table_name(view.table_name) == relation:
                continue
            self._edit(view.file, editor.set_table_name, relation)
            self.notes.append(Note("renamed", f"view `{view.name}` now reads `{relation}` (was `{view.table_name}`): "
                                   f"dbt renamed model `{change.model}`"
                                   + (f" to `{change.new_model}`" if change.new_model != change.model else "")
                                   + f", {change.detail}", *_where(change), file=view.file, line=view.line))

    def _removed(self, change: ColumnChange) -> None:
        self._broken(change.model, change.column, f"dbt column `{change.model}.{change.column}` was removed", change)

    def _tests_changed(self, change: ColumnChange) -> None:
        before, after = change.before, change.after
        column = change.new_column or change.column
        was_key = {"unique", "not_null"} <= set(before.tests if before else ())
        is_key = {"unique", "not_null"} <= set(after.tests if after else ())
        values = list(after.accepted_values) if after and after.accepted_values else None
        old_values = list(before.accepted_values) if before and before.accepted_values else None
        for view in self.index.views_reading(change.model):
            for item in self._plain_readers(self._current(view), column):
                if is_key != was_key and item.primary_key != is_key:
                    self._edit(view.file, editor.set_primary_key, item.name, is_key)
                    self.notes.append(Note("primary_key", f"`{item.id}`: primary key {'set' if is_key else 'unset'} "
                                           f"(dbt tests `unique` + `not_null` on `{change.model}.{column}` "
                                           f"{'added' if is_key else 'removed'})", *_where(change),
                                           file=view.file, line=item.location.line, field=item.id))
                if values is not None and values != old_values:
                    if self._edit(view.file, editor.set_allowed_values, item.name, values):
                        key = "all_values" if self.omni else "allowed values"
                        self.notes.append(Note("allowed_values", f"`{item.id}`: {key} "
                                               f"{', '.join(f'`{v}`' for v in values)} (dbt `accepted_values`)",
                                               *_where(change), file=view.file, line=item.location.line,
                                               field=item.id))

    def _type_changed(self, change: ColumnChange) -> None:
        self._altered(change, f"type of `{change.model}.{change.column}` changed"
                              f" ({change.before.data_type if change.before else '?'} → "
                              f"{change.after.data_type if change.after else '?'})")

    def _expression_changed(self, change: ColumnChange) -> None:
        self._altered(change, f"expression of `{change.model}.{change.column}` changed", measures_only=True)

    def _meta_changed(self, change: ColumnChange) -> None:
        """dbt meta is read (both `meta:` and `config: meta:`) where it means something to a field:
        `primary_key` and `label` on new columns; a change of other keys needs no edit."""
        if change.after and _meta_of(change.after).get("primary_key") is True and not _meta_of(change.before).get(
                "primary_key"):
            for view in self.index.views_reading(change.model):
                for item in self._plain_readers(self._current(view), change.column):
                    if not item.primary_key:
                        self._edit(view.file, editor.set_primary_key, item.name, True)
                        self.notes.append(Note("primary_key", f"`{item.id}`: primary key set (dbt meta "
                                               f"`primary_key: true`)", *_where(change), file=view.file,
                                               line=item.location.line, field=item.id))

    # -------------------------------------------------------------- reports

    def _altered(self, change: ColumnChange, what: str, measures_only: bool = False) -> None:
        for dep in self.index.dependents(change.model, change.column):
            if measures_only and dep.kind != "measure":
                continue
            self.notes.append(Note("altered", f"`{dep.id}` may change: {what}", *_where(change),
                                   file=dep.location.file, line=dep.location.line, field=dep.id, via=dep.via))

    def _broken(self, model: str, column: str | None, what: str, change: ColumnChange | ModelChange) -> None:
        for dep in self.index.dependents(model, column):
            chain = f" (through {' → '.join(dep.via)})" if len(dep.via) > 1 else ""
            reason = f"{what} in dbt commit {self.commit[:7]}" + (f" (via {dep.via[0]})" if len(dep.via) > 1 else "")
            first = dep.id not in self.marked
            if first:
                self._edit(dep.location.file, editor.mark_broken, dep.field, reason)
                self.marked.add(dep.id)
            self.notes.append(Note("broken", f"`{dep.id}` breaks: {what}{chain}", *_where(change),
                                   file=dep.location.file, line=dep.location.line, field=dep.id, via=dep.via))
            for mention in self.mentions.get(dep.id, []) if first else []:
                self.notes.append(Note("broken", f"{mention.what} (`{dep.id}`), so this breaks it: {what}",
                                       *_where(change), file=mention.file, line=mention.line, field=dep.id,
                                       via=dep.via))


def _first_changed_line(before: str, after: str) -> int:
    """1-based line of the first difference: where a note on an edited topic points."""
    for number, (old, new) in enumerate(zip(before.splitlines(), after.splitlines()), start=1):
        if old != new:
            return number
    return min(len(before.splitlines()), len(after.splitlines())) + 1


def plan_pull(changes: ProjectChanges, view_texts: dict[str, str], *, dbt_commit: str,
              dialect: str = "duckdb", catalog: Catalog | None = None,
              fmt: SemanticFormat | None = None) -> PullPlan:
    return PullPlanner(view_texts, dbt_commit=dbt_commit, dialect=dialect, catalog=catalog, fmt=fmt).plan(changes)

