"""What a PR changes in the dbt DAG (from the base and head manifests), drawn as Mermaid."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

CHANGEABLE = ("model", "seed", "snapshot")   # nodes whose own change we report (seeds are data the PR edits)


@dataclass
class Lineage:
    modified: list[str] = field(default_factory=list)     # checksum changed
    added: list[str] = field(default_factory=list)        # only in the dev manifest
    removed: list[str] = field(default_factory=list)      # only in the prod manifest
    descendants: list[str] = field(default_factory=list)  # models downstream of the above, unchanged themselves
    edges: list[tuple[str, str]] = field(default_factory=list)   # parent → child, by name

    @property
    def changed(self) -> list[str]:
        return [*self.modified, *self.added, *self.removed]


def _display(node: dict) -> str:
    if node.get("resource_type") == "source":
        return f"{node.get('source_name')}.{node.get('name')}"
    version = node.get("version")
    return f"{node['name']}_v{version}" if version not in (None, "") else node["name"]


def _graph(manifest: dict) -> tuple[dict[str, dict], dict[str, str], dict[str, list[str]]]:
    """Changeable nodes by unique_id, display names of every node, parents of every model/snapshot."""
    nodes = {uid: n for uid, n in (manifest.get("nodes") or {}).items() if n.get("resource_type") in CHANGEABLE}
    names = {uid: _display(n) for uid, n in (manifest.get("nodes") or {}).items() if "name" in n}
    names.update({uid: _display({**n, "resource_type": "source"})
                  for uid, n in (manifest.get("sources") or {}).items()})
    parents = {uid: [p for p in (n.get("depends_on") or {}).get("nodes", [])
                     if p.split(".", 1)[0] in (*CHANGEABLE, "source")]
               for uid, n in nodes.items()}
    return nodes, names, parents


def _checksum(node: dict) -> str | None:
    value = node.get("checksum")
    return value.get("checksum") if isinstance(value, dict) else value


def lineage(prod_manifest: dict, dev_manifest: dict) -> Lineage:
    prod, prod_names, prod_parents = _graph(prod_manifest)
    dev, dev_names, dev_parents = _graph(dev_manifest)
    modified = sorted(uid for uid in dev.keys() & prod.keys() if _checksum(dev[uid]) != _checksum(prod[uid]))
    added = sorted(dev.keys() - prod.keys())
    removed = sorted(prod.keys() - dev.keys())

    children: dict[str, set[str]] = {}
    for child, parents in dev_parents.items():
        for parent in parents:
            children.setdefault(parent, set()).add(child)
    changed = set(modified) | set(added)
    descendants: set[str] = set()
    frontier = list(changed)
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in descendants and child not in changed:
                descendants.add(child)
                frontier.append(child)
    descendants = {d for d in descendants if d.split(".", 1)[0] == "model"}

    edges: set[tuple[str, str]] = set()
    for child in changed | descendants:
        edges.update((dev_names.get(p, p), dev_names[child]) for p in dev_parents.get(child, []))
    for gone in removed:       # where a removed model sat: its parents and its children, as of prod
        edges.update((prod_names.get(p, p), prod_names[gone]) for p in prod_parents.get(gone, []))
        edges.update((prod_names[gone], prod_names.get(c, c)) for c, ps in prod_parents.items() if gone in ps)

    return Lineage(modified=[dev_names[u] for u in modified], added=[dev_names[u] for u in added],
                   removed=[prod_names[u] for u in removed],
                   descendants=sorted(dev_names[u] for u in descendants), edges=sorted(edges))


# --------------------------------------------------------------------------- Mermaid

CLASSES = {
    "modified": "fill:#fff4ce,stroke:#b08800,color:#000",
    "added": "fill:#dcffe4,stroke:#22863a,color:#000",
    "removed": "fill:#ffdce0,stroke:#cb2431,color:#000,stroke-dasharray:4 2",
    "view": "fill:#e6f0ff,stroke:#0366d6,color:#000",
    "more": "fill:#f6f8fa,stroke:#959da5,color:#586069,stroke-dasharray:2 2",
}


def _label(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _views_by_model(views: dict[str, list[str]] | None) -> dict[str, dict[str, int]]:
    """`{model: ["orders.amount", "orders.status", "order_facts"]}` → `{model: {"orders": 2, "order_facts": 0}}`.

    Each entry is a semantic field id (`view.field`, counted) or a bare view name.
    """
    grouped: dict[str, dict[str, int]] = {}
    for model, entries in (views or {}).items():
        per_view = grouped.setdefault(model, {})
        for entry in entries:
            view, _, field_name = entry.partition(".")
            per_view[view] = per_view.get(view, 0) + (1 if field_name else 0)
    return grouped


def mermaid(lineage: Lineage, views: dict[str, list[str]] | None = None, max_nodes: int = 40) -> str:
    """A small `graph LR`: changed models styled by class, descendants plain, the semantic views
    reading them as `view:<name>` nodes; at most `max_nodes` nodes (changed ones first), then "… N more"."""
    status = {**{n: "removed" for n in lineage.removed}, **{n: "added" for n in lineage.added},
              **{n: "modified" for n in lineage.modified}}
    ordered: list[str] = []
    for name in [*lineage.modified, *lineage.added, *lineage.removed, *lineage.descendants,
                 *(n for edge in lineage.edges for n in edge)]:
        if name not in ordered:
            ordered.append(name)
    view_nodes: list[tuple[str, str, int]] = []       # (view key, model, fields)
    for model, per_view in _views_by_model(views).items():
        if model in ordered:
            view_nodes.extend((f"view:{view}", model, count) for view, count in sorted(per_view.items()))
    # changed models first, then views on them, then descendants and parents
    changed = [n for n in ordered if n in status]
    rest = [n for n in ordered if n not in status]
    candidates: list[tuple[str, str]] = [("model", n) for n in changed]
    candidates += [("view", v[0]) for v in view_nodes if v[1] in status]
    candidates += [("model", n) for n in rest]
    candidates += [("view", v[0]) for v in view_nodes if v[1] not in status]
    seen_views: set[str] = set()
    unique: list[tuple[str, str]] = []
    for kind, key in candidates:
        if kind == "view":
            if key in seen_views:
                continue
            seen_views.add(key)
        unique.append((kind, key))
    limit = max(1, max_nodes)
    kept = unique if len(unique) <= limit else unique[:limit - 1]
    hidden = len(unique) - len(kept)

    ids: dict[tuple[str, str], str] = {}
    used: set[str] = set()

    def node_id(kind: str, key: str) -> str:
        if (kind, key) not in ids:
            base = ("v_" if kind == "view" else "m_") + (re.sub(r"[^A-Za-z0-9_]", "_", key.split(":", 1)[-1]) or "x")
            candidate, i = base, 2
            while candidate in used:
                candidate, i = f"{base}_{i}", i + 1
            used.add(candidate)
            ids[(kind, key)] = candidate
        return ids[(kind, key)]

    fields_of = {}
    for key, _model, count in view_nodes:
        fields_of[key] = fields_of.get(key, 0) + count
    lines = ["graph LR"]
    lines += [f"  classDef {name} {style}" for name, style in CLASSES.items()]
    kept_set = set(kept)
    for kind, key in kept:
        if kind == "model":
            suffix = f":::{status[key]}" if key in status else ""
            lines.append(f'  {node_id(kind, key)}["{_label(key)}"]{suffix}')
        else:
            count = fields_of.get(key, 0)
            text = f"{key} ({count} field{'s' if count != 1 else ''})" if count else key
            lines.append(f'  {node_id(kind, key)}(["{_label(text)}"]):::view')
    for parent, child in lineage.edges:
        if ("model", parent) in kept_set and ("model", child) in kept_set:
            arrow = "-.->" if parent in lineage.removed or child in lineage.removed else "-->"
            lines.append(f"  {node_id('model', parent)} {arrow} {node_id('model', child)}")
    for key, model, _count in view_nodes:
        if ("view", key) in kept_set and ("model", model) in kept_set:
            lines.append(f"  {node_id('model', model)} --> {node_id('view', key)}")
    if hidden:
        lines.append(f'  more_nodes["… {hidden} more"]:::more')
    return "\n".join(lines) + "\n"
