"""Comment commands: `/push-to-dbt [VIEW.FIELD ...]`, `/preview` and `/layersync help` (pure parsing).

Like Atlantis, every mistake gets the usage back (the handlers answer only users with write
access); lines inside code blocks or quotes are not commands, so quoting someone's command does
not run it again. Whatever a reply echoes of a user's text goes through `quote`.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.untrusted import mention, quote  # noqa: F401 - the handlers' quoting, re-exported

USAGE = """\
**layersync commands** (comment on an issue or pull request of the semantic-layer repo):

| command | what it does |
|---|---|
| `/push-to-dbt` | on a PR: push every semantic field the PR changes into the dbt repo, as a dbt PR; on an issue: push the fields the issue names |
| `/push-to-dbt VIEW.FIELD [VIEW.FIELD ...]` | push just these fields (e.g. `/push-to-dbt orders.is_large_order`) |
| `/preview` | on a PR of the dbt or the semantic-layer repo: build the branch's changed models into its own schema `layersync_preview_<branch>` and reply how to query it (also `/layersync preview`) |
| `/layersync help` | show this help |

You need write access to this repository to run commands."""


@dataclass(frozen=True)
class Command:
    name: str                      # "push-to-dbt" | "preview" | "help"
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandError:
    line: str
    problem: str
    command: str | None = None     # the command the mistake is about ("preview"), when known

    def reply(self) -> str:
        return f"I could not run {quote(self.line)}: {self.problem}.\n\n{USAGE}"


def _is_field_id(text: str) -> bool:
    view, dot, field = text.partition(".")
    return bool(dot) and all(part and (part[0].isalpha() or part[0] == "_")
                             and part.replace("_", "a").isalnum() for part in (view, field))


def _command_lines(body: str) -> list[str]:
    lines: list[str] = []
    fenced = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("```") or line.startswith("~~~"):
            fenced = not fenced
            continue
        if fenced or line.startswith(">"):
            continue
        if line.startswith(("/push-to-dbt", "/layersync", "/preview")):
            lines.append(line)
    return lines


def _parse_push(line: str, args: list[str]) -> Command | CommandError:
    bad = [a for a in args if not _is_field_id(a)]
    if bad:
        return CommandError(line, f"{quote(bad[0])} is not a field: write VIEW.FIELD")
    return Command("push-to-dbt", tuple(dict.fromkeys(args)))


def _parse_preview(line: str, args: list[str]) -> Command | CommandError:
    if args:
        return CommandError(line, "`/preview` takes no arguments: it previews the PR's branch", "preview")
    return Command("preview")


def is_preview(command: Command | CommandError) -> bool:
    """A `/preview` command, or a mistake in one (the preview handler answers both)."""
    return (command.name if isinstance(command, Command) else command.command) == "preview"


def parse_comment(body: str) -> list[Command | CommandError]:
    """Every command line of a comment, in order; an empty list when it holds none."""
    parsed: list[Command | CommandError] = []
    for line in _command_lines(body or ""):
        words = line.split()
        head, args = words[0], words[1:]
        if head == "/push-to-dbt":
            parsed.append(_parse_push(line, args))
        elif head == "/preview":
            parsed.append(_parse_preview(line, args))
        elif head == "/layersync":
            if not args or args[0] in ("help", "--help", "-h"):
                parsed.append(Command("help"))
            elif args[0] == "push-to-dbt":
                parsed.append(_parse_push(line, args[1:]))
            elif args[0] == "preview":
                parsed.append(_parse_preview(line, args[1:]))
            else:
                parsed.append(CommandError(line, f"{quote(args[0])} is not a layersync command"))
        else:  # `/push-to-dbtx`, `/layersyncfoo`
            parsed.append(CommandError(line, f"{quote(head)} is not a command"))
    return parsed


def field_ids_in_text(text: str) -> list[str]:
    """Candidate `view.field` words in an issue's text (the caller keeps those that exist)."""
    found: list[str] = []
    for word in (text or "").replace("`", " ").replace(",", " ").split():
        word = word.strip("()[]{}:;!?\"'*")
        if word.endswith("."):
            word = word[:-1]
        if _is_field_id(word) and word not in found:
            found.append(word)
    return found
