"""GitHub's published REST description, indexed for request validation and response shaping.

The description is the ``@octokit/openapi`` npm package (GitHub's own
``api.github.com`` OpenAPI 3.0 document, republished by Octokit). It is fetched
once with ``npm pack`` into a cache directory, and a compact index (routes,
operations with their ``$ref``-resolved parameters, and the components with
prose stripped) is pickled beside it, so a test session pays ~0.1 s to load it
rather than parsing 13 MB of JSON.

Cache directory: ``$LAYERSYNC_CACHE`` or ``~/.cache/layersync``; the package
version is pinned (:data:`PINNED_VERSION`) and can be overridden with
``$LAYERSYNC_OCTOKIT_OPENAPI_VERSION``.

Schema dialect: OpenAPI 3.0 schemas are validated with JSON Schema draft 4
(the dialect 3.0 is based on) after two conversions made once at index time:
``nullable: true`` becomes a ``null`` alternative, and ``oneOf`` becomes
``anyOf`` (GitHub's ``oneOf`` branches overlap, e.g. public vs. private user,
so strict exclusivity would reject real GitHub payloads).
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import pickle
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jsonschema

__all__ = [
    "PINNED_VERSION",
    "Operation",
    "Spec",
    "SpecUnavailable",
    "cache_dir",
    "load_spec",
]

#: ``npm view @octokit/openapi version`` when this harness was written.
PINNED_VERSION = "23.0.2"
PACKAGE = "@octokit/openapi"
MEMBER = "package/generated/api.github.com.json"
#: Bump when the index layout or the schema conversions change.
INDEX_FORMAT = 3

_NO_VALUE = object()


class SpecUnavailable(RuntimeError):
    """The description could not be fetched (no npm, no registry) and is not cached."""


# --------------------------------------------------------------------------- fetching


def cache_dir() -> Path:
    root = os.environ.get("LAYERSYNC_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "layersync"


def _version() -> str:
    return os.environ.get("LAYERSYNC_OCTOKIT_OPENAPI_VERSION", PINNED_VERSION)


def _spec_dir(version: str) -> Path:
    return cache_dir() / f"octokit-openapi-{version}"


class _FileLock:
    """An exclusive ``flock`` so parallel test processes fetch and index only once."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "_FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_description(version: str | None = None) -> Path:
    """Path of ``api.github.com.json`` for ``version``, running ``npm pack`` if it is not cached."""
    version = version or _version()
    target = _spec_dir(version) / "api.github.com.json"
    if target.exists():
        return target
    with _FileLock(_spec_dir(version) / ".lock"):
        if target.exists():
            return target
        npm = shutil.which("npm")
        if npm is None:
            raise SpecUnavailable(
                f"npm is not installed, and {target} is not cached: cannot obtain {PACKAGE}@{version}"
            )
        with tempfile.TemporaryDirectory(prefix="octokit-openapi-") as tmp:
            proc = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", tmp, "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tarballs:
                raise SpecUnavailable(
                    f"`npm pack {PACKAGE}@{version}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
                )
            with tarfile.open(tarballs[0], "r:gz") as tar:
                member = tar.extractfile(MEMBER)
                if member is None:
                    raise SpecUnavailable(f"{tarballs[0].name} has no {MEMBER}")
                _atomic_write(target, member.read())
    return target


# --------------------------------------------------------------------------- indexing

_PROSE_KEYS = {"description", "summary", "title"}
_DROP_KEYS = {"externalDocs", "x-github", "discriminator", "x-octokit", "x-multi-segment", "deprecated"}


