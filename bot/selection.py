"""Which semantic fields a push is about: those named, or those changed between two revisions."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from bot.errors import EncodingError, LayersyncError, RepoError, SemanticError
from bot.gitops import RevisionReader
from bot.semantic.diff import diff_views
from bot.semantic.model import Field, View
from bot.semantic.reader import OmniYamlReader, ViewReader
from bot.translate.push import FieldRequest, Skipped


@dataclass
class Selection:
    requests: list[FieldRequest] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)


def parse_field_id(text: str) -> tuple[str, str]:
    view, dot, name = text.strip().partition(".")
    if not dot or not view or not name or "." in name:
        raise LayersyncError(f"--field takes VIEW.FIELD, not `{text}`")
    return view, name


class ViewSource:
    """Views of one revision of the semantic repo, read file by file as they are needed."""

    def __init__(self, reader: RevisionReader, rev: str | None, fmt: ViewReader, root: str = ""):
        self.git = reader
        self.rev = rev
        self.fmt = fmt
        self.root = root                  # the semantic model's folder in its repo ("": the root)
        self._paths: list[str] | None = None

    def paths(self) -> list[str]:
        if self._paths is None:
            prefix = self.root + "/" if self.root else ""
            self._paths = [] if self.rev is None else self.git.list_files(
                self.rev, lambda p: p.startswith(prefix) and self.fmt.is_view_file(p))
        return self._paths

    def read(self, path: str) -> View | None:
        if self.rev is None:
            return None
        text = self.git.read(self.rev, path)
        return None if text is None else self.fmt.read(text, path)

    def find(self, view_name: str) -> View | None:
        """By file name first (`views/<name>.view.yaml`), then by a `name:` inside any file."""
        by_name = [p for p in self.paths() if _file_view_name(self.fmt, p) == view_name]
        for path in by_name + [p for p in self.paths() if p not in by_name]:
            try:
                view = self.read(path)
            except SemanticError:
                if path in by_name:
                    raise
                continue
            if view is not None and view.name == view_name:
                return view
        return None


def _parse_text(fmt: ViewReader, text: str | None, path: str) -> View | None:
    return None if text is None else fmt.read(text, path)


def _file_view_name(fmt: ViewReader, path: str) -> str:
    namer = getattr(fmt, "view_name_from_path", None)
    return namer(path) if namer else path


def _file_error(exc: SemanticError, fallback: str) -> Skipped:
    return Skipped(exc.file or fallback, exc.file or fallback, exc.line, exc.message, "invalid-file")


def select_named(reader: RevisionReader, head: str, since: str | None, field_ids: list[str],
                 fmt: ViewReader | None = None, root: str = "") -> Selection:
    fmt = fmt or OmniYamlReader()
    now, before = ViewSource(reader, head, fmt, root), ViewSource(reader, since, fmt, root)
    selection = Selection()
    for field_id in field_ids:
        view_name, field_name = parse_field_id(field_id)
        try:
            view = now.find(view_name)
        except SemanticError as exc:
            selection.skipped.append(_file_error(exc, field_id))
            continue
        if view is None:
            selection.skipped.append(Skipped(field_id, None, None, f"unknown view `{view_name}`", "unknown-field"))
            continue
        field = view.field_named(field_name)
        if field is None:
            selection.skipped.append(Skipped(field_id, view.file, view.line,
                                             f"unknown field `{field_name}` in view `{view_name}`", "unknown-field"))
            continue
        selection.requests.append(FieldRequest(view, field, _previous(before, view_name, field.name)))
    return selection


def _previous(source: ViewSource, view_name: str, field_name: str) -> Field | None:
    try:
        view = source.find(view_name)
    except (SemanticError, RepoError):
        return None
    return view.fields.get(field_name) if view else None


def select_changed(reader: RevisionReader, head: str, since: str | None, dialect: str,
                   fmt: ViewReader | None = None, root: str = "") -> Selection:
    """Only files git says changed are read, so a push costs what changed, not the repo's size.
    `root`: the semantic model's folder; a view-like file outside it is not the model's."""
    fmt = fmt or OmniYamlReader()
    selection = Selection()
    prefix = root + "/" if root else ""
    paths = [p for p in reader.changed_paths(since, head) if p.startswith(prefix) and fmt.is_view_file(p)]
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
    return selection
