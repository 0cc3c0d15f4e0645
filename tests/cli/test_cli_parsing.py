"""The `corral` command line without VMs: parsing, the `NAME:path` syntax, error lines
and exit codes against an empty (or hand-written) state in a temporary CORRAL_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from corral._cli import errors, run_cli
from corral._cli import run as run_module
from corral._cli.fs import CopyIn, CopyOut, GuestPath, parse_copy, parse_location
from corral._cli.manage import age, render_table
from corral._cli.options import split_command
from corral._errors import ExecFailed, ExecTimeout, SandboxNotFound
from corral._sandbox import SandboxBuilder
from corral._state import StateStore, current_process_identity


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what `run` would launch instead of booting a VM; the command 'exits' 7."""
    calls: list[dict[str, Any]] = []

    async def attached(
        builder: SandboxBuilder,
        command: tuple[str, ...],
        timeout: float | None,
        stdin: bool,
        tty: bool,
    ) -> int:
        calls.append(
            {
                "config": builder.config(),
                "command": command,
                "timeout": timeout,
                "stdin": stdin,
                "tty": tty,
            }
        )
        return 7

    async def detached(builder: SandboxBuilder) -> int:
        calls.append({"config": builder.config(), "detached": True})
        return 0

    monkeypatch.setattr(run_module, "_attached", attached)
    monkeypatch.setattr(run_module, "_detached", detached)
    return calls


