"""The supervisor: one process per sandbox that owns its VM for the VM's whole life.

Its first phase, node_agent/launch.py, starts QEMU; this second phase greets the guest
agent, serves clients on a unix socket (routing their streams onto the one guest
channel), and records the sandbox's status in the state store: `running`, then
`stopped`, or `crashed` with the reason when QEMU dies on its own. It reports readiness
(or the boot failure) to the creator, which may then exit: the process is detached from
it. A non-detached sandbox is stopped and removed when its owner process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from corral._errors import BootError
from corral._exec import ExecRequest
from corral._protocol import (
    Fields,
    Frame,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._state import StateStore
from corral.node_agent import cgroups, rootfs
from corral.node_agent.channel import GuestChannel
from corral.node_agent.frame_socket import FrameSocket
from corral.node_agent.launch import Launched, fail, listen_unix, report
from corral.node_agent.router import GUEST, Outgoing, Router, error_frame

MAIN_CLIENT = 0  # the supervisor itself, as the client of the sandbox's main process
MAIN_STREAM = 1
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
EXIT_GRACE = 2.0  # how long a failed handshake waits to learn whether QEMU exited
MAX_CLIENT_BACKLOG = 64 << 20  # bytes queued for a client that does not read
CLIENT_BACKLOG = 128  # connections waiting to be accepted: a burst of CLI calls
OWNER_EXITED = "owner process exited"


def call_when_exited(pidfd: int, callback: Callable[[], None]) -> None:
    """Run `callback` once the process behind `pidfd` has exited (the fd is closed)."""
    loop = asyncio.get_running_loop()

    def ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        callback()

    loop.add_reader(pidfd, ready)


class Supervisor:
    def __init__(self, store: StateStore, launched: Launched, owner_pid: int) -> None:
        self.store = store
        self.record = launched.record
        self.config = launched.config
        self.name = launched.record.name
        self.dir = launched.directory
        self.qemu = launched.qemu
        self.defaults = launched.defaults
        self.restored_from = launched.restored_from
        self.record_to = launched.record_to
        self.channel = GuestChannel(launched.channel)
        self.owner_pid = owner_pid
        self.router = Router()
        self.clients: dict[int, FrameSocket] = {}
        self.client_tasks: set[asyncio.Task[None]] = set()
        self.next_client = MAIN_CLIENT + 1
        self.stopping = False
        self.stop_reason = ""
        self.crash_reason = ""
        self.hello = Fields([])
        self.api: socket.socket | None = None
        self.accepting: asyncio.Task[None] | None = None
        self.qemu_exited: asyncio.Future[int] | None = None
        self.recorder: asyncio.subprocess.Process | None = None

    def watch_qemu(self) -> None:
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.qemu_exited = exited
        call_when_exited(self.qemu.pidfd(), lambda: exited.set_result(self.qemu.reap()))

    async def boot(self) -> None:
        """Greet the guest (the launch already started QEMU) and open the client API."""
        await self.channel.listen()
        self.watch_qemu()
        if self.record_to is not None:
            self.recorder = await self.spawn_recorder()
        assert self.qemu_exited is not None
        greeting = asyncio.ensure_future(self.channel.handshake(hostname=self.name))
        racing: set[asyncio.Future[Any]] = {self.qemu_exited, greeting}
        done, _ = await asyncio.wait(
            racing, timeout=BOOT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if greeting not in done:
            greeting.cancel()
            problem = (
                self.qemu.describe_exit(self.qemu_exited.result())
                if self.qemu_exited.done()
                else "timed out"
            )
            self.qemu.kill()
            raise BootError(
                f"the guest did not come up: {problem}{self.discard_snapshot()}",
                self.console_tail(),
            )
        try:
            self.hello = greeting.result()
            if self.recorder is not None:
                await self.record_snapshot(self.recorder)
                # Greet again: the entropy the snapshot holds is in every guest restored
                # from it, so this guest too must go on from entropy the snapshot never saw.
                rehello = self.channel.handshake(hostname=self.name)
                self.hello = await asyncio.wait_for(rehello, BOOT_TIMEOUT)
        except (ProtocolError, TimeoutError) as exc:
            problem = f"guest handshake failed: {exc}" if str(exc) else "guest handshake timed out"
            with contextlib.suppress(TimeoutError):  # a channel that closed: did QEMU exit?
                code = await asyncio.wait_for(asyncio.shield(self.qemu_exited), EXIT_GRACE)
                problem = f"the guest did not come up: {self.qemu.describe_exit(code)}"
            self.qemu.kill()
            raise BootError(problem + self.discard_snapshot(), self.console_tail()) from exc
        self.api = listen_unix(self.dir / "api.sock", CLIENT_BACKLOG)
        self.accepting = asyncio.ensure_future(self.accept_clients(self.api))
        # A restored guest's kernel boot ID is its snapshot's, the same in every sandbox
        # restored from it; this boot gets its own.
        boot_id = str(uuid.uuid4()) if self.restored_from else self.hello.str(4)
        self.store.update(self.name, status="running", boot_id=boot_id, started_at=time.time())
        self.start_main()

    def discard_snapshot(self) -> str:
        """A restore that failed: drop the snapshot, so the shape's next sandbox boots
        cold (and records a new one); the note goes into the boot error."""
        if self.restored_from is None:
            return ""
        rootfs.remove_tree(self.restored_from.directory)
        return f" (restoring boot snapshot {self.restored_from.directory.name}; discarded)"

    async def spawn_recorder(self) -> asyncio.subprocess.Process:
        """The process that records this cold boot's snapshot through QMP
        (node_agent/snapshot_record.py), started now so that it loads while the guest
        boots: its QMP client imports ssl, which this process goes without."""
        assert self.record_to is not None and self.qemu.spec.qmp_socket is not None
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "corral.node_agent.snapshot_record",
            str(self.qemu.spec.qmp_socket),
            str(self.dir / "upper.ext4"),
            str(self.record_to.directory),
            json.dumps(self.record_to.files),
            stdin=subprocess.PIPE,
        )

    async def record_snapshot(self, recorder: asyncio.subprocess.Process) -> None:
        """Best effort: a snapshot that cannot be recorded leaves the next sandbox of this
        shape to boot cold, never this one failing (the recorder says why on the stderr
        it shares with this process)."""
        assert recorder.stdin is not None
        with contextlib.suppress(ConnectionError):  # a recorder that died already
            recorder.stdin.write(b"\n")  # go
            await recorder.stdin.drain()
            recorder.stdin.close()
        await recorder.wait()

    async def abandon_recording(self) -> None:
        """A boot that failed records nothing: its recorder, still waiting, goes."""
        if self.recorder is not None and self.recorder.returncode is None:
            self.recorder.kill()
            await self.recorder.wait()

    def start_main(self) -> None:
        """Run the sandbox's entrypoint/cmd, if it has one; its output goes to main.log."""
        argv = self.defaults.main_argv(self.config["entrypoint"], self.config["cmd"])
        if not argv:
            return
        request = ExecRequest(
            argv=argv,
            env={**self.defaults.env, **self.config["env"]},
            cwd=self.config["workdir"] or self.defaults.workdir,
            user=self.config["user"] or self.defaults.user,
        )
        frame = Frame(FrameType.EXEC, MAIN_STREAM, encode_fields(request.fields()))
        self.store.update(self.name, main_exit="running")
        self.deliver(self.router.from_client(MAIN_CLIENT, frame))

    def main_output(self, frame: Frame) -> None:
        if frame.type in (FrameType.STDOUT, FrameType.STDERR):
            with (self.dir / "main.log").open("ab") as log:
                log.write(frame.payload)
            credit = Frame(FrameType.WINDOW, MAIN_STREAM, encode_fields([(1, len(frame.payload))]))
            self.deliver(self.router.from_client(MAIN_CLIENT, credit))
        elif frame.type is FrameType.EXIT:
            fields = decode_fields(frame.payload)
            code, signum = fields.int(1), fields.int(2)
            outcome = f"exited {code}" if signum is None else f"killed by signal {signum}"
            self.store.update(self.name, main_exit=outcome)
        elif frame.type is FrameType.ERROR:
            fields = decode_fields(frame.payload)
            self.store.update(self.name, main_exit=f"failed: {fields.str(1)}: {fields.str(3)}")

    def console_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def serve(self) -> None:
        assert self.qemu_exited is not None
        pump = asyncio.ensure_future(self.pump_guest())
        if self.owner_pid:
            self.watch_owner()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: self.request_stop("SIGTERM"))
        code = await self.qemu_exited
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        if self.stopping:
            status, reason = "stopped", self.stop_reason
        else:
            status, reason = "crashed", self.crash_reason or self.qemu.describe_exit(code)
            tail = self.console_tail(3)
            if tail:
                reason += " | console: " + tail.replace("\n", " | ")
        self.store.update(self.name, status=status, reason=reason, finished_at=time.time())
        self.deliver(self.router.fail_all("SandboxStopped", f"sandbox {status}: {reason}"))
        await self.close()

    async def pump_guest(self) -> None:
        try:
            async for frame in self.channel.frames():
                self.deliver(self.router.from_guest(frame))
        except ProtocolError as exc:
            self.condemn(f"guest broke the protocol: {exc}")

    def deliver(self, outgoing: list[Outgoing]) -> None:
        for target, frame in outgoing:
            if target == GUEST:
                self.channel.send(frame)
                continue
            if target == MAIN_CLIENT:
                self.main_output(frame)
                continue
            peer = self.clients.get(target)
            if peer is None or peer.closed:
                continue
            if peer.queued > MAX_CLIENT_BACKLOG:
                peer.abort()  # it stopped reading: drop it and what it left queued
                continue
            peer.send_frame(frame)

    async def accept_clients(self, listening: socket.socket) -> None:
        listening.setblocking(False)
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(listening)
            task = asyncio.ensure_future(self.serve_client(FrameSocket(connection)))
            self.client_tasks.add(task)
            task.add_done_callback(self.client_tasks.discard)

    async def serve_client(self, peer: FrameSocket) -> None:
        client = self.next_client
        self.next_client += 1
        self.clients[client] = peer
        try:
            async for frame in peer.frames():
                if frame.stream == 0:
                    self.control(peer, frame)
                else:
                    self.deliver(self.router.from_client(client, frame))
        except ProtocolError as exc:
            peer.send_frame(error_frame(0, "Protocol", str(exc)))
        except OSError:
            pass
        finally:
            del self.clients[client]
            self.deliver(self.router.client_gone(client))
            peer.close()

    def control(self, peer: FrameSocket, frame: Frame) -> None:
        if frame.type is FrameType.HELLO:
            fields: list[tuple[int, bytes | str | int]] = [
                (tag, self.hello.get(tag) or b"") for tag in (1, 2, 3, 4)
            ]
            env = {**self.defaults.env, **self.config["env"]}
            fields += [(10, f"{key}={value}") for key, value in env.items()]
            fields.append((11, self.config["workdir"] or self.defaults.workdir))
            fields.append((12, self.config["user"] or self.defaults.user))
            image_argv = [*self.defaults.entrypoint, *self.defaults.cmd]
            fields += [(13, arg) for arg in image_argv]
            peer.send_frame(Frame(FrameType.HELLO, 0, encode_fields(fields)))
        elif frame.type is FrameType.SHUTDOWN:
            self.request_stop("stopped by request")
        elif frame.type is FrameType.KILL:
            self.request_kill("killed by request")
        else:
            raise ProtocolError(f"a client may not send {frame.type.name} on stream 0")

    def request_stop(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping, self.stop_reason = True, reason
        self.store.update(self.name, status="stopping")
        self.channel.send(Frame(FrameType.SHUTDOWN, 0))
        asyncio.get_running_loop().call_later(STOP_TIMEOUT, self.request_kill, reason)

    def request_kill(self, reason: str) -> None:
        """Stop at once: the sandbox ends `stopped` with this reason."""
        if not self.stopping:
            self.stopping, self.stop_reason = True, reason
        self.qemu.kill()

    def condemn(self, reason: str) -> None:
        """The guest can no longer be trusted: kill it; the sandbox ends `crashed`."""
        if not self.stopping:
            self.crash_reason = reason
        self.qemu.kill()

    def watch_owner(self) -> None:
        try:
            pidfd = os.pidfd_open(self.owner_pid)
        except ProcessLookupError:
            self.request_stop(OWNER_EXITED)
            return
        call_when_exited(pidfd, lambda: self.request_stop(OWNER_EXITED))

    async def close(self) -> None:
        for peer in list(self.clients.values()):
            peer.close()
        if self.accepting is not None:
            self.accepting.cancel()
        if self.api is not None:
            self.api.close()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "api.sock").unlink()
        await self.channel.close()


async def supervise(store: StateStore, launched: Launched, owner_pid: int) -> int:
    supervisor = Supervisor(store, launched, owner_pid)
    try:
        await supervisor.boot()
    except Exception as exc:
        supervisor.qemu.kill()
        await supervisor.abandon_recording()
        await supervisor.channel.close()
        return fail(store, supervisor.name, exc)
    report({"ok": True})
    await supervisor.serve()
    if supervisor.stop_reason == OWNER_EXITED:
        cgroups.leave(supervisor.dir)
        rootfs.remove_tree(supervisor.dir)
        store.delete(supervisor.name, supervisor.record.uid)
    return 0


def run(store: StateStore, launched: Launched, owner_pid: int) -> int:
    return asyncio.run(supervise(store, launched, owner_pid))
