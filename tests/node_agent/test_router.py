import pytest

from corral._protocol import Frame, FrameType, ProtocolError, decode_fields, encode_fields
from corral.node_agent.router import GUEST, Router


def exec_frame(stream: int) -> Frame:
    return Frame(FrameType.EXEC, stream, encode_fields([(1, "true")]))


def test_two_clients_with_the_same_stream_ids_are_kept_apart() -> None:
    router = Router()
    [(to_a, frame_a)] = router.from_client(1, exec_frame(1))
    [(to_b, frame_b)] = router.from_client(2, exec_frame(1))
    assert to_a == to_b == GUEST
    assert frame_a.stream != frame_b.stream
    [(client, reply)] = router.from_guest(Frame(FrameType.STDOUT, frame_b.stream, b"hi"))
    assert (client, reply.stream, reply.payload) == (2, 1, b"hi")


def test_terminal_frame_closes_the_route() -> None:
    router = Router()
    [(_, opened)] = router.from_client(1, exec_frame(5))
    assert router.from_guest(Frame(FrameType.EXIT, opened.stream, b""))
    assert router.from_guest(Frame(FrameType.STDOUT, opened.stream, b"late")) == []
    assert router.from_client(1, Frame(FrameType.STDIN, 5, b"x")) == []


def test_vanished_client_kills_its_exec_and_keeps_the_guest_flowing() -> None:
    router = Router()
    [(_, opened)] = router.from_client(1, exec_frame(3))
    [(target, kill)] = router.client_gone(1)
    assert target == GUEST and kill.type is FrameType.SIGNAL
    assert decode_fields(kill.payload).int(1) == 9
    [(target, credit)] = router.from_guest(Frame(FrameType.STDOUT, opened.stream, b"x" * 100))
    assert target == GUEST and credit.type is FrameType.WINDOW
    assert decode_fields(credit.payload).int(1) == 100


def test_clients_may_not_send_guest_only_frames() -> None:
    router = Router()
    with pytest.raises(ProtocolError):
        router.from_client(1, Frame(FrameType.EXIT, 1, b""))
    router.from_client(1, exec_frame(1))
    with pytest.raises(ProtocolError, match="already open"):
        router.from_client(1, exec_frame(1))


def test_fail_all_reports_to_every_open_stream() -> None:
    router = Router()
    router.from_client(1, exec_frame(1))
    router.from_client(2, exec_frame(9))
    failures = router.fail_all("SandboxStopped", "sandbox crashed")
    assert sorted((client, frame.stream) for client, frame in failures) == [(1, 1), (2, 9)]
    assert all(frame.type is FrameType.ERROR for _, frame in failures)
