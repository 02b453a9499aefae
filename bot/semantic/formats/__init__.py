"""Semantic-layer formats as plug-ins, registered by name and chosen by `format` in layersync.yml.

A format knows its layout (which paths are view files, which of them may be pushed, how a path
names a view) and reads files into the plain data of `bot.semantic.model`. `omni` is Omni's own
git layout; `views` is layersync's older `views/<name>.view.yaml` layout with `${TABLE}`. LookML or
Cube plug in by implementing `SemanticFormat` and adding their class to `FORMATS`.

Every path a format sees or returns is relative to the repository; `root` is the model's folder in
it ("" for the repository's root), so a model inside a monorepo reads the same as one at the top.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Callable, Iterable, Mapping, Protocol

from bot.errors import SemanticError
from bot.repo_paths import inside
from bot.semantic.model import SemanticModel, View

VIEW_SUFFIXES = (".view.yaml", ".view.yml")
QUERY_VIEW_SUFFIXES = (".query.view.yaml", ".query.view.yml")
TOPIC_SUFFIXES = (".topic.yaml", ".topic.yml")
OMNI_ROOT_FILES = ("model.yaml", "model.yml", "relationships.yaml", "relationships.yml")


class SemanticFormat(Protocol):
    """One semantic-layer format, for the model at `root`."""

    name: str
    root: str

    def is_view_file(self, path: str) -> bool:
        """A file `read` reads (query views included)."""
        ...

    def is_pushable(self, path: str) -> bool:
        """A view file whose dimensions may become dbt columns (query views may not)."""
        ...

    def is_model_file(self, path: str) -> bool:
        """A file `read_model` reads: views, and the model's settings, relationships and topics."""
        ...

    def view_name_from_path(self, path: str) -> str:
        """The view's name as its path gives it (a `name:` inside the file may override it)."""
        ...

    def file_stem(self, path: str) -> str:
        """The file's own name without its suffix, which `--field` also accepts when unambiguous."""
        ...

    def column_sql(self, column: str) -> str:
        """The `sql:` of a field that reads the view's column `column`, as this format writes it."""
        ...

    def read(self, text: str, path: str) -> View:
        """One view file; a file that cannot be read is a SemanticError with its line."""
        ...

    def read_model(self, texts: Mapping[str, str]) -> SemanticModel:
        """The whole model from {path: text} of its files; bad input becomes `problems`, the rest reads."""
        ...


def relative(path: str, root: str) -> str | None:
    """`path` inside the model folder `root`, or None when it lies outside it (`repo_paths.inside`,
    with a root as a person may write it)."""
    return inside(root.strip("/"), path)


def strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return PurePosixPath(name).stem


def _formats() -> dict[str, Callable[[str], SemanticFormat]]:
    from bot.semantic.formats.omni import OmniFormat
    from bot.semantic.formats.views import ViewsFormat

    return {"omni": OmniFormat, "views": ViewsFormat}


def format_names() -> list[str]:
    return sorted(_formats())


def format_for(name: str, root: str = "") -> SemanticFormat:
    try:
        factory = _formats()[name]
    except KeyError:
        raise SemanticError(f"unknown semantic-layer format `{name}` (known: {', '.join(format_names())})") from None
    return factory(root.strip("/"))


def is_detection_path(path: str, root: str = "") -> bool:
    """The files `detect_format` looks at: YAML under the model root (list only these, not the repo)."""
    return relative(path, root) is not None and path.endswith((".yaml", ".yml"))


def detect_format(paths: Iterable[str], root: str = "") -> str:
    """`omni` when the model root has Omni's files (`model.yaml`, `relationships.yaml`, a topic) or its
    views sit in schema folders; `views` (the older layout) otherwise, so existing repos keep working."""
    for path in paths:
        rel = relative(path, root)
        if rel is None:
            continue
        parts = rel.split("/")
        if rel in OMNI_ROOT_FILES or (len(parts) == 1 and rel.endswith(TOPIC_SUFFIXES)):
            return "omni"
        if len(parts) == 2 and parts[0] != "views" and rel.endswith(VIEW_SUFFIXES):
            return "omni"
    return "views"
