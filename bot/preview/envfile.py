"""The environment file of a preview: what a BI tool (or a person) needs to query it.

It is written in the semantic layer's own format — YAML keyed like the view files (`table_name`,
`schema`) — and maps each view to the relation it reads in the preview: the preview schema (or its dbt
custom schema `<preview>_<custom>`), where the branch's changed models are built and every other model
is a view onto prod (`dbt clone`). `schemas:` is the same override per schema (prod → preview), for
tools that swap schemas rather than views (Omni's dynamic environments, dbt Cloud's PR schemas).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from bot.dbt.project import normalise_table_name
from bot.impact.prod import Relation, relations
from bot.semantic.model import View

ENV_DIR = "environments"


@dataclass(frozen=True)
class ViewTarget:
    view: str
    file: str
    table_name: str
    schema: str | None             # where the view reads in the environment (None: not a dbt model)
    table: str | None
    declared_schema: str | None    # the view file's own `schema:`


def env_file_path(schema: str) -> str:
    """Where the file belongs in the semantic repo (it is given in the reply, not committed)."""
    return f"{ENV_DIR}/{schema}.yaml"


def _by_table(manifest: dict) -> dict[str, Relation]:
    """Model name and alias (lower case) → relation, so a view's `table_name` finds its model either way."""
    found: dict[str, Relation] = {}
    for name, (schema, identifier) in relations(manifest).items():
        found.setdefault(name.lower(), (schema, identifier))
        found.setdefault(identifier.lower(), (schema, identifier))
    return found


def view_targets(views: Iterable[View], manifest: dict) -> list[ViewTarget]:
    """Each view and the relation it reads under `manifest` (the preview's, or prod's)."""
    tables = _by_table(manifest)
    out: list[ViewTarget] = []
    for view in sorted(views, key=lambda v: v.name):
        relation = tables.get(normalise_table_name(view.table_name))
        out.append(ViewTarget(view.name, view.file, view.table_name, relation[0] if relation else None,
                              relation[1] if relation else None, view.schema))
    return out


def schema_overrides(prod_manifest: dict, env_manifest: dict) -> dict[str, str]:
    """prod schema → environment schema, for every model both manifests place (custom schemas too)."""
    prod, env = relations(prod_manifest), relations(env_manifest)
    pairs: dict[str, str] = {}
    for name, (schema, _) in sorted(prod.items()):
        if name in env:
            pairs.setdefault(schema, env[name][0])
    return dict(sorted(pairs.items()))


def _clean(text: Any) -> str:
    """One line of plain text for a YAML comment (branch names come from outside)."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def render_env_file(*, environment: str, branch: str, warehouse: str, dbt_commit: str | None,
                    semantic_commit: str | None, overrides: dict[str, str], targets: list[ViewTarget]) -> str:
    """The file's text: header comment, environment facts, `schemas:` overrides and one entry per view."""
    doc = CommentedMap()
    doc["environment"] = environment
    doc["branch"] = branch
    doc["warehouse"] = warehouse
    doc["dbt_commit"] = dbt_commit
    doc["semantic_commit"] = semantic_commit
    doc["schemas"] = CommentedMap(overrides)
    views = CommentedMap()
    for target in targets:
        entry = CommentedMap()
        entry["table_name"] = target.table_name
        entry["schema"] = target.schema if target.schema is not None else target.declared_schema
        views[target.view] = entry
        if target.schema is None:
            views.yaml_add_eol_comment("not a model of the dbt project: left as it is", target.view)
    doc["views"] = views
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    header = (f"# layersync preview environment for branch `{_clean(branch)}` (generated; do not edit).\n"
              f"# Each view reads its table from the schema below: prod's connection, these schemas.\n")
    return header + buffer.getvalue()
