"""Errors a user can act on: each names the file and line it is about."""
from __future__ import annotations


class LayersyncError(Exception):
    """Base for problems we report to users instead of crashing on."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def where(self) -> str:
        """`file:line` prefix, so messages point users straight at the spot."""
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


class SemanticError(LayersyncError):
    """A semantic-layer file or field that cannot be read."""


class TranslationError(LayersyncError):
    """A field that cannot be translated into dbt (unknown field, cycle, join needed, ...)."""


class RefusedTranslation(TranslationError):
    """A translation refused for a reason results name: `code` is the stable, scriptable key that
    JSON results and skip lists carry (`fan-out`, `aggregate-type`, ...), the message is for people."""

    def __init__(self, message: str, code: str, file: str | None = None, line: int | None = None):
        super().__init__(message, file, line)
        self.code = code


class RepoError(LayersyncError):
    """A repository that cannot be read or written (missing path, unknown revision, ...)."""


class EncodingError(SemanticError):
    """A file that is not UTF-8 text: reported with the line of its first bad byte, like a YAML error."""
