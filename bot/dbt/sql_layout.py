"""The layout a model file writes its select lists in, and new SQL written in it (pure).

A column the bot adds should read like the analyst's or the dbt engineer's own: one column per line
when the file writes one per line, leading or trailing commas as the file has them, its indentation,
and a multi-line `CASE` kept on the lines the analyst gave it. Only whitespace between tokens is ever
chosen here; the tokens are sqlglot's rendering, whose meaning the caller has proven, and the result
is checked to parse to the same tree.
"""
from __future__ import annotations

import bisect
import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from sqlglot.tokens import Token, TokenType

_OPEN = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})


@dataclass(frozen=True)
class Style:
    """How the file's select lists with two items or more are written (None: no such list)."""

    one_per_line: bool | None = None
    leading_commas: bool = False
    unit: str | None = None            # one indentation step, as the file writes it


def _leading(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


class _Lines:
    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def indent(self, line: int) -> str:
        start = self.starts[line]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        return _leading(self.text[start:end])

    def first_on_line(self, offset: int) -> bool:
        return self.text[self.starts[self.of(offset)]:offset].strip() == ""


def style_of(masked: str, tokens: Sequence[Token], list_start: Callable[[int], int],
             list_end: frozenset[TokenType]) -> Style:
    """The file's select-list style, voted by every SELECT of it (CTEs and subqueries included).
    `list_start(i)`: the index of the first item of the SELECT at token i (after DISTINCT and the like)."""
    lines = _Lines(masked)
    multi = inline = leading = trailing = 0
    units: Counter[str] = Counter()
    for index, token in enumerate(tokens):
        if token.token_type != TokenType.SELECT:
            continue
        starts, commas = _items(tokens, list_start(index + 1), list_end)
        if len(starts) < 2:
            continue
        item_lines = [lines.of(tokens[s].start) for s in starts]
        select_line = lines.of(token.start)
        if len(set(item_lines)) == len(item_lines) and item_lines[0] > select_line:
            multi += 1
            if all(lines.first_on_line(tokens[c].start) for c in commas):
                leading += 1
            else:
                trailing += 1
            base, inner = lines.indent(select_line), lines.indent(item_lines[0])
            if lines.first_on_line(token.start) and inner.startswith(base) and len(inner) > len(base):
                units[inner[len(base):]] += 1
        else:
            inline += 1
    if not multi and not inline:
        return Style()
    return Style(multi > inline, leading > trailing, units.most_common(1)[0][0] if units else None)


def _items(tokens: Sequence[Token], index: int, list_end: frozenset[TokenType]) -> tuple[list[int], list[int]]:
    """Token indices of the items of the select list starting at `index`, and of its commas."""
    starts, commas, depth = [index] if index < len(tokens) else [], [], 0
    for position in range(index, len(tokens)):
        kind = tokens[position].token_type
        if kind in _OPEN:
            depth += 1
        elif kind in _CLOSE:
            depth -= 1
            if depth < 0:
                break
        elif depth == 0 and kind in list_end:
            break
        elif depth == 0 and kind == TokenType.COMMA:
            commas.append(position)
            if position + 1 < len(tokens):
                starts.append(position + 1)
    return starts, commas


def _key(token: Token) -> str:
    return token.text if token.token_type == TokenType.STRING else token.text.upper()


def keep_layout(source: str, source_tokens: Sequence[Token], rendered: str, rendered_tokens: Sequence[Token],
                indent: str, unit: str | None, fixed: Callable[[int, int], bool], newline: str = "\n") -> str:
    """`rendered` (one line) on the lines `source` (the analyst's SQL) puts its tokens on: where the
    analyst broke a line before a token that `rendered` has too, `rendered` breaks it there, at
    `indent` plus the analyst's depth of indentation (in the file's `unit` when known). `fixed(a, b)`:
    the gap rendered[a:b] must stay as it is (it lies in Jinja)."""
    if "\n" not in source.strip() or not source_tokens or not rendered_tokens:
        return rendered
    src_lines = _Lines(source)
    used = sorted({src_lines.of(t.start) for t in source_tokens if src_lines.first_on_line(t.start)})
    base = min((len(src_lines.indent(line)) for line in used), default=0)
    depths = {line: src_lines.indent(line)[base:] for line in used}
    step = min((d for d in depths.values() if d), key=len, default="")
    matcher = difflib.SequenceMatcher(None, [_key(t) for t in source_tokens], [_key(t) for t in rendered_tokens],
                                      autojunk=False)
    breaks: dict[int, str] = {}   # rendered token index -> the whitespace to put before it
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = zip(range(i1, i2), range(j1, j2)) if tag == "equal" else \
            ([(i1, j1)] if tag == "replace" and i1 < i2 and j1 < j2 else [])
        for i, j in pairs:
            if j == 0 or i == 0:
                continue
            before = source[source_tokens[i - 1].end + 1:source_tokens[i].start]
            if "\n" not in before:
                continue
            depth = depths.get(src_lines.of(source_tokens[i].start), "")
            deeper = unit * (len(depth) // len(step)) if unit and step else depth
            breaks[j] = newline + indent + deeper
    if not breaks:
        return rendered
    pieces, position = [], 0
    for j in sorted(breaks):
        start, end = rendered_tokens[j - 1].end + 1, rendered_tokens[j].start
        if rendered[start:end].strip() or fixed(start, end):
            continue
        pieces += [rendered[position:start], breaks[j]]
        position = end
    pieces.append(rendered[position:])
    return "".join(pieces)
