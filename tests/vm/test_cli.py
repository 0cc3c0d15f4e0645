"""The real `corral` CLI driving real VMs: the issue's commands end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.vm

CORRAL = str(Path(sys.executable).with_name("corral"))


def corral(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CORRAL, *argv], input=stdin, capture_output=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def sandbox(corral_home: Path) -> Iterator[str]:
    """`corral run --name w --detach`, shared by the tests of this module."""
    created = corral("run", "--name", "w", "--detach")
    assert (created.returncode, created.stdout) == (0, b"w\n"), created.stderr
    yield "w"
    corral("rm", "-f", "w")


def test_run_prints_and_exits_with_the_command_status(corral_home: Path) -> None:
    hello = corral("run", "--", "echo", "hello")
    assert (hello.returncode, hello.stdout) == (0, b"hello\n")
    failing = corral("run", "default", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert (failing.returncode, failing.stderr) == (3, b"oops\n")
    assert json.loads(corral("ls", "--json").stdout) == []


def test_run_with_bad_settings_exits_125_and_leaves_nothing(corral_home: Path) -> None:
    bad = corral("run", "--memory", "0", "--", "true")
    assert bad.returncode == 125
    assert b"memory_mib" in bad.stderr
    missing = corral("run", "/no/such/image", "--", "true")
    assert missing.returncode == 125
    assert b"not found" in missing.stderr
    assert json.loads(corral("ls", "--json").stdout) == []


def test_exec_exit_code_and_separate_streams(sandbox: str) -> None:
    result = corral("exec", sandbox, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    uname = corral("exec", sandbox, "--", "uname", "-a")
    assert uname.returncode == 0 and uname.stdout.startswith(b"Linux w 6.1")


def test_stdin_is_forwarded_only_with_i(sandbox: str) -> None:
    data = os.urandom(3 << 20)  # more than one flow-control window
    result = corral("exec", "-i", sandbox, "--", "cat", stdin=data)
    assert result.returncode == 0
    assert result.stdout == data
    result = corral("exec", sandbox, "--", "cat", stdin=b"ignored")
    assert (result.returncode, result.stdout) == (0, b"")


def test_failures_have_their_own_exit_codes(sandbox: str) -> None:
    missing = corral("exec", sandbox, "--", "no-such-program-here")
    assert missing.returncode == 127
    assert missing.stderr.startswith(b"corral: error: NotFound: ")
    slow = corral("exec", "--timeout", "0.5", sandbox, "--", "sleep", "10")
    assert slow.returncode == 124
    assert slow.stderr == b"corral: error: 'sleep 10' timed out after 0.5s and was killed\n"
    killed = corral("exec", sandbox, "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + signal.SIGTERM
    unknown = corral("exec", "nope", "--", "true")
    assert unknown.returncode == 1
    assert unknown.stderr == b"corral: error: no sandbox named 'nope'\n"


def test_ctrl_c_is_forwarded_to_the_guest_process(sandbox: str) -> None:
    script = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.05; done"
    process = subprocess.Popen(
        [CORRAL, "exec", sandbox, "--", "sh", "-c", script], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 5
    assert process.stdout.read() == b"got INT\n"


def test_shell_is_an_interactive_terminal(sandbox: str) -> None:
    session = pexpect.spawn(CORRAL, ["shell", sandbox], timeout=30, dimensions=(30, 100))
    session.sendline("stty size; echo $((6*7)); tty")
    session.expect("30 100")
    session.expect("42")
    session.expect("/dev/pts/")
    session.setwinsize(40, 120)
    time.sleep(0.3)
    session.sendline("stty size")
    session.expect("40 120")
    session.sendline("exit 4")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 4


def test_cp_both_ways(sandbox: str, tmp_path: Path) -> None:
    source = tmp_path / "tool.sh"
    source.write_bytes(b"#!/bin/sh\necho tool\n" + bytes(range(256)))
    source.chmod(0o750)
    assert corral("cp", str(source), f"{sandbox}:/root/").returncode == 0
    assert corral("exec", sandbox, "--", "/root/tool.sh").stdout.startswith(b"tool\n")
    stat = corral("exec", sandbox, "--", "stat", "-c", "%a", "/root/tool.sh")
    assert stat.stdout == b"750\n"
    back = tmp_path / "back"
    back.mkdir()
    assert corral("cp", f"{sandbox}:/root/tool.sh", str(back)).returncode == 0
    assert (back / "tool.sh").read_bytes() == source.read_bytes()
    directory = corral("cp", f"{sandbox}:/root", str(back))
    assert directory.returncode == 1
    assert b"directories are not supported yet" in directory.stderr
    missing = corral("cp", f"{sandbox}:/no/such/file", str(back))
    assert missing.returncode == 1
    assert missing.stderr.startswith(b"corral: error: NotFound: /no/such/file: ")
    assert sorted(path.name for path in back.iterdir()) == ["tool.sh"]


def test_info_reports_the_accelerator_and_why(corral_home: Path) -> None:
    info = json.loads(corral("info", "--json").stdout)
    text = json.dumps(info)
    assert "accel" in text and ("kvm" in text or "tcg" in text)
    assert "6.1" in text
    if Path("/sys/module/kvm_pvm").exists():
        assert "kvm_pvm" in text


def test_inspect_stop_ls_rm(corral_home: Path) -> None:
    assert corral("run", "--name", "life", "-d").returncode == 0
    details = json.loads(corral("inspect", "life").stdout)
    assert details["status"] == "running"
    assert details["accelerator"] in ("kvm", "tcg") and details["accelerator_reason"]
    assert details["kernel"].startswith("6.1")
    assert corral("rm", "life").returncode == 1  # still running
    assert corral("stop", "life").returncode == 0
    listed = {item["name"]: item["status"] for item in json.loads(corral("ls", "--json").stdout)}
    assert listed["life"] == "stopped"
    assert corral("rm", "life").returncode == 0
    assert "life" not in corral("ls").stdout.decode()