def _convert_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema object -> JSON Schema draft 4, minus prose (see module docstring)."""
    if isinstance(schema, list):
        return [_convert_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        # OpenAPI 3.0: siblings of $ref are ignored.
        return {"$ref": schema["$ref"]}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP_KEYS or (key in _PROSE_KEYS and isinstance(value, str)):
            continue
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: _convert_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert_schema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out["anyOf" if key == "oneOf" else key] = [_convert_schema(sub) for sub in value]
        else:
            out[key] = value
    if "anyOf" in out and "anyOf" in schema and "oneOf" in schema:  # pragma: no cover - never both in GitHub's
        out["allOf"] = out.get("allOf", []) + [{"anyOf": _convert_schema(schema["oneOf"])}]
    if out.pop("nullable", False) is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"] if "null" not in types else types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _resolve(doc: dict, ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _deref(doc: dict, node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(doc, node["$ref"])
        seen += 1
        if seen > 20:
            raise ValueError("reference cycle")
    return node


def _build_index(doc: dict, version: str) -> tuple[dict, dict]:
    components = doc.get("components", {})
    index: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "version": version,
        "openapi": doc.get("openapi"),
        "servers": [s.get("url") for s in doc.get("servers", [])],
        "schemas": {name: _convert_schema(s) for name, s in components.get("schemas", {}).items()},
        "operations": {},
    }
    for template, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete", "head", "options", "trace"):
                continue
            params: dict[tuple[str, str], dict] = {}
            for p in list(shared) + list(op.get("parameters", [])):
                p = _deref(doc, p)
                params[(p["in"], p["name"])] = {
                    "name": p["name"],
                    "in": p["in"],
                    "required": bool(p.get("required", p["in"] == "path")),
                    "schema": _convert_schema(p.get("schema", {})),
                }
            body = None
            if "requestBody" in op:
                rb = _deref(doc, op["requestBody"])
                body = {
                    "required": bool(rb.get("required", False)),
                    "content": {mt: _convert_schema(c.get("schema", {})) for mt, c in rb.get("content", {}).items()},
                }
            responses: dict[str, Any] = {}
            for status, resp in op.get("responses", {}).items():
                resp = _deref(doc, resp)
                content: dict[str, Any] = {}
                for mt, c in (resp.get("content") or {}).items():
                    ex_ref = None
                    if "example" in c:
                        ex_ref = {"value": c["example"]}
                    for ex in (c.get("examples") or {}).values():
                        if "$ref" in ex:
                            ex_ref = {"ref": ex["$ref"].rsplit("/", 1)[-1]}
                        elif "value" in ex:
                            ex_ref = {"value": ex["value"]}
                        break
                    content[mt] = {"schema": _convert_schema(c.get("schema")) if "schema" in c else None,
                                   "example": ex_ref}
                responses[status] = {"content": content, "headers": sorted((resp.get("headers") or {}).keys())}
            index["operations"][(method.upper(), template)] = {
                "operationId": op.get("operationId"),
                "parameters": list(params.values()),
                "requestBody": body,
                "responses": responses,
            }
    examples = {name: ex.get("value") for name, ex in components.get("examples", {}).items()}
    return index, examples


_LOAD_LOCK = threading.Lock()
_SPECS: dict[tuple[str, str], "Spec"] = {}
_INDEXES: dict[str, dict] = {}


def _load_index(version: str) -> dict:
    if version in _INDEXES:
        return _INDEXES[version]
    d = _spec_dir(version)
    index_path = d / f"index-v{INDEX_FORMAT}.pickle"
    examples_path = d / f"examples-v{INDEX_FORMAT}.pickle"
    index = None
    if index_path.exists() and examples_path.exists():
        try:
            index = pickle.loads(index_path.read_bytes())
        except Exception:
            index = None
    if index is None or index.get("format") != INDEX_FORMAT or index.get("version") != version:
        source = fetch_description(version)
        with _FileLock(d / ".lock"):
            doc = json.loads(source.read_bytes())
            index, examples = _build_index(doc, version)
            _atomic_write(examples_path, pickle.dumps(examples, protocol=pickle.HIGHEST_PROTOCOL))
            _atomic_write(index_path, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    index["_examples_path"] = str(examples_path)
    _INDEXES[version] = index
    return index


def load_spec(prefix: str = "", version: str | None = None) -> "Spec":
    """The process-wide :class:`Spec` for ``version`` (default: pinned), matching paths under ``prefix``."""
    version = version or _version()
    key = (version, _norm_prefix(prefix))
    with _LOAD_LOCK:
        if key not in _SPECS:
            _SPECS[key] = Spec(_load_index(version), prefix=prefix)
        return _SPECS[key]


def _norm_prefix(prefix: str) -> str:
    prefix = (prefix or "").strip()
    if prefix and urllib.parse.urlsplit(prefix).scheme:
        prefix = urllib.parse.urlsplit(prefix).path
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return prefix


# --------------------------------------------------------------------------- routes

_PARAM = re.compile(r"\{([^}/]+)\}")
#: Path parameters whose values may contain "/" (clients send branch names, refs and file paths unescaped).
_MULTI_SEGMENT = {"path", "ref", "branch", "basehead", "dir", "name", "environment_name", "sha", "commit_sha", "tag"}


@dataclass
class _Route:
    template: str
    segments: list[Any]  # str for a literal segment, None for a whole "{param}", a regex for a mixed one
    score: tuple[int, ...]  # 1 for a literal segment, 0 for a templated one, in order
    methods: dict[str, tuple[str, str]] = field(default_factory=dict)
    _loose: re.Pattern | None = None

    def match_strict(self, parts: list[str]) -> list[str] | None:
        values: list[str] = []
        for seg, part in zip(self.segments, parts):
            if isinstance(seg, str):
                if seg != part:
                    return None
            elif seg is None:
                if not part:
                    return None
                values.append(part)
            else:
                m = seg.fullmatch(part)
                if not m:
                    return None
                values.extend(m.groups())
        return values

    def match_loose(self, path: str) -> list[str] | None:
        """Templated segments may span several path segments (branch names, refs, file paths)."""
        if self._loose is None:
            pieces, pos = [], 0
            for m in _PARAM.finditer(self.template):
                pieces.append(re.escape(self.template[pos:m.start()]))
                pieces.append("(.+?)" if m.group(1) in _MULTI_SEGMENT else "([^/]+?)")
                pos = m.end()
            pieces.append(re.escape(self.template[pos:]))
            self._loose = re.compile("".join(pieces))
        m = self._loose.fullmatch(path)
        return list(m.groups()) if m else None


def _compile(template: str) -> _Route:
    parts = template.strip("/").split("/") if template.strip("/") else []
    segments: list[Any] = []
    score = []
    for seg in parts:
        if not _PARAM.search(seg):
            segments.append(seg)
            score.append(1)
        elif _PARAM.fullmatch(seg):
            segments.append(None)
            score.append(0)
        else:
            pattern, pos = "", 0
            for m in _PARAM.finditer(seg):
                pattern += re.escape(seg[pos:m.start()]) + "(.+?)"
                pos = m.end()
            segments.append(re.compile(pattern + re.escape(seg[pos:])))
            score.append(0)
    return _Route(template, segments, tuple(score))


# --------------------------------------------------------------------------- schema helpers


def _describe(error: jsonschema.ValidationError, where: str) -> str:
    loc = where + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    msg = error.message
    if len(msg) > 300:
        msg = msg[:300] + "…"
    if error.context:
        reasons = sorted({c.message[:160] for c in error.context})[:4]
        msg += " (" + "; ".join(reasons) + ")"
    return f"{loc}: {msg}"


class Spec:
    """Routes and schemas of GitHub's REST API. Obtain it with :func:`load_spec` (cached per process)."""

    def __init__(self, index: dict, prefix: str = ""):
        self.index = index
        self.version: str = index["version"]
        self.prefix = _norm_prefix(prefix)
        self.servers: list[str] = index.get("servers", [])
        self.schemas: dict[str, Any] = index["schemas"]
        self._root = {"components": {"schemas": self.schemas}}
        self._validators: dict[int, Any] = {}
        self._vlock = threading.Lock()
        self._examples: dict[str, Any] | None = None
        self._routes: dict[int, list[_Route]] = {}
        by_template: dict[str, _Route] = {}
        for (method, template), _op in index["operations"].items():
            route = by_template.get(template)
            if route is None:
                route = by_template[template] = _compile(template)
                self._routes.setdefault(len(route.score), []).append(route)
            route.methods[method] = (method, template)
        self._all_routes = list(by_template.values())

    # -- routing
    def strip_prefix(self, path: str) -> str | None:
        """``path`` without the configured prefix, or None if it is not under it."""
        if not self.prefix:
            return path
        if path == self.prefix:
            return "/"
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix):]
        return None

    def _find_route(self, path: str) -> tuple[_Route, dict[str, str]] | None:
        parts = path.strip("/").split("/") if path.strip("/") else []
        best: tuple[_Route, list[str]] | None = None
        for route in self._routes.get(len(parts), []):
            values = route.match_strict(parts)
            if values is not None and (best is None or route.score > best[0].score):
                best = (route, values)
        if best is None:
            for route in self._all_routes:
                if len(route.score) >= len(parts) or not any(n in _MULTI_SEGMENT for n in _PARAM.findall(route.template)):
                    continue
                values = route.match_loose(path)
                if values is not None and (best is None or sum(route.score) > sum(best[0].score)):
                    best = (route, values)
        if best is None:
            return None
        route, values = best
        names = _PARAM.findall(route.template)
        return route, {name: urllib.parse.unquote(value) for name, value in zip(names, values)}

    def allowed_methods(self, path: str) -> list[str]:
        """Methods GitHub documents for ``path`` (after the prefix); empty if the path is undocumented."""
        stripped = self.strip_prefix(path)
        found = self._find_route(stripped) if stripped is not None else None
        return sorted(found[0].methods) if found else []

    def match(self, method: str, path: str) -> "Operation | None":
        """The documented operation for ``method path`` (path under the prefix, no query), or None."""
        stripped = self.strip_prefix(path.split("?", 1)[0])
        if stripped is None:
            return None
        found = self._find_route(stripped)
        if found is None:
            return None
        route, params = found
        key = route.methods.get(method.upper())
        if key is None:
            return None
        return Operation(self, key[0], key[1], self.index["operations"][key], params)

    def operation(self, method: str, template: str) -> "Operation":
        return Operation(self, method.upper(), template, self.index["operations"][(method.upper(), template)], {})

    def operations(self) -> Iterable[tuple[str, str]]:
        return self.index["operations"].keys()

    # -- schemas
    def schema(self, name: str) -> Any:
        return self.schemas[name]

    def deref(self, schema: Any) -> Any:
        hops = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/components/schemas/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            schema = self.schemas[ref.rsplit("/", 1)[-1]]
            hops += 1
            if hops > 20:
                raise ValueError("reference cycle")
        return schema

    def validator(self, schema: Any) -> Any:
        """A draft-4 validator for ``schema`` in which ``#/components/schemas/...`` resolves."""
        key = id(schema)
        with self._vlock:
            v = self._validators.get(key)
            if v is None or v[0] is not schema:
                root = {"components": self._root["components"], "allOf": [schema]}
                v = (schema, jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER))
                self._validators[key] = v
            return v[1]

    def validate(self, schema: Any, instance: Any, where: str = "body") -> list[str]:
        errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [_describe(e, where) for e in errors]

    def undeclared(self, schema: Any, instance: Any, where: str = "body") -> list[str]:
        """Object keys the schema does not declare anywhere (GitHub ignores them; a client sending them has a bug)."""
        out: list[str] = []
        self._undeclared(schema, instance, where, out, 0)
        return out

    def _collect(self, schema: Any, instance: Any, depth: int) -> tuple[set[str], bool, list[Any]]:
        """Declared property names of an object schema (through allOf/anyOf), whether any key is allowed, branches."""
        schema = self.deref(schema)
        if not isinstance(schema, dict) or depth > 30:
            return set(), True, []
        names: set[str] = set(schema.get("properties", {}))
        open_ = False
        branches: list[Any] = []
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) or addl is True or schema.get("patternProperties"):
            open_ = True
        for sub in schema.get("allOf", []):
            n, o, b = self._collect(sub, instance, depth + 1)
            names |= n
            open_ |= o
            branches += b
        if "anyOf" in schema:
            usable = [s for s in schema["anyOf"] if self._type_ok(self.deref(s), instance)]
            for sub in usable or schema["anyOf"]:
                n, o, b = self._collect(sub, instance, depth + 1)
                names |= n
                open_ |= o
                branches += b
        has_shape = bool(
            names or "properties" in schema or schema.get("type") in ("object", ["object"], ["object", "null"])
            or "allOf" in schema or "anyOf" in schema
        )
        if not has_shape:
            open_ = True  # a schema that says nothing about the object's shape
        branches.append(schema)
        return names, open_, branches

    @staticmethod
    def _type_ok(schema: Any, instance: Any) -> bool:
        if not isinstance(schema, dict) or "type" not in schema:
            return True
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        py = {
            "object": dict, "array": list, "string": str, "boolean": bool,
            "integer": int, "number": (int, float), "null": type(None),
        }
        return any(isinstance(instance, py.get(t, object)) and not (t in ("integer", "number") and isinstance(instance, bool)) for t in types)

    def _undeclared(self, schema: Any, instance: Any, where: str, out: list[str], depth: int) -> None:
        if depth > 30 or schema is None:
            return
        if isinstance(instance, dict):
            names, open_, branches = self._collect(schema, instance, depth)
            for key, value in instance.items():
                if key not in names:
                    if not open_:
                        out.append(f"{where}.{key}: not a property GitHub documents for this request")
                    continue
                subs = [b["properties"][key] for b in branches if isinstance(b, dict) and key in b.get("properties", {})]
                if subs:
                    self._undeclared({"anyOf": subs} if len(subs) > 1 else subs[0], value, f"{where}.{key}", out, depth + 1)
        elif isinstance(instance, list):
            schema = self.deref(schema)
            if isinstance(schema, dict):
                items = schema.get("items")
                if items is None and "anyOf" in schema:
                    arrays = [self.deref(s).get("items") for s in schema["anyOf"] if isinstance(self.deref(s), dict) and self.deref(s).get("items")]
                    items = {"anyOf": arrays} if arrays else None
                if items is not None:
                    for i, value in enumerate(instance):
                        self._undeclared(items, value, f"{where}[{i}]", out, depth + 1)

    # -- examples
    def example(self, name: str) -> Any:
        if self._examples is None:
            with self._vlock:
                if self._examples is None:
                    self._examples = pickle.loads(Path(self.index["_examples_path"]).read_bytes())
        return copy.deepcopy(self._examples.get(name))

    # -- synthesis
    def synthesize(self, schema: Any, key: str | None = None, ctx: "Synth | None" = None, depth: int = 0) -> Any:
        """A plausible value for ``schema``: required properties filled, nullable values null."""
        ctx = ctx or Synth()
        schema = self.deref(schema)
        if not isinstance(schema, dict) or depth > 25:
            return None
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for sub in schema["allOf"]:
                val = self.synthesize(sub, key, ctx, depth + 1)
                if isinstance(val, dict):
                    merged.update(val)
            base = {k: v for k, v in schema.items() if k != "allOf"}
            if base.get("properties") or base.get("required"):
                val = self.synthesize(base, key, ctx, depth + 1)
                if isinstance(val, dict):
                    merged.update(val)
            return merged
        if "anyOf" in schema:
            branches = [self.deref(s) for s in schema["anyOf"]]
            if any(isinstance(b, dict) and b.get("type") == "null" for b in branches):
                return None
            return self.synthesize(schema["anyOf"][0], key, ctx, depth + 1)
        if "enum" in schema:
            return schema["enum"][0]
        types = schema.get("type")
        types = types if isinstance(types, list) else [types] if types else []
        if "null" in types:
            return None
        t = types[0] if types else ("object" if "properties" in schema else None)
        if t == "object":
            out = {}
            for name in schema.get("required", []):
                sub = schema.get("properties", {}).get(name, {})
                out[name] = self.synthesize(sub, name, ctx, depth + 1)
            return out
        if t == "array":
            return []
        if t == "boolean":
            return False
        if t in ("integer", "number"):
            if isinstance(schema.get("example"), (int, float)) and not isinstance(schema.get("example"), bool):
                return schema["example"]
            return max(1, schema.get("minimum", 1)) if t == "integer" else 1.0
        if t == "string" or t is None:
            return ctx.string(schema, key)
        return None

    def conform(self, schema: Any, value: Any, ctx: "Synth | None" = None, depth: int = 0) -> Any:
        """``value`` completed so it satisfies ``schema``'s ``required`` lists (recursively); the value wins where given."""
        ctx = ctx or Synth()
        schema = self.deref(schema)
        if not isinstance(schema, dict) or depth > 25 or value is None:
            return value
        if "anyOf" in schema:
            branch = self._pick_branch(schema["anyOf"], value)
            return self.conform(branch, value, ctx, depth + 1) if branch is not None else value
        if "allOf" in schema:
            for sub in schema["allOf"]:
                value = self.conform(sub, value, ctx, depth + 1)
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.conform(rest, value, ctx, depth + 1) if rest else value
        if isinstance(value, dict):
            props = schema.get("properties", {})
            out = dict(value)
            if schema.get("additionalProperties") is False:
                out = {k: v for k, v in out.items() if k in props}
            for name in schema.get("required", []):
                if name not in out:
                    out[name] = self.synthesize(props.get(name, {}), name, ctx, depth + 1)
            for name, sub in props.items():
                if name in out and isinstance(out[name], (dict, list)):
                    out[name] = self.conform(sub, out[name], ctx, depth + 1)
            return out
        if isinstance(value, list) and "items" in schema:
            return [self.conform(schema["items"], v, ctx, depth + 1) for v in value]
        return value

    def _pick_branch(self, branches: list[Any], value: Any) -> Any:
        best, best_score = None, -1
        for b in branches:
            d = self.deref(b)
            if not self._type_ok(d, value):
                continue
            if isinstance(value, dict) and isinstance(d, dict):
                names, _open, _ = self._collect(d, value, 0)
                score = len(names & set(value)) - (0 if _open else len(set(value) - names))
            else:
                score = 0
            if score > best_score:
                best, best_score = b, score
        return best


