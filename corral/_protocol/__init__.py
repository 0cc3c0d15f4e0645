"""The host side of the host ↔ guest wire protocol (docs/protocol.md).

Pure encoding and decoding only: no sockets here. The supervisor uses it to talk to the
guest agent and to its clients; the SDK uses it to talk to the supervisor.
"""

from corral._protocol.fields import Fields, decode_fields, encode_fields
from corral._protocol.frames import (
    DATA_CHUNK,
    HEADER,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    WINDOW,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
)

__all__ = [
    "DATA_CHUNK",
    "HEADER",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "WINDOW",
    "Fields",
    "Flag",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "ProtocolError",
    "decode_fields",
    "encode_fields",
]
