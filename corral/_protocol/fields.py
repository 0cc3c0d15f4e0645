"""Field lists: the tag-length-value payload of every non-data frame."""

from __future__ import annotations

import builtins
import struct
from collections.abc import Iterable

from corral._protocol.frames import ProtocolError

_FIELD = struct.Struct(">HI")
_INT = struct.Struct(">q")

Value = bytes | str | int


class Fields:
    """A decoded field list: tag → values in order (tags may repeat)."""

    def __init__(self, items: list[tuple[int, bytes]]) -> None:
        self._items = items

    def all(self, tag: int) -> list[bytes]:
        return [value for t, value in self._items if t == tag]

    def get(self, tag: int) -> bytes | None:
        for t, value in self._items:
            if t == tag:
                return value
        return None

    def str(self, tag: builtins.int, default: builtins.str = "") -> builtins.str:
        value = self.get(tag)
        return default if value is None else value.decode("utf-8", "replace")

    def int(self, tag: builtins.int) -> builtins.int | None:
        value = self.get(tag)
        if value is None:
            return None
        if len(value) != _INT.size:
            raise ProtocolError(f"field {tag}: integer must be 8 bytes, got {len(value)}")
        result: builtins.int = _INT.unpack(value)[0]
        return result

    def nested(self, tag: builtins.int) -> list[Fields]:
        return [decode_fields(value) for value in self.all(tag)]


def encode_value(value: Value) -> bytes:
    if isinstance(value, bool | int):
        return _INT.pack(int(value))
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def encode_fields(items: Iterable[tuple[int, Value]]) -> bytes:
    out = bytearray()
    for tag, value in items:
        raw = encode_value(value)
        out += _FIELD.pack(tag, len(raw))
        out += raw
    return bytes(out)


def decode_fields(payload: bytes) -> Fields:
    items: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(payload):
        if len(payload) - offset < _FIELD.size:
            raise ProtocolError("truncated field header")
        tag, length = _FIELD.unpack_from(payload, offset)
        offset += _FIELD.size
        if length > len(payload) - offset:
            raise ProtocolError(f"field {tag} length {length} runs past the payload")
        items.append((tag, payload[offset : offset + length]))
        offset += length
    return Fields(items)
