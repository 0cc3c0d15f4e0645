"""The SDK's sandbox handle and builder (embedded mode).

`create()` records the sandbox (the UNIQUE name is the arbiter between racing
creators), starts its supervisor detached from this process, waits for the one-line
boot report and connects. The handle is a client of the supervisor: it can be dropped
and re-obtained with `Sandbox.get(name)` from any process. Exec and file access live in
`SandboxHandle`, which the cluster's handle (`corral._cluster`) shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal as signals
import subprocess
import sys
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from corral._config import SandboxConfig, build_config
from corral._connection import Connection
from corral._errors import (
    BootError,
    ChannelError,
    CorralError,
    ImageError,
    InvalidConfig,
    SandboxNotRunning,
    SandboxTimeout,
)
from corral._exec import ExecOutput, ExecStream, collect
from corral._fs import FsGateway
from corral._images import ProgressCallback, RegistryAuths, pull
from corral._paths import Paths
from corral._protocol import Frame, FrameType, decode_fields
from corral._protocol.exec_request import ExecRequest
from corral._state import LIVE_STATUSES, SandboxRecord, StateStore, process_alive

T = TypeVar("T")
CREATE_TIMEOUT = 300.0


class SandboxSettings:
    """The builder's setters, shared by the async and the blocking builder; `config()`
    validates them all at once."""

    def __init__(self, name: str) -> None:
        self._values: dict[str, Any] = {"name": name}
        self._pull_auth: RegistryAuths | None = None
        self._pull_progress: ProgressCallback | None = None

    def _set(self, key: str, value: Any) -> Self:
        self._values[key] = value
        return self

    def image(self, reference: str) -> Self:
        return self._set("image", reference)

    def cpus(self, count: int) -> Self:
        return self._set("cpus", count)

    def memory(self, mib: int) -> Self:
        return self._set("memory_mib", mib)

    def disk(self, mib: int) -> Self:
        return self._set("disk_mib", mib)

    def env(self, values: Mapping[str, str] | None = None, **more: str) -> Self:
        merged = {**self._values.get("env", {}), **(values or {}), **more}
        return self._set("env", merged)

    def workdir(self, path: str) -> Self:
        return self._set("workdir", path)

    def user(self, user: str) -> Self:
        return self._set("user", user)

    def entrypoint(self, argv: Sequence[str]) -> Self:
        return self._set("entrypoint", list(argv))

    def cmd(self, argv: Sequence[str]) -> Self:
        return self._set("cmd", list(argv))

    def accel(self, accel: str) -> Self:
        return self._set("accel", accel)

    def kernel(self, path: str) -> Self:
        return self._set("kernel", path)

    def pull_policy(self, policy: str) -> Self:
        """When to ask the registry: "Always", "IfMissing" (the default) or "Never"."""
        return self._set("pull_policy", policy)

    def registry_auth(self, auth: RegistryAuths) -> Self:
        """Credentials for the image's registry: one RegistryAuth, or one per registry
        host. They stay in this process (see `_pulled_first`): never in the sandbox's
        record, never handed to its supervisor."""
        self._pull_auth = auth
        return self

    def on_pull_progress(self, callback: ProgressCallback) -> Self:
        """Called with a PullProgress as each layer of the image downloads."""
        self._pull_progress = callback
        return self

    def config(self) -> SandboxConfig:
        return build_config(**self._values)

    async def _pulled_first(self, config: SandboxConfig) -> SandboxConfig:
        """With credentials or a progress callback, pull the image here, before the
        launch; the launch then boots the now-local image (policy Never), so its
        supervisor process needs no credentials and reports no progress."""
        local = config.image == "default" or config.image.startswith(("/", ".", "bind:"))
        if local or (self._pull_auth is None and self._pull_progress is None):
            return config
        await pull(
            config.image,
            auth=self._pull_auth,
            policy=config.pull_policy,
            progress=self._pull_progress,
        )
        return config.model_copy(update={"pull_policy": "Never"})

    async def _create(self, detached: bool) -> Sandbox:
        config = self.config()
        return await Sandbox._launch(await self._pulled_first(config), detached=detached)


class SandboxBuilder(SandboxSettings):
    async def create(self) -> Sandbox:
        """A sandbox tied to this process: stopped and removed when the process exits."""
        return await self._create(detached=False)

    async def create_detached(self) -> Sandbox:
        """A sandbox that outlives this process, until `stop()`/`remove()`."""
        return await self._create(detached=True)


class SandboxHandle:
    """Exec, shell and file access over one supervisor connection: what the embedded
    `Sandbox` and the cluster's `ClusterSandbox` (`corral._cluster`) have in common."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.fs = FsGateway(connection)

    @property
    def boot_id(self) -> str:
        return self._connection.hello.str(4)

    @property
    def default_command(self) -> tuple[str, ...]:
        """What the image runs by default (its entrypoint + cmd), for interactive use."""
        argv = tuple(arg.decode() for arg in self._connection.hello.all(13))
        return argv or ("/bin/sh",)

    def _defaults(self) -> tuple[dict[str, str], str, str]:
        hello = self._connection.hello
        env = dict(item.decode().split("=", 1) for item in hello.all(10) if b"=" in item)
        return env, hello.str(11, "/"), hello.str(12, "root")

    def _request(
        self,
        program: str,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        user: str | None,
        timeout: float | None,
        tty: tuple[int, int] | None = None,
        stdin: bool = False,
        rlimits: Mapping[str, tuple[int | None, int | None]] | None = None,
    ) -> ExecRequest:
        if timeout is not None and timeout <= 0:
            raise InvalidConfig("timeout", timeout, "must be positive")
        base_env, base_cwd, base_user = self._defaults()
        return ExecRequest(
            argv=[program, *args],
            env={**base_env, **(env or {})},
            cwd=cwd or base_cwd,
            user=user or base_user,
            timeout=timeout,
            tty=tty,
            rlimits=rlimits,
            stdin=stdin,
        )

    async def exec(
        self,
        program: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        rlimits: Mapping[str, tuple[int | None, int | None]] | None = None,
    ) -> ExecOutput:
        request = self._request(
            program, args, env, cwd, user, timeout, stdin=stdin is not None, rlimits=rlimits
        )
        return await self._guarded(collect(self._connection, request, stdin))

    async def shell(self, script: str, **options: Any) -> ExecOutput:
        return await self.exec("/bin/sh", ["-c", script], **options)

    def exec_stream(
        self,
        program: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        tty: tuple[int, int] | None = None,
        stdin: bool = True,
    ) -> ExecStream:
        """A streaming exec: `async with sb.exec_stream(...) as proc: async for event in proc`."""
        request = self._request(program, args, env, cwd, user, timeout, tty=tty, stdin=stdin)
        return ExecStream(self._connection, request)

    async def _guarded(self, operation: Awaitable[T]) -> T:
        """Where a broken connection can be explained better, subclasses say so here."""
        return await operation

    async def close(self) -> None:
        """Disconnect this handle; the sandbox itself is untouched."""
        await self._connection.close()


