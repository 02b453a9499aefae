"""Comment commands: `/push-to-dbt [VIEW.FIELD ...] [as model NAME by DIM,...]`, `/preview` and `/layersync help`
(pure parsing).

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
| `/push-to-dbt [VIEW.MEASURE ...] as model NAME by VIEW.DIM[,VIEW.DIM ...] [grain day\\|week\\|month\\|quarter\\|year]` | write one dbt model `NAME` aggregating these measures (default: the changed ones) by those dimensions, built and compared with the BI definition (e.g. `/push-to-dbt orders.revenue as model revenue_by_status by orders.status grain month`) |
| `/preview` | on a PR of the dbt or the semantic-layer repo: build the branch's changed models into its own schema `layersync_preview_<branch>` and reply how to query it (also `/layersync preview`) |
| `/layersync help` | show this help |

You need write access to this repository to run commands."""


GRAINS = ("day", "week", "month", "quarter", "year")


@dataclass(frozen=True)
class Command:
    name: str                      # "push-to-dbt" | "preview" | "help"
    fields: tuple[str, ...] = ()
    as_model: str | None = None    # `as model NAME`: materialise the measures as this dbt model
    group_by: tuple[str, ...] = () # `by VIEW.DIM,...` (VIEW.DIM:GRAIN allowed)
    grain: str | None = None       # `grain month` (or a bare grain among the `by` list)


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
    lowered = [a.lower() for a in args]
    tail: list[str] = []
    if "as" in lowered:
        at = lowered.index("as")
        args, tail = args[:at], args[at:]
    bad = [a for a in args if not _is_field_id(a)]
    if bad:
        return CommandError(line, f"{quote(bad[0])} is not a field: write VIEW.FIELD")
    fields = tuple(dict.fromkeys(args))
    if not tail:
        return Command("push-to-dbt", fields)
    return _parse_as_model(line, fields, tail)


def _parse_as_model(line: str, fields: tuple[str, ...], tail: list[str]) -> Command | CommandError:
    """`as model NAME by DIM[,DIM ...] [grain GRAIN]`; a grain may also stand in the `by` list."""
    words = [w.lower() for w in tail]
    if len(words) < 3 or words[1] != "model":
        return CommandError(line, "write `as model NAME by VIEW.DIM,...` after the fields")
    name = tail[2]
    if not name.replace("_", "a").isalnum() or not (name[0].isalpha() or name[0] == "_") or name != name.lower():
        return CommandError(line, f"{quote(name)} is no dbt model name: lower-case letters, digits and `_`")
    rest, grain = tail[3:], None
    if len(rest) >= 2 and rest[-2].lower() in ("grain", "per"):
        grain, rest = rest[-1].lower(), rest[:-2]
        if grain not in GRAINS:
            return CommandError(line, f"{quote(grain)} is no time grain: one of {', '.join(GRAINS)}")
    if not rest or rest[0].lower() != "by":
        if rest or grain is None:
            return CommandError(line, f"say what `{name}` is grouped by: `as model {name} by VIEW.DIM,...`")
        return Command("push-to-dbt", fields, as_model=name, grain=grain)
    group_by: list[str] = []
    for item in (piece.strip() for piece in " ".join(rest[1:]).split(",")):
        if not item:
            continue
        if item.lower() in GRAINS and grain is None:
            grain = item.lower()
            continue
        dimension, _, item_grain = item.partition(":")
        if " " in item or not _is_field_id(dimension) or (item_grain and item_grain.lower() not in GRAINS):
            return CommandError(line, f"{quote(item)} is not a dimension to group by: write VIEW.DIM "
                                      f"(or VIEW.DIM:GRAIN), separated by commas")
        group_by.append(item if not item_grain else f"{dimension}:{item_grain.lower()}")
    if not group_by and grain is None:
        return CommandError(line, f"say what `{name}` is grouped by: `as model {name} by VIEW.DIM,...`")
    return Command("push-to-dbt", fields, as_model=name, group_by=tuple(dict.fromkeys(group_by)), grain=grain)


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
