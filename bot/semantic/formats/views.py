"""layersync's older layout: `views/<name>.view.yaml`, a view named by its file, `${TABLE}.col` for columns.

Repos written before Omni's own layout was read keep working through this format (it was
`OmniYamlReader`, though Omni never wrote it).
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Mapping

from bot.errors import SemanticError
from bot.semantic.formats import VIEW_SUFFIXES, relative, strip_suffix
from bot.semantic.model import Problem, SemanticModel, View
from bot.semantic.reader import YamlViewParser


class ViewsFormat(YamlViewParser):
    name = "views"
    suffixes = VIEW_SUFFIXES

    def __init__(self, root: str = ""):
        self.root = root.strip("/")

    def is_view_file(self, path: str) -> bool:
        return path.endswith(self.suffixes) and relative(path, self.root) is not None

    def is_pushable(self, path: str) -> bool:
        return self.is_view_file(path)

    def is_model_file(self, path: str) -> bool:
        return self.is_view_file(path)

    def view_name_from_path(self, path: str) -> str:
        return self.file_stem(path)

    def column_sql(self, column: str) -> str:
        """A field's `sql:` reading the view's column `column`: `${TABLE}.<column>`."""
        return f"${{TABLE}}.{column}"

    def file_stem(self, path: str) -> str:
        return strip_suffix(PurePosixPath(path).name, self.suffixes)

    def read(self, text: str, path: str) -> View:
        data = self._load(text, path)
        name = str(data.get("name") or self.view_name_from_path(path))
        table = data.get("table_name") or data.get("sql_table_name") or name
        return View(
            name=name,
            table_name=str(table),
            file=path,
            schema=self.text_key(data, "schema", path),
            label=self.text_key(data, "label", path),
            fields=self.fields(data, name, path),
        )

    def read_model(self, texts: Mapping[str, str]) -> SemanticModel:
        model = SemanticModel(format=self.name, root=self.root)
        read_views(self, texts, model)
        return model


def read_views(fmt: YamlViewParser, texts: Mapping[str, str], model: SemanticModel) -> None:
    """Every view file into `model.views`; an unreadable file or a second view of one name is a problem."""
    for path in sorted(texts):
        if not fmt.is_view_file(path):  # type: ignore[attr-defined]
            continue
        try:
            view = fmt.read(texts[path], path)  # type: ignore[attr-defined]
        except SemanticError as exc:
            model.problems.append(Problem(exc.message, exc.file or path, exc.line))
            continue
        first = model.views.get(view.name)
        if first is not None:
            model.problems.append(Problem(f"two views are named `{view.name}`: this file and {first.file}; "
                                          f"rename one (a `name:` key, or the file)", path, view.line))
            continue
        model.views[view.name] = view
        model.problems.extend(view.problems)
