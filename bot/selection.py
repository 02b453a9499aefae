"""Which semantic fields a push is about: those named, or those changed between two revisions."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable

from bot.config import CONFIG_FILE, Config, parse_config
from bot import repo_paths
from bot.errors import EncodingError, LayersyncError, RepoError, SemanticError
from bot.gitops import RevisionReader
from bot.semantic.diff import diff_views
from bot.semantic.formats import SemanticFormat, is_detection_path
from bot.semantic.model import Field, SemanticModel, View
from bot.translate.push import FieldRequest, Skipped


@dataclass
class Selection:
    requests: list[FieldRequest] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    # Reads the whole semantic model at the selection's revision (views, relationships), for fields
    # that read another view through a join; called only by the first such field.
    semantic: Callable[[], SemanticModel] | None = None


def model_reader(reader: RevisionReader, rev: str, fmt: SemanticFormat, root: str = ""
                 ) -> Callable[[], SemanticModel]:
    """The semantic model's files at `rev` read as one model, on demand."""
    def read() -> SemanticModel:
        inside = repo_paths.under(root)
        paths = reader.list_files(rev, lambda p: inside(p) and (fmt.is_view_file(p) or fmt.is_model_file(p)))
        return fmt.read_model({p: t for p, t in reader.read_many(rev, paths).items() if t is not None})
    return read


def parse_field_id(text: str) -> tuple[str, str]:
    """`view.field`, the view named as the format names it (Omni: `omni_dbt_marts__fct_orders`) or by
    its file stem (`fct_orders`) when that is unambiguous."""
    view, dot, name = text.strip().partition(".")
    if not dot or not view or not name or "." in name:
        raise LayersyncError(f"--field takes VIEW.FIELD (e.g. `omni_dbt_marts__fct_orders.status`), not `{text}`")
    return view, name


class AmbiguousView(LayersyncError):
    """A file stem that several views' files share: which one is meant cannot be guessed."""


def format_at(reader: RevisionReader, rev: str | None, root: str = "", config: Config | None = None
              ) -> SemanticFormat:
    """The semantic layer's format at `rev`: `format` in layersync.yml, else detected from the files
    under `root` (the model's folder, "" for the repo root). No revision: the older `views` layout.
    `config`: the settings already read (callers that look for layersync.yml beside the model pass it)."""
    if config is None:           # beside the model first, then at the repo's root (bot.repo_paths)
        config = repo_paths.read_config(lambda path: reader.read(rev, path), root) if rev is not None \
            else parse_config(None, CONFIG_FILE)
    if config.format is not None or rev is None:
        return config.semantic_format((), root)
    return config.semantic_format(reader.list_files(rev, lambda p: is_detection_path(p, root)), root)


class ViewSource:
    """Views of one revision of the semantic repo, read file by file as they are needed."""

    def __init__(self, reader: RevisionReader, rev: str | None, fmt: SemanticFormat, root: str = ""):
        self.git = reader
        self.rev = rev
        self.fmt = fmt
        self.root = root                  # the semantic model's folder in its repo ("": the root)
        self._paths: list[str] | None = None

    def paths(self) -> list[str]:
        if self._paths is None:
            inside = repo_paths.under(self.root)
            self._paths = [] if self.rev is None else self.git.list_files(
                self.rev, lambda p: inside(p) and self.fmt.is_view_file(p))
        return self._paths

    def read(self, path: str) -> View | None:
        if self.rev is None:
            return None
        text = self.git.read(self.rev, path)
        return None if text is None else self.fmt.read(text, path)

    def find(self, view_name: str) -> View | None:
        """By the name the path gives (`<schema>__<stem>` in Omni's layout), then by a `name:` inside
        any file, then by the file stem alone when only one view file has it."""
        by_name = [p for p in self.paths() if self.fmt.view_name_from_path(p) == view_name]
        for path in by_name + [p for p in self.paths() if p not in by_name]:
            try:
                view = self.read(path)
            except SemanticError:
                if path in by_name:
                    raise
                continue
            if view is not None and view.name == view_name:
                return view
        by_stem = [p for p in self.paths() if self.fmt.file_stem(p) == view_name]
        if len(by_stem) > 1:
            names = ", ".join(f"`{self.fmt.view_name_from_path(p)}` ({p})" for p in by_stem)
            raise AmbiguousView(f"`{view_name}` is the file name of {len(by_stem)} views: {names}; "
                                f"name the view in full")
        return self.read(by_stem[0]) if by_stem else None


