"""The real `corral` CLI end to end against a supervisor stand-in that runs commands on
the host (hostexec_supervisor.py): exit statuses, streams, stdin, signals and PTYs
through the real SDK connection, where no VM is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from corral._config import SandboxConfig
from corral._state import StateStore

CORRAL = str(Path(sys.executable).with_name("corral"))
STAND_IN = str(Path(__file__).with_name("hostexec_supervisor.py"))


@pytest.fixture
def home() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: keep the home near the root.
    path = Path(tempfile.mkdtemp(prefix="corral-cli-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {**os.environ, "CORRAL_HOME": str(home)}


@pytest.fixture
def sandbox(home: Path) -> Iterator[str]:
    """A 'running sandbox' named w whose commands run on this host."""
    store = StateStore(home / "state.db")
    store.insert("w", "uid0w", SandboxConfig(name="w").model_dump(), detached=True)
    stand_in = subprocess.Popen(
        [sys.executable, STAND_IN, str(home), "w"], stdout=subprocess.PIPE, text=True
    )
    assert stand_in.stdout is not None
    assert stand_in.stdout.readline() == "ready\n"
    yield "w"
    stand_in.kill()
    stand_in.wait()


def corral(
    env: dict[str, str], *argv: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CORRAL, *argv], input=stdin, capture_output=True, env=env, timeout=30, check=False
    )


def test_exit_code_and_separate_streams(env: dict[str, str], sandbox: str) -> None:
    result = corral(env, "exec", sandbox, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")


def test_stdin_is_forwarded_only_with_i(env: dict[str, str], sandbox: str) -> None:
    data = os.urandom(3 << 20)  # more than one flow-control window
    result = corral(env, "exec", "-i", sandbox, "--", "cat", stdin=data)
    assert result.returncode == 0
    assert result.stdout == data
    result = corral(env, "exec", sandbox, "--", "cat", stdin=b"ignored")
    assert (result.returncode, result.stdout) == (0, b"")


def test_failures_have_their_own_exit_codes(env: dict[str, str], sandbox: str) -> None:
    missing = corral(env, "exec", sandbox, "--", "no-such-program-here")
    assert missing.returncode == 127
    assert missing.stderr.startswith(b"corral: error: NotFound: ")
    slow = corral(env, "exec", "--timeout", "0.3", sandbox, "--", "sleep", "10")
    assert slow.returncode == 124
    assert slow.stderr == b"corral: error: 'sleep 10' timed out after 0.3s and was killed\n"
    killed = corral(env, "exec", sandbox, "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + signal.SIGTERM


def test_ctrl_c_is_forwarded_to_the_guest_process(env: dict[str, str], sandbox: str) -> None:
    script = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.05; done"
    process = subprocess.Popen(
        [CORRAL, "exec", sandbox, "--", "sh", "-c", script], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 5
    assert process.stdout.read() == b"got INT\n"


def test_shell_is_an_interactive_terminal(env: dict[str, str], sandbox: str) -> None:
    session = pexpect.spawn(CORRAL, ["shell", sandbox], env=env, timeout=10, dimensions=(30, 100))
    session.sendline("stty size; echo $((6*7))")
    session.expect("30 100")
    session.expect("42")
    session.setwinsize(40, 120)
    time.sleep(0.2)
    session.sendline("stty size")
    session.expect("40 120")
    session.sendline("exit 4")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 4


def test_inspect_running_stop_and_ls(env: dict[str, str], sandbox: str) -> None:
    details = json.loads(corral(env, "inspect", sandbox).stdout)
    assert (details["status"], details["agent_version"]) == ("running", "hostexec-1")
    assert corral(env, "stop", sandbox).stdout == b"w\n"
    listed = json.loads(corral(env, "ls", "--json").stdout)
    assert [(item["name"], item["status"]) for item in listed] == [("w", "stopped")]
    assert corral(env, "rm", sandbox).stdout == b"w\n"
    assert corral(env, "ls", "--json").stdout == b"[]\n"


def test_cp_both_ways(env: dict[str, str], sandbox: str, tmp_path: Path) -> None:
    source = tmp_path / "tool.sh"
    source.write_bytes(b"#!/bin/sh\necho tool\n" + bytes(range(256)))
    source.chmod(0o750)
    guest_dir = tmp_path / "guest"
    guest_dir.mkdir()

    assert corral(env, "cp", str(source), f"{sandbox}:{guest_dir}/").returncode == 0
    copied = guest_dir / "tool.sh"
    assert copied.read_bytes() == source.read_bytes()
    assert copied.stat().st_mode & 0o777 == 0o750
    assert corral(env, "cp", str(source), f"{sandbox}:{guest_dir}/renamed").returncode == 0
    assert (guest_dir / "renamed").read_bytes() == source.read_bytes()

    back = tmp_path / "back"
    back.mkdir()
    assert corral(env, "cp", f"{sandbox}:{copied}", str(back)).returncode == 0
    assert (back / "tool.sh").read_bytes() == source.read_bytes()
    assert corral(env, "cp", f"{sandbox}:{copied}", str(back / "named")).returncode == 0
    assert (back / "named").read_bytes() == source.read_bytes()

    directory = corral(env, "cp", f"{sandbox}:{guest_dir}", str(back))
    assert directory.returncode == 1
    assert (
        directory.stderr
        == f"corral: error: w:{guest_dir}: directories are not supported yet\n".encode()
    )
    missing = corral(env, "cp", f"{sandbox}:/no/such/file", str(back))
    assert missing.returncode == 1
    assert missing.stderr.startswith(b"corral: error: NotFound: /no/such/file: ")
    assert sorted(path.name for path in back.iterdir()) == ["named", "tool.sh"]
