"""One scrubber for everything layersync posts, logs or prints: configured secrets become `***`.

Why one place: a secret reaches the outside through many doors (a PR comment quoting dbt's error, a
commit status, a job's `last_error`, a log line, a CLI error echoing a git remote). Each door calls
`scrub`, and every secret the process knows is registered here once, when settings are read, so no
door needs to know which secrets exist. Beyond the registered values, text that is a credential by
its shape is scrubbed too: passwords and tokens inside URLs, `Authorization` headers, GitHub tokens
and PEM private keys — so a secret nobody registered (a DSN in a dbt error) still does not leak.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["MASK", "register", "register_from_env", "registered", "scrub", "ScrubbingFormatter",
           "install_log_scrubber", "forget_all"]

MASK = "***"
_MIN_SECRET = 6          # shorter values ("db", "1234") would mask ordinary words everywhere

# Environment variables whose values are secrets by name (besides the LAYERSYNC_* ones below).
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIALS?)$")
_LAYERSYNC_SECRETS = ("LAYERSYNC_GITHUB_TOKEN", "LAYERSYNC_WEBHOOK_SECRET", "LAYERSYNC_GITHUB_PRIVATE_KEY")
_LAYERSYNC_DSNS = ("LAYERSYNC_WAREHOUSE", "LAYERSYNC_QUEUE_DSN", "DATABASE_URL")

# Shapes that are credentials whatever their value.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host → scheme://user:***@host (git remotes, DSNs)
    (re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)[^\s/@'\"]+(?=@)"), r"\g<head>" + MASK),
    # scheme://token@host (a token as the user part of an https URL)
    (re.compile(r"(?P<head>https?://)(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]+(?=@)"), r"\g<head>" + MASK),
    # Authorization: Basic/Bearer/token <credential>, in headers or git's extraheader config
    (re.compile(r"(?i)(?P<head>authorization:\s*(?:basic|bearer|token)\s+)[A-Za-z0-9+/=._\-]+"), r"\g<head>" + MASK),
    # GitHub tokens by their documented prefixes
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b"), MASK),
    # PEM private keys
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), MASK),
    # password=... in libpq keyword strings and similar key=value settings
    (re.compile(r"(?i)(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?:'[^']*'|\"[^\"]*\"|[^\s;&]+)"), r"\g<head>" + MASK),
)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(*values: str | None) -> None:
    """Remember secret values; from now on `scrub` masks each wherever it appears.

    A multi-line value (a PEM key) is registered whole and line by line, so a quoted fragment of it
    is masked too. Values shorter than a few characters are ignored: masking them would garble text.
    """
    global _pattern
    added = False
    with _lock:
        for value in values:
            for candidate in _variants(value):
                if candidate not in _secrets:
                    _secrets.add(candidate)
                    added = True
        if added:
            ordered = sorted(_secrets, key=len, reverse=True)      # longest first: no partial masks
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def _variants(value: str | None) -> Iterable[str]:
    if not value:
        return []
    text = str(value).strip()
    found = [text] if len(text) >= _MIN_SECRET else []
    if "\n" in text:
        found += [line.strip() for line in text.splitlines() if len(line.strip()) >= 16 and "-----" not in line]
    decoded = unquote(text)                      # a password written percent-encoded in a URL
    if decoded != text and len(decoded) >= _MIN_SECRET:
        found.append(decoded)
    return found


def url_password(url: str | None) -> str | None:
    """The password (or the token in the user part) of a URL, so a DSN's password is registered."""
    if not url or "://" not in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.password or (parts.username if parts.username and parts.username.startswith(("ghp_", "ghs_", "github_pat_")) else None)


def register_from_env(environ: Mapping[str, str] | None = None) -> None:
    """Register every secret the environment hands this process: layersync's own settings, the
    private key file's contents, DSN passwords and any variable named like a secret."""
    env = os.environ if environ is None else environ
    values: list[str | None] = [env.get(name) for name in _LAYERSYNC_SECRETS]
    key_file = env.get("LAYERSYNC_GITHUB_PRIVATE_KEY_FILE")
    if key_file:
        try:
            values.append(Path(key_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
    values += [url_password(env.get(name)) for name in _LAYERSYNC_DSNS]
    values += [value for name, value in env.items() if _SECRET_NAME.search(name.upper())]
    register(*values)


def registered() -> int:
    """How many secret values are known (for tests and a start-up log line; never the values)."""
    with _lock:
        return len(_secrets)


def forget_all() -> None:
    """Drop every registered value (tests only: a process keeps its secrets for its life)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def scrub(text: object) -> str:
    """`text` with every registered secret and every credential-shaped string replaced by `***`."""
    if text is None:
        return ""
    out = text if isinstance(text, str) else str(text)
    pattern = _pattern
    if pattern is not None and out:
        out = pattern.sub(MASK, out)
    for shape, replacement in _SHAPES:
        out = shape.sub(replacement, out)
    return out


class ScrubbingFormatter(logging.Formatter):
    """Wraps a handler's formatter so the final line (message, arguments, traceback) is scrubbed."""

    def __init__(self, inner: logging.Formatter | None = None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record))


def install_log_scrubber(logger: logging.Logger | None = None) -> None:
    """Scrub every handler of `logger` (default: the root logger), once each."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not isinstance(handler.formatter, ScrubbingFormatter):
            handler.setFormatter(ScrubbingFormatter(handler.formatter))
