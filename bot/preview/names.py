"""Preview schema names (pure): `layersync_preview_<branch>`, sanitised, ≤ 63 characters, unique.

A branch name can be anything git allows (`feature/Add-X`, `prod`, a 300-character name) and, from a
webhook, anything at all; none of it may reach SQL as written. The schema is always
`layersync_preview_` + `[a-z0-9_]`, so it can never be prod, `main`, `public` or any schema outside the
prefix. Two branches that sanitise alike (`feature/x`, `feature-x`) get different schemas: a branch
name that sanitising changed gets a short hash of the exact name. Names also never prefix-collide with
another preview's (`…_feat` and `…_feat_finance`): dbt names custom schemas `<schema>_<custom>`, so
dropping one preview with its custom schemas must never take another's. The registry records the
name a branch got, so it stays the same for the life of the preview.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable

from bot.impact.build import MAX_IDENTIFIER, RESERVED_SCHEMAS, _collides

PREVIEW_PREFIX = "layersync_preview_"
MIN_BUDGET = len(PREVIEW_PREFIX) + 17          # room for `h` + a 16-digit hash, whatever is reserved
_VALID = re.compile(r"layersync_preview_[a-z0-9_]+")


def sanitise(branch: str) -> str:
    """`Feature/Add-X` → `feature_add_x`: lower case, `[a-z0-9_]` runs, no leading/trailing `_`."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(branch).lower())
    return re.sub(r"_+", "_", name).strip("_")


def _digest(branch: str) -> str:
    return hashlib.sha1(str(branch).encode("utf-8", "surrogatepass")).hexdigest()


def _budget(reserve: int) -> int:
    return max(MIN_BUDGET, MAX_IDENTIFIER - max(0, int(reserve)))


def candidates(branch: str, *, reserve: int = 0) -> list[str]:
    """The names a branch may get, best first; every one a valid preview schema within the budget
    (63 minus `reserve`, the longest `_<custom>` suffix dbt may append for a custom schema)."""
    budget = _budget(reserve)
    clean, digest = sanitise(branch), _digest(branch)
    found: list[str] = []
    if clean and clean == branch and len(PREVIEW_PREFIX + clean) <= budget:
        found.append(PREVIEW_PREFIX + clean)          # the name as written: nothing was lost
    room = budget - len(PREVIEW_PREFIX) - 9           # `_` + 8 hash digits
    head = clean[:room].rstrip("_")
    found.append(PREVIEW_PREFIX + (f"{head}_{digest[:8]}" if head else f"h{digest[:8]}"))
    found.append(f"{PREVIEW_PREFIX}h{digest[:16]}")
    found.append(f"{PREVIEW_PREFIX}h{digest[:budget - len(PREVIEW_PREFIX) - 1]}")
    return list(dict.fromkeys(found))


def preview_schema_name(branch: str, *, others: Iterable[str] = (), protected: Iterable[str] = (),
                        reserve: int = 0) -> str:
    """The schema for `branch`'s preview: the first candidate that neither equals nor prefix-collides
    with a protected schema (prod, its custom schemas, `main`, `public`, …) or `others` (the schemas
    of the other previews). Raises ValueError when none is free (a prod schema named `layersync…`)."""
    guard = set(RESERVED_SCHEMAS) | {p.lower() for p in protected}
    taken = {o.lower() for o in others}
    for candidate in candidates(branch, reserve=reserve):
        if not _collides(candidate, guard) and not _collides(candidate, taken):
            return check_preview_schema(candidate, guard)
    raise ValueError(f"no preview schema name for branch {branch!r} stays clear of "
                     f"{', '.join(sorted(guard | taken)) or 'the protected schemas'}")


def is_preview_schema(name: str) -> bool:
    """A name only layersync's previews use: `layersync_preview_[a-z0-9_]+`, ≤ 63 characters."""
    return bool(name) and len(name) <= MAX_IDENTIFIER and bool(_VALID.fullmatch(name)) \
        and bool(name[len(PREVIEW_PREFIX):].strip("_"))


def check_preview_schema(name: str, protected: Iterable[str] = ()) -> str:
    """`name` if layersync may write or drop it as a preview, else ValueError (whatever the registry
    or a caller says: this is the last check before any write)."""
    if not is_preview_schema(name):
        raise ValueError(f"refusing schema {name!r}: previews live only in {PREVIEW_PREFIX}* schemas "
                         f"of [a-z0-9_], at most {MAX_IDENTIFIER} characters")
    guard = set(RESERVED_SCHEMAS) | {p.lower() for p in protected}
    if _collides(name, guard):
        raise ValueError(f"refusing schema {name!r}: it is, or collides with, a protected schema")
    return name


def custom_suffix_reserve(prod_schema: str, prod_schemas: Iterable[str]) -> int:
    """The room to keep for dbt's custom schemas: prod's `<prod>_<custom>` become `<preview>_<custom>`."""
    prefix = prod_schema.lower() + "_"
    return max([len(s) - len(prefix) + 1 for s in prod_schemas if s.lower().startswith(prefix)] or [0])


# --------------------------------------------------------------------------- ages and sizes

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """`7d`, `12h`, `30m`, `90s`, `2w` → seconds; ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text or "").lower())
    if not match:
        raise ValueError(f"`{text}` is not an age: write a number and a unit, e.g. 7d, 12h, 30m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}" if seconds >= 10 * size else f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def format_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
