"""Routes an event to the handlers registered for its name and action (bedevere-style)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

Handler = Callable[["Event", Any], None]


@dataclass(frozen=True)
class Event:
    name: str                    # X-GitHub-Event
    payload: dict[str, Any]
    delivery_id: str = ""

    @property
    def action(self) -> str | None:
        return self.payload.get("action")

    @property
    def repo(self) -> str:
        return str((self.payload.get("repository") or {}).get("full_name", ""))


class Router:
    def __init__(self, *routers: "Router"):
        self._handlers: dict[tuple[str, str | None], list[Handler]] = defaultdict(list)
        for router in routers:
            for key, handlers in router._handlers.items():
                self._handlers[key].extend(handlers)

    def register(self, event: str, action: str | None = None) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self._handlers[(event, action)].append(handler)
            return handler
        return decorate

    def handlers_for(self, event: Event) -> list[Handler]:
        keys = [(event.name, None)] + ([(event.name, event.action)] if event.action else [])
        return [handler for key in keys for handler in self._handlers.get(key, [])]

    def dispatch(self, event: Event, context: Any) -> int:
        handlers = self.handlers_for(event)
        for handler in handlers:
            handler(event, context)
        return len(handlers)
