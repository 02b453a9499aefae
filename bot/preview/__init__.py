"""Branch previews: a branch's changed dbt models built into `layersync_preview_<branch>`, next to prod,
kept up to date on every push, paired with the semantic-layer branch of the same name, and dropped
when the branch goes (see README, "Branch previews").

- `names`    — preview schema names: sanitised, unique, ≤ 63 characters, never prod;
- `registry` — the SQLite record of every preview (branch → schema, commit, status, build token);
- `envfile`  — the environment file a BI tool needs to query a preview (view → schema);
- `build`    — building (and rebuilding, incrementally, cancelling older builds) a preview;
- `gc`       — dropping previews (closed PRs, deleted branches, stale ones) and listing them.
"""