class Sandbox(SandboxHandle):
    """A handle on one sandbox. `async with` stops and removes non-detached sandboxes."""

    def __init__(self, record: SandboxRecord, paths: Paths, connection: Connection) -> None:
        super().__init__(connection)
        self.record = record
        self._paths = paths
        self._created_here = False

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def uid(self) -> str:
        return self.record.uid

    @staticmethod
    def builder(name: str) -> SandboxBuilder:
        return SandboxBuilder(name)

    @classmethod
    async def _launch(cls, config: SandboxConfig, detached: bool) -> Sandbox:
        paths = Paths.from_env()
        store = StateStore(paths.state_db)
        uid = secrets.token_hex(8)
        store.insert(config.name, uid, config.model_dump(), detached)
        directory = paths.sandbox_dir(uid)
        try:
            directory.mkdir(parents=True)
            report = await _start_supervisor(paths, config.name, directory, detached)
            if not report.get("ok"):
                message = str(report.get("error"))
                if report.get("kind") == "ImageError":
                    raise ImageError(message)
                raise BootError(message, str(report.get("console", "")))
            sandbox = await cls.get(config.name)
            sandbox._created_here = True
            return sandbox
        except BaseException:
            _kill_leftovers(store, config.name)
            store.delete(config.name, uid)
            with contextlib.suppress(OSError):
                _remove_tree(directory)
            raise

    @classmethod
    async def get(cls, name: str) -> Sandbox:
        paths = Paths.from_env()
        record = StateStore(paths.state_db).get(name)
        status, reason = record.effective_status
        if status != "running":
            raise SandboxNotRunning(name, status, reason)
        socket = paths.sandbox_dir(record.uid) / "api.sock"
        connection = await Connection.open(str(socket))
        return cls(record, paths, connection)

    @staticmethod
    def list() -> list[SandboxRecord]:
        return StateStore(Paths.from_env().state_db).list()

    @staticmethod
    def inspect(name: str) -> SandboxRecord:
        return StateStore(Paths.from_env().state_db).get(name)

    async def _guarded(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except ChannelError:
            record = StateStore(self._paths.state_db).get(self.name)
            status, reason = record.effective_status
            if status != "running":
                raise SandboxNotRunning(self.name, status, reason) from None
            raise

    async def info(self) -> dict[str, Any]:
        stream = self._connection.open_stream()
        try:
            await stream.send(FrameType.INFO)
            frame = await stream.receive()
        finally:
            stream.close()
        fields = decode_fields(frame.payload)
        return {
            **self.inspect(self.name).to_dict(),
            "agent_version": self._connection.hello.str(2),
            "kernel": self._connection.hello.str(3),
            "uptime_ms": fields.int(1),
            "mem_total_kib": fields.int(2),
            "mem_available_kib": fields.int(3),
            "processes": fields.int(4),
            "loadavg": fields.str(5),
        }

    async def stop(self) -> None:
        """Ask the guest to shut down cleanly (killed after a grace period)."""
        await self._connection.write(Frame(FrameType.SHUTDOWN, 0))

    async def kill(self) -> None:
        await self._connection.write(Frame(FrameType.KILL, 0))

    async def wait(self, timeout: float = 30.0) -> SandboxRecord:
        """Wait until the supervisor has recorded a final status."""
        store = StateStore(self._paths.state_db)
        deadline = time.monotonic() + timeout
        while True:
            record = store.get(self.name)
            status, _ = record.effective_status
            if status not in LIVE_STATUSES:
                return record
            if time.monotonic() > deadline:
                raise SandboxTimeout(f"sandbox {self.name!r} is still {status} after {timeout:g}s")
            await asyncio.sleep(0.05)

    async def stop_and_wait(self, timeout: float = 30.0) -> SandboxRecord:
        with contextlib.suppress(ChannelError):
            await self.stop()
        return await self.wait(timeout)

    async def remove(self) -> None:
        """Stop the sandbox if it runs, then delete its record and files."""
        await self.stop_and_wait()
        await self.close()
        remove(self.name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Remove a sandbox this handle created with `create()`; otherwise just disconnect."""
        if self._created_here and not self.record.detached:
            await self.remove()
        else:
            await self.close()


def remove(name: str, force: bool = False) -> None:
    """Delete a sandbox that is not running (or, with force, kill it first)."""
    paths = Paths.from_env()
    store = StateStore(paths.state_db)
    record = store.get(name)
    status, _ = record.effective_status
    if status in LIVE_STATUSES and not force:
        raise SandboxNotRunning(name, status, "stop it first, or remove with force")
    _kill_leftovers(store, name)
    _remove_tree(paths.sandbox_dir(record.uid))
    store.delete(name, record.uid)


def _kill_leftovers(store: StateStore, name: str) -> None:
    """Kill a supervisor and QEMU that may survive a failed create or a forced remove,
    then remove the cgroup they ran in, if any (node_agent/cgroups.py says why here)."""
    with contextlib.suppress(CorralError):
        record = store.get(name)
        if process_alive(record.supervisor_pid, record.supervisor_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.supervisor_pid, signals.SIGKILL)
        if record.qemu_pid:
            _kill_qemu(record.qemu_pid)
        _remove_cgroup(Paths.from_env().sandbox_dir(record.uid) / "cgroup", record.uid)


def _kill_qemu(pid: int) -> None:
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"qemu-system" in cmdline:
            os.kill(pid, signals.SIGKILL)


def _remove_cgroup(pointer: Path, uid: str, timeout: float = 5.0) -> None:
    """rmdir the cgroup the pointer file names (only ever a sandbox's own, `<root>/<uid>`),
    retrying while the killed processes are still leaving it."""
    try:
        cgroup = Path(pointer.read_text())
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while cgroup.name == uid and time.monotonic() < deadline:
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            return
        except OSError:  # EBUSY until the last process has left
            time.sleep(0.05)
        else:
            return


def _remove_tree(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


async def _start_supervisor(
    paths: Paths, name: str, directory: Path, detached: bool
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "corral.node_agent.launch",
        "--home",
        str(paths.home),
        "--name",
        name,
    ]
    if not detached:
        command += ["--owner-pid", str(os.getpid())]
    with (directory / "supervisor.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), CREATE_TIMEOUT)
    except TimeoutError:
        raise BootError(f"sandbox {name!r} did not boot within {CREATE_TIMEOUT:g}s") from None
    if not line:
        log_tail = (directory / "supervisor.log").read_text(errors="replace")[-2000:]
        raise BootError(f"the supervisor of {name!r} exited during boot", log_tail)
    result: dict[str, Any] = json.loads(line)
    return result
