"""The supervisor: one process per sandbox that owns its VM for the VM's whole life.

Its first phase, node_agent/launch.py, starts QEMU; this second phase greets the guest
agent, serves clients on a unix socket (routing their streams onto the one guest
channel), and records the sandbox's status in the state store: `running`, then
`stopped`, or `crashed` with the reason when QEMU dies on its own. It reports readiness
(or the boot failure) to the creator, which may then exit: the process is detached from
it. A non-detached sandbox is stopped and removed when its owner process exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from corral._errors import BootError
from corral._protocol import (
    Fields,
    Frame,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._protocol.exec_request import ExecRequest
from corral._state import StateStore
from corral.node_agent import cgroups
from corral.node_agent.channel import GuestChannel
from corral.node_agent.frame_socket import FrameSocket
from corral.node_agent.launch import Launched, fail, listen_unix, report
from corral.node_agent.reactor import Reactor
from corral.node_agent.router import GUEST, Outgoing, Router, error_frame

MAIN_CLIENT = 0  # the supervisor itself, as the client of the sandbox's main process
MAIN_STREAM = 1
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
EXIT_GRACE = 2.0  # how long a failed handshake waits to learn whether QEMU exited
MAX_CLIENT_BACKLOG = 64 << 20  # bytes queued for a client that does not read
CLIENT_BACKLOG = 128  # connections waiting to be accepted: a burst of CLI calls
ACCEPT_PAUSE = 1.0  # seconds without accepting after the process ran out of descriptors
OWNER_EXITED = "owner process exited"


def remove_tree(path: Path) -> None:
    """rootfs.remove_tree, loaded only when needed: rootfs's imports (tarfile, tempfile,
    shutil) would otherwise stay in the supervisor for the sandbox's whole life."""
    from corral.node_agent import rootfs

    rootfs.remove_tree(path)


def release_free_memory() -> None:
    """Give the kernel back the heap pages that starting up used and freed (imports, the
    unpickled plan): glibc keeps them mapped, ~0.7 MiB that an idle supervisor never
    touches again, counted in each sandbox's overhead (bench/memory.py)."""
    ctypes.CDLL(None).malloc_trim(0)


def call_when_exited(reactor: Reactor, pidfd: int, callback: Callable[[], None]) -> None:
    """Run `callback` once the process behind `pidfd` has exited (the fd is closed)."""

    def ready() -> None:
        reactor.remove_reader(pidfd)
        os.close(pidfd)
        callback()

    reactor.add_reader(pidfd, ready)


