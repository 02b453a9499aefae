"""Markdown written for GitHub, shown to a person in a terminal.

What layersync posts carries hidden markers (`<!-- layersync:push … -->`, the facts a rerun reads
back as escaped JSON) and folds detail into `<details>`: GitHub renders neither, so a terminal
must not show them either. What is posted keeps them; only the terminal's copy is cleaned.
"""
from __future__ import annotations

import re

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SUMMARY = re.compile(r"<details>\s*<summary>(.*?)</summary>", re.S | re.I)
_TAGS = re.compile(r"</?(details|summary)>", re.I)


def for_people(markdown: str) -> str:
    """`markdown` as GitHub shows it, in plain text: no HTML comments, a fold's summary as a line of
    its own, no run of blank lines."""
    text = _COMMENT.sub("", markdown)
    text = _SUMMARY.sub(lambda m: f"{m.group(1).strip()}:", text)
    text = _TAGS.sub("", text)
    return squeeze_blank_lines(text).strip("\n")


def squeeze_blank_lines(text: str) -> str:
    """No two blank lines in a row (a line of spaces counts as blank)."""
    return re.sub(r"\n(?:[ \t]*\n){2,}", "\n\n", text)