class Synth:
    """Plausible scalar values for synthesized responses; URLs point at ``base_url``."""

    def __init__(self, base_url: str = "http://127.0.0.1", now: str = "2024-01-01T00:00:00Z"):
        self.base_url = base_url.rstrip("/")
        self.now = now

    def string(self, schema: dict, key: str | None) -> str:
        fmt = schema.get("format")
        key = key or ""
        if fmt == "date-time" or key.endswith("_at"):
            return self.now
        if fmt == "date":
            return self.now[:10]
        if fmt in ("uri", "url", "uri-template") or key == "url" or key.endswith("_url") or key == "href":
            return f"{self.base_url}/{key or 'resource'}"
        if fmt == "email" or key == "email":
            return "noreply@example.invalid"
        if key in ("sha", "commit_id") or key.endswith("_sha"):
            return "0" * 40
        if key == "node_id":
            return "MDA6U3RhbmRJbg=="
        example = schema.get("example")
        if isinstance(example, str):
            return example
        if "pattern" in schema:
            return ""
        return key or "string"


@dataclass
class Operation:
    """One documented ``METHOD /template`` operation, bound to the path parameters of a matched request."""

    spec: Spec
    method: str
    template: str
    raw: dict
    path_params: dict[str, str]

    @property
    def operation_id(self) -> str:
        return self.raw.get("operationId") or f"{self.method} {self.template}"

    @property
    def parameters(self) -> list[dict]:
        return self.raw["parameters"]

    @property
    def request_body(self) -> dict | None:
        return self.raw["requestBody"]

    @property
    def statuses(self) -> list[str]:
        return list(self.raw["responses"])

    def __repr__(self) -> str:
        return f"<Operation {self.operation_id}: {self.method} {self.template}>"

    # -- requests
    def validate_request(
        self,
        query: dict[str, Any] | None,
        body: Any = None,
        *,
        content_type: str | None = None,
    ) -> list[str]:
        """Everything about this request that GitHub's description does not allow; empty when it conforms.

        ``query`` maps names to a string or a list of strings (as parsed from
        the URL); ``body`` is the decoded JSON body or None when there was none.
        """
        errors: list[str] = []
        query = query or {}
        declared = {p["name"]: p for p in self.parameters if p["in"] == "query"}
        for p in self.parameters:
            if p["in"] == "path":
                if p["name"] not in self.path_params:
                    errors.append(f"path.{p['name']}: missing")
                    continue
                errors += self._check_param(p, self.path_params[p["name"]], "path")
        for name, raw in query.items():
            p = declared.get(name)
            if p is None:
                errors.append(f"query.{name}: not a parameter of {self.operation_id}")
                continue
            errors += self._check_param(p, raw, "query")
        for name, p in declared.items():
            if p["required"] and name not in query:
                errors.append(f"query.{name}: required parameter missing")
        rb = self.request_body
        if rb is None:
            if body not in (None, {}, ""):
                errors.append(f"body: {self.operation_id} takes no request body")
            return errors
        if body is None:
            if rb["required"]:
                errors.append(f"body: {self.operation_id} requires a request body")
            return errors
        content = rb["content"]
        mt = (content_type or "application/json").split(";", 1)[0].strip().lower()
        if mt not in content:
            json_like = [m for m in content if m == "application/json" or m.endswith("+json")]
            if json_like and (mt in ("", "application/json") or mt.endswith("+json")):
                mt = json_like[0]
            elif "application/json" in content:
                mt = "application/json"
            else:
                errors.append(f"body: content type {mt!r} not accepted (GitHub takes {sorted(content)})")
                return errors
        schema = content[mt]
        if schema:
            errors += self.spec.validate(schema, body, "body")
            errors += self.spec.undeclared(schema, body, "body")
        return errors

    def _check_param(self, p: dict, raw: Any, where: str) -> list[str]:
        schema = p.get("schema") or {}
        values = raw if isinstance(raw, list) else [raw]
        d = self.spec.deref(schema)
        types = d.get("type") if isinstance(d, dict) else None
        types = types if isinstance(types, list) else [types]
        if "array" in types:
            items: list[Any] = []
            for v in values:
                items += str(v).split(",") if isinstance(v, str) else [v]
            coerced: Any = [self._coerce(d.get("items", {}), v) for v in items]
        else:
            if len(values) > 1:
                return [f"{where}.{p['name']}: given {len(values)} times"]
            coerced = self._coerce(d, values[0])
        return self.spec.validate(schema, coerced, f"{where}.{p['name']}")

    def _coerce(self, schema: Any, value: Any) -> Any:
        schema = self.spec.deref(schema)
        if not isinstance(value, str) or not isinstance(schema, dict):
            return value
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        if "integer" in types and re.fullmatch(r"-?\d+", value):
            return int(value)
        if "number" in types:
            try:
                return float(value)
            except ValueError:
                return value
        if "boolean" in types and value in ("true", "false"):
            return value == "true"
        return value

    # -- responses
    def _response(self, status: int | str) -> dict | None:
        responses = self.raw["responses"]
        s = str(status)
        return responses.get(s) or responses.get(s[0] + "XX") or responses.get("default")

    def response_schema(self, status: int | str, media_type: str = "application/json") -> Any:
        resp = self._response(status)
        if not resp:
            return None
        content = resp["content"]
        c = content.get(media_type) or next(iter(content.values()), None)
        return c["schema"] if c else None

    def documents_status(self, status: int | str) -> bool:
        return self._response(status) is not None

    def example_response(self, status: int | str, media_type: str = "application/json") -> Any:
        """GitHub's own example for this response (a fresh copy), else a value synthesized from the schema."""
        resp = self._response(status)
        if not resp:
            return None
        content = resp["content"]
        c = content.get(media_type) or next(iter(content.values()), None)
        if not c:
            return None
        ex = c.get("example")
        if ex:
            if "ref" in ex:
                value = self.spec.example(ex["ref"])
                if value is not None:
                    return value
            elif "value" in ex:
                return copy.deepcopy(ex["value"])
        return self.spec.synthesize(c["schema"]) if c.get("schema") is not None else None

    def validate_response(self, status: int | str, body: Any, media_type: str = "application/json") -> list[str]:
        """How ``body`` (for ``status``) departs from the documented response; empty when it conforms."""
        resp = self._response(status)
        if resp is None:
            return [f"status {status} is not documented for {self.operation_id}"]
        schema = self.response_schema(status, media_type)
        if schema is None:
            return [] if body in (None, b"", "") else [f"response {status}: GitHub documents no body"]
        return self.spec.validate(schema, body, f"response[{status}]")
