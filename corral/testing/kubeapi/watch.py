"""Watch streams: newline-delimited JSON events over a chunked HTTP response.

Owns the wire behaviour of a watch: initial ADDED events (resourceVersion unset
or "0"), resuming from history (resourceVersion N), a single ERROR event with a
410 Expired Status when N is too old (as the watch cache answers), BOOKMARK
events when `allowWatchBookmarks` is set (periodically, before a timeout ends
the stream, and after the initial events with `sendInitialEvents`), and
`timeoutSeconds`. Called by `handlers.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import APIError
from .store import Store, Watch

JSON = dict[str, Any]
_POLL = 1.0  # seconds between checks that the client is still there


@dataclass(frozen=True)
class WatchRequest:
    key: tuple[str, str]
    kind: str
    api_version: str
    namespace: str | None
    match: Callable[[JSON], bool]
    since: int | None
    bookmarks: bool
    initial_events: bool
    timeout: int | None
    bookmark_interval: float


async def _send(response: web.StreamResponse, event_type: str, obj: JSON) -> None:
    line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n"
    await response.write(line.encode())


def _bookmark(req: WatchRequest, rv: int, initial_end: bool = False) -> JSON:
    meta: JSON = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": req.kind, "apiVersion": req.api_version, "metadata": meta}


async def serve(
    request: web.Request, store: Store, req: WatchRequest, view: Callable[[JSON], JSON]
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    initial: list[JSON] = []
    try:
        if req.since is None:
            initial = [o for o in store.items(req.key, req.namespace) if req.match(o)]
            watch = store.watch(req.key, req.namespace, store.rv, req.match)
        else:
            watch = store.watch(req.key, req.namespace, req.since, req.match)
    except APIError as exc:
        await _send(response, "ERROR", exc.status)
        return response
    try:
        for obj in initial:
            await _send(response, "ADDED", view(obj))
        if req.initial_events and req.bookmarks:
            await _send(response, "BOOKMARK", _bookmark(req, store.rv, initial_end=True))
        await _stream(request, response, store, watch, req, view)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unwatch(watch)
    return response


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    store: Store,
    watch: Watch,
    req: WatchRequest,
    view: Callable[[JSON], JSON],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.timeout if req.timeout else None
    next_bookmark = loop.time() + req.bookmark_interval
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            if req.bookmarks:
                await _send(response, "BOOKMARK", _bookmark(req, store.rv))
            return
        if req.bookmarks and now >= next_bookmark:
            await _send(response, "BOOKMARK", _bookmark(req, store.rv))
            next_bookmark = now + req.bookmark_interval
        wait = _POLL
        if deadline is not None:
            wait = min(wait, deadline - now)
        if req.bookmarks:
            wait = min(wait, max(next_bookmark - now, 0.0))
        try:
            event = await asyncio.wait_for(watch.queue.get(), max(wait, 0.0))
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return
            continue
        if event is None:
            return
        await _send(response, event.type, view(event.obj))
