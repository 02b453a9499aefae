"""Does the column dbt compiled compute what the field says? (pure: compiled SQL in, problems out)

The push writes a column over the model's other columns, inlining the expressions that compute them;
those may be Jinja, which only dbt renders. So the check step reads each pushed column back from the
SQL `dbt compile` wrote (macros expanded) and plans the field's expression again over that compiled
model's own columns: both must be one tree, parentheses aside. A macro inlined where an operator binds
differently around what it renders (`not {{ validate_email(x) }}` → `not x like … and x not like …`)
makes them differ, and the field is reported instead of pushed with a changed meaning.
"""
from __future__ import annotations

from typing import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bot.dbt import model_sql
from bot.translate.push import PushPlan, Skipped

MAX_SHOWN = 240


def _bare(node: exp.Expression) -> exp.Expression:
    """The tree without its parentheses: the structure already says how the operators bind."""
    return node.transform(lambda n: n.this.copy() if isinstance(n, exp.Paren) else n)


def _unwrapped(sql: str, dialect: str) -> exp.Expression:
    node = sqlglot.parse_one(sql, read=dialect)
    while isinstance(node, exp.Paren):
        node = node.this
    return _bare(node)


def _short(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= MAX_SHOWN else flat[:MAX_SHOWN - 1] + "…"


def problems(plan: PushPlan, compiled: Mapping[str, str], dialect: str) -> list[Skipped]:
    """The pushed columns whose compiled SQL computes something else than their field; `compiled` is
    dbt's compiled SQL by model name (lower case). A model dbt did not compile, or whose compiled SQL
    cannot be read, proves nothing and refutes nothing: its columns are not reported."""
    found: list[Skipped] = []
    for pushed in plan.pushed:
        edit = plan.edits.get(pushed.id)
        code = compiled.get(pushed.model.lower())
        if edit is None or code is None:
            continue
        try:
            editor = model_sql.ModelEditor(code, dialect)
            written = editor.column_sql(pushed.column)
            if written is None:
                continue
            expected = editor.plan(pushed.column, edit.expression, edit.foreign).after
            same = _unwrapped(written, dialect) == _unwrapped(expected, dialect)
        except (model_sql.ModelSqlError, SqlglotError):
            continue
        if not same:
            found.append(Skipped(
                pushed.id, pushed.file, pushed.line,
                f"dbt compiles the new column `{pushed.model}.{pushed.column}` to `{_short(written)}`, which does not "
                f"compute the field's SQL over the model's columns (`{_short(expected)}`): a macro or expression "
                f"it inlines binds differently once rendered; not pushed", "meaning-changed"))
    return found
