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
