"""Omni's own git layout: the format of the files Omni writes when it keeps a model in git.

    <model root>/model.yaml                 settings (included_schemas, ...)
    <model root>/relationships.yaml         a list of joins
    <model root>/<Name>.topic.yaml          topics
    <model root>/<schema>/<table>.view.yaml one folder per warehouse schema
    <model root>/<schema>/<x>.query.view.yaml  query views: read, never pushed

A view is named `<schema>__<file stem>` (Omni's `# Reference this view as ...` line says the same)
unless it says `name:`. Its SQL refers to fields as `${field}` / `${view.field}` (even its own
fields fully qualified) and to columns by their bare name; there is no `${TABLE}`, and no `type:`
on a dimension (Omni takes types from the warehouse), so none is relied on.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Mapping

from ruamel.yaml.comments import CommentedMap

from bot.errors import SemanticError
from bot.semantic.formats import (OMNI_ROOT_FILES, QUERY_VIEW_SUFFIXES, TOPIC_SUFFIXES, VIEW_SUFFIXES, relative,
                                  strip_suffix)
from bot.semantic.formats.views import read_views
from bot.semantic.model import Field, Location, Problem, Relationship, SemanticModel, Topic, View
from bot.semantic.reader import YamlViewParser, _line_of, _type_name, load_view_yaml
from bot.semantic.refs import OMNI_NO_TABLE as NO_TABLE, Ref, scan
from bot.yamledit import plain as to_plain

AGGREGATE_TYPES = frozenset({
    "sum", "count", "count_distinct", "average", "min", "max", "median", "percentile", "list",
    "sum_distinct_on", "average_distinct_on", "median_distinct_on", "percentile_distinct_on",
})
FILTER_OPERATORS = frozenset({
    "is", "not", "greater_than", "less_than", "greater_than_or_equal_to", "less_than_or_equal_to",
    "between", "not_between", "contains", "not_contains", "starts_with", "not_starts_with", "ends_with",
    "not_ends_with", "before", "after", "on_or_before", "on_or_after", "time_for_duration",
})
RELATIONSHIP_TYPES = frozenset({"many_to_one", "one_to_one", "one_to_many", "many_to_many"})


def _item_line(seq: Any, index: int, default: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


class OmniFormat(YamlViewParser):
    name = "omni"

    def __init__(self, root: str = ""):
        self.root = root.strip("/")

    # ------------------------------------------------------------------ layout

    def is_view_file(self, path: str) -> bool:
        return path.endswith(VIEW_SUFFIXES) and relative(path, self.root) is not None

    def is_query_view(self, path: str) -> bool:
        return path.endswith(QUERY_VIEW_SUFFIXES)

    def is_pushable(self, path: str) -> bool:
        return self.is_view_file(path) and not self.is_query_view(path)

    def is_model_file(self, path: str) -> bool:
        rel = relative(path, self.root)
        if rel is None:
            return False
        return self.is_view_file(path) or rel in OMNI_ROOT_FILES or rel.endswith(TOPIC_SUFFIXES)

    def schema_folder(self, path: str) -> str | None:
        """The folder under the model root a view file sits in: its warehouse schema."""
        rel = relative(path, self.root)
        parts = (rel or "").split("/")
        return parts[0] if rel is not None and len(parts) >= 2 else None

    def column_sql(self, column: str) -> str:
        """A field's `sql:` reading the view's column `column`: Omni names a raw column bare, quoted
        when it is no plain identifier (there is no `${TABLE}`)."""
        return column if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column) else '"' + column.replace('"', '""') + '"'

    def file_stem(self, path: str) -> str:
        name = PurePosixPath(path).name
        return strip_suffix(name, QUERY_VIEW_SUFFIXES if self.is_query_view(name) else VIEW_SUFFIXES)

    def view_name_from_path(self, path: str) -> str:
        """The name Omni gives a view in a schema folder; the file's own header, when it has one, wins
        (`read`): Omni names views of a connection's default schema by the table alone."""
        folder = self.schema_folder(path)
        return f"{folder}__{self.file_stem(path)}" if folder else self.file_stem(path)

    # ------------------------------------------------------------------ one view

    def read(self, text: str, path: str) -> View:
        data = self._load(text, path)
        query = self.is_query_view(path)
        folder = self.schema_folder(path)
        if folder is None and not query:
            where = f"`{self.root}/`" if self.root else "the model root"
            raise SemanticError(f"view file outside any schema folder: Omni keeps each view in the folder of its "
                                f"warehouse schema (`<schema>/{PurePosixPath(path).name}` under {where})", path, 1)
        name = self.text_key(data, "name", path) or header_name(text) or self.view_name_from_path(path)
        fields = self.fields(data, name, path)
        dbt = data.get("dbt")
        problems: list[Problem] = []
        if dbt is not None and not isinstance(dbt, dict):
            problems.append(Problem(f"`dbt` must be a mapping (Omni fills it from the dbt manifest), not "
                                    f"{_type_name(dbt)}; it is ignored", path, _line_of(data, "dbt", 1)))
        problems += [p for f in fields.values() for p in self._field_problems(f)]
        return View(
            name=name,
            table_name=self.text_key(data, "table_name", path) or self.file_stem(path),
            file=path,
            schema=self.text_key(data, "schema", path) or folder,
            label=self.text_key(data, "label", path),
            fields=fields,
            format=self.name,
            query=query,
            dbt=to_plain(dbt, {}, path, SemanticError) if isinstance(dbt, dict) else {},
            problems=tuple(problems),
        )

    def _field_problems(self, field: Field) -> list[Problem]:
        where = (field.location.file, field.location.line)
        problems = []
        try:
            parts = scan(field.sql or "")
        except ValueError as exc:
            parts = []
            problems.append(Problem(f"`{field.name}`: {exc}", *where))
        if any(isinstance(p, Ref) and p.is_table for p in parts):
            problems.append(Problem(f"`{field.name}` uses `${{TABLE}}`: {NO_TABLE}", *where))
        if field.kind != "measure":
            return problems
        aggregate = field.aggregate_type
        if aggregate is not None and aggregate not in AGGREGATE_TYPES:
            problems.append(Problem(f"measure `{field.name}`: unknown aggregate_type `{aggregate}` (Omni's: "
                                    f"{', '.join(sorted(AGGREGATE_TYPES))})", *where))
        if aggregate in ("percentile", "percentile_distinct_on") and field.percentile is None:
            problems.append(Problem(f"measure `{field.name}`: aggregate_type `{aggregate}` needs `percentile: N` "
                                    f"(0-100)", *where))
        for target, condition in field.filters.items():
            if not isinstance(condition, dict):
                problems.append(Problem(f"measure `{field.name}`: the filter on `{target}` must be an operator "
                                        f"mapping such as `{{is: 1}}`", *where))
                continue
            unknown = sorted(set(condition) - FILTER_OPERATORS)
            if unknown:
                problems.append(Problem(f"measure `{field.name}`: unknown filter operator(s) "
                                        f"{', '.join(f'`{u}`' for u in unknown)} on `{target}`", *where))
        return problems

    # ------------------------------------------------------------------ the whole model

    def read_model(self, texts: Mapping[str, str]) -> SemanticModel:
        model = SemanticModel(format=self.name, root=self.root)
        read_views(self, texts, model)
        for path in sorted(texts):
            rel = relative(path, self.root)
            if rel in ("model.yaml", "model.yml"):
                model.settings = self._settings(texts[path], path, model)
        for path in sorted(texts):
            if relative(path, self.root) in ("relationships.yaml", "relationships.yml"):
                model.relationships += self._relationships(texts[path], path, model)
        for path in sorted(texts):
            rel = relative(path, self.root)
            if rel is not None and rel.endswith(TOPIC_SUFFIXES):
                topic = self._topic(texts[path], path, model)
                if topic is not None:
                    model.topics[topic.name] = topic
        return model

    def _yaml(self, text: str, path: str, model: SemanticModel) -> Any:
        try:
            return load_view_yaml(text, path)
        except SemanticError as exc:
            model.problems.append(Problem(exc.message, exc.file or path, exc.line))
            return None

    def _settings(self, text: str, path: str, model: SemanticModel) -> dict[str, Any]:
        data = self._yaml(text, path, model)
        if data is None:
            return {}
        if not isinstance(data, dict):
            model.problems.append(Problem(f"model settings must be a mapping, not {_type_name(data)}", path, 1))
            return {}
        return to_plain(data, {}, path, SemanticError)

    def _relationships(self, text: str, path: str, model: SemanticModel) -> list[Relationship]:
        data = self._yaml(text, path, model)
        if data is None:
            return []
        if not isinstance(data, list):
            model.problems.append(Problem(
                f"relationships.yaml must be a list of joins (`- join_from_view: ...`), not {_type_name(data)}; "
                f"no relationship is read", path, 1))
            return []
        found = []
        for index, entry in enumerate(data):
            line = _item_line(data, index, 1)
            relationship = self._relationship(entry, path, line, model)
            if relationship is not None:
                found.append(relationship)
        return found

    def _relationship(self, entry: Any, path: str, line: int, model: SemanticModel) -> Relationship | None:
        if not isinstance(entry, dict):
            model.problems.append(Problem(f"a relationship must be a mapping (join_from_view, join_to_view, on_sql), "
                                          f"not {_type_name(entry)}", path, line))
            return None
        plain = to_plain(entry, {}, path, SemanticError)
        ends = {key: plain.get(key) for key in ("join_from_view", "join_to_view")}
        for key, value in ends.items():
            if not isinstance(value, str) or not value:
                model.problems.append(Problem(f"a relationship needs `{key}` (a view name)", path,
                                              _line_of(entry, key, line)))
                return None
            if value not in model.views:
                model.problems.append(Problem(f"`{key}: {value}` names no view of the model", path,
                                              _line_of(entry, key, line)))
                return None
        kind = plain.get("relationship_type")
        if kind is not None and kind not in RELATIONSHIP_TYPES:
            model.problems.append(Problem(f"unknown relationship_type `{kind}` (one of: "
                                          f"{', '.join(sorted(RELATIONSHIP_TYPES))})", path,
                                          _line_of(entry, "relationship_type", line)))
        on_sql = plain.get("on_sql")
        if on_sql is not None:
            self._check_refs(str(on_sql), f"`on_sql` of {ends['join_from_view']} → {ends['join_to_view']}", path,
                             _line_of(entry, "on_sql", line), model)
        return Relationship(
            join_from_view=ends["join_from_view"], join_to_view=ends["join_to_view"], location=Location(path, line),
            join_type=None if plain.get("join_type") is None else str(plain["join_type"]),
            on_sql=None if on_sql is None else str(on_sql),
            relationship_type=None if kind is None else str(kind),
            reversible=bool(plain.get("reversible", False)), attributes=plain)

    def _check_refs(self, sql: str, what: str, path: str, line: int, model: SemanticModel) -> None:
        try:
            parts = scan(sql)
        except ValueError as exc:
            model.problems.append(Problem(f"{what}: {exc}", path, line))
            return
        for part in parts:
            if isinstance(part, Ref) and not part.is_table:
                self._check_field_id(part.target, what, path, line, model)

    def _check_field_id(self, field_id: str, what: str, path: str, line: int, model: SemanticModel) -> None:
        view_name, dot, name = field_id.partition(".")
        if not dot:
            return  # a field of the view the text belongs to: checked where that view is read
        if view_name not in model.views:
            model.problems.append(Problem(f"{what} names `{field_id}`: there is no view `{view_name}`", path, line))
        elif name != "*" and model.find_field(field_id) is None:
            model.problems.append(Problem(f"{what} names `{field_id}`: view `{view_name}` has no field `{name}`",
                                          path, line))

    def _topic(self, text: str, path: str, model: SemanticModel) -> Topic | None:
        data = self._yaml(text, path, model)
        if data is None:
            return None
        if not isinstance(data, dict):
            model.problems.append(Problem(f"a topic file must be a mapping (base_view, joins, fields), not "
                                          f"{_type_name(data)}", path, 1))
            return None
        plain = to_plain(data, {}, path, SemanticError)
        name = str(plain.get("name") or strip_suffix(PurePosixPath(path).name, TOPIC_SUFFIXES))
        what = f"topic `{name}`"
        base = plain.get("base_view")
        if base is not None and str(base) not in model.views:
            model.problems.append(Problem(f"{what}: base_view `{base}` names no view of the model", path,
                                          _line_of(data, "base_view", 1)))
        joins = plain.get("joins") or {}
        if isinstance(joins, dict) and joins:
            self._check_joins(data["joins"], what, path, model)
        fields = self._topic_fields(data, what, path, model)
        filters = plain.get("default_filters") or {}
        if isinstance(filters, dict) and filters:
            block = data["default_filters"]
            for key in filters:
                self._check_field_id(key, f"{what}'s default_filters", path, _line_of(block, key, 1), model)
        always = plain.get("always_where_sql")
        if always is not None:
            self._check_refs(str(always), f"{what}'s always_where_sql", path, _line_of(data, "always_where_sql", 1),
                             model)
        return Topic(name=name, location=Location(path, 1), base_view=None if base is None else str(base),
                     joins=joins if isinstance(joins, dict) else {}, fields=fields,
                     default_filters=filters if isinstance(filters, dict) else {},
                     always_where_sql=None if always is None else str(always),
                     label=None if plain.get("label") is None else str(plain["label"]), attributes=plain)

    def _check_joins(self, joins: CommentedMap, what: str, path: str, model: SemanticModel) -> None:
        """`joins:` nests the views joined through each other (`{orders: {customers: {}}}`)."""
        pending = [joins]
        while pending:
            block = pending.pop()
            for view_name, nested in block.items():
                if str(view_name) not in model.views:
                    model.problems.append(Problem(f"{what} joins `{view_name}`, which names no view of the model",
                                                  path, _line_of(block, view_name, 1)))
                if isinstance(nested, dict):
                    pending.append(nested)

    def _topic_fields(self, data: CommentedMap, what: str, path: str, model: SemanticModel) -> tuple[str, ...]:
        """`fields: [view.*, -view.field, tag:x, all_views.*]`: every view and field named must exist."""
        listed = data.get("fields")
        if listed is None:
            return ()
        if not isinstance(listed, list):
            model.problems.append(Problem(f"{what}: `fields` must be a list", path, _line_of(data, "fields", 1)))
            return ()
        kept = []
        for index, item in enumerate(listed):
            line = _item_line(listed, index, _line_of(data, "fields", 1))
            if not isinstance(item, str):
                model.problems.append(Problem(f"{what}: a `fields` entry must be text", path, line))
                continue
            kept.append(item)
            target = item.lstrip("-").strip()
            if target.startswith("tag:") or target.split(".", 1)[0] == "all_views":
                continue
            self._check_field_id(target, what, path, line, model)
        return tuple(kept)


_HEADER = re.compile(r"#\s*Reference this view as\s+([A-Za-z0-9_]+)\s*$")


def header_name(text: str) -> str | None:
    """The name in the `# Reference this view as <name>` line Omni writes above a view's keys."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return None                       # the header comes before the first key
        found = _HEADER.match(stripped)
        if found:
            return found.group(1)
    return None