def corral(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run_cli(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_split_command_cuts_at_the_first_double_dash_only() -> None:
    assert split_command(["alpine"]) == (["alpine"], [])
    assert split_command(["--", "echo", "hi"]) == ([], ["echo", "hi"])
    assert split_command(["-e", "A=1", "--", "grep", "--", "-v"]) == (
        ["-e", "A=1"],
        ["grep", "--", "-v"],
    )


def test_run_double_dash_is_the_command_not_the_image(
    capsys: pytest.CaptureFixture[str], launches: list[dict[str, Any]]
) -> None:
    code, _, _ = corral(capsys, "run", "--", "echo", "hello")
    assert code == 7  # the command's exit code is ours
    (call,) = launches
    assert call["config"].image == "default"
    assert call["command"] == ("echo", "hello")
    assert call["config"].name.startswith("run-")
    assert (call["stdin"], call["tty"]) == (False, False)


def test_run_image_settings_and_flags(
    capsys: pytest.CaptureFixture[str], launches: list[dict[str, Any]]
) -> None:
    code, _, _ = corral(
        capsys, "run", "/images/alpine.tar", "--name", "w", "--cpus", "1", "--memory", "512",
        "--disk", "1024", "-e", "A=1", "--env", "B=x=y", "-w", "/srv", "-u", "1000",
        "--accel", "tcg", "--timeout", "2.5", "-i", "-t", "--", "sh", "-c", "exit 3",
    )  # fmt: skip
    assert code == 7
    (call,) = launches
    config = call["config"]
    assert (config.name, config.image, config.cpus) == ("w", "/images/alpine.tar", 1)
    assert (config.memory_mib, config.disk_mib, config.accel) == (512, 1024, "tcg")
    assert config.env == {"A": "1", "B": "x=y"}
    assert (config.workdir, config.user) == ("/srv", "1000")
    assert call["command"] == ("sh", "-c", "exit 3")
    assert (call["timeout"], call["stdin"], call["tty"]) == (2.5, True, True)


def test_run_without_a_command_runs_the_image_default_with_stdin(
    capsys: pytest.CaptureFixture[str], launches: list[dict[str, Any]]
) -> None:
    corral(capsys, "run", "alpine")
    (call,) = launches
    assert call["config"].image == "alpine"
    assert call["command"] == ()
    assert call["stdin"] is True


def test_run_detach_prints_nothing_itself_and_uses_the_name(
    capsys: pytest.CaptureFixture[str], launches: list[dict[str, Any]]
) -> None:
    code, _, _ = corral(capsys, "run", "--name", "w", "--detach")
    assert code == 0
    assert launches == [{"config": launches[0]["config"], "detached": True}]
    assert launches[0]["config"].name == "w"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["run", "-d", "--", "echo"], "cannot take a command"),
        (["run", "-d", "-i", "-t"], "cannot take -i, -t"),
        (["run", "-d", "--timeout", "3"], "cannot take --timeout"),
        (["run", "alpine", "echo", "hi"], "put the command after '--'"),
        (["exec", "w", "ls"], "put the command after '--'"),
        (["exec", "w"], "no command given"),
        (["exec", "w", "--"], "no command given"),
        (["run", "-e", "NOVALUE", "--", "true"], "'NOVALUE' is not KEY=VALUE"),
        (["run", "--timeout", "0", "--", "true"], "--timeout"),
        (["run", "--accel", "hvf", "--", "true"], "--accel"),
        (["run", "--cpus", "two", "--", "true"], "--cpus"),
        (["rm"], "NAME"),
        (["cp", "a", "b"], "one of SRC and DST must be a sandbox path"),
        (["cp", "w:/a", "v:/b"], "between two sandboxes"),
        (["cp", "w:relative", "."], "must be absolute"),
        (["nonsense"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_error_line(
    capsys: pytest.CaptureFixture[str],
    launches: list[dict[str, Any]],
    argv: list[str],
    complaint: str,
) -> None:
    code, out, err = corral(capsys, *argv)
    assert code == 2
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("corral: error: ")
    assert complaint in last
    assert "--help' for help." in err
    assert launches == []


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "w", "--", "uname", "-a"],
        ["shell", "w"],
        ["inspect", "w"],
        ["stop", "w"],
        ["kill", "w"],
        ["rm", "w"],
        ["cp", "w:/etc/hostname", "."],
    ],
)
def test_unknown_sandbox_is_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = corral(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == "corral: error: no sandbox named 'w'\n"


def test_invalid_settings_mean_the_sandbox_could_not_be_created(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, _, err = corral(capsys, "run", "--cpus", "0", "--", "true")
    assert code == errors.CREATE_FAILED == 125
    assert err.startswith("corral: error: invalid cpus=0")
    code, _, err = corral(capsys, "run", "--name", "Not_A_Name", "-d")
    assert code == 125
    assert "invalid name='Not_A_Name'" in err
    assert StateStore(home / "state.db").list() == []


def test_exec_keeps_the_guest_commands_own_double_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    async def fake_exec(name: str, command: tuple[str, ...], *args: Any, **kwargs: Any) -> int:
        seen.append((name, command, args, kwargs))
        return 0

    monkeypatch.setattr(run_module, "_exec", fake_exec)
    code, _, _ = corral(capsys, "exec", "-e", "A=1", "w", "-i", "--", "grep", "--", "-v", "x")
    assert code == 0
    (name, command, args, kwargs) = seen[0]
    assert (name, command) == ("w", ("grep", "--", "-v", "x"))
    assert args == ({"A": "1"}, None, None, None)
    assert kwargs == {"stdin": True, "tty": False}


def test_parse_location_tells_sandbox_paths_from_host_paths() -> None:
    assert parse_location("w:/tmp/x") == GuestPath("w", "/tmp/x")
    assert parse_location("my-box-2:/a:b") == GuestPath("my-box-2", "/a:b")
    assert parse_location("./w:/tmp/x") == Path("./w:/tmp/x")
    assert parse_location("/abs/w:/x") == Path("/abs/w:/x")
    assert parse_location("Upper:/x") == Path("Upper:/x")  # not a sandbox name
    assert parse_location("plain.txt") == Path("plain.txt")
    with pytest.raises(click.BadParameter, match="must be absolute"):
        parse_location("w:tmp/x")
    with pytest.raises(click.BadParameter, match="must be absolute"):
        parse_location("w:")


def test_parse_copy_direction() -> None:
    assert parse_copy("a.txt", "w:/tmp/") == CopyIn(Path("a.txt"), GuestPath("w", "/tmp/"))
    assert parse_copy("w:/etc/os-release", ".") == CopyOut(
        GuestPath("w", "/etc/os-release"), Path(".")
    )


def test_cp_refuses_directories_and_missing_files_before_touching_a_sandbox(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = corral(capsys, "cp", str(tmp_path), "w:/tmp/")
    assert code == 1
    assert err == f"corral: error: {tmp_path}: directories are not supported yet\n"
    code, _, err = corral(capsys, "cp", str(tmp_path / "missing"), "w:/tmp/")
    assert code == 1
    assert err == f"corral: error: No such file or directory: {tmp_path / 'missing'}\n"


def test_ls_on_an_empty_home(capsys: pytest.CaptureFixture[str]) -> None:
    assert corral(capsys, "ls") == (
        0,
        "NAME   STATUS   IMAGE   CPUS   MEMORY   ACCEL   CREATED\n",
        "",
    )
    assert corral(capsys, "ls", "--json") == (0, "[]\n", "")


def write_record(home: Path, name: str, status: str, pid: int, start: int) -> None:
    store = StateStore(home / "state.db")
    store.insert(name, f"uid-{name}", {"name": name, "image": "default", "cpus": 2,
                                        "memory_mib": 512}, detached=True)  # fmt: skip
    store.update(name, status=status, supervisor_pid=pid, supervisor_start=start, accel="tcg")


def test_ls_inspect_and_rm_on_recorded_sandboxes(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    write_record(home, "gone", "running", pid=2**22 + 1, start=1)  # its supervisor is dead
    write_record(home, "done", "stopped", pid=0, start=0)
    pid, start = current_process_identity()
    write_record(home, "live", "running", pid=pid, start=start)

    code, out, _ = corral(capsys, "ls")
    rows = [line.split() for line in out.splitlines()]
    assert code == 0
    assert rows[0] == ["NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "ACCEL", "CREATED"]
    assert {row[0]: row[1:6] for row in rows[1:]} == {
        "gone": ["stale", "default", "2", "512MiB", "tcg"],
        "done": ["stopped", "default", "2", "512MiB", "tcg"],
        "live": ["running", "default", "2", "512MiB", "tcg"],
    }
    listed = json.loads(corral(capsys, "ls", "--json")[1])
    assert [(item["name"], item["status"]) for item in listed] == [
        ("gone", "stale"), ("done", "stopped"), ("live", "running")
    ]  # fmt: skip

    code, out, _ = corral(capsys, "inspect", "done")
    assert code == 0
    details = json.loads(out)
    assert (details["name"], details["status"], details["accelerator"]) == (
        "done",
        "stopped",
        "tcg",
    )

    code, out, err = corral(capsys, "rm", "done", "live", "nothing")
    assert code == 1
    assert out == "done\n"
    assert err.splitlines() == [
        "corral: error: sandbox 'live' is running: stop it first, or remove with force",
        "corral: error: no sandbox named 'nothing'",
    ]
    assert [record.name for record in StateStore(home / "state.db").list()] == ["gone", "live"]


def test_stop_of_a_stopped_sandbox_says_so(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    write_record(home, "done", "stopped", pid=0, start=0)
    assert corral(capsys, "stop", "done") == (1, "", "corral: error: sandbox 'done' is stopped\n")


def test_info_without_assets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "info", "--json")
    facts = json.loads(out)
    assert code == 0
    assert facts["assets"] is None
    assert "make setup" in facts["assets_problem"]
    assert facts["accelerator"]["choice"] in ("kvm", "tcg")
    assert facts["accelerator"]["reason"]
    assert set(facts["host"]) == {"kvm_usable", "hardware_virt", "pvm"}
    code, out, _ = corral(capsys, "info")
    assert code == 0
    assert "Assets:" in out and "not set up" in out
    assert f"Accelerator: {facts['accelerator']['choice']} (auto): " in out


def test_exit_codes_for_sdk_errors() -> None:
    assert errors.exit_code(SandboxNotFound("w")) == 1
    assert errors.exit_code(ExecTimeout("sleep 9", 1)) == 124
    assert errors.exit_code(ExecFailed("NotFound", "no such program")) == 127
    assert errors.exit_code(ExecFailed("PermissionDenied", "denied")) == 126
    assert errors.exit_code(ExecFailed("BadCwd", "no such directory")) == 126


def test_age_and_table() -> None:
    assert [age(s) for s in (-1, 5, 61, 7200, 3 * 86400)] == [
        "0s ago", "5s ago", "1m ago", "2h ago", "3d ago"
    ]  # fmt: skip
    assert render_table([("A", "BB"), ("ccc", "d")]) == "A     BB\nccc   d"


def test_console_script_exit_code_and_message(home: Path) -> None:
    script = Path(sys.executable).with_name("corral")
    result = subprocess.run(
        [str(script), "exec", "nope", "--", "true"],
        capture_output=True,
        text=True,
        env={**os.environ, "CORRAL_HOME": str(home)},
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "corral: error: no sandbox named 'nope'\n"
