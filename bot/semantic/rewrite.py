"""`${...}` references and raw columns in a field's SQL, rewritten as text: a rename changes only the
name it is about, spelt in the case and quoting it was written in, so renaming back restores the
text byte for byte. Positions come from `refs.scan` (references) and sqlglot's tokenizer (Omni's
bare columns); YAML is not this module's business (see `bot.yamledit`).
"""
from __future__ import annotations

import re

import sqlglot
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from bot.semantic.refs import Ref, scan

SIMPLE_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters a renamed identifier may contain and still be spliced into any scalar style as is.
SPLICE_SAFE = re.compile(r"[\w .$-]*")


def ref_spans(text: str) -> list[tuple[int, int, Ref]] | None:
    """(start, end, ref) of every `${...}` in `text`, found by `refs.scan`; None if it cannot scan."""
    try:
        parts = scan(text)
    except ValueError:
        return None
    spans = []
    pos = 0
    for part in parts:
        if isinstance(part, Ref):
            end = text.find("}", pos + 2) + 1
            spans.append((pos, end, part))
            pos = end
        else:
            pos += len(part)
    return spans


def case_like(written: str, old: str, new: str) -> str:
    """`new` spelt the way `written` spells `old` (exact, upper or lower case), so renames reverse."""
    if written == old:
        return new
    if written == written.upper() and written != written.lower():
        return new.upper()
    if written == written.lower() and written != written.upper():
        return new.lower()
    return new


