"""Where the semantic model and the dbt project live inside their repositories (monorepos).

Both may sit in a subfolder (`omni/Model/` beside `dbt-project/`). The engine works relative to the
project it reads (dbt's own paths are relative to `dbt_project.yml`); everything a person reads or
git records — commits, PR bodies, file:line in messages — names repository-relative paths. These
helpers are the one place the two kinds of path meet. No git here: callers pass what they read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from bot.errors import LayersyncError

if TYPE_CHECKING:
    from bot.config import Config

CONFIG_FILE = "layersync.yml"     # bot.config's name for it (not imported: the receiver reads this module)


def subdir(text: str | None, flag: str) -> str:
    """A folder of a repository as given by a person: "" (the root), or a clean relative POSIX path.

    An absolute path or one with `..` could reach outside the checkout the bot writes into, so it is
    refused, not resolved."""
    raw = (text or "").strip()
    if raw in ("", ".", "./"):
        return ""
    posix = raw.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise LayersyncError(f"{flag} `{raw}` must be relative to the repository's root, not absolute")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayersyncError(f"{flag} `{raw}` must not contain `..`: give the folder inside the repository")
    return "/".join(parts)


def join(root: str, path: str) -> str:
    """`path` inside the project at `root`, as a repository-relative path."""
    return f"{root}/{path}" if root and path else (root or path)


def inside(root: str, path: str) -> str | None:
    """`path` (repository-relative) relative to `root`, or None when it lies outside it."""
    if not root:
        return path
    prefix = root + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def under(root: str) -> Callable[[str], bool]:
    """A filter for repository-relative paths inside `root` (everything when `root` is "")."""
    prefix = root + "/" if root else ""
    return lambda path: path.startswith(prefix)


def config_candidates(semantic_root: str) -> list[str]:
    """Where `layersync.yml` is looked for: at the semantic model's root, then at the repository's.
    A monorepo keeps it beside the model it configures; a repo of one model has one place anyway."""
    own = join(semantic_root, CONFIG_FILE)
    return [own] if own == CONFIG_FILE else [own, CONFIG_FILE]


def read_config(read: Callable[[str], str | None], semantic_root: str) -> "Config":
    """The team's settings from the first `layersync.yml` there is (`read`: a path's text or None);
    errors name the file that was read."""
    from bot.config import parse_config
    for path in config_candidates(semantic_root):
        text = read(path)
        if text is not None:
            return parse_config(text, path)
    return parse_config(None)


def check_folder(is_dir: Callable[[str], bool], root: str, flag: str, where: str) -> None:
    """A folder that is not there is the user's typo: said in one line, before anything is read."""
    if root and not is_dir(root):
        raise LayersyncError(f"{flag} `{root}` is not a folder of {where}")
