"""The guest channel: the host end of the virtio-serial port, as a unix socket.

The launch binds the socket before QEMU starts and QEMU's chardev connects to it, so
bytes sent before the guest opens its port wait in the socket instead of being lost. Every
frame from the guest is parsed with the bounded decoder; garbage raises ProtocolError.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from corral._protocol import (
    PROTOCOL_VERSION,
    Fields,
    Frame,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._protocol.fields import Value
from corral.node_agent.frame_socket import EndHandler, FrameHandler, FrameSocket
from corral.node_agent.reactor import Reactor

ENTROPY_BYTES = 64


def greeting(hostname: str) -> Frame:
    """The host's HELLO gives the guest its identity: the time, fresh entropy and, when
    given, its hostname. A guest restored from a boot snapshot needs all three (its clock,
    random state and name are the snapshot's); a cold boot gets the same."""
    fields: list[tuple[int, Value]] = [
        (1, PROTOCOL_VERSION),
        (2, time.time_ns()),
        (3, os.urandom(ENTROPY_BYTES)),
    ]
    if hostname:
        fields.append((4, hostname))
    return Frame(FrameType.HELLO, 0, encode_fields(fields))


def hello_fields(frame: Frame) -> Fields:
    """The guest's answer to the greeting, which must be its HELLO in our version."""
    if frame.stream == 0 and frame.type is FrameType.HELLO:
        hello = decode_fields(frame.payload)
        if hello.int(1) != PROTOCOL_VERSION:
            raise ProtocolError(f"guest speaks protocol version {hello.int(1)}")
        return hello
    if frame.stream == 0 and frame.type is FrameType.ERROR:
        reason = decode_fields(frame.payload).str(3)
        raise ProtocolError(f"guest refused the handshake: {reason}")
    raise ProtocolError(f"guest sent {frame.type.name} before HELLO")


class GuestChannel:
    """Owns the listening socket and the one connection QEMU makes to it. Outside a
    handshake, the guest's frames go to `on_frame` and the end of the connection (None,
    or the ProtocolError of a guest that sent garbage) to `on_end`."""

    def __init__(self, listening: socket.socket, reactor: Reactor) -> None:
        self.socket_path = Path(listening.getsockname())
        self.on_frame: FrameHandler = lambda frame: None
        self.on_end: EndHandler = lambda error: None
        self._listening = listening
        self.reactor = reactor
        self._guest: FrameSocket | None = None
        self._pending: Frame | None = None  # a greeting waiting for QEMU to connect
        self._awaiting = False
        self._hello: Fields | None = None
        self._failure: ProtocolError | None = None
        listening.setblocking(False)
        reactor.add_reader(listening.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            connection, _ = self._listening.accept()
        except BlockingIOError:
            return
        self._stop_listening()  # QEMU's is the one connection; later ones are refused
        self._guest = FrameSocket(connection, self.reactor, self._frame, self._end)
        if self._pending is not None:
            self._guest.send_frame(self._pending)
            self._pending = None

    def _stop_listening(self) -> None:
        if self._listening.fileno() >= 0:
            self.reactor.remove_reader(self._listening.fileno())
            self._listening.close()

    def handshake(
        self,
        hostname: str = "",
        timeout: float | None = None,
        abandon: Callable[[], bool] = lambda: False,
    ) -> Fields | None:
        """Greet the guest and return its HELLO fields, running the reactor meanwhile;
        None if `abandon()` turned true first. Raises TimeoutError after `timeout`
        seconds, ProtocolError if the guest refused, misbehaved or the channel closed."""
        self._hello, self._failure, self._awaiting = None, None, True
        if self._guest is None:
            self._pending = greeting(hostname)
        else:
            self._guest.send_frame(greeting(hostname))
        answered = self.reactor.run_until(
            lambda: self._hello is not None or self._failure is not None or abandon(), timeout
        )
        self._awaiting = False
        if self._failure is not None:
            raise self._failure
        if self._hello is not None:
            return self._hello
        if not answered:
            raise TimeoutError
        return None

    def _frame(self, frame: Frame) -> None:
        if not self._awaiting:
            self.on_frame(frame)
            return
        self._awaiting = False  # what follows the answer in the same read is not for us
        try:
            self._hello = hello_fields(frame)
        except ProtocolError as exc:
            self._failure = exc

    def _end(self, error: ProtocolError | None) -> None:
        if self._awaiting:
            self._awaiting = False
            self._failure = error or ProtocolError("guest channel closed during the handshake")
        else:
            self.on_end(error)

    def send(self, frame: Frame) -> None:
        """Queue a frame for the guest (dropped if QEMU is not, or no longer, there)."""
        if self._guest is not None:
            self._guest.send_frame(frame)

    def close(self) -> None:
        if self._guest is not None:
            self._guest.close()
        self._stop_listening()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
