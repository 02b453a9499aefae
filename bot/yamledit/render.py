"""Python values as YAML text the way a person writes it: plain where every reader keeps it as
written, quoted only where YAML needs it, multi-line text as a literal block where that is exact.

"Every reader": dbt reads YAML 1.1 (PyYAML), Omni and ruamel 1.2, so a plain scalar must be the
same string to both (`yes`, `on`, `1e3`, `0o7` are not); the check composes the candidate, it does
not guess.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Scalars one YAML version or another reads as something other than text.
_NOT_TEXT_SOMEWHERE = re.compile(
    r"(?:y|n|yes|no|true|false|on|off|null|~|[-+]?\.?\d[\d_.:eE+-]*|0[xob][0-9a-fA-F_]+|[-+]?\.(?:inf|nan))",
    re.IGNORECASE,
)
QUOTES = ("'", '"')


def printable(value: str) -> bool:
    """Whether YAML lets `value` appear in a file as is (tabs aside)."""
    for char in value:
        code = ord(char)
        if char == "\t":
            continue
        if code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029\ufeff" or 0xD800 <= code <= 0xDFFF \
                or code in (0xFFFE, 0xFFFF):
            return False
    return True


def double_quoted(value: str) -> str:
    out = []
    for char in value:
        code = ord(char)
        if char in '\\"':
            out.append("\\" + char)
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        elif not printable(char):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def single_quoted(value: str) -> str | None:
    return "'" + value.replace("'", "''") + "'" if printable(value) and "\n" not in value else None


def _reads_back(snippet: str, value: Any) -> bool:
    """Both PyYAML parsers agree (libyaml accepts a few plain scalars the pure one refuses, `[0?]`)."""
    try:
        return all(yaml.load(snippet, Loader=loader) == value for loader in {_LOADER, yaml.SafeLoader})
    except yaml.YAMLError:
        return False


@lru_cache(maxsize=8192)
def plain_ok(value: str, flow: bool = False, key: bool = False) -> bool:
    """Whether `value` can be written unquoted (in a flow collection when `flow`, as a key when `key`)."""
    if not value or value != value.strip() or not printable(value) or "\t" in value or "\n" in value:
        return False
    if _NOT_TEXT_SOMEWHERE.fullmatch(value):
        return False
    if key:
        return _reads_back(f"{value}: x", {value: "x"}) and (not flow or _reads_back(f"{{{value}: x}}", {value: "x"}))
    return _reads_back(f"[{value}]", [value]) if flow else _reads_back(f"k: {value}", {"k": value})


def inline(value: Any, flow: bool = False, quote: str | None = None) -> str | None:
    """One-line YAML for a scalar (or a flow list / mapping); None for text that wants a block scalar.
    `quote` is the style of the scalar being replaced, kept when it can hold the value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf") if math.isinf(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(inline(item, True) or double_quoted(str(item))) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key_text(k, flow=True)}: {inline(v, True) or double_quoted(str(v))}"
                               for k, v in value.items()) + "}"
    text = str(value)
    if quote == '"':
        return double_quoted(text)
    if quote == "'" and single_quoted(text):
        return single_quoted(text)
    if plain_ok(text, flow):
        return text
    if "\n" in text and not flow and block_safe(text):
        return None
    return single_quoted(text) or double_quoted(text)


def block_safe(text: str) -> bool:
    """A literal block holds `text` exactly: it has a line of text, does not start with a line break
    and ends in at most one (a block's blank edges could swallow or shed blank lines around it)."""
    return bool(text.strip()) and text[0] != "\n" and not text.endswith("\n\n") and printable(
        text.replace("\n", ""))


def block_scalar(value: str, indent: int, relative: int, style: str = "|") -> list[str] | None:
    """The header (`|`, `|-`, `|2-` when the first line starts with a space; `>` kept for one line)
    and the body lines at column `indent`, `relative` deeper than the key; None if none is exact."""
    if not block_safe(value):
        return None
    if style == ">" and "\n" in value.rstrip("\n"):
        style = "|"      # folding would need blank lines between the lines: write it literally
    body = value[:-1] if value.endswith("\n") else value
    indicator = str(relative) if body[:1] in (" ", "\t") else ""
    if len(indicator) > 1:
        return None
    lines = [style + indicator + ("" if value.endswith("\n") else "-")]
    lines += [" " * indent + line if line else "" for line in body.split("\n")]
    probe = ["k: " + lines[0]] + [" " * relative + line[indent:] if line else "" for line in lines[1:]]
    return lines if _reads_back("\n".join(probe) + "\n", {"k": value}) else None


@lru_cache(maxsize=4096)
def key_text(name: Any, quote: str | None = None, flow: bool = False) -> str:
    """A mapping key: in the quoting style of the key it replaces, else plain where YAML allows."""
    if not isinstance(name, str):
        return inline(name, flow) or double_quoted(str(name))
    if quote == '"':
        return double_quoted(name)
    if quote == "'" and single_quoted(name):
        return str(single_quoted(name))
    if plain_ok(name, flow, key=True):
        return name
    return single_quoted(name) or double_quoted(name)
