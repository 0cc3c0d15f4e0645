"""Stream routing between a sandbox's clients and its guest agent (pure, no I/O).

Each client numbers its own streams; the router maps (client, stream) to a guest
stream id and back, so many clients share the one guest channel. Every method takes
one event and returns the frames to send, which keeps the logic testable without
sockets. Flow-control WINDOW frames pass through untouched, so the guest never sends
more to a client than that client granted.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from corral._protocol import Frame, FrameType, ProtocolError, encode_fields
from corral._protocol.frames import DATA_TYPES, TERMINAL_TYPES

GUEST = -1
OPENING_TYPES = frozenset({FrameType.EXEC, FrameType.FS, FrameType.INFO})
CLIENT_FOLLOW_UPS = frozenset(
    {
        FrameType.STDIN,
        FrameType.DATA,
        FrameType.SIGNAL,
        FrameType.RESIZE,
        FrameType.WINDOW,
        FrameType.CANCEL,
    }
)
MAX_STREAMS_PER_CLIENT = 1024


@dataclass
class Route:
    client: int
    client_stream: int
    kind: FrameType
    orphaned: bool = False


Outgoing = tuple[int, Frame]


def _with_stream(frame: Frame, stream: int) -> Frame:
    return Frame(frame.type, stream, frame.payload, frame.flags)


def error_frame(stream: int, kind: str, message: str) -> Frame:
    return Frame(FrameType.ERROR, stream, encode_fields([(1, kind), (2, 0), (3, message)]))


class Router:
    def __init__(self) -> None:
        self._routes: dict[int, Route] = {}
        self._by_client: dict[tuple[int, int], int] = {}
        self._next_id = 1

    def _allocate(self) -> int:
        while self._next_id in self._routes:
            self._next_id = self._next_id % 0xFFFFFFFF + 1
        stream = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return stream

    def open_streams(self, client: int) -> int:
        return sum(1 for owner, _ in self._by_client if owner == client)

    def from_client(self, client: int, frame: Frame) -> list[Outgoing]:
        """A frame from a client (never stream 0: the supervisor handles that itself)."""
        key = (client, frame.stream)
        guest_stream = self._by_client.get(key)
        if frame.type in OPENING_TYPES:
            if guest_stream is not None:
                raise ProtocolError(f"stream {frame.stream} is already open")
            if self.open_streams(client) >= MAX_STREAMS_PER_CLIENT:
                return [(client, error_frame(frame.stream, "TooManyStreams", "too many streams"))]
            guest_stream = self._allocate()
            self._routes[guest_stream] = Route(client, frame.stream, frame.type)
            self._by_client[key] = guest_stream
            return [(GUEST, _with_stream(frame, guest_stream))]
        if frame.type not in CLIENT_FOLLOW_UPS:
            raise ProtocolError(f"a client may not send {frame.type.name}")
        if guest_stream is None:
            return []
        return [(GUEST, _with_stream(frame, guest_stream))]

    def from_guest(self, frame: Frame) -> list[Outgoing]:
        route = self._routes.get(frame.stream)
        if route is None:
            return []
        if frame.type in TERMINAL_TYPES:
            del self._routes[frame.stream]
            self._by_client.pop((route.client, route.client_stream), None)
        if route.orphaned:
            if frame.type in DATA_TYPES and frame.payload:
                credit = encode_fields([(1, len(frame.payload))])
                return [(GUEST, Frame(FrameType.WINDOW, frame.stream, credit))]
            return []
        return [(route.client, _with_stream(frame, route.client_stream))]

    def client_gone(self, client: int) -> list[Outgoing]:
        """Stop what a vanished client left running; drain what the guest still sends."""
        out: list[Outgoing] = []
        for (owner, client_stream), guest_stream in list(self._by_client.items()):
            if owner != client:
                continue
            route = self._routes[guest_stream]
            route.orphaned = True
            del self._by_client[(owner, client_stream)]
            if route.kind is FrameType.EXEC:
                kill = encode_fields([(1, int(signal.SIGKILL))])
                out.append((GUEST, Frame(FrameType.SIGNAL, guest_stream, kill)))
            elif route.kind is FrameType.FS:
                out.append((GUEST, Frame(FrameType.CANCEL, guest_stream)))
        return out

    def fail_all(self, kind: str, message: str) -> list[Outgoing]:
        """The guest is gone: end every open client stream with an error."""
        out = [
            (route.client, error_frame(route.client_stream, kind, message))
            for route in self._routes.values()
            if not route.orphaned
        ]
        self._routes.clear()
        self._by_client.clear()
        return out
