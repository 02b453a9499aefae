"""Minimal edits of view files: one field's `sql:` replaced, every other byte kept.

ruamel tells where the field and its keys are; the edit is spliced into the original lines, and
the result is read back to prove that only that field's SQL changed.
"""
from __future__ import annotations

import re

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.errors import SemanticError
from bot.semantic.reader import FIELD_SECTIONS, OmniYamlReader, load_view_yaml


def column_sql(format_name: str, column: str) -> str:
    """A field's `sql:` reading the view's column `column`, as the format writes it: Omni names a raw
    column bare (quoted when it is no plain identifier) and has no `${TABLE}`; the `views` layout
    writes `${TABLE}.<column>`."""
    if format_name == "omni":
        return column if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column) else '"' + column.replace('"', '""') + '"'
    return f"${{TABLE}}.{column}"


def _key_lines(mapping, keys) -> list[int]:
    return sorted(int(mapping.lc.key(k)[0]) for k in keys)


def set_field_sql(text: str, path: str, field_name: str, sql: str) -> str:
    data = load_view_yaml(text, path)  # bounded and alias-free, like every read of a view file
    lines = text.splitlines(keepends=True)
    for section in FIELD_SECTIONS:
        block = (data or {}).get(section)
        if not isinstance(block, dict) or field_name not in block:
            continue
        spec = block[field_name]
        if not isinstance(spec, dict) or "sql" not in spec:
            raise SemanticError(f"field `{field_name}` has no `sql:` to replace", path)
        start = int(spec.lc.key("sql")[0])
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        later = [line for line in _key_lines(spec, spec) if line > start]
        field_line = int(block.lc.key(field_name)[0])
        after_field = [line for line in _key_lines(block, block) if line > field_line]
        section_end = min(after_field) if after_field else _end_of_block(lines, start, len(indent))
        end = min(later) if later else section_end
        while end - 1 > start and not lines[end - 1].strip():
            end -= 1  # keep blank lines that separate fields
        newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
        result = "".join(lines[:start] + [f"{indent}sql: {_scalar(sql)}{newline}"] + lines[end:])
        _check(text, result, path, field_name, sql)
        return result
    raise SemanticError(f"no field `{field_name}`", path)


def _end_of_block(lines: list[str], start: int, indent: int) -> int:
    """First line after `start` indented less than or as much as the key's parent (the block's end)."""
    for index in range(start + 1, len(lines)):
        stripped = lines[index].lstrip()
        if stripped and not stripped.startswith("#") and len(lines[index]) - len(stripped) < indent:
            return index
    return len(lines)


def _scalar(sql: str) -> str:
    """Plain when YAML keeps it as written, else single-quoted."""
    try:
        probe = YAML(typ="safe").load(f"k: {sql}")
    except YAMLError:
        probe = None
    if isinstance(probe, dict) and probe.get("k") == sql:
        return sql
    return "'" + sql.replace("'", "''") + "'"


def _check(before: str, after: str, path: str, field_name: str, sql: str) -> None:
    reader = OmniYamlReader()
    old, new = reader.read(before, path), reader.read(after, path)
    changed = [name for name in old.fields if old.fields[name].attributes != new.fields[name].attributes]
    if changed != [field_name] or new.fields[field_name].sql != sql or list(old.fields) != list(new.fields):
        raise SemanticError(f"could not rewrite `{field_name}` without touching other fields", path)
