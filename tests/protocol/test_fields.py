import pytest

from corral._protocol import ProtocolError, decode_fields, encode_fields


def test_round_trip_with_repeats_ints_and_bytes() -> None:
    payload = encode_fields([(1, "sh"), (1, "-c"), (2, b"\x00\x01"), (5, -3), (6, 2**40)])
    fields = decode_fields(payload)
    assert fields.all(1) == [b"sh", b"-c"]
    assert fields.get(2) == b"\x00\x01"
    assert fields.int(5) == -3
    assert fields.int(6) == 2**40
    assert fields.get(99) is None
    assert fields.str(99, "default") == "default"


def test_nested_records() -> None:
    entry = encode_fields([(1, "a.txt"), (3, 10)])
    fields = decode_fields(encode_fields([(10, entry), (10, entry)]))
    assert [nested.str(1) for nested in fields.nested(10)] == ["a.txt", "a.txt"]


@pytest.mark.parametrize(
    "payload",
    [b"\x00", b"\x00\x01\x00\x00\x00\x09abc", b"\x00\x01\xff\xff\xff\xff"],
)
def test_truncated_fields_are_rejected(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_fields(payload)


def test_integer_of_wrong_width_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="8 bytes"):
        decode_fields(encode_fields([(1, b"abc")])).int(1)
