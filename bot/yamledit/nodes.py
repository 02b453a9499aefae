"""YAML text composed into nodes that know where they are, and nodes (or loaded data) as plain Python.

PyYAML's composer (libyaml's when it is installed) gives every key, value and item with its start
and end offsets, so an edit is located without guessing YAML structure from lines; `plain` turns
nodes into the builtins a re-read is compared with, and is the one conversion every module uses
for YAML it has loaded (ruamel's commented containers included).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.errors import LayersyncError
from bot.yamlbounds import AliasExpansionError, bounded

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "YamlEditError", "build", "compose", "plain", "same",
           "key_of", "scalar_value"]

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCT = SafeConstructor()
_SCALARS = {
    "tag:yaml.org,2002:null": _CONSTRUCT.construct_yaml_null,
    "tag:yaml.org,2002:bool": _CONSTRUCT.construct_yaml_bool,
    "tag:yaml.org,2002:int": _CONSTRUCT.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCT.construct_yaml_float,
    "tag:yaml.org,2002:str": lambda node: node.value,
}


class YamlEditError(LayersyncError):
    """YAML the kit cannot read, a path that is not there, or an edit whose re-read is not what it
    should be: with the file and, where known, the 1-based line."""


def compose(text: str, path: str | None = None) -> Node | None:
    """The document's root node (None for a document of only comments); invalid YAML, or more than
    one document, raises YamlEditError at its line."""
    loader = _LOADER(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise YamlEditError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlEditError(f"invalid YAML: {exc}", path) from None
    finally:
        loader.dispose()


def plain(value: Any, seen: dict[int, Any] | None = None, path: str | None = None,
          error: type[LayersyncError] = YamlEditError) -> Any:
    """Builtins for a composed node (scalars resolved as YAML 1.1, as dbt and PyYAML read them) or for
    loaded data (ruamel's commented maps, sequences and scalar subclasses).

    Nodes: an alias becomes one shared object, so the size check of `yamlbounds` stays linear, and a
    duplicate key is refused (a re-read that kept the last of two keys could hide a stale one).
    Loaded data: with `seen` given, a container met twice (an alias, or a cycle) is refused, since
    converting it twice is how a few hundred bytes become gigabytes; `seen` may span calls. The
    refusal is an `error` (a reader raises its own kind), with `path` and the container's line.
    """
    if isinstance(value, Node):
        return build(value, path)[0]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Mapping) or isinstance(value, (list, tuple)):
        if seen is not None:
            if id(value) in seen:
                raise error("YAML aliases are not allowed here (a value is shared or contains itself)",
                            path, _loaded_line(value))
            seen[id(value)] = value
        if isinstance(value, Mapping):
            return {_key(plain(k, seen, path, error)): plain(v, seen, path, error) for k, v in value.items()}
        return [plain(v, seen, path, error) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "value"):      # ruamel's tagged scalars
        return value.value
    return value


def build(node: Node, path: str | None = None) -> tuple[Any, dict[int, Any]]:
    """`plain(node)` and, for every collection node, the container built for it (by the node's id)."""
    built: dict[int, Any] = {}
    data = _from_node(node, built, path)
    aliased = built.pop(_ALIASED, None)
    if aliased is not None:          # without aliases nothing is shared: the size is the document's
        try:
            bounded(data)
        except AliasExpansionError as exc:
            raise YamlEditError(exc.problem, path, exc.line or aliased) from None
    return data, built


def scalar_value(node: Node) -> Any:
    """A scalar node's value (keys are compared by it without building anything else)."""
    convert = _SCALARS.get(node.tag)
    return convert(node) if convert is not None else _from_node(node, {}, None)


def _key(key: Any) -> str:
    """Keys as text (`1:` and `'1':` alike), as every reader of these files compares them."""
    return key if isinstance(key, str) else str(key)


def key_of(node: Node) -> str:
    """A key node's key as `plain` writes it."""
    return _key(scalar_value(node))


def _loaded_line(container: Any) -> int | None:
    try:
        return int(container.lc.line) + 1
    except (AttributeError, TypeError, ValueError):
        return None


_ALIASED = -1   # key of `built` set when a node was met twice (an alias)


def _from_node(node: Node, built: dict[int, Any], path: str | None) -> Any:
    if id(node) in built:
        built.setdefault(_ALIASED, node.start_mark.line + 1)   # the line of the first anchor aliased
        return built[id(node)]
    if isinstance(node, ScalarNode):
        convert = _SCALARS.get(node.tag)
        if convert is None:
            try:
                return _CONSTRUCT.construct_object(node) if node.tag.startswith("tag:yaml.org,2002:") else node.value
            except yaml.YAMLError:
                return node.value
        return convert(node)
    if isinstance(node, SequenceNode):
        items: list[Any] = []
        built[id(node)] = items
        items.extend(_from_node(item, built, path) for item in node.value)
        return items
    mapping: dict[Any, Any] = {}
    built[id(node)] = mapping
    for key_node, value_node in node.value:
        key = _key(_from_node(key_node, built, path))
        if key in mapping:
            raise YamlEditError(f"duplicate key `{key}`", path, key_node.start_mark.line + 1)
        mapping[key] = _from_node(value_node, built, path)
    return mapping


def same(a: Any, b: Any) -> bool:
    """Equal as data and in key order (a key moved is a change), NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b
