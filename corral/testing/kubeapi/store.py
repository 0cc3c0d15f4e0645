"""In-memory storage: objects, the cluster-wide resourceVersion, event history, watches.

Owns what etcd plus the watch cache give the real API server: every write gets
the next cluster-wide resourceVersion and is recorded in a bounded per-resource
history, so a watch can resume from a resourceVersion (or get 410 Expired when
it is older than the history). Watches are filtered by namespace and selector,
and an object that starts or stops matching a selector is seen as ADDED or
DELETED, as with the watch cache. Stored objects are never mutated in place.
`objects.py` is the only writer; `app.py` reads and watches.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError

JSON = dict[str, Any]
Key = tuple[str, str]  # (group, plural)
Matcher = Callable[[JSON], bool]


@dataclass(frozen=True)
class Event:
    """One stored change: `old` is the previous state of a MODIFIED object."""

    rv: int
    type: str
    obj: JSON
    old: JSON | None = None


def meta(obj: JSON) -> JSON:
    value: JSON = obj.setdefault("metadata", {})
    return value


def ident(obj: JSON) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return (m.get("namespace") or "", m.get("name") or "")


@dataclass(eq=False)
class Watch:
    """A live watch: events arrive on `queue`; None means the server is stopping."""

    key: Key
    namespace: str | None
    match: Matcher
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: Event) -> None:
        obj = event.obj
        if self.namespace is not None and ident(obj)[0] != self.namespace:
            return
        now = self.match(obj)
        if event.type != "MODIFIED" or event.old is None:
            if now:
                self.queue.put_nowait(event)
            return
        before = self.match(event.old)
        if now and before:
            self.queue.put_nowait(event)
        elif now:
            self.queue.put_nowait(Event(event.rv, "ADDED", obj))
        elif before:
            self.queue.put_nowait(Event(event.rv, "DELETED", obj))


def expired(since: int, oldest: int) -> APIError:
    return APIError(410, f"too old resource version: {since} ({oldest})", reason="Expired")


class Store:
    """Objects per resource, keyed by (namespace, name); history per resource."""

    def __init__(self, history_size: int) -> None:
        self.rv = 0
        self._history_size = history_size
        self._objects: dict[Key, dict[tuple[str, str], JSON]] = {}
        self._history: dict[Key, deque[Event]] = {}
        self._dropped: dict[Key, int] = {}
        self._watches: set[Watch] = set()

    def get(self, key: Key, namespace: str, name: str) -> JSON | None:
        return self._objects.get(key, {}).get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> list[JSON]:
        objs = self._objects.get(key, {})
        return [objs[k] for k in sorted(objs) if namespace is None or k[0] == namespace]

    def everything(self) -> Iterator[tuple[Key, JSON]]:
        for key, objs in list(self._objects.items()):
            for obj in list(objs.values()):
                yield key, obj

    def _record(self, key: Key, event: Event) -> None:
        history = self._history.setdefault(key, deque())
        if len(history) >= self._history_size:
            self._dropped[key] = history.popleft().rv
        history.append(event)
        for watch in list(self._watches):
            if watch.key == key:
                watch.offer(event)

    def put(self, key: Key, obj: JSON) -> JSON:
        """Store a new state (ADDED or MODIFIED) under the next resourceVersion."""
        self.rv += 1
        meta(obj)["resourceVersion"] = str(self.rv)
        objs = self._objects.setdefault(key, {})
        old = objs.get(ident(obj))
        objs[ident(obj)] = obj
        self._record(key, Event(self.rv, "MODIFIED" if old else "ADDED", obj, old))
        return obj

    def remove(self, key: Key, obj: JSON) -> JSON:
        """Delete an object; the DELETED event carries a fresh resourceVersion."""
        self.rv += 1
        gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        self._objects.get(key, {}).pop(ident(obj), None)
        self._record(key, Event(self.rv, "DELETED", gone))
        return gone

    def drop_resource(self, key: Key) -> None:
        self._objects.pop(key, None)
        self._history.pop(key, None)
        self._dropped.pop(key, None)

    def watch(self, key: Key, namespace: str | None, since: int, match: Matcher) -> Watch:
        """Start a watch replaying the history after `since`; 410 when it is too old."""
        watch = Watch(key, namespace, match)
        history = self._history.get(key, deque())
        dropped = self._dropped.get(key)
        if dropped is not None and since < dropped:
            oldest = history[0].rv - 1 if history else self.rv
            raise expired(since, oldest)
        for event in history:
            if event.rv > since:
                watch.offer(event)
        self._watches.add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def close(self) -> None:
        for watch in list(self._watches):
            watch.queue.put_nowait(None)
        self._watches.clear()