def _parse_text(fmt: SemanticFormat, text: str | None, path: str) -> View | None:
    return None if text is None else fmt.read(text, path)


def _file_error(exc: SemanticError, fallback: str) -> Skipped:
    return Skipped(exc.file or fallback, exc.file or fallback, exc.line, exc.message, "invalid-file")


def select_named(reader: RevisionReader, head: str, since: str | None, field_ids: list[str],
                 fmt: SemanticFormat | None = None, root: str = "") -> Selection:
    fmt = fmt or format_at(reader, head, root)
    now, before = ViewSource(reader, head, fmt, root), ViewSource(reader, since, fmt, root)
    selection = Selection()
    for field_id in field_ids:
        view_name, field_name = parse_field_id(field_id)
        try:
            view = now.find(view_name)
        except SemanticError as exc:
            selection.skipped.append(_file_error(exc, field_id))
            continue
        except AmbiguousView as exc:
            selection.skipped.append(Skipped(field_id, None, None, exc.message, "ambiguous-field"))
            continue
        if view is None:
            selection.skipped.append(Skipped(field_id, None, None, f"unknown view `{view_name}`", "unknown-field"))
            continue
        field = view.field_named(field_name)
        if field is None:
            # the file, with no line: no line of it names the field (line 1 would send a reader there)
            selection.skipped.append(Skipped(f"{view.name}.{field_name}", view.file, None,
                                             f"unknown field `{field_name}` in view `{view.name}`", "unknown-field"))
            continue
        if not fmt.is_pushable(view.file):
            selection.skipped.append(Skipped(field.id, field.location.file, field.location.line,
                                             f"`{view.name}` is a query view: it reads a query, not a dbt model, "
                                             f"so layersync never pushes its fields", "nothing-to-push"))
            continue
        selection.requests.append(FieldRequest(view, field, _previous(before, view.name, field.name)))
    return selection


def _previous(source: ViewSource, view_name: str, field_name: str) -> Field | None:
    try:
        view = source.find(view_name)
    except (SemanticError, RepoError, AmbiguousView):
        return None
    return view.fields.get(field_name) if view else None


def select_changed(reader: RevisionReader, head: str, since: str | None, dialect: str,
                   fmt: SemanticFormat | None = None, root: str = "") -> Selection:
    """Only files git says changed are read, so a push costs what changed, not the repo's size.
    `root`: the semantic model's folder; a view-like file outside it is not the model's. Query views
    are no dbt model's: a change to one is nothing to push."""
    fmt = fmt or format_at(reader, head, root)
    selection = Selection()
    inside = repo_paths.under(root)
    paths = [p for p in reader.changed_paths(since, head) if inside(p) and fmt.is_pushable(p)]
    old_views: dict[str, View] = {}
    new_views: dict[str, View] = {}
    unreadable: dict[str, EncodingError] = {}
    new_texts = reader.read_many(head, paths, unreadable=unreadable)
    old_texts = reader.read_many(since, paths, unreadable={}) if since is not None else {}
    for path in paths:
        try:
            if path in unreadable:
                raise unreadable[path]
            new_view = _parse_text(fmt, new_texts.get(path), path)
        except SemanticError as exc:
            # Reported once for the file; its fields are neither pushed nor taken as removed.
            selection.skipped.append(_file_error(exc, path))
            continue
        try:
            old_view = _parse_text(fmt, old_texts.get(path), path)
        except SemanticError:
            old_view = None  # the analyst just repaired the file: its fields count as added
        for view, views in ((old_view, old_views), (new_view, new_views)):
            if view is not None:
                views[view.name] = view
    for change in diff_views(old_views, new_views, dialect):
        if change.kind == "removed":
            old = change.old
            assert old is not None
            selection.skipped.append(Skipped(
                change.id, old.location.file, old.location.line,
                "removed from the semantic layer; its dbt column, if any, is left in place", "removed"))
            continue
        assert change.new is not None
        selection.requests.append(FieldRequest(new_views[change.view], change.new, change.old))
    # The analyst's order, not the diff's alphabetical one: new columns go into a model in the order the
    # view file lists their fields.
    views = {name: index for index, name in enumerate(dict.fromkeys(r.view.name for r in selection.requests))}
    selection.requests.sort(key=lambda r: (views[r.view.name], r.field.location.line))
    return selection
