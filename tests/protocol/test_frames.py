import random

import pytest

from corral._protocol import (
    HEADER,
    MAX_PAYLOAD,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
)


def test_round_trip_split_at_every_byte() -> None:
    frames = [
        Frame(FrameType.STDOUT, 7, b"\x00\xffbinary\n"),
        Frame(FrameType.DATA, 1, b"", Flag.EOF),
        Frame(FrameType.EXIT, 7, b"fields"),
    ]
    wire = b"".join(frame.encode() for frame in frames)
    for split in range(len(wire) + 1):
        decoder = FrameDecoder()
        got = [*decoder.feed(wire[:split]), *decoder.feed(wire[split:])]
        assert got == frames
        assert decoder.pending == 0


def test_oversized_length_is_rejected_before_buffering() -> None:
    header = HEADER.pack(MAX_PAYLOAD + 1, 1, FrameType.STDOUT, 0, 0)
    with pytest.raises(ProtocolError, match="exceeds"):
        list(FrameDecoder().feed(header))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER.pack(0, 1, 0x7E, 0, 0), "unknown frame type"),
        (HEADER.pack(0, 1, FrameType.STDOUT, 0x80, 0), "unknown frame flags"),
        (HEADER.pack(0, 1, FrameType.STDOUT, 0, 1), "reserved"),
    ],
)
def test_malformed_headers(header: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        list(FrameDecoder().feed(header))


def test_encoding_refuses_oversized_payload() -> None:
    with pytest.raises(ValueError):
        Frame(FrameType.DATA, 1, b"x" * (MAX_PAYLOAD + 1)).encode()


def test_random_garbage_never_crashes_the_decoder() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        garbage = rng.randbytes(rng.randrange(0, 64))
        decoder = FrameDecoder()
        try:
            for frame in decoder.feed(garbage):
                assert len(frame.payload) <= MAX_PAYLOAD
        except ProtocolError:
            pass
        assert decoder.pending <= len(garbage)
