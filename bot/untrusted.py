"""Text from outside (a comment, a branch name, a commit author) as it may appear in what the bot
posts: inert Markdown, so no echo of it can ping a team, open a link or forge a layersync marker.
Pure: handlers and the engine's report writers share it."""
from __future__ import annotations

import re

MAX_QUOTED = 200                 # characters of a user's text a reply echoes at most
_ZWJ = "\u200d"
_BACKTICKS = re.compile("`+")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


def quote(text: str, *, limit: int = MAX_QUOTED, table: bool = False) -> str:
    """`text` a user wrote, as one inline code span that nothing in it can end or make live.

    Markdown is not interpreted inside a code span, and GitHub links no mention or reference in
    one; the fence is one backtick longer than any run in the text (padded when the text starts or
    ends with one), so the text cannot close it. What the span cannot stop is neutralised too:
    line breaks would end it (collapsed), control and bidi characters would hide text (replaced),
    `<!--` would put a layersync marker into the raw reply, where the forge's marker search sees
    it (broken with a zero-width joiner), and `@`/`#` get one as well, should the span ever not
    render. `table`: for a table cell, where `|` ends the cell even inside code.
    """
    visible = "".join(ch if ch.isprintable() or ch.isspace() else "\ufffd" for ch in text)
    flat = " ".join(visible.split())
    if len(flat) > limit:
        flat = flat[:limit - 1] + "…"
    flat = flat.replace("<!--", f"<{_ZWJ}!--").replace("@", f"@{_ZWJ}").replace("#", f"#{_ZWJ}")
    if table:
        flat = flat.replace("|", "¦")
    if not flat:
        return "` `"
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def mention(login: str) -> str:
    """`@login` for a GitHub login (the person the reply answers), else the text, quoted."""
    return f"@{login}" if _LOGIN.fullmatch(login) else quote(login)