def apply_spans(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


COLUMN_PLAIN = re.compile(r'\.(?:(?P<bare>[^\W\d]\w*)|"(?P<dq>(?:[^"]|"")*)"|`(?P<bt>(?:[^`]|``)*)`)')
COLUMN_ESCAPED = re.compile(r'\.(?:(?P<bare>[^\W\d]\w*)|\\"(?P<dq>[^"\\]*)\\"|`(?P<bt>(?:[^`]|``)*)`)')


def rewrite_table_refs(text: str, old: str, new: str, escaped: bool = False) -> tuple[str, int]:
    """`${TABLE}.old` (any case, bare or quoted) -> `${TABLE}.new`; `escaped` is for the source of a
    double-quoted YAML scalar, where a `"` is written `\\"`. Returns the text and the count."""
    spans = ref_spans(text)
    if not spans:
        return text, 0
    edits = []
    pattern = COLUMN_ESCAPED if escaped else COLUMN_PLAIN
    quote = '\\"' if escaped else '"'
    for _start, end, ref in spans:
        if not ref.is_table:
            continue
        match = pattern.match(text, end)
        if match is None:
            continue
        if match.group("bare") is not None:
            name = match.group("bare")
            if name.lower() != old.lower():
                continue
            if SIMPLE_IDENT.fullmatch(new):
                replacement = "." + case_like(name, old, new)
            else:
                replacement = "." + quote + new.replace('"', '""') + quote
        elif match.group("dq") is not None:
            name = match.group("dq").replace('""', '"')
            if name.lower() != old.lower():
                continue
            replacement = "." + quote + case_like(name, old, new).replace('"', '""') + quote
        else:
            name = match.group("bt").replace("``", "`")
            if name.lower() != old.lower():
                continue
            replacement = ".`" + case_like(name, old, new).replace("`", "``") + "`"
        edits.append((match.start(), match.end(), replacement))
    return apply_spans(text, edits), len(edits)


_LOCAL_TARGET = re.compile(r"(\s*)(.*?)(\s*)", re.DOTALL)
_QUALIFIED_TARGET = re.compile(r"(\s*)([^.]*?)(\s*\.\s*)(.*?)(\s*)", re.DOTALL)


def field_ref_matches(text: str, view: str, old: str, local: bool) -> list[tuple[int, int, str]]:
    """(start, end, written name) of the field part of `${old}` (when `local`) and `${view.old}`."""
    found = []
    for start, end, _ref in ref_spans(text) or []:
        inner_start = start + 2
        inner = text[inner_start:end - 1]
        if "." in inner:
            match = _QUALIFIED_TARGET.fullmatch(inner)
            if match and match.group(2) == view and match.group(4).lower() == old.lower():
                found.append((inner_start + match.start(4), inner_start + match.end(4), match.group(4)))
        elif local:
            match = _LOCAL_TARGET.fullmatch(inner)
            if match and match.group(2).lower() == old.lower() and match.group(2).upper() != "TABLE":
                found.append((inner_start + match.start(2), inner_start + match.end(2), match.group(2)))
    return found


def rewrite_field_refs(text: str, view: str, old: str, new: str, local: bool,
                        escaped: bool = False) -> tuple[str, int]:
    """`${old}` (when `local`) and `${view.old}` -> `new`, each spelt in the case it was written."""
    matches = field_ref_matches(text, view, old, local)
    edits = []
    for start, end, written in matches:
        replacement = case_like(written, old, new)
        if escaped:
            replacement = replacement.replace("\\", "\\\\").replace('"', '\\"')
        edits.append((start, end, replacement))
    return apply_spans(text, edits), len(edits)


# --------------------------------------------------------------------------------------------
# The document: lines, composed nodes, splices, verification


def own_column_style(sql: str, name: str) -> str | None:
    """How `sql` names the column `name` on its own: `table` (`${TABLE}.name`), `bare` (`name`),
    `quoted` (`"NAME"`, any case), else None (an expression, or another column)."""
    spans = ref_spans(sql)
    if spans is None:
        return None
    if not spans:
        text = sql.strip()
        if SIMPLE_IDENT.fullmatch(text):
            return "bare" if text.lower() == name.lower() else None
        if len(text) > 2 and text[0] == text[-1] == '"' and '"' not in text[1:-1].replace('""', ""):
            return "quoted" if text[1:-1].replace('""', '"').lower() == name.lower() else None
        return None
    if len(spans) != 1 or spans[0][0] != sql.index("${") or not spans[0][2].is_table:
        return None
    if sql[: spans[0][0]].strip():
        return None
    match = COLUMN_PLAIN.match(sql, spans[0][1])
    if match is None or sql[match.end():].strip():
        return None
    written = match.group("bare") or (match.group("dq") or "").replace('""', '"') or match.group("bt") or ""
    return "table" if written.lower() == name.lower() else None


def is_own_column(sql: str, name: str) -> bool:
    return own_column_style(sql, name) == "table"



_NOT_A_COLUMN_BEFORE = {TokenType.DOT, TokenType.ALIAS, TokenType.DCOLON}
_NOT_A_COLUMN_AFTER = {TokenType.DOT, TokenType.L_PAREN}


def rewrite_bare_columns(text: str, old: str, new: str, escaped: bool, dialect: str) -> tuple[str, int]:
    """Omni's raw columns, `old` or `"OLD"` in the SQL between `${...}` references -> `new`, in the case
    and quoting they were written in. The source of a double-quoted YAML scalar (`escaped`) is
    left to the caller's re-rendering (its `\\"` are no SQL)."""
    spans = ref_spans(text)
    if spans is None or escaped:
        return text, 0
    pieces, pos = [], 0
    for start, end, _ref in spans:
        pieces.append((pos, start))
        pos = end
    pieces.append((pos, len(text)))
    tokenizer = sqlglot.Dialect.get_or_raise(dialect)
    edits = []
    for first, last in pieces:
        chunk = text[first:last]
        if not chunk.strip():
            continue
        try:
            tokens = tokenizer.tokenize(chunk)
        except (TokenError, ValueError):
            return text, 0
        for index, token in enumerate(tokens):
            raw = chunk[token.start:token.end + 1]
            quoted = token.token_type == TokenType.IDENTIFIER and raw[:1] == '"'
            if not quoted and not SIMPLE_IDENT.fullmatch(raw):
                continue
            written = token.text if quoted else raw
            if written.lower() != old.lower():
                continue
            before = tokens[index - 1].token_type if index else None
            after = tokens[index + 1].token_type if index + 1 < len(tokens) else None
            if before in _NOT_A_COLUMN_BEFORE or after in _NOT_A_COLUMN_AFTER:
                continue
            renamed = case_like(written, old, new)
            if quoted or not SIMPLE_IDENT.fullmatch(renamed):
                renamed = '"' + renamed.replace('"', '""') + '"'
            edits.append((first + token.start, first + token.end + 1, renamed))
    return apply_spans(text, edits), len(edits)


# --------------------------------------------------------------------------------------------
# 4. rename_field, rename_field_refs