class Supervisor:
    def __init__(
        self, store: StateStore, launched: Launched, owner_pid: int, reactor: Reactor
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.record = launched.record
        self.config = launched.config
        self.name = launched.record.name
        self.dir = launched.directory
        self.qemu = launched.qemu
        self.defaults = launched.plan.defaults
        self.restored_from = launched.plan.restored_from
        self.record_to = launched.plan.record_to
        self.channel = GuestChannel(launched.channel, reactor)
        self.channel.on_frame = self.guest_frame
        self.channel.on_end = self.guest_ended
        self.owner_pid = owner_pid
        self.router = Router()
        self.clients: dict[int, FrameSocket] = {}
        self.next_client = MAIN_CLIENT + 1
        self.stopping = False
        self.stop_reason = ""
        self.crash_reason = ""
        self.hello = Fields([])
        self.api: socket.socket | None = None
        self.qemu_exit: int | None = None  # QEMU's exit code, once it has exited
        self.recorder: subprocess.Popen[bytes] | None = None

    def watch_qemu(self) -> None:
        call_when_exited(self.reactor, self.qemu.pidfd(), self.qemu_exited)

    def qemu_exited(self) -> None:
        self.qemu_exit = self.qemu.reap()

    def qemu_gone(self) -> bool:
        return self.qemu_exit is not None

    def boot(self) -> None:
        """Greet the guest (the launch already started QEMU) and open the client API."""
        self.watch_qemu()
        if self.record_to is not None:
            self.recorder = self.spawn_recorder()
        self.hello = self.greet()
        if self.recorder is not None:
            self.record_snapshot(self.recorder)
            # Greet again: the entropy the snapshot holds is in every guest restored
            # from it, so this guest too must go on from entropy the snapshot never saw.
            self.hello = self.greet()
        self.api = listen_unix(self.dir / "api.sock", CLIENT_BACKLOG)
        self.api.setblocking(False)
        self.reactor.add_reader(self.api.fileno(), self.accept_client)
        # A restored guest's kernel boot ID is its snapshot's, the same in every sandbox
        # restored from it; this boot gets its own.
        boot_id = str(uuid.uuid4()) if self.restored_from else self.hello.str(4)
        self.store.update(self.name, status="running", boot_id=boot_id, started_at=time.time())
        self.start_main()

    def greet(self) -> Fields:
        """The guest's HELLO; a BootError, with QEMU killed, if it does not come."""
        message = "the guest did not come up: timed out"
        try:
            hello = self.channel.handshake(self.name, BOOT_TIMEOUT, abandon=self.qemu_gone)
        except TimeoutError:
            hello = None
        except ProtocolError as exc:
            hello, message = None, f"guest handshake failed: {exc}"
            self.reactor.run_until(self.qemu_gone, EXIT_GRACE)  # a channel that closed?
        if hello is not None:
            return hello
        if self.qemu_exit is not None:
            message = f"the guest did not come up: {self.qemu.describe_exit(self.qemu_exit)}"
        self.qemu.kill()
        raise BootError(message + self.discard_snapshot(), self.console_tail())

    def discard_snapshot(self) -> str:
        """A restore that failed: drop the snapshot, so the shape's next sandbox boots
        cold (and records a new one); the note goes into the boot error."""
        if self.restored_from is None:
            return ""
        remove_tree(self.restored_from.directory)
        return f" (restoring boot snapshot {self.restored_from.directory.name}; discarded)"

    def spawn_recorder(self) -> subprocess.Popen[bytes]:
        """The process that records this cold boot's snapshot through QMP
        (node_agent/snapshot_record.py), started now so that it loads while the guest
        boots: its QMP client imports ssl, which this process goes without."""
        assert self.record_to is not None and self.qemu.spec.qmp_socket is not None
        command = [
            sys.executable,
            "-m",
            "corral.node_agent.snapshot_record",
            str(self.qemu.spec.qmp_socket),
            str(self.dir / "upper.ext4"),
            str(self.record_to.directory),
            json.dumps(self.record_to.files),
        ]
        return subprocess.Popen(command, stdin=subprocess.PIPE)

    def record_snapshot(self, recorder: subprocess.Popen[bytes]) -> None:
        """Best effort: a snapshot that cannot be recorded leaves the next sandbox of this
        shape to boot cold, never this one failing (the recorder says why on the stderr
        it shares with this process)."""
        assert recorder.stdin is not None
        with contextlib.suppress(ConnectionError):  # a recorder that died already
            recorder.stdin.write(b"\n")  # go
            recorder.stdin.close()
        recorder.wait()

    def abandon_recording(self) -> None:
        """A boot that failed records nothing: its recorder, still waiting, goes."""
        if self.recorder is not None and self.recorder.poll() is None:
            self.recorder.kill()
            self.recorder.wait()

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

    def serve(self) -> None:
        """Serve clients until QEMU exits, then record how the sandbox ended."""
        if self.owner_pid:
            self.watch_owner()
        self.reactor.on_signal(signal.SIGTERM, lambda: self.request_stop("SIGTERM"))
        self.reactor.run_until(self.qemu_gone)
        code = self.qemu_exit
        assert code is not None
        if self.stopping:
            status, reason = "stopped", self.stop_reason
        else:
            status, reason = "crashed", self.crash_reason or self.qemu.describe_exit(code)
            tail = self.console_tail(3)
            if tail:
                reason += " | console: " + tail.replace("\n", " | ")
        self.store.update(self.name, status=status, reason=reason, finished_at=time.time())
        self.deliver(self.router.fail_all("SandboxStopped", f"sandbox {status}: {reason}"))
        self.close()

    def guest_frame(self, frame: Frame) -> None:
        self.deliver(self.router.from_guest(frame))

    def guest_ended(self, error: ProtocolError | None) -> None:
        """The channel closes when QEMU exits, which its pidfd reports; garbage is news."""
        if error is not None:
            self.condemn(f"guest broke the protocol: {error}")

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

    def accept_client(self) -> None:
        assert self.api is not None
        try:
            connection, _ = self.api.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError:  # out of file descriptors: look again in a moment
            self.reactor.remove_reader(self.api.fileno())
            self.reactor.call_later(ACCEPT_PAUSE, self.resume_accepting)
            return
        client = self.next_client
        self.next_client += 1
        peer: FrameSocket  # its own handlers name it
        peer = FrameSocket(
            connection,
            self.reactor,
            lambda frame: self.client_frame(client, peer, frame),
            lambda error: self.client_ended(client, peer, error),
        )
        self.clients[client] = peer

    def resume_accepting(self) -> None:
        if self.api is not None and self.api.fileno() >= 0:
            self.reactor.add_reader(self.api.fileno(), self.accept_client)

    def client_frame(self, client: int, peer: FrameSocket, frame: Frame) -> None:
        if frame.stream == 0:
            self.control(peer, frame)
        else:
            self.deliver(self.router.from_client(client, frame))

    def client_ended(self, client: int, peer: FrameSocket, error: ProtocolError | None) -> None:
        if error is not None:
            peer.send_frame(error_frame(0, "Protocol", str(error)))
        self.clients.pop(client, None)
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
        self.reactor.call_later(STOP_TIMEOUT, lambda: self.request_kill(reason))

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
        call_when_exited(self.reactor, pidfd, lambda: self.request_stop(OWNER_EXITED))

    def close(self) -> None:
        for peer in list(self.clients.values()):
            peer.close()
        if self.api is not None:
            self.reactor.remove_reader(self.api.fileno())
            self.api.close()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "api.sock").unlink()
        self.channel.close()


def run(store: StateStore, launched: Launched, owner_pid: int) -> int:
    reactor = Reactor()
    supervisor = Supervisor(store, launched, owner_pid, reactor)
    try:
        supervisor.boot()
    except Exception as exc:
        supervisor.qemu.kill()
        supervisor.abandon_recording()
        supervisor.channel.close()
        return fail(store, supervisor.name, exc)
    report({"ok": True})
    release_free_memory()
    supervisor.serve()
    reactor.close()
    if supervisor.stop_reason == OWNER_EXITED:
        cgroups.leave(supervisor.dir)
        remove_tree(supervisor.dir)
        store.delete(supervisor.name, supervisor.record.uid)
    return 0
