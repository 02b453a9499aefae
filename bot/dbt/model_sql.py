"""Minimal-diff edits of a dbt model's SQL file.

layersync adds one computed column to a model's final SELECT and the reviewer
must see only that line in the pull request. A dbt model is a Jinja template,
not SQL, and rendering it needs the whole project; so instead we *mask* the
Jinja with same-length, SQL-neutral text. Every offset in the masked text is
then an offset in the original file: sqlglot's tokenizer tells us *where* the
select list and its items are, sqlglot's AST tells us *what* they mean, and
every edit is a splice into the untouched original text.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.tokens import Token, TokenType

from bot.dbt import sql_layout

__all__ = [
    "ModelShape",
    "ModelSqlError",
    "analyse",
    "column_sql",
    "mask_jinja",
    "upsert_column",
    "upsert_columns",
    "ModelEditor",
    "ColumnEdit",
]


class ModelSqlError(ValueError):
    """Why the model's SQL cannot be edited; .line is 1-based or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class ModelShape:
    """What a consumer of the model can see of its columns without running it."""

    output_columns: list[str]
    has_star: bool


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# --------------------------------------------------------------------------
# Jinja scanning and masking
# --------------------------------------------------------------------------

_CLOSERS = {"{{": "}}", "{%": "%}", "{#": "#}"}
_KINDS = {"{{": "expr", "{%": "stmt", "{#": "comment"}
_BLOCK_TAGS = frozenset(
    {"if", "for", "macro", "call", "filter", "block", "with", "autoescape",
     "raw", "set", "materialization", "test", "snapshot", "docs"}
)
_MIDDLE_TAGS = frozenset({"elif", "else"})


@dataclass(frozen=True)
class _Jinja:
    """One Jinja tag; `context` is the SQL lexical state it sits in, which
    decides what SQL-neutral text can stand in for it."""

    start: int
    end: int  # exclusive
    kind: str  # "expr" | "stmt" | "comment"
    context: str  # "code" | "literal" | "line_comment" | "block_comment"
    tag: str  # first word of the tag ("if", "endfor", "config", ...)
    inner: str

    @property
    def opens_block(self) -> bool:
        # `{% set x = 1 %}` is a one-liner; `{% set x %}...{% endset %}` a block.
        if self.kind != "stmt" or self.tag not in _BLOCK_TAGS:
            return False
        return not (self.tag == "set" and "=" in self.inner)

    @property
    def closes_block(self) -> bool:
        return self.kind == "stmt" and self.tag.startswith("end")


# Jinja calls that render to nothing (dbt's config, logging and exceptions), so they occupy no
# place in the SQL; any other `{{ ... }}` renders text and stands for an identifier.
_SILENT_CALLS = frozenset({"config", "log", "print", "exceptions", "do"})


def _tag_of(inner: str) -> str:
    """First word of a tag, ignoring whitespace-control markers (`{%-`, `{{+`)."""
    body = inner.lstrip("-+ \t\r\n")
    word = ""
    for char in body:
        if not (char.isalnum() or char == "_"):
            break
        word += char
    rest = body[len(word):].lstrip()
    if word in _SILENT_CALLS and rest[:1] in ("(", "."):
        return "config"  # renders nothing, like `config(...)`: mask as whitespace
    return word


def _find_close(text: str, pos: int, closer: str, opened_at: int) -> int:
    """End (exclusive) of a Jinja tag; Jinja strings and dict braces may hide
    the closing delimiter, so they are skipped."""
    depth = 0
    quote = ""
    while pos < len(text):
        char = text[pos]
        if quote:
            if char == "\\":
                pos += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif depth == 0 and text.startswith(closer, pos):
            return pos + 2
        elif char == "{":
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
        pos += 1
    raise ModelSqlError(
        f"unterminated Jinja {text[opened_at:opened_at + 2]} ... {closer}",
        _line_of(text, opened_at),
    )


def _read_jinja(text: str, start: int, context: str) -> _Jinja:
    opener = text[start:start + 2]
    closer = _CLOSERS[opener]
    kind = _KINDS[opener]
    if kind == "comment":
        close = text.find(closer, start + 2)
        if close < 0:
            raise ModelSqlError("unterminated Jinja comment {# ... #}", _line_of(text, start))
        end = close + 2
    else:
        end = _find_close(text, start + 2, closer, start)
    inner = text[start + 2:end - 2]
    tag = _tag_of(inner) if kind != "comment" else ""
    return _Jinja(start, end, kind, context, tag, inner)


def _find_endraw(text: str, pos: int, opened_at: int) -> int:
    """Start of the `{% endraw %}` closing a raw block: its content is SQL."""
    while True:
        pos = text.find("{%", pos)
        if pos < 0:
            raise ModelSqlError("unterminated {% raw %} block", _line_of(text, opened_at))
        end = _find_close(text, pos + 2, "%}", pos)
        if _tag_of(text[pos + 2:end - 2]) == "endraw":
            return pos
        pos = end


def _advance_sql_state(text: str, pos: int, state: str, quote: str) -> tuple[int, str, str]:
    """One step of a tiny SQL lexer: enough to know whether Jinja sits in
    code, a literal or a comment (Jinja renders everywhere, SQL does not)."""
    char = text[pos]
    if state == "code":
        if text.startswith("--", pos):
            return pos + 2, "line_comment", quote
        if text.startswith("/*", pos):
            return pos + 2, "block_comment", quote
        if char in "'\"`":
            return pos + 1, "literal", char
    elif state == "line_comment" and char == "\n":
        return pos + 1, "code", quote
    elif state == "block_comment" and text.startswith("*/", pos):
        return pos + 2, "code", quote
    elif state == "literal" and char == quote:
        return pos + 1, "code", ""
    return pos + 1, state, quote


def _scan_jinja(text: str) -> list[_Jinja]:
    """All Jinja tags in source order, each with its SQL context."""
    regions: list[_Jinja] = []
    state, quote = "code", ""
    pos, raw_until = 0, -1
    while pos < len(text):
        if pos >= raw_until and text.startswith(("{{", "{%", "{#"), pos):
            region = _read_jinja(text, pos, state)
            regions.append(region)
            pos = region.end
            if region.kind == "stmt" and region.tag == "raw":
                raw_until = _find_endraw(text, pos, region.start)
            continue
        pos, state, quote = _advance_sql_state(text, pos, state, quote)
    return regions


def _blank(src: str, fill: str) -> str:
    return "".join(char if char in "\r\n" else fill for char in src)


def _placeholder(src: str, width: int) -> str:
    """An identifier derived from the Jinja text, so equal Jinja masks equally
    (AST comparisons stay meaningful) whatever its position in the file."""
    digest = f"{zlib.crc32(src.encode()):08x}"
    label = f"__j{digest}__"
    if len(label) > width:
        label = f"_j{digest}"[:width]
    return label.ljust(width, "_")


def _mask_region(src: str, region: _Jinja) -> str:
    if region.context == "literal":
        return _blank(src, "_")  # the literal must stay one literal
    if region.context == "block_comment":
        return _blank(src, " ")
    if region.context == "line_comment":
        masked = _blank(src, " ")
        # Newlines inside the tag would end the SQL comment early; re-open it.
        return masked[:-2] + "--" if "\n" in src else masked
    if region.kind != "expr" or region.tag == "config":
        return _blank(src, " ")
    first, newline, rest = src.partition("\n")
    return _placeholder(src, len(first)) + (newline + _blank(rest, " ") if newline else "")


# A macro that writes whole CTEs (`with {{ incremental_max_date_cte('x') }} events as (...)`, seen in
# real projects) stands where a CTE starts, and is followed by one: as an identifier it would break the
# WITH list, so it is masked as whitespace, like a statement tag.
_BEFORE_CTE = re.compile(r"(?is)(?:\bwith|,)\s*$")
_CTE_AFTER = re.compile(r"(?is)^\s*[A-Za-z_][A-Za-z0-9_]*\s+as\s*\(")


def _writes_ctes(text: str, region: _Jinja) -> bool:
    return (region.kind == "expr" and region.context not in ("literal", "block_comment", "line_comment")
            and bool(_BEFORE_CTE.search(text[max(0, region.start - 64):region.start]))
            and bool(_CTE_AFTER.match(text[region.end:region.end + 256])))


