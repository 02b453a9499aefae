"""A local stand-in for GitHub (REST API + git smart HTTP), validated against GitHub's REST description.

See :mod:`tests.github_standin.server` for the API; :mod:`.openapi` for the description and what is checked.
"""

from .git_http import Push, RefUpdate
from .openapi import PINNED_VERSION, Operation, Spec, SpecUnavailable, load_spec
from .server import ApiError, GitHubStandIn, Injection, RecordedRequest, Violation

__all__ = [
    "PINNED_VERSION",
    "ApiError",
    "GitHubStandIn",
    "Injection",
    "Operation",
    "Push",
    "RecordedRequest",
    "RefUpdate",
    "Spec",
    "SpecUnavailable",
    "Violation",
    "load_spec",
]
