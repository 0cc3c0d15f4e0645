"""Command execution in a real VM: exit codes, output integrity, stdin, timeouts, PTYs."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from corral import ExecFailed, ExecTimeout, Exited, Sandbox, Started, Stdout

pytestmark = pytest.mark.vm


async def test_stdout_stderr_and_exit_code(sb: Sandbox) -> None:
    out = await sb.exec("sh", ["-c", "echo hi; echo oops >&2; exit 3"])
    assert (out.stdout, out.stderr, out.exit_code) == (b"hi\n", b"oops\n", 3)


async def test_32_mib_of_output_arrives_intact(sb: Sandbox) -> None:
    made = await sb.shell("head -c 33554432 /dev/urandom > /tmp/big && sha256sum /tmp/big")
    expected = made.stdout.split()[0].decode()
    out = await sb.exec("cat", ["/tmp/big"])
    assert len(out.stdout) == 32 << 20
    assert hashlib.sha256(out.stdout).hexdigest() == expected
    await sb.exec("rm", ["/tmp/big"])


async def test_binary_bytes_are_preserved(sb: Sandbox) -> None:
    out = await sb.exec("printf", ["\\000\\001\\377\\r\\n"])
    assert out.stdout == b"\x00\x01\xff\r\n"


async def test_stdin_is_streamed(sb: Sandbox) -> None:
    data = bytes(range(256)) * 16384
    out = await sb.exec("sha256sum", stdin=data)
    assert out.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    async with sb.exec_stream("cat") as proc:
        await proc.write_stdin(b"one\n")
        events = proc.events()
        assert isinstance(await anext(events), Started)
        first = await anext(events)
        assert first == Stdout(b"one\n")
        await proc.write_stdin(b"two\n", eof=True)
        rest = [event async for event in events]
    assert Stdout(b"two\n") in rest
    assert rest[-1] == Exited(0, None, False)


async def test_timeout_kills_the_whole_process_tree(sb: Sandbox) -> None:
    with pytest.raises(ExecTimeout):
        await sb.exec("sh", ["-c", "sleep 300 & sleep 301 & wait"], timeout=1)
    left = await sb.shell("ps -o args | grep -c '^sleep 30[01]' || true")
    assert left.stdout.strip() == b"0"


async def test_twenty_concurrent_execs(sb: Sandbox) -> None:
    outputs = await asyncio.gather(*(sb.shell(f"sleep 0.3; echo {index}") for index in range(20)))
    assert [out.stdout for out in outputs] == [f"{index}\n".encode() for index in range(20)]


@pytest.mark.parametrize(
    ("program", "kind"),
    [
        ("/no/such/program", "NotFound"),
        ("no-such-program", "NotFound"),
        ("/etc/passwd", "PermissionDenied"),
    ],
)
async def test_start_failures_have_kinds(sb: Sandbox, program: str, kind: str) -> None:
    with pytest.raises(ExecFailed) as error:
        await sb.exec(program)
    assert error.value.kind == kind


async def test_not_executable_and_bad_cwd(sb: Sandbox) -> None:
    await sb.fs.write("/tmp/garbage", b"\x7fELF\x00garbage", mode=0o755)
    with pytest.raises(ExecFailed) as error:
        await sb.exec("/tmp/garbage")
    assert error.value.kind == "NotExecutable"
    with pytest.raises(ExecFailed) as error:
        await sb.exec("true", cwd="/no/such/dir")
    assert error.value.kind == "BadCwd"


async def test_env_cwd_user_and_rlimits(sb: Sandbox) -> None:
    out = await sb.shell(
        'echo "$GREETING $(pwd) $(id -u) $(ulimit -n)"',
        env={"GREETING": "hello"},
        cwd="/tmp",
        user="nobody",
        rlimits={"NOFILE": (64, 64)},
    )
    assert out.stdout == b"hello /tmp 65534 64\n"


async def test_signal_reaches_the_process(sb: Sandbox) -> None:
    async with sb.exec_stream("sleep", ["300"]) as proc:
        events = proc.events()
        assert isinstance(await anext(events), Started)
        await proc.signal(15)
        rest = [event async for event in events]
    assert rest[-1] == Exited(None, 15, False)


async def test_pty_reports_a_terminal_and_resizes(sb: Sandbox) -> None:
    async with sb.exec_stream(
        "sh", ["-c", "tty; stty size; read x; stty size"], tty=(30, 100)
    ) as proc:
        output = b""
        async for event in proc:
            if isinstance(event, Stdout):
                output += event.data
                if output.count(b"\n") == 2 and b"30 100" in output:
                    await proc.resize(40, 120)
                    await proc.write_stdin(b"go\n")
    assert b"/dev/pts/" in output
    assert b"40 120" in output


async def test_orphans_are_reaped(sb: Sandbox) -> None:
    await sb.shell("for i in 1 2 3 4 5; do (sleep 0.1 &) ; done")
    await asyncio.sleep(0.5)
    zombies = await sb.shell("ps -o stat | grep -c '^Z' || true")
    assert zombies.stdout.strip() == b"0"


async def test_guest_info(sb: Sandbox) -> None:
    info = await sb.info()
    assert info["status"] == "running"
    assert info["accelerator"] in ("kvm", "tcg") and info["accelerator_reason"]
    assert info["uptime_ms"] > 0 and info["mem_total_kib"] > 100_000
    assert info["kernel"].startswith("6.1")
