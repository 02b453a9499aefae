"""What a dbt project's semantic layer already declares: semantic models, measures, metrics, the
time spine, and whether the project is on dbt's newer spec (pure: files in, an index out).

The translator extends what is there and must never take a human's name, so it reads every
semantic model and metric of the project with the file and line each is written at. Only files
that mention the keys are parsed, so a project of thousands of properties files costs a text scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.dbt.project import DbtProject
from bot.errors import RepoError
from bot.yamlbounds import bounded

# `config: {meta: {layersync_field: "<view>.<field>"}}` marks a measure or metric layersync wrote, so
# a rerun updates its own definitions and never a human's.
OWNER_KEY = "layersync_field"
TIME_SPINE_LEGACY = "metricflow_time_spine"
_MENTIONS = ("semantic_models", "metrics", "time_spine", "semantic_model", "data_type")
TIME_TYPES = ("date", "time", "timestamp", "datetime", "timestamptz", "timestamp_ntz", "timestamp_tz")


@dataclass(frozen=True)
class Declared:
    """One semantic model, measure, metric, entity or dimension as the project writes it."""

    name: str
    file: str
    line: int
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    owner: str | None = None                 # the semantic-layer field layersync wrote it from

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class DeclaredSemanticModel(Declared):
    model: str = ""                          # the dbt model its `model: ref('...')` names (lower case)
    entities: dict[str, Declared] = field(default_factory=dict, compare=False, hash=False)
    dimensions: dict[str, Declared] = field(default_factory=dict, compare=False, hash=False)
    measures: dict[str, Declared] = field(default_factory=dict, compare=False, hash=False)
    agg_time_dimension: str | None = None


@dataclass
class SemanticLayer:
    semantic_models: dict[str, DeclaredSemanticModel] = field(default_factory=dict)   # by name
    metrics: dict[str, Declared] = field(default_factory=dict)
    time_spine: str | None = None            # `file:line` (or model path) of the project's time spine
    newer_spec: Declared | None = None       # the first place written in dbt 1.12's spec
    column_types: dict[str, dict[str, str]] = field(default_factory=dict)   # model → column → data_type
    problems: list[RepoError] = field(default_factory=list)

    def for_model(self, model: str) -> DeclaredSemanticModel | None:
        wanted = model.lower()
        return next((s for s in self.semantic_models.values() if s.model == wanted), None)

    def measure_owner(self, name: str) -> DeclaredSemanticModel | None:
        """The semantic model declaring a measure of this name: measure names are project-wide."""
        return next((s for s in self.semantic_models.values() if name in s.measures), None)


def _line(node: Any, key: Any = None, default: int = 1) -> int:
    try:
        if key is None:
            return int(node.lc.line) + 1
        return int(node.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _item_line(seq: Any, index: int, default: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def owner_of(data: Any) -> str | None:
    """The semantic-layer field a definition was written from (its `config.meta` marker), if ours."""
    if not isinstance(data, dict):
        return None
    config = data.get("config")
    meta = config.get("meta") if isinstance(config, dict) else None
    value = meta.get(OWNER_KEY) if isinstance(meta, dict) else None
    return str(value) if isinstance(value, str) else None


def ref_target(text: Any) -> str:
    """`ref('orders')` / `ref("pkg", "orders")` → `orders` (lower case); anything else as it is."""
    raw = str(text or "").strip()
    if raw.startswith("ref(") and raw.endswith(")"):
        parts = [p.strip().strip("'\"") for p in raw[4:-1].split(",")]
        return (parts[-1] if parts else "").lower()
    return raw.lower()


def _named(items: Any, path: str) -> dict[str, Declared]:
    found: dict[str, Declared] = {}
    if not isinstance(items, list):
        return found
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") is not None:
            name = str(item["name"])
            found[name] = Declared(name, path, _item_line(items, index, _line(item)), _plain(item), owner_of(item))
    return found


def read_semantic_layer(project: DbtProject, paths: list[str] | None = None) -> SemanticLayer:
    """The index of every YAML file under the project's model paths (or `paths`) that mentions a
    semantic-layer key; a file that is no YAML is recorded as a problem with its line."""
    layer = SemanticLayer()
    listing = paths if paths is not None else [p for p in project._files() if p.endswith((".yml", ".yaml"))]
    for path in listing:
        text = project.store.read_text(path)
        if not text or not any(word in text for word in _MENTIONS):
            continue
        try:
            data = bounded(YAML(typ="rt").load(text))
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            layer.problems.append(RepoError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path,
                                            mark.line + 1 if mark else None))
            continue
        if isinstance(data, dict):
            _index(layer, data, path)
    if layer.time_spine is None and TIME_SPINE_LEGACY in project.models():
        layer.time_spine = project.models()[TIME_SPINE_LEGACY].path
    return layer


def _index(layer: SemanticLayer, data: dict, path: str) -> None:
    for index, entry in enumerate(data.get("models") or [] if isinstance(data.get("models"), list) else []):
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name") or "")
        line = _item_line(data["models"], index, 1)
        if "time_spine" in entry and layer.time_spine is None:
            layer.time_spine = f"{path}:{_line(entry, 'time_spine', line)}"
        newer = [k for k in ("semantic_model", "metrics", "agg_time_dimension") if k in entry]
        columns = entry.get("columns") if isinstance(entry.get("columns"), list) else []
        for column in columns:
            if isinstance(column, dict) and column.get("name") is not None and column.get("data_type"):
                layer.column_types.setdefault(name.lower(), {})[str(column["name"]).lower()] = \
                    str(column["data_type"]).lower()
            if isinstance(column, dict) and ("entity" in column or "dimension" in column) and not newer:
                newer = ["entity" if "entity" in column else "dimension"]
        if newer and layer.newer_spec is None:
            layer.newer_spec = Declared(f"{name}.{newer[0]}", path, _line(entry, newer[0], line)
                                        if newer[0] in entry else line)
    models = data.get("semantic_models")
    if isinstance(models, list):
        for index, entry in enumerate(models):
            if not isinstance(entry, dict) or entry.get("name") is None:
                continue
            name = str(entry["name"])
            defaults = entry.get("defaults") if isinstance(entry.get("defaults"), dict) else {}
            layer.semantic_models[name] = DeclaredSemanticModel(
                name, path, _item_line(models, index, 1), _plain(entry), None, ref_target(entry.get("model")),
                _named(entry.get("entities"), path), _named(entry.get("dimensions"), path),
                _named(entry.get("measures"), path),
                str(defaults["agg_time_dimension"]) if defaults.get("agg_time_dimension") else None)
    layer.metrics.update(_named(data.get("metrics"), path))


def is_time_type(data_type: str | None) -> bool:
    text = (data_type or "").lower()
    return text.startswith(TIME_TYPES) or text in TIME_TYPES
