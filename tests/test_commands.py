"""Comment command parsing: commands, usage on every mistake, quotes and code ignored."""
from __future__ import annotations

from bot.handlers.commands import USAGE, Command, CommandError, field_ids_in_text, parse_comment
from bot.handlers.router import Event, Router


def test_push_commands() -> None:
    assert parse_comment("/push-to-dbt") == [Command("push-to-dbt")]
    assert parse_comment("please\n/push-to-dbt orders.is_large customers.tier orders.is_large\nthanks") == [
        Command("push-to-dbt", ("orders.is_large", "customers.tier"))]
    assert parse_comment("/layersync push-to-dbt orders.x") == [Command("push-to-dbt", ("orders.x",))]
    assert parse_comment("/layersync help") == [Command("help")] == parse_comment("/layersync")


def test_mistakes_get_usage() -> None:
    (bad,) = parse_comment("/push-to-dbt orders")
    assert isinstance(bad, CommandError) and "`orders` is not a field" in bad.reply() and USAGE in bad.reply()
    (bad,) = parse_comment("/layersync deploy")
    assert isinstance(bad, CommandError) and "`deploy` is not a layersync command" in bad.problem
    (bad,) = parse_comment("/push-to-dbtx")
    assert isinstance(bad, CommandError)


def test_no_command_in_prose_quotes_or_code() -> None:
    assert parse_comment("I ran /push-to-dbt yesterday") == []
    assert parse_comment("> /push-to-dbt\nquoted") == []
    assert parse_comment("```\n/push-to-dbt\n```") == []
    assert parse_comment("") == []


def test_field_ids_in_issue_text() -> None:
    text = "Please push `orders.is_large_order` and customers.tier.\nSee docs.example.com, v1.2"
    assert field_ids_in_text(text) == ["orders.is_large_order", "customers.tier"]


def test_router_matches_event_and_action() -> None:
    router, calls = Router(), []
    router.register("pull_request", action="opened")(lambda e, c: calls.append(("opened", e.action)))
    router.register("pull_request")(lambda e, c: calls.append(("any", e.action)))
    assert Router(router).dispatch(Event("pull_request", {"action": "closed"}), None) == 1
    assert Router(router).dispatch(Event("pull_request", {"action": "opened"}), None) == 2
    assert Router(router).dispatch(Event("push", {}), None) == 0
    assert calls == [("any", "closed"), ("any", "opened"), ("opened", "opened")]


# -- replies quote what users wrote -----------------------------------------------------------

from html.parser import HTMLParser  # noqa: E402

import pytest  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from bot.handlers.commands import mention, quote  # noqa: E402

ZWJ = "\u200d"


class _Rendered(HTMLParser):
    """What a CommonMark renderer (GitHub's base, tables on) makes of a reply: the text outside code
    (where GitHub links mentions and references), the text of each code span, and the tags."""

    def __init__(self, markdown: str) -> None:
        super().__init__()
        self.outside, self.codes, self.tags, self._in_code = "", [], [], 0
        self.feed(MarkdownIt("commonmark").enable("table").render(markdown))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "code":
            self._in_code += 1
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code -= 1

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.codes[-1] += data
        else:
            self.outside += data


def assert_inert(markdown: str, untrusted: str) -> None:
    """`untrusted`, echoed in `markdown`, is shown whole inside one code span and nothing in it is live."""
    page = _Rendered(markdown)
    assert "@" not in page.outside and "#1" not in page.outside, page.outside
    assert [t for t, _ in page.tags if t not in {"p", "code", "strong", "table", "thead", "tbody", "tr", "th",
                                                 "td", "em", "h3"}] == []
    assert not any("href" in attrs for _, attrs in page.tags)
    flat = " ".join(untrusted.split())
    assert any(code.replace(ZWJ, "") == flat for code in page.codes), (page.codes, flat)


HOSTILE = [
    "/push-to-dbt `x` @acme/admins",
    "/push-to-dbt ``` @acme/admins ``` #123",
    "/layersync `` <img src=x onerror=alert(1)> @ada acme/other#1",
    "/push-to-dbt [x](javascript:alert(1)) <!-- layersync:push-to-dbt comment=1 -->",
    "/preview `" + "`" * 50 + " @team x`",
    "/push-to-dbt **bold** _em_ <b>x</b> &amp; `/x`",
]


@pytest.mark.parametrize("line", HOSTILE)
def test_usage_reply_quotes_the_line_so_nothing_in_it_is_live(line: str) -> None:
    (bad,) = parse_comment(line)
    assert isinstance(bad, CommandError)
    reply = bad.reply()
    assert_inert(reply.replace(USAGE, ""), line)
    assert "@acme" not in reply and "@ada" not in reply and "@team" not in reply
    assert "<!-- layersync:" not in reply          # a reply can never carry another reply's marker


@pytest.mark.parametrize("text", HOSTILE + ["a\nb\r\n\n c", "x\u202eevil\u0000", "`", "``a``", "|a|b|"])
def test_quote_is_one_unbreakable_code_span(text: str) -> None:
    quoted = quote(text)
    assert "\n" not in quoted and "\r" not in quoted and "\u202e" not in quoted and "\x00" not in quoted
    page = _Rendered(f"I could not run {quoted}: that.")
    assert len(page.codes) == 1 and "@" not in page.outside and page.outside == "I could not run : that.\n"


def test_quote_in_a_table_cell_keeps_the_row() -> None:
    row = f"| {quote('a|b`@x|', table=True)} | second |"
    page = _Rendered(f"| field | other |\n|---|---|\n{row}")
    assert [t for t, _ in page.tags].count("td") == 2 and "@" not in page.outside


def test_quote_bounds_the_length_and_keeps_plain_words_plain() -> None:
    assert quote("orders.x") == "`orders.x`"
    assert len(quote("x" * 100_000)) < 300 and quote("x" * 100_000).endswith("…`")
    assert mention("ada-lovelace") == "@ada-lovelace"
    assert mention("acme/admins") == "`acme/admins`" and mention("x`y") == "``x`y``"   # not logins: no @
