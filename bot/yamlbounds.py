"""How large a YAML document becomes once its aliases are followed, measured without following them.

dbt allows anchors and aliases in its YAML, so layersync reads them — but a few hundred bytes of
nested aliases ("billion laughs") expand to gigabytes in any code that walks the loaded data
(converting it to builtins, comparing it, dumping it). Loaders share one object per anchor, so the
expanded size can be counted in time linear in the *document*: each shared object is sized once.
Every load of a user's YAML goes through `bounded`, which refuses a document past the bound, or
one that contains itself, with a YAML error its callers already turn into "invalid YAML" at a line.
"""
from __future__ import annotations

from typing import Any, TypeVar

import yaml as pyyaml
from ruamel.yaml.error import MarkedYAMLError

__all__ = ["MAX_EXPANDED_NODES", "AliasExpansionError", "bounded", "expanded_size"]

# The largest real properties files we have seen hold ~50,000 nodes; aliases that multiply a
# document past this are an attack or a mistake, never a dbt project.
MAX_EXPANDED_NODES = 500_000

T = TypeVar("T")


class AliasExpansionError(MarkedYAMLError, pyyaml.YAMLError):
    """Both libraries' YAML error (ruamel's with a mark), so every existing `except YAMLError` or
    `except MarkedYAMLError` reports it like a parse error, at its line where it is known."""

    def __init__(self, problem: str, line: int | None = None):
        Exception.__init__(self, problem)
        self.context, self.context_mark, self.note, self.warn = None, None, None, None
        self.problem = problem
        self.line = line               # 1-based, where known
        self.problem_mark = _Mark(line - 1) if line else None

    def __str__(self) -> str:
        return self.problem


class _Mark:
    """Just enough of a YAML mark (`line`, 0-based) for callers that read `problem_mark.line`."""

    def __init__(self, line: int):
        self.line = line
        self.column = 0

    def __str__(self) -> str:
        return f"line {self.line + 1}"


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [part for pair in node.items() for part in pair]
    return list(node)


def _line(node: Any) -> int | None:
    try:
        return int(node.lc.line) + 1         # ruamel's round-trip containers know where they start
    except (AttributeError, TypeError, ValueError):
        return None


def expanded_size(data: Any, limit: int = MAX_EXPANDED_NODES) -> int:
    """The number of values `data` holds with every alias followed (containers and scalars), counted
    with each shared container sized once; `AliasExpansionError` past `limit` or on a cycle."""
    sizes: dict[int, int] = {}
    alive: list[Any] = []                    # ids stay unique only while their objects live
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, (dict, list, tuple)):
            continue
        key = id(node)
        if finished:
            on_path.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (dict, list, tuple)) else 1
                            for c in _children(node))
            if total > limit:
                raise AliasExpansionError(f"YAML aliases expand this document past {limit:,} values; "
                                          f"write the values out or use fewer aliases", _line(node))
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise AliasExpansionError("a YAML alias refers to a value that contains it (a cycle)", _line(node))
        on_path.add(key)
        alive.append(node)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node)
                     if isinstance(child, (dict, list, tuple)) and id(child) not in sizes)
    return sizes.get(id(data), 1)


def bounded(data: T, limit: int = MAX_EXPANDED_NODES) -> T:
    """`data` as loaded, once it is known not to blow up whoever walks it."""
    expanded_size(data, limit)
    return data
