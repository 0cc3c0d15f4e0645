"""Settings of one test server, and the request log the tests assert on.

Owns `Settings` (who the tokens are, how much watch history is kept, how often
bookmarks are sent) and `RequestLog` (every request with its verb, resource
and answer code; `writes()` counts writes per resource for the API-writes
benchmark). Read by `app.py`; the log is read from the test's thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from .rbac import MASTERS, User

ADMIN_TOKEN = "corral-test-admin"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def _default_tokens() -> dict[str, User]:
    return {ADMIN_TOKEN: User("admin", (MASTERS,))}


@dataclass
class Settings:
    """How a test server behaves; every field has the value a test usually wants."""

    tokens: dict[str, User] = field(default_factory=_default_tokens)
    """Bearer token -> user. Requests without a known token get 401."""
    history_size: int = 1000
    """Watch events kept per resource; resuming from an older resourceVersion gets 410."""
    bookmark_interval: float = 60.0
    """Seconds between BOOKMARK events on watches that allow them (the real server: ~60)."""
    namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")
    """Namespaces that exist when the server starts."""


@dataclass(frozen=True)
class Record:
    """One answered request."""

    method: str
    path: str
    verb: str
    code: int
    user: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS and self.code < 400


class RequestLog:
    """Every request the server answered, safe to read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []

    def add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def writes(self) -> Counter[str]:
        """Successful writes per `resource` or `resource/subresource`."""
        counts: Counter[str] = Counter()
        for r in self.records:
            if r.write:
                counts[f"{r.resource}/{r.subresource}" if r.subresource else r.resource] += 1
        return counts

    def count(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> int:
        """Requests matching every filter given."""
        return sum(
            1
            for r in self.records
            if (verb is None or r.verb == verb)
            and (resource is None or r.resource == resource)
            and (subresource is None or r.subresource == subresource)
            and (name is None or r.name == name)
        )