def _mask(text: str, regions: list[_Jinja]) -> str:
    pieces: list[str] = []
    pos = 0
    for region in regions:
        pieces.append(text[pos:region.start])
        src = text[region.start:region.end]
        pieces.append(_blank(src, " ") if _writes_ctes(text, region) else _mask_region(src, region))
        pos = region.end
    pieces.append(text[pos:])
    return "".join(pieces)


def mask_jinja(text: str) -> str:
    """Replace Jinja by same-length SQL so offsets and line numbers carry over.

    `{{ expr }}` becomes an identifier (a multi-line one: an identifier on its
    first line, whitespace after); `{{ config(...) }}`, `{% ... %}` and
    `{# ... #}` become whitespace; Jinja inside a SQL literal or comment
    becomes filler that keeps the literal/comment intact. Newlines are kept.
    """
    return _mask(text, _scan_jinja(text))


# --------------------------------------------------------------------------
# Locating the final SELECT
# --------------------------------------------------------------------------

_OPEN = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})
_SET_OPS = frozenset({TokenType.UNION, TokenType.EXCEPT, TokenType.INTERSECT})
_LIST_END = frozenset(
    {TokenType.FROM, TokenType.INTO, TokenType.WHERE, TokenType.GROUP_BY,
     TokenType.HAVING, TokenType.QUALIFY, TokenType.WINDOW, TokenType.ORDER_BY,
     TokenType.LIMIT, TokenType.OFFSET, TokenType.FETCH, TokenType.SEMICOLON,
     TokenType.CLUSTER_BY, TokenType.DISTRIBUTE_BY, TokenType.SORT_BY,
     TokenType.PREWHERE, TokenType.CONNECT_BY, TokenType.START_WITH}
) | _SET_OPS


@dataclass(frozen=True)
class _Projection:
    """One select-list item: its AST and where it is written."""

    node: exp.Expression
    start: int
    end: int  # exclusive, including the alias
    inner_end: int  # exclusive end of the expression without its alias
    name: str | None  # output name as parsed (masked text)
    display: str | None  # output name as written in the file
    star: bool  # `*`, `t.*`, or an opaque Jinja call such as dbt_utils.star
    qualifier: str | None  # source text of `t` in `t.*`

    @property
    def inner(self) -> exp.Expression:
        return self.node.this if isinstance(self.node, exp.Alias) else self.node


@dataclass(frozen=True)
class _Branch:
    """One SELECT of the final query (several for a set operation)."""

    select: exp.Select
    keyword_start: int
    list_end: int  # offset of the token ending the select list, or len(text)
    projections: tuple[_Projection, ...]
    separators: tuple[int, ...]  # offsets of the commas between projections
    dynamic: bool  # the select list contains a {% for %} loop
    sources: int  # FROM + JOINs, to know whether `t.*` columns need `t.`

    def index_of(self, name: str) -> int | None:
        wanted = name.lower()
        for index, projection in enumerate(self.projections):
            names = [n for n in (projection.name, projection.display) if n is not None]
            if any(candidate.lower() == wanted for candidate in names):
                return index
        return None

    @property
    def stars(self) -> list[_Projection]:
        return [projection for projection in self.projections if projection.star]


@dataclass(frozen=True)
class _Model:
    text: str
    masked: str
    dialect: str
    regions: tuple[_Jinja, ...]
    branches: tuple[_Branch, ...]
    by_name: bool  # UNION BY NAME: branches line up by name, not position
    style: sql_layout.Style = sql_layout.Style()  # how the file writes its select lists

    def line(self, offset: int) -> int:
        return _line_of(self.text, offset)


def _dialect(dialect: str) -> sqlglot.Dialect:
    try:
        return sqlglot.Dialect.get_or_raise(dialect)
    except ValueError as error:
        raise ModelSqlError(f"unknown SQL dialect {dialect!r}") from error


def _parse_statement(masked: str, dialect: sqlglot.Dialect) -> exp.Expression:
    try:
        statements = [s for s in dialect.parse(masked) if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        description = first.get("description") or str(error)
        raise ModelSqlError(f"invalid SQL: {description}", first.get("line")) from error
    except TokenError as error:
        raise ModelSqlError(f"invalid SQL: {error}") from error
    if not statements:
        raise ModelSqlError("the model contains no SQL query")
    if len(statements) > 1:
        raise ModelSqlError(f"the model contains {len(statements)} statements; expected one query")
    return statements[0]


def _tokenize(masked: str, dialect: sqlglot.Dialect) -> list[Token]:
    try:
        tokens = dialect.tokenize(masked)
    except TokenError as error:
        raise ModelSqlError(f"invalid SQL: {error}") from error
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    return tokens


def _match(tokens: list[Token], index: int, stop: int, text: str) -> int:
    """Index of the bracket closing the one at `index`."""
    depth = 0
    for position in range(index, stop):
        kind = tokens[position].token_type
        if kind in _OPEN:
            depth += 1
        elif kind in _CLOSE:
            depth -= 1
            if depth == 0:
                return position
    raise ModelSqlError("unbalanced parenthesis", _line_of(text, tokens[index].start))


def _scan_depth0(tokens: list[Token], index: int, stop: int, wanted: frozenset[TokenType]) -> int | None:
    """First token of a `wanted` type outside brackets, from `index`."""
    depth = 0
    for position in range(index, stop):
        kind = tokens[position].token_type
        if kind in _OPEN:
            depth += 1
        elif kind in _CLOSE:
            depth -= 1
        elif depth == 0 and kind in wanted:
            return position
    return None


def _skip_ctes(tokens: list[Token], index: int, stop: int, text: str) -> int:
    """Index of the main query after `WITH a AS (...), b (x) AS (...)`."""
    while index < stop:
        if tokens[index].token_type == TokenType.L_PAREN:
            index = _match(tokens, index, stop, text) + 1
            if index >= stop:
                break
            follower = tokens[index]
            continues = follower.token_type in (TokenType.COMMA, TokenType.ALIAS, TokenType.NOT)
            if not (continues or follower.text.upper() == "MATERIALIZED"):
                return index
        index += 1
    raise ModelSqlError("WITH clause without a final query", _line_of(text, len(text)))


def _skip_set_modifiers(tokens: list[Token], index: int, stop: int) -> int:
    while index < stop:
        token = tokens[index]
        if token.token_type in (TokenType.ALL, TokenType.DISTINCT):
            index += 1
        elif token.text.upper() == "BY" and index + 1 < stop and tokens[index + 1].text.upper() == "NAME":
            index += 2
        else:
            break
    return index


def _query_branches(tokens: list[Token], index: int, stop: int, text: str) -> list[tuple[int, int]]:
    """(SELECT token, select-list end token) of each branch of the query in
    tokens[index:stop], descending into parenthesised branches."""
    if index < stop and tokens[index].token_type == TokenType.WITH:
        index = _skip_ctes(tokens, index + 1, stop, text)
    branches: list[tuple[int, int]] = []
    while True:
        if index >= stop:
            raise ModelSqlError("the model has no final SELECT", _line_of(text, len(text)))
        token = tokens[index]
        if token.token_type == TokenType.L_PAREN:
            close = _match(tokens, index, stop, text)
            branches += _query_branches(tokens, index + 1, close, text)
            index = close + 1
        elif token.token_type == TokenType.SELECT:
            end = _scan_depth0(tokens, index + 1, stop, _LIST_END)
            end = stop if end is None else end
            branches.append((index, end))
            index = end
        else:
            raise ModelSqlError(
                f"the final query must be a SELECT, found {token.text!r}", _line_of(text, token.start)
            )
        operator = _scan_depth0(tokens, index, stop, _SET_OPS)
        if operator is None:
            return branches
        index = _skip_set_modifiers(tokens, operator + 1, stop)


def _ast_branches(node: exp.Expression, text: str) -> list[exp.Select]:
    while isinstance(node, exp.Subquery):
        node = node.this
    if isinstance(node, exp.SetOperation):
        return _ast_branches(node.this, text) + _ast_branches(node.expression, text)
    if isinstance(node, exp.Select):
        return [node]
    raise ModelSqlError(f"the model's query is not a SELECT (found {node.key.upper()})")


def _final_set_operations(node: exp.Expression) -> list[exp.SetOperation]:
    """Set operations joining the final query's branches (not those in CTEs)."""
    while isinstance(node, exp.Subquery):
        node = node.this
    if not isinstance(node, exp.SetOperation):
        return []
    return [node, *_final_set_operations(node.this), *_final_set_operations(node.expression)]


def _is_by_name(node: exp.Expression) -> bool:
    """UNION BY NAME lines branches up by name; only when every operator does."""
    operations = _final_set_operations(node)
    return bool(operations) and all(op.args.get("by_name") for op in operations)


def _list_start(tokens: list[Token], index: int, stop: int, text: str) -> int:
    """First token of the select list: after DISTINCT [ON (...)], ALL, TOP n, AS STRUCT."""
    if index + 1 < stop and tokens[index].token_type == TokenType.ALIAS:
        if tokens[index + 1].text.upper() in ("STRUCT", "VALUE"):
            index += 2
    if index < stop and tokens[index].token_type in (TokenType.ALL, TokenType.DISTINCT):
        index += 1
        if index < stop and tokens[index].token_type == TokenType.ON:
            index = _match(tokens, index + 1, stop, text) + 1
    if index < stop and tokens[index].token_type == TokenType.TOP:
        index += 1
        if index < stop and tokens[index].token_type == TokenType.L_PAREN:
            index = _match(tokens, index, stop, text)
        index += 1
    return index


def _split_items(tokens: list[Token], index: int, stop: int, text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Token ranges [first, last] of the select-list items and their comma tokens."""
    items: list[tuple[int, int]] = []
    commas: list[int] = []
    depth, first = 0, index
    for position in range(index, stop + 1):
        kind = tokens[position].token_type if position < stop else None
        if kind in _OPEN:
            depth += 1
        elif kind in _CLOSE:
            depth -= 1
        elif depth == 0 and (kind == TokenType.COMMA or position == stop):
            if position == first:
                where = tokens[min(position, len(tokens) - 1)].start if tokens else 0
                raise ModelSqlError("empty item in the final select list", _line_of(text, where))
            items.append((first, position - 1))
            if kind == TokenType.COMMA:
                commas.append(position)
            first = position + 1
    return items, commas


def _after_jinja(offset: int, regions: tuple[_Jinja, ...]) -> int:
    """Push an offset out of a Jinja tag: a multi-line `{{ }}` masks to a token
    shorter than the tag, and edits must never land inside Jinja."""
    for region in regions:
        if region.start < offset < region.end:
            return region.end
    return offset


def _overlaps_jinja(start: int, end: int, regions: tuple[_Jinja, ...]) -> bool:
    return any(region.start < end and start < region.end for region in regions)


def _is_star(node: exp.Expression) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _build_projection(
    node: exp.Expression, tokens: list[Token], first: int, last: int, text: str, regions: tuple[_Jinja, ...]
) -> _Projection:
    start = tokens[first].start
    end = _after_jinja(tokens[last].end + 1, regions)
    inner_end, name, name_start, star, qualifier = end, None, start, False, None
    if isinstance(node, exp.Alias):
        alias = tokens[last]
        inner_last = last - 1
        if inner_last >= first and tokens[inner_last].token_type == TokenType.ALIAS:
            inner_last -= 1
        if alias.text != node.alias or inner_last < first:
            raise ModelSqlError(f"cannot locate the alias {node.alias!r} in the text", _line_of(text, start))
        inner_end = _after_jinja(tokens[inner_last].end + 1, regions)
        name, name_start = node.alias, alias.start
    elif _is_star(node):
        star = True
        if isinstance(node, exp.Column) and node.table:
            dot = next(i for i in range(first, last + 1) if tokens[i].token_type == TokenType.STAR) - 1
            qualifier = text[start:tokens[dot].start]
    elif isinstance(node, exp.Column):
        opaque = any(r.kind == "expr" and r.start == start and r.end == end for r in regions)
        if opaque:  # e.g. {{ dbt_utils.star(ref('x')) }}: columns we cannot see
            star = True
        else:
            name, name_start = node.name, tokens[last].start
    display = name
    if name is not None and _overlaps_jinja(name_start, end, regions):
        display = text[name_start:end]
    return _Projection(node, start, end, inner_end, name, display, star, qualifier)


def _source_count(select: exp.Select) -> int:
    from_clause = select.args.get("from_") or select.args.get("from")
    return (1 if from_clause else 0) + len(select.args.get("joins") or [])


def _build_branch(
    select: exp.Select, tokens: list[Token], keyword: int, stop: int, text: str, regions: tuple[_Jinja, ...]
) -> _Branch:
    start = _list_start(tokens, keyword + 1, stop, text)
    items, commas = _split_items(tokens, start, stop, text)
    if len(items) != len(select.expressions):
        raise ModelSqlError(
            "cannot line up the final select list with its parsed form", _line_of(text, tokens[keyword].start)
        )
    projections = tuple(
        _build_projection(node, tokens, first, last, text, regions)
        for node, (first, last) in zip(select.expressions, items)
    )
    list_end = tokens[stop].start if stop < len(tokens) else len(text)
    keyword_start = tokens[keyword].start
    dynamic = any(
        r.kind == "stmt" and r.tag == "for" and keyword_start <= r.start < list_end for r in regions
    )
    return _Branch(
        select, keyword_start, list_end, projections,
        tuple(tokens[c].start for c in commas), dynamic, _source_count(select),
    )


def _load(text: str, dialect: str) -> _Model:
    """Mask, parse and locate the final SELECT branch(es) of a model."""
    regions = tuple(_scan_jinja(text))
    masked = _mask(text, list(regions))
    sql_dialect = _dialect(dialect)
    tree = _parse_statement(masked, sql_dialect)
    selects = _ast_branches(tree, text)
    tokens = _tokenize(masked, sql_dialect)
    spans = _query_branches(tokens, 0, len(tokens), text)
    if len(spans) != len(selects):
        raise ModelSqlError("cannot line up the final query's SELECTs with its parsed form")
    branches = tuple(
        _build_branch(select, tokens, keyword, stop, text, regions)
        for select, (keyword, stop) in zip(selects, spans)
    )
    style = sql_layout.style_of(masked, tokens, lambda i: _list_start(tokens, i, len(tokens), text), _LIST_END)
    return _Model(text, masked, dialect, regions, branches, _is_by_name(tree), style)


def model_ctes(select: exp.Select) -> list[exp.CTE]:
    """The CTEs of the query the final select belongs to (their names are taken in its scope)."""
    node: exp.Expression | None = select
    while node is not None and not node.args.get("with_") and not node.args.get("with"):
        node = node.parent
    with_ = node.args.get("with_") or node.args.get("with") if node is not None else None
    return list(with_.expressions) if with_ is not None else []


def analyse_model(model: _Model) -> ModelShape:
    first = model.branches[0]
    return ModelShape(output_columns=[p.display for p in first.projections if p.display is not None],
                      has_star=bool(first.stars) or first.dynamic)


# --------------------------------------------------------------------------
# Public read-only API
# --------------------------------------------------------------------------


def analyse(text: str, dialect: str = "duckdb") -> ModelShape:
    """Output columns of the model's final SELECT (first branch of a set
    operation), as written; has_star also covers opaque Jinja projections and
    `{% for %}` loops in the select list, since both hide columns."""
    first = _load(text, dialect).branches[0]
    names = [p.display for p in first.projections if p.display is not None]
    return ModelShape(output_columns=names, has_star=bool(first.stars) or first.dynamic)


def column_sql(text: str, name: str, dialect: str = "duckdb") -> str | None:
    """The SQL text (as written in the file) of the final SELECT's projection
    named `name` (case-insensitive), without the alias; None when the model has
    no explicit projection of that name."""
    model = _load(text, dialect)
    first = model.branches[0]
    index = first.index_of(name)
    if index is None:
        return None
    projection = first.projections[index]
    return text[projection.start:projection.inner_end]


# --------------------------------------------------------------------------
# Substituting output columns by the projections that produce them
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Substitute:
    """Text (as written in the file) standing in for one output column."""

    text: str
    node: exp.Expression  # parsed from the masked text, for checking precedence

    @property
    def atomic(self) -> bool:
        """Whether the text keeps its meaning next to any operator. A Jinja call never does, unless
        brackets of the text enclose it: it parses as one identifier here, but dbt renders whatever
        SQL the macro writes (`x like '%@%' and x not like '% %'`), so `not {{ m() }}` would negate
        the first test only."""
        if self.bare_jinja:
            return False
        node = self.node
        if isinstance(node, (exp.Binary, exp.Unary, exp.Predicate)):
            return False
        return isinstance(node, (exp.Column, exp.Literal, exp.Paren, exp.Boolean, exp.Null, exp.Window,
                                 exp.Subquery, exp.Func, exp.Identifier))

    @property
    def bare_jinja(self) -> bool:
        """A `{{ ... }}` of the text outside every bracket of it (`{{ m() }}`, `{{ m() }}::int`), where
        what it renders meets the operators around the text."""
        return _bare_jinja(self.text)


# Jinja's default delimiters, which dbt honours anywhere in a model or YAML text.
JINJA_DELIMITERS = ("{{", "{%", "{#")
_STATEMENTS = (exp.Block, exp.Command, exp.DDL, exp.DML, exp.Transaction, exp.Commit, exp.Rollback)
_PROBE = "__layersync_probe__"


def jinja_delimiter(text: str) -> str | None:
    """The first Jinja delimiter in `text`, if any: dbt renders any such text as a template."""
    found = [(text.find(d), d) for d in JINJA_DELIMITERS if d in text]
    return min(found)[1] if found else None


def _parse_expression(expression: exp.Expression | str, dialect: str) -> exp.Expression:
    """The column's expression, without its comments; subqueries are refused because their
    column references are not output columns of this model, statements because a column
    is one expression and nothing more."""
    if isinstance(expression, exp.Expression):
        node = expression.copy()
    else:
        try:
            statements = [s for s in sqlglot.parse(expression, read=dialect) if s is not None]
        except SqlglotError as error:
            raise ModelSqlError(f"cannot parse expression {expression!r}: {error}") from error
        if len(statements) != 1:
            raise ModelSqlError(f"the column must be one expression, not {len(statements)} statements")
        node = statements[0]
    if isinstance(node, exp.Alias):
        raise ModelSqlError("pass the expression without an alias; the column name is separate")
    if any(isinstance(n, _STATEMENTS) for n in node.walk()):
        raise ModelSqlError("the column must be one expression, not a statement or a list of them")
    if any(isinstance(n, exp.Query) for n in node.walk()):
        raise ModelSqlError("the expression must not contain a subquery")
    for n in node.walk():
        n.pop_comments()  # a comment is the one part of an expression that can swallow what follows it
    _check_one_item(node.sql(dialect=dialect), dialect, "the expression")
    return node


def _check_one_item(sql: str, dialect: str, what: str) -> None:
    """`sql` is written as a select item: it must read back as exactly one, with no comment and
    no Jinja, so it cannot end the item list, open a template or hide the text after it."""
    delimiter = jinja_delimiter(sql)
    if delimiter is not None:
        raise ModelSqlError(f"{what} would write Jinja `{delimiter}` into the model; dbt would run it as a template")
    try:
        tokens = _dialect(dialect).tokenize(sql)
        statements = [s for s in sqlglot.parse(f"SELECT {sql} AS {_PROBE}", read=dialect) if s is not None]
    except SqlglotError as error:
        raise ModelSqlError(f"{what} does not read back as one SQL expression: {error}") from error
    if any(token.comments for token in tokens):
        raise ModelSqlError(f"{what} would write an SQL comment into the model")
    select = statements[0] if len(statements) == 1 else None
    if not (isinstance(select, exp.Select) and _only_projection(select)):
        raise ModelSqlError(f"{what} does not read back as one SQL expression")


def _only_projection(select: exp.Select) -> bool:
    """A SELECT with a single `... AS probe` item and no other clause."""
    others = {k: v for k, v in select.args.items() if k != "expressions" and v not in (None, [], False)}
    items = select.expressions
    return not others and len(items) == 1 and items[0].alias == _PROBE


def _column_refs(node: exp.Expression, foreign: frozenset[str] = frozenset()) -> list[exp.Column]:
    """Output-column references; lambda parameters parse as identifiers, not columns. A column qualified
    by a `foreign` name (the alias of a relation joined in) is that relation's, written as it is."""
    return [column for column in node.find_all(exp.Column) if not isinstance(column.this, exp.Star)
            and not (column.table and column.table.lower() in foreign)]


def _masked_node(text: str, dialect: str) -> exp.Expression:
    """Parse SQL that may carry Jinja; placeholders are content-derived, so
    equal Jinja gives equal trees."""
    return sqlglot.parse_one(mask_jinja(text), read=dialect)


def _star_substitute(column: exp.Column, model: _Model, branch: _Branch) -> _Substitute:
    """A column that is not projected explicitly but may come through a star."""
    key = column.name.lower()
    candidates: list[_Projection] = []
    for projection in branch.stars:
        star = projection.node.this if isinstance(projection.node, exp.Column) else projection.node
        if not isinstance(star, exp.Star):  # opaque Jinja projection
            candidates.append(projection)
            continue
        excluded = star.args.get("except_") or star.args.get("except") or []
        if key in {e.name.lower() for e in excluded}:
            continue
        for replaced in star.args.get("replace") or []:
            if replaced.alias.lower() == key:
                if _overlaps_jinja(projection.start, projection.end, model.regions):
                    raise ModelSqlError(
                        f"column {column.name!r} is replaced inside a Jinja-templated star",
                        model.line(projection.start),
                    )
                return _Substitute(replaced.this.sql(dialect=model.dialect), replaced.this)
        candidates.append(projection)
    if not candidates:
        if branch.dynamic:
            raise ModelSqlError(
                f"column {column.name!r} is not projected explicitly; it may come from a Jinja "
                "{% for %} loop, which cannot be substituted",
                model.line(branch.keyword_start),
            )
        raise ModelSqlError(f"unknown column {column.name!r} in the final select", model.line(branch.keyword_start))
    identifier = column.this.sql(dialect=model.dialect)
    only = candidates[0]
    if len(candidates) == 1 and only.qualifier is not None and branch.sources > 1:
        text = f"{only.qualifier}.{identifier}"
    else:
        text = identifier
    return _Substitute(text, _masked_node(text, model.dialect))


def _resolve(column: exp.Column, model: _Model, branch: _Branch, reference: _Branch) -> _Substitute:
    index = reference.index_of(column.name)
    if index is None:
        return _star_substitute(column, model, branch)
    projection = branch.projections[index]
    if projection.star:
        raise ModelSqlError(
            f"column {column.name!r} sits where another branch has a star", model.line(projection.start)
        )
    return _Substitute(_one_line(model, projection.start, projection.inner_end), projection.inner)


def _one_line(model: _Model, start: int, end: int) -> str:
    """The model's text[start:end] on one line (see `_flat`)."""
    return _flat(model.text[start:end], model.dialect)


def _flat(text: str, dialect: str) -> str:
    """`text` with its line breaks between tokens made spaces: an expression written over several lines
    at its own place would land, inlined as an operand of another column, with its lines indented for
    somewhere else. Comments, literals and Jinja are kept as written."""
    if "\n" not in text:
        return text
    try:
        tokens = _dialect(dialect).tokenize(mask_jinja(text))
        regions = tuple(_scan_jinja(text))
    except (TokenError, ModelSqlError):
        return text
    pieces, position = [], 0
    for before, after in zip(tokens, tokens[1:]):
        gap_start, gap_end = before.end + 1, after.start
        gap = text[gap_start:gap_end]
        if "\n" in gap and gap.strip() == "" and not _overlaps_jinja(gap_start, gap_end, regions):
            pieces += [text[position:gap_start], " "]
            position = gap_end
    pieces.append(text[position:])
    return "".join(pieces)


def _bare_jinja(text: str) -> bool:
    """Whether an expression tag of `text` sits outside all of its brackets (see _Substitute.bare_jinja)."""
    regions = [r for r in _scan_jinja(text) if r.kind == "expr" and r.tag != "config" and r.context == "code"]
    if not regions:
        return False
    try:
        tokens = sqlglot.tokenize(_mask(text, _scan_jinja(text)))
    except SqlglotError:
        return True
    depth, position = 0, 0
    for region in regions:
        while position < len(tokens) and tokens[position].start < region.start:
            kind = tokens[position].token_type
            depth += 1 if kind in _OPEN else -1 if kind in _CLOSE else 0
            position += 1
        if depth <= 0:
            return True
    return False


def _needs_parens(column: exp.Column, substitute: _Substitute, policy: str) -> bool:
    """policy: "none" (trust precedence), "calls" (skip only in call
    arguments and parentheses) or "all" (every non-atomic substitute)."""
    parent = column.parent
    if substitute.bare_jinja:
        # What a macro renders is unknown here, so no policy can prove it safe: only parentheses
        # already around the reference are enough (a call's argument list is not: the macro may write
        # a comma or a subquery).
        return not isinstance(parent, exp.Paren)
    if substitute.atomic or policy == "none":
        return False
    if policy == "all":
        return True
    if isinstance(parent, exp.Paren):
        return False
    is_call = isinstance(parent, exp.Func) and not isinstance(parent, (exp.Binary, exp.Unary, exp.Predicate))
    return not is_call


def _splice_placeholders(sql: str, texts: dict[str, str], dialect: str) -> str:
    """Put the source text in place of placeholder identifiers, by token offsets."""
    pieces: list[str] = []
    pos = 0
    for token in _dialect(dialect).tokenize(sql):
        if token.token_type == TokenType.VAR and token.text in texts:
            pieces.append(sql[pos:token.start])
            pieces.append(texts[token.text])
            pos = token.end + 1
    pieces.append(sql[pos:])
    return "".join(pieces)


_UNCASED = frozenset({
    TokenType.VAR, TokenType.IDENTIFIER, TokenType.STRING, TokenType.NATIONAL_STRING,
    TokenType.RAW_STRING, TokenType.HEX_STRING, TokenType.BIT_STRING, TokenType.BYTE_STRING,
    TokenType.HEREDOC_STRING, TokenType.NUMBER,
})


def _prefers_lowercase(model: _Model) -> bool:
    """Whether the file writes keywords in lower case (`select ... from`), as most dbt projects do."""
    words = [t.text for t in _tokenize(model.masked, _dialect(model.dialect)) if t.token_type not in _UNCASED
             and t.text.isalpha()]
    return sum(w.islower() for w in words) > sum(w.isupper() for w in words)


def _lowercase_keywords(sql: str, dialect: str) -> str:
    """sqlglot writes `CASE WHEN COALESCE(...)`; in a lower-case file the new line should read alike.
    Keywords and function names are lowered by token offsets; names and literals keep their case."""
    tokens = _dialect(dialect).tokenize(sql)
    chars = list(sql)
    for index, token in enumerate(tokens):
        is_function = (token.token_type == TokenType.VAR and index + 1 < len(tokens)
                       and tokens[index + 1].token_type == TokenType.L_PAREN)
        if (token.token_type not in _UNCASED or is_function) and sql[token.start:token.end + 1].isupper():
            chars[token.start:token.end + 1] = sql[token.start:token.end + 1].lower()
    return "".join(chars)


def _render_attempt(
    expression: exp.Expression, substitutes: list[_Substitute], dialect: str, policy: str,
    lowercase: bool = False, foreign: frozenset[str] = frozenset(),
) -> tuple[str, bool]:
    """Render the expression with substitutes; report whether the result
    parses back to the intended tree (i.e. the parentheses were enough)."""
    tree = expression.copy()
    texts: dict[str, str] = {}
    expected: dict[str, exp.Expression] = {}
    for index, (column, substitute) in enumerate(zip(_column_refs(tree, foreign), substitutes)):
        placeholder = f"__layersync_{index}__"
        wrap = _needs_parens(column, substitute, policy)
        texts[placeholder] = f"({substitute.text})" if wrap else substitute.text
        expected[placeholder] = exp.Paren(this=substitute.node.copy()) if wrap else substitute.node.copy()
        column.replace(exp.column(placeholder))
    rendered = tree.sql(dialect=dialect)
    if lowercase:
        rendered = _lowercase_keywords(rendered, dialect)
    result = _splice_placeholders(rendered, texts, dialect)
    try:
        wanted = sqlglot.parse_one(rendered, read=dialect).transform(
            lambda n: expected[n.name].copy() if isinstance(n, exp.Column) and n.name in expected else n
        )
        return result, wanted == _masked_node(result, dialect)
    except SqlglotError:
        return result, False


def _render(expression: exp.Expression, substitutes: list[_Substitute], dialect: str,
            lowercase: bool = False, foreign: frozenset[str] = frozenset()) -> str:
    """Fewest parentheses that provably keep the meaning (the result must
    parse back to the intended tree); every non-atomic substitute is
    parenthesised when nothing lighter can be verified."""
    for policy in ("none", "calls"):
        result, verified = _render_attempt(expression, substitutes, dialect, policy, lowercase, foreign)
        if verified:
            return result
    return _render_attempt(expression, substitutes, dialect, "all", lowercase, foreign)[0]


def _alias_sql(name: str, dialect: str) -> str:
    """The alias, quoted only when it must be: odd characters, or a word the
    dialect's tokenizer treats as a keyword (`as from from t` is legal
    PostgreSQL but reads as a clause to most tools)."""
    rendered = exp.to_identifier(name).sql(dialect=dialect)
    try:
        tokens = _dialect(dialect).tokenize(rendered)
        plain = len(tokens) == 1 and tokens[0].token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        parsed = sqlglot.parse_one(f"select 1 as {rendered}", read=dialect)
        if plain and isinstance(parsed, exp.Select) and parsed.expressions[0].alias == name:
            return rendered
    except SqlglotError:
        pass
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


# --------------------------------------------------------------------------
# Text edits
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _apply(text: str, edits: list[_Edit]) -> str:
    # Later edits at the same offset are applied first so earlier ones end up before them.
    ordered = sorted(enumerate(edits), key=lambda pair: (pair[1].start, pair[0]), reverse=True)
    for _, edit in ordered:
        text = text[:edit.start] + edit.text + text[edit.end:]
    return text


def _check_balanced(model: _Model, start: int, end: int, what: str) -> None:
    """Refuse edits that would land inside (or cut through) a Jinja block,
    where the new column would only exist conditionally or be looped."""
    depth = 0
    for region in model.regions:
        if not (start <= region.start < end) or region.kind != "stmt":
            continue
        if region.opens_block:
            depth += 1
        elif region.closes_block:
            depth -= 1
        elif region.tag in _MIDDLE_TAGS and depth == 0:
            depth = -1
        if depth < 0:
            break
    if depth != 0:
        raise ModelSqlError(f"{what} lies inside a Jinja {{% ... %}} block; cannot edit it safely", model.line(end))


def _line_end_after(model: _Model, pos: int, stop: int) -> int | None:
    """Where the line holding `pos` ends, skipping trailing comments and Jinja;
    None when more SQL follows on that line."""
    masked = model.masked
    jinja_at = {region.start: region.end for region in model.regions}
    state = "code"
    while pos < stop:
        if pos in jinja_at:
            pos = jinja_at[pos]
            continue
        if masked[pos] == "\n" and state != "block":
            return pos - 1 if pos > 0 and masked[pos - 1] == "\r" else pos
        if state == "block":
            if masked.startswith("*/", pos):
                state, pos = "code", pos + 2
                continue
        elif state == "code":
            if masked.startswith("--", pos):
                state, pos = "line", pos + 2
                continue
            if masked.startswith("/*", pos):
                state, pos = "block", pos + 2
                continue
            if not masked[pos].isspace():
                return None
        pos += 1
    return len(masked) if stop == len(masked) else None


def _leading_whitespace(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


@dataclass(frozen=True)
class _Layout:
    """Where and how new items go at the end of a select list (see `_layout`)."""

    kind: str                 # "lines" (one per line after the last), "leading" (`, item` lines), "open" (the
    # one-line list becomes one item per line, as the file writes its lists), "inline" (`, item` on the line)
    indent: str = ""          # a new item's first line starts here
    hanging: str = ""         # its continuation lines start here
    line_end: int = 0
    gap: str = " "            # between a leading comma and its item


def _layout(model: _Model, branch: _Branch) -> _Layout:
    text = model.text
    last = branch.projections[-1]
    line_end = _line_end_after(model, last.end, branch.list_end)
    line_start = text.rfind("\n", 0, last.start) + 1
    before = model.masked[line_start:last.start]
    comma = branch.separators[-1] if branch.separators else None
    style = model.style
    if line_end is not None and before.strip() == "":
        indent = _leading_whitespace(text[line_start:last.start])
        if comma is None and style.leading_commas:
            return _Layout("leading", indent, indent + "  ", line_end)
        return _Layout("lines", indent, indent, line_end)
    if line_end is not None and comma is not None and before.strip() == "," and comma >= line_start:
        indent = _leading_whitespace(text[line_start:comma])
        gap = text[comma + 1:last.start]
        return _Layout("leading", indent, indent + " " * (1 + len(gap)), line_end, gap)
    if style.one_per_line and len(branch.projections) == 1:
        keyword_line = text.rfind("\n", 0, branch.keyword_start) + 1
        base = text[keyword_line:branch.keyword_start]
        after = text[last.end:branch.list_end]
        whitespace_before = text[:last.start].rstrip(" \t")
        if base.strip() == "" and after.strip() == "" and \
                model.masked[len(whitespace_before):last.start].strip() == "" and \
                len(whitespace_before) > branch.keyword_start and \
                not _overlaps_jinja(len(whitespace_before), branch.list_end, model.regions):
            indent = base + (style.unit or "    ")
            return _Layout("open", indent, indent, len(whitespace_before))
    return _Layout("inline")


def _insertion(model: _Model, branch: _Branch, items: list[str]) -> list[_Edit]:
    """Edits appending `items` to the branch's select list in the file's style: the text
    appending them one call at a time writes, each new item styled like the last one. A list that is
    one `select *` on its line, in a file that writes its lists one item per line, is opened up so."""
    text = model.text
    last = branch.projections[-1]
    newline = "\r\n" if "\r\n" in text else "\n"
    layout = _layout(model, branch)
    if layout.kind == "lines":
        _check_balanced(model, branch.keyword_start, layout.line_end, "the end of the final select list")
        indent = layout.indent
        return [_Edit(last.end, last.end, ","),
                _Edit(layout.line_end, layout.line_end, newline + indent + f",{newline}{indent}".join(items))]
    if layout.kind == "leading":
        _check_balanced(model, branch.keyword_start, layout.line_end, "the end of the final select list")
        return [_Edit(layout.line_end, layout.line_end,
                      "".join(f"{newline}{layout.indent},{layout.gap}{item}" for item in items))]
    if layout.kind == "open":
        _check_balanced(model, branch.keyword_start, branch.list_end, "the end of the final select list")
        base = layout.indent[:len(layout.indent) - len(model.style.unit or "    ")]
        if model.style.leading_commas:
            tail = "".join(f"{newline}{layout.indent}, {item}" for item in items)
        else:
            tail = "," + f",".join(f"{newline}{layout.indent}{item}" for item in items)
        edits = [_Edit(layout.line_end, last.start, newline + layout.indent), _Edit(last.end, last.end, tail)]
        if branch.list_end < len(text):
            edits.append(_Edit(last.end, branch.list_end, newline + base))
        return edits
    _check_balanced(model, branch.keyword_start, last.end, "the end of the final select list")
    return [_Edit(last.end, last.end, "".join(f", {item}" for item in items))]


def _replacement(model: _Model, branch: _Branch, index: int, new_sql: str, alias: str, named: bool) -> list[_Edit]:
    """Edit replacing a projection's expression, keeping its alias; none if unchanged."""
    projection = branch.projections[index]
    current = model.text[projection.start:projection.inner_end]
    if current == new_sql:
        return []
    try:
        if _masked_node(current, model.dialect) == _masked_node(new_sql, model.dialect):
            return []
    except SqlglotError:
        pass
    _check_balanced(model, projection.start, projection.inner_end, f"the column {projection.display!r}")
    if isinstance(projection.node, exp.Alias) or not named:
        return [_Edit(projection.start, projection.inner_end, new_sql)]
    # A bare `col` gets its name from the column; keep that name with an alias.
    return [_Edit(projection.start, projection.end, f"{new_sql} as {alias}")]


def _check_set_operation(model: _Model) -> None:
    """Positional set operations need every column visible in every branch."""
    if len(model.branches) < 2 or model.by_name:
        return
    for branch in model.branches:
        if branch.stars or branch.dynamic:
            raise ModelSqlError(
                "a branch of the final set operation selects * or Jinja-generated columns, "
                "so the new column's position cannot be lined up across branches",
                model.line(branch.keyword_start),
            )


def _check_no_placeholder_leak(model: _Model, result: str) -> None:
    """Masked identifiers must never reach the file: they would be real
    (and wrong) identifiers once dbt renders the template."""
    for region in model.regions:
        label = model.masked[region.start:region.end].split("\n")[0].rstrip("_ ")
        if region.kind == "expr" and label.startswith("__j") and label in result and label not in model.text:
            raise ModelSqlError("internal error: a Jinja placeholder leaked into the edit", model.line(region.start))


def _check_name(name: str) -> None:
    """The column name is written into the model (quoted when it must be): it may carry no
    Jinja and nothing that ends a line, where a quoted identifier is the only thing between it
    and the template."""
    delimiter = jinja_delimiter(name)
    if delimiter is not None or not name or not name.isprintable():
        problem = f"Jinja `{delimiter}`" if delimiter else "no printable text"
        raise ModelSqlError(f"the column name {name!r} has {problem}; it must be a plain name")


def _check_no_new_jinja(model: _Model, result: str, allowed: frozenset[str] = frozenset()) -> None:
    """Every Jinja tag of the edited model was already in the model (a substituted projection
    brings its own along): layersync adds SQL, never a template, except the exact `{{ ref('m') }}`
    of a join it was asked to write (`allowed`)."""
    before = {model.text[r.start:r.end] for r in model.regions} | allowed
    for region in _scan_jinja(result):
        if result[region.start:region.end] not in before:
            raise ModelSqlError("the edit would add Jinja to the model; dbt would run it as a template",
                                _line_of(result, region.start))


def _validate(text: str, names: list[str], dialect: str) -> _Model:
    """Re-read the edited text the same way, so a bad splice fails here, not in dbt."""
    try:
        model = _load(text, dialect)
    except ModelSqlError as error:
        raise ModelSqlError(f"the edited model is not valid SQL: {error.message}", error.line) from error
    branches = model.branches if model.by_name else model.branches[:1]
    for name in names:
        if any(branch.index_of(name) is None for branch in branches):
            raise ModelSqlError(f"the edited model does not project {name!r}")
    return model


@dataclass(frozen=True)
class ColumnEdit:
    """One column's planned edit of a loaded model: what `upsert_column` would do, not done yet."""

    name: str
    expression: exp.Expression | str
    before: str | None          # the projection's SQL as written (first branch); None for a new column
    after: str                  # its SQL once edited
    replacements: tuple[_Edit, ...]
    items: tuple[str | None, ...]  # per branch, the select item to append (None: replaced in place)
    substitutes: tuple[_Substitute, ...]  # per branch, what a later column reading this one writes
    foreign: frozenset[str] = frozenset()  # aliases of joined relations its expression reads as written
    layout: str | None = None   # the SQL it was written as (see ModelEditor.plan)

    @property
    def changed(self) -> bool:
        return bool(self.replacements) or any(item is not None for item in self.items)


class ModelEditor:
    """Many columns of one model for one parse: each `plan` reads the model loaded once (and the
    columns accepted before it, as if they were written), `finish` splices all of them and
    re-reads the result once. Planning a view's N fields one `upsert_column` at a time parsed
    the growing model several times per field, N² in all.
    """

    def __init__(self, text: str, dialect: str = "duckdb") -> None:
        self.dialect = dialect
        self.failures: dict[int, ModelSqlError] = {}   # id(ColumnEdit) -> why it was not written
        self._replanned: dict[int, ColumnEdit] = {}    # id(ColumnEdit) -> the edit planned again in its place
        self._reset(text)

    def _reset(self, text: str, model: _Model | None = None) -> None:
        self.text = text
        self.model = model or _load(text, self.dialect)
        self.lowercase = _prefers_lowercase(self.model)
        self.accepted: list[ColumnEdit] = []
        self._written: dict[str, ColumnEdit] = {}

    def column_sql(self, name: str) -> str | None:
        """`column_sql` of the model as the accepted edits leave it."""
        written = self._written.get(name.lower())
        if written is not None:
            return written.after
        first = self.model.branches[0]
        index = first.index_of(name)
        if index is None:
            return None
        projection = first.projections[index]
        return self.text[projection.start:projection.inner_end]

    def shape(self) -> ModelShape:
        """`analyse` of the model as the accepted edits leave it."""
        first = self.model.branches[0]
        names = [p.display for p in first.projections if p.display is not None]
        known = {n.lower() for n in names}
        names += [e.name for e in self.accepted if e.name.lower() not in known and e.items[0] is not None]
        return ModelShape(output_columns=names, has_star=bool(first.stars) or first.dynamic)

    def plan(self, name: str, expression: exp.Expression | str, foreign: frozenset[str] = frozenset(),
             layout: str | None = None) -> ColumnEdit:
        """The edit writing `<expression> as <name>`; ModelSqlError when it cannot be written. Columns
        qualified by a `foreign` alias (a relation `join` added) are that relation's, not output columns.
        `layout`: SQL the expression was written as (the analyst's, its references as plain names): a new
        column it writes over several lines is written on those lines, where the list has one per line."""
        if name.lower() in self._written:
            self._flush()  # a second edit of one column reads the first as written
        model = self.model
        _check_name(name)
        node = _parse_expression(expression, self.dialect)
        foreign = frozenset(f.lower() for f in foreign)
        references = _column_refs(node, foreign)
        if any(column.name.lower() == name.lower() for column in references):
            raise ModelSqlError(f"the expression for {name!r} references {name!r} itself")
        _check_set_operation(model)
        alias = _alias_sql(name, self.dialect)
        first = model.branches[0]
        replacements: list[_Edit] = []
        items: list[str | None] = []
        substitutes: list[_Substitute] = []
        after = ""
        for position, branch in enumerate(model.branches):
            reference = branch if model.by_name else first
            found = [self._substitute(column, branch, reference, position) for column in references]
            new_sql = _render(node, found, self.dialect, self.lowercase, foreign)
            _check_one_item(mask_jinja(new_sql), self.dialect, f"the new column {name!r}")
            target = reference.index_of(name)
            if target is None:
                place = _layout(model, branch)
                if layout is not None and place.kind != "inline":
                    new_sql = self._flow(layout, new_sql, place.hanging)
                item = f"{new_sql} {'as' if self.lowercase else 'AS'} {alias}"
                _insertion(model, branch, [item])  # refuses a list ending inside Jinja, for this column
                items.append(item)
                written = new_sql
            else:
                edits = _replacement(model, branch, target, new_sql, alias, named=branch is reference)
                replacements += edits
                items.append(None)
                projection = branch.projections[target]
                written = new_sql if edits else self.text[projection.start:projection.inner_end]
            substitutes.append(_Substitute(_flat(written, self.dialect), _masked_node(written, self.dialect)))
            if position == 0:
                after = written
        return ColumnEdit(name, expression, self.column_sql(name), after, tuple(replacements), tuple(items),
                          tuple(substitutes), foreign, layout)

    def _flow(self, source: str, rendered: str, hanging: str) -> str:
        """`rendered` on the lines of `source` (sql_layout.keep_layout), only when it still parses to the
        same tree; else as it is."""
        try:
            source_tokens = _dialect(self.dialect).tokenize(source)
            rendered_tokens = _dialect(self.dialect).tokenize(mask_jinja(rendered))
            regions = tuple(_scan_jinja(rendered))
        except (SqlglotError, ModelSqlError):
            return rendered
        result = sql_layout.keep_layout(source, source_tokens, rendered, rendered_tokens, hanging,
                                        self.model.style.unit, lambda a, b: _overlaps_jinja(a, b, regions),
                                        "\r\n" if "\r\n" in self.text else "\n")
        if result == rendered:
            return result
        try:
            return result if _masked_node(result, self.dialect) == _masked_node(rendered, self.dialect) else rendered
        except SqlglotError:
            return rendered

    def _substitute(self, column: exp.Column, branch: _Branch, reference: _Branch, position: int) -> _Substitute:
        written = self._written.get(column.name.lower())
        if written is not None:
            return written.substitutes[position]
        return _resolve(column, self.model, branch, reference)

    def join(self, ref_name: str, on: exp.Expression, marker: str, joined_columns: list[str] | None,
             source: str | None = None) -> str:
        """Join `{{ ref('<ref_name>') }}` (with `source`: `{{ source('<source>', '<ref_name>') }}`, a dbt
        source's table) to the final SELECT (written now) and return its alias; a join to that relation
        the final SELECT already has (a left one, on the same condition) is reused.

        `on` compares output columns of this model (unqualified) with the joined model's, qualified
        by `marker`; `joined_columns` are the joined model's columns (None: unknown, it selects `*`).
        Refused (ModelSqlError) when the new relation could change what the select's other columns
        mean: a set operation, aggregation, DISTINCT, a subquery to qualify, or an unqualified column
        the joined model also has. A bare `*` becomes `<relation>.*`, so the join adds no columns.
        """
        for name in (ref_name, source) if source is not None else (ref_name,):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ModelSqlError(f"cannot join {'source table' if source else 'model'} {name!r}: its name "
                                    f"is no plain identifier")
        call = f"source('{source}', '{ref_name}')" if source is not None else f"ref('{ref_name}')"
        if any(c.name.lower() in self._written for c in on.find_all(exp.Column) if c.table != marker):
            self._flush()  # the condition reads a column accepted but not written yet
        model = self.model
        if len(model.branches) != 1:
            raise ModelSqlError("the final query is a set operation; a join cannot be added to it safely",
                                model.line(model.branches[0].keyword_start))
        branch = model.branches[0]
        select = branch.select
        where = model.line(branch.keyword_start)
        for key, what in (("group", "GROUP BY"), ("having", "HAVING"), ("distinct", "DISTINCT")):
            if select.args.get(key):
                raise ModelSqlError(f"the final select has {what}; a joined column would have to be grouped too",
                                    where)
        from_clause = (select.args.get("from_") or select.args.get("from"))
        relation = from_clause.this if from_clause is not None else None
        if not isinstance(relation, exp.Table) or not relation.name:
            raise ModelSqlError("the final select reads no single named relation (a subquery, or nothing) "
                                "that the join's columns could be qualified by", where)
        jinja_names = {model.masked[r.start:r.end].split("\n")[0]: r for r in model.regions if r.kind == "expr"}
        qualifier = relation.alias or relation.name
        if qualifier in jinja_names:
            raise ModelSqlError("the final select reads a Jinja relation without an alias; give it one "
                                "(`from {{ ref('x') }} as x`) so the join's columns can be told apart", where)
        joins = select.args.get("joins") or []
        wanted = call.replace(" ", "").lower()
        for existing in joins:
            table = existing.this
            region = jinja_names.get(table.name) if isinstance(table, exp.Table) else None
            if region is None or re.sub(r"[\s\"]", "", region.inner.replace('"', "'")).lower() != wanted:
                continue
            alias = table.alias or table.name
            rendered = self._join_condition(on, marker, alias, qualifier, branch)
            if (existing.side or "").upper() == "LEFT" and existing.args.get("on") is not None and \
                    _masked_node(mask_jinja(rendered), self.dialect) == existing.args["on"]:
                return alias
            raise ModelSqlError(f"the final select already joins {call} (as `{alias}`) by another "
                                f"kind of join or on another condition; layersync does not add a second one", where)
        if self.accepted:
            # The new join changes the model the accepted columns were planned on: they are planned again
            # over the joined model, in their order (their columns then read the relation qualified, so the
            # join cannot make them ambiguous). A join found above is reused without it, so N columns
            # through one join cost one parse, not N.
            pending, written = self.accepted, self._written
            self.accepted, self._written = [], {}
            try:
                alias = self.join(ref_name, on, marker, joined_columns, source)
            except ModelSqlError:
                self.accepted, self._written = pending, written
                raise
            for edit in pending:
                try:
                    again = self.plan(edit.name, edit.expression, edit.foreign, edit.layout)
                except ModelSqlError as error:
                    self.failures[id(edit)] = error
                    continue
                self._replanned[id(edit)] = again
                self.accept(again)
            return alias
        taken = {qualifier.lower(), relation.name.lower()} | {
            (j.this.alias or j.this.name).lower() for j in joins if isinstance(j.this, exp.Table)}
        taken |= {cte.alias.lower() for cte in (model_ctes(select))}
        alias = ref_name.lower() if ref_name.lower() not in taken else f"layersync_{ref_name.lower()}"
        if alias in taken:
            raise ModelSqlError(f"the names {ref_name.lower()!r} and {alias!r} are both taken in the final select",
                                where)
        self._check_unambiguous(branch, bool(joins), joined_columns, where)
        condition = self._join_condition(on, marker, alias, qualifier, branch)
        edits = [_Edit(p.start, p.start, f"{qualifier}.") for p in branch.projections
                 if p.star and isinstance(p.node, exp.Star)]
        if edits and joins:
            raise ModelSqlError("the final select has `*` and joins already: which relation's columns it means "
                                "cannot be kept apart from the new join's", where)
        edits.append(self._join_edit(branch, call, alias, condition))
        result = _apply(self.text, edits)
        _check_no_placeholder_leak(model, result)
        _check_no_new_jinja(model, result, frozenset({"{{ " + call + " }}"}))
        joined = _validate(result, [], self.dialect)
        before, after = analyse_model(model), analyse_model(joined)
        if before != after:
            raise ModelSqlError("internal error: the join would change the model's columns", where)
        self._reset(result, joined)
        return alias

    def _join_condition(self, on: exp.Expression, marker: str, alias: str, qualifier: str, branch: _Branch) -> str:
        """The ON text: this model's columns as the final select's relation has them, qualified."""
        node = on.copy()
        for column in node.find_all(exp.Column):
            if column.table == marker:
                column.set("table", exp.to_identifier(alias))
        found = []
        for column in _column_refs(node, frozenset({alias.lower()})):
            substitute = _resolve(column, self.model, branch, branch)
            if isinstance(substitute.node, exp.Column) and not substitute.node.table:
                text = f"{qualifier}.{substitute.text}"
                substitute = _Substitute(text, _masked_node(text, self.dialect))
            found.append(substitute)
        rendered = _render(node, found, self.dialect, self.lowercase, frozenset({alias.lower()}))
        _check_one_item(mask_jinja(rendered), self.dialect, "the join condition")
        return rendered

    def _check_unambiguous(self, branch: _Branch, has_joins: bool, joined_columns: list[str] | None,
                           where: int) -> None:
        """An unqualified column of the final select must stay this relation's once the join is there (a
        CTE's or a subquery's columns are their own select's: the join does not reach them)."""
        names = sorted({c.name.lower() for c in branch.select.find_all(exp.Column)
                        if not c.table and not isinstance(c.this, exp.Star)
                        and not c.name.startswith(("__j", "_j")) and c.find_ancestor(exp.Select) is branch.select})
        if not names:
            return
        if has_joins:
            raise ModelSqlError(f"the final select joins other relations and names `{names[0]}` without "
                                f"qualifying it; qualify its columns so a new join cannot make them ambiguous", where)
        clash = names if joined_columns is None else sorted(set(names) & {c.lower() for c in joined_columns})
        if clash:
            why = "may also be one (it selects `*`)" if joined_columns is None else "also has it"
            raise ModelSqlError(f"the final select names `{clash[0]}` without qualifying it, and the joined model "
                                f"{why}: the join would make it ambiguous", where)

    def _join_edit(self, branch: _Branch, call: str, alias: str, condition: str) -> _Edit:
        """`left join {{ ref('m') }} as m on ...` after the FROM clause (and its joins), in the file's style."""
        model = self.model
        tokens = _tokenize(model.masked, _dialect(self.dialect))
        start = next(i for i, t in enumerate(tokens) if t.start == branch.list_end)
        stop = _scan_depth0(tokens, start + 1, len(tokens), _LIST_END - {TokenType.FROM})
        stop = len(tokens) if stop is None else stop
        end = _after_jinja(tokens[stop - 1].end + 1, model.regions)
        _check_balanced(model, branch.keyword_start, end, "the end of the final select's FROM clause")
        left, join_kw, as_kw, on_kw = ("left", "join", "as", "on") if self.lowercase else ("LEFT", "JOIN", "AS", "ON")
        clause = f"{left} {join_kw} {{{{ {call} }}}} {as_kw} {alias}"
        limit = tokens[stop].start if stop < len(tokens) else len(model.text)
        line_end = _line_end_after(model, end, limit)
        if line_end is None:
            return _Edit(end, end, f" {clause} {on_kw} {condition}")
        from_start = tokens[start].start
        line_start = model.text.rfind("\n", 0, from_start) + 1
        indent = _leading_whitespace(model.text[line_start:from_start])
        newline = "\r\n" if "\r\n" in model.text else "\n"
        return _Edit(line_end, line_end, f"{newline}{indent}{clause}{newline}{indent}    {on_kw} {condition}")

    def checkpoint(self) -> tuple:
        """The editor as it is, accepted columns included: `rollback` returns to it (a join whose column
        failed). Nothing is written for it, so a checkpoint per joined column costs no parse."""
        return (self.text, self.model, self.lowercase, list(self.accepted), dict(self._written), dict(self.failures),
                dict(self._replanned))

    def rollback(self, checkpoint: tuple) -> None:
        text, model, lowercase, accepted, written, failures, replanned = checkpoint
        self.text, self.model, self.lowercase = text, model, lowercase
        self.accepted, self._written, self.failures = list(accepted), dict(written), dict(failures)
        self._replanned = dict(replanned)

    def current(self, edit: ColumnEdit) -> ColumnEdit:
        """The edit as it will be written: planned again when a join came in under it (its columns then
        read the model's relation qualified)."""
        while id(edit) in self._replanned:
            edit = self._replanned[id(edit)]
        return edit

    def accept(self, edit: ColumnEdit) -> None:
        """Write `edit` (at `finish`); the columns planned after it read it as written."""
        self.accepted.append(edit)
        if edit.changed:
            self._written[edit.name.lower()] = edit

    def _splice(self, accepted: list[ColumnEdit] | None = None) -> tuple[str, _Model]:
        """The text with the accepted columns (or those of `accepted`), and that text as validated (loaded)."""
        accepted = self.accepted if accepted is None else accepted
        edits = [e for edit in accepted for e in edit.replacements]
        for position, branch in enumerate(self.model.branches):
            items = [item for edit in accepted if (item := edit.items[position]) is not None]
            if items:
                edits += _insertion(self.model, branch, items)
        if not edits:
            return self.text, self.model
        result = _apply(self.text, edits)
        _check_no_placeholder_leak(self.model, result)
        _check_no_new_jinja(self.model, result)
        return result, _validate(result, [edit.name for edit in accepted if edit.changed], self.dialect)

    def _flush(self) -> None:
        """Splice what is accepted; when the splice fails as a whole, the columns that fail are found by
        halves (k failures among N columns: about k·log N splices, where writing them one at a time
        re-read the growing model N times) and the others still go in."""
        try:
            text, model = self._splice()
        except ModelSqlError as error:
            if len(self.accepted) == 1:
                self.failures[id(self.accepted[0])] = error
                text, model = self.text, self.model
            else:
                middle = len(self.accepted) // 2
                good = self._splicing(self.accepted[:middle]) + self._splicing(self.accepted[middle:])
                try:
                    text, model = self._splice(good) if good else (self.text, self.model)
                except ModelSqlError:  # columns that splice apart but not together: one at a time
                    text, model = self.text, None
                    for edit in good:
                        try:
                            text = upsert_column(text, edit.name, edit.expression, self.dialect, edit.foreign)
                        except ModelSqlError as one:
                            self.failures[id(edit)] = one
        self._reset(text, model)

    def _splicing(self, edits: list[ColumnEdit]) -> list[ColumnEdit]:
        """The edits among `edits` that splice; each that does not gets its reason in `failures`."""
        try:
            self._splice(edits)
            return list(edits)
        except ModelSqlError as error:
            if len(edits) == 1:
                self.failures[id(edits[0])] = error
                return []
        middle = len(edits) // 2
        return self._splicing(edits[:middle]) + self._splicing(edits[middle:])

    def finish(self) -> str:
        """The model with every accepted column written; those that could not be are in `failures`."""
        if self.accepted:
            self._flush()
        return self.text

    def failure(self, edit: ColumnEdit) -> ModelSqlError | None:
        edit = self.current(edit)
        return self.failures.get(id(edit))


def upsert_columns(text: str, columns: list[tuple[str, exp.Expression | str]], dialect: str = "duckdb") -> str:
    """`upsert_column` for several columns, one parse and one validation for all of them; the
    result is the text calling it once per column writes. ModelSqlError for the first column
    that cannot be written (nothing is written then)."""
    editor = ModelEditor(text, dialect)
    edits = []
    for name, expression in columns:
        edits.append(editor.plan(name, expression))
        editor.accept(edits[-1])
    result = editor.finish()
    failed = next((editor.failure(edit) for edit in edits if editor.failure(edit) is not None), None)
    if failed is not None:
        raise failed
    return result


def upsert_column(
    text: str, name: str, expression: exp.Expression | str, dialect: str = "duckdb",
    foreign: frozenset[str] = frozenset(),
) -> str:
    """Return the model text with `<expression> as <name>` in the final SELECT.

    `expression` is over the model's output columns; each referenced column is
    replaced by the text of the projection producing it (a SELECT cannot
    portably reference its own aliases). An existing projection named `name`
    has its expression replaced in place; everything else is byte-identical.
    """
    editor = ModelEditor(text, dialect)
    editor.accept(editor.plan(name, expression, foreign))
    return editor._splice()[0]
