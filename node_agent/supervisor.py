"""The supervisor: one process per sandbox that owns its VM for the VM's whole life.

Started detached from whoever creates the sandbox (`python -m corral.node_agent.supervisor`),
it builds the disks, starts QEMU, greets the guest agent, serves clients on a unix
socket (routing their streams onto the one guest channel), and records the sandbox's
status in the state store: `running`, then `stopped`, or `crashed` with the reason when
QEMU dies on its own. It reports readiness (or the boot failure) as one JSON line on
stdout, then lets go of stdout, so the creator may exit. A non-detached sandbox is
stopped and removed when its owner process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from corral._errors import BootError, CorralError
from corral._exec import ExecRequest
from corral._paths import Paths
from corral._protocol import (
    Fields,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._state import StateStore, current_process_identity
from corral.node_agent import accel, rootfs
from corral.node_agent.assets import Assets
from corral.node_agent.channel import GuestChannel
from corral.node_agent.router import GUEST, Outgoing, Router, error_frame
from corral.node_agent.vmm import Disk, QemuProcess, VmSpec

MAIN_CLIENT = 0  # the supervisor itself, as the client of the sandbox's main process
MAIN_STREAM = 1
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
READ_CHUNK = 1 << 20


class Supervisor:
    def __init__(self, paths: Paths, name: str, owner_pid: int) -> None:
        self.paths = paths
        self.store = StateStore(paths.state_db)
        self.record = self.store.get(name)
        # The record holds a SandboxConfig validated and dumped by the creator; reading it
        # as a mapping keeps pydantic (a fifth of a second to import) off the boot path.
        self.config: dict[str, Any] = self.record.config
        self.name = self.record.name
        self.dir = paths.sandbox_dir(self.record.uid)
        self.owner_pid = owner_pid
        self.router = Router()
        self.clients: dict[int, asyncio.StreamWriter] = {}
        self.next_client = MAIN_CLIENT + 1
        self.stopping = False
        self.stop_reason = ""
        self.hello = Fields([])
        self.defaults = rootfs.ImageDefaults()
        self.channel = GuestChannel(self.dir / "channel.sock")
        self.qemu: QemuProcess | None = None
        self.api: asyncio.AbstractServer | None = None
        self.done = asyncio.Event()

    async def boot(self) -> None:
        pid, start = current_process_identity()
        self.store.update(self.name, supervisor_pid=pid, supervisor_start=start)
        assets = Assets.load(self.paths.assets, self.config["kernel"])
        choice = accel.choose(self.config["accel"], accel.probe_host(), assets.kernel_pvm)
        self.store.update(self.name, accel=choice.accel, accel_reason=choice.reason)
        source = rootfs.resolve(self.config["image"], assets.default_image)
        self.defaults = source.defaults
        base = rootfs.base_disk(source, self.paths.images)
        upper = self.dir / "upper.ext4"
        rootfs.upper_disk(upper, self.config["disk_mib"], self.paths.images)
        await self.channel.listen()
        spec = VmSpec(
            accel=choice.accel,
            cpus=self.config["cpus"],
            memory_mib=self.config["memory_mib"],
            kernel=assets.kernel,
            initramfs=assets.initramfs,
            channel_socket=self.channel.socket_path,
            console_log=self.dir / "console.log",
            disks=[Disk(base, readonly=True), Disk(upper, readonly=False)],
            kernel_args=[
                "corral.root=/dev/vda",
                "corral.upper=/dev/vdb",
                f"corral.hostname={self.name}",
            ],
            tsc_khz=assets.tsc_khz,
        )
        self.qemu = QemuProcess(spec)
        await self.qemu.start()
        self.store.update(self.name, qemu_pid=self.qemu.pid)
        exited = asyncio.ensure_future(self.qemu.wait())
        greeting = asyncio.ensure_future(self.channel.handshake())
        done, _ = await asyncio.wait(
            {exited, greeting}, timeout=BOOT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if greeting not in done:
            greeting.cancel()
            problem = self.qemu.describe_exit(exited.result()) if exited in done else "timed out"
            self.qemu.kill()
            raise BootError(f"the guest did not come up: {problem}", self.console_tail())
        exited.cancel()
        try:
            self.hello = greeting.result()
        except ProtocolError as exc:
            self.qemu.kill()
            raise BootError(f"guest handshake failed: {exc}", self.console_tail()) from exc
        self.api = await asyncio.start_unix_server(
            self.serve_client, path=str(self.dir / "api.sock"), limit=READ_CHUNK
        )
        self.store.update(
            self.name,
            status="running",
            boot_id=self.hello.str(4),
            started_at=time.time(),
        )
        self.start_main()

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

    async def run(self) -> None:
        assert self.qemu is not None
        pump = asyncio.ensure_future(self.pump_guest())
        if self.owner_pid:
            self.watch_owner()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: self.request_stop("SIGTERM"))
        code = await self.qemu.wait()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        if self.stopping:
            status, reason = "stopped", self.stop_reason
        else:
            status, reason = "crashed", self.qemu.describe_exit(code)
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
            self.request_kill(f"guest broke the protocol: {exc}")

    def deliver(self, outgoing: list[Outgoing]) -> None:
        for target, frame in outgoing:
            if target == GUEST:
                self.channel.send(frame)
                continue
            if target == MAIN_CLIENT:
                self.main_output(frame)
                continue
            writer = self.clients.get(target)
            if writer is not None and not writer.is_closing():
                writer.write(frame.encode())

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = self.next_client
        self.next_client += 1
        self.clients[client] = writer
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if frame.stream == 0:
                        self.control(writer, frame)
                    else:
                        self.deliver(self.router.from_client(client, frame))
        except ProtocolError as exc:
            writer.write(error_frame(0, "Protocol", str(exc)).encode())
        except OSError:
            pass
        finally:
            del self.clients[client]
            self.deliver(self.router.client_gone(client))
            writer.close()

    def control(self, writer: asyncio.StreamWriter, frame: Frame) -> None:
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
            writer.write(Frame(FrameType.HELLO, 0, encode_fields(fields)).encode())
        elif frame.type is FrameType.SHUTDOWN:
            self.request_stop("stopped by request")
        elif frame.type is FrameType.KILL:
            self.request_kill("killed by request", stopping=True)
        else:
            raise ProtocolError(f"a client may not send {frame.type.name} on stream 0")

    def request_stop(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping, self.stop_reason = True, reason
        self.store.update(self.name, status="stopping")
        self.channel.send(Frame(FrameType.SHUTDOWN, 0))
        asyncio.get_running_loop().call_later(STOP_TIMEOUT, self.request_kill, reason, True)

    def request_kill(self, reason: str, stopping: bool = False) -> None:
        if stopping and not self.stopping:
            self.stopping, self.stop_reason = True, reason
        elif not stopping and not self.stopping:
            self.stop_reason = reason
        assert self.qemu is not None
        self.qemu.kill()

    def watch_owner(self) -> None:
        try:
            pidfd = os.pidfd_open(self.owner_pid)
        except ProcessLookupError:
            self.request_stop("owner process exited")
            return
        loop = asyncio.get_running_loop()

        def owner_exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.request_stop("owner process exited")

        loop.add_reader(pidfd, owner_exited)

    async def close(self) -> None:
        for writer in list(self.clients.values()):
            writer.close()
        if self.api is not None:
            self.api.close()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "api.sock").unlink()
        await self.channel.close()


def report(message: dict[str, object]) -> None:
    """Tell the creator how the boot went, then let go of its pipe."""
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


async def main_async(paths: Paths, name: str, owner_pid: int) -> int:
    supervisor = Supervisor(paths, name, owner_pid)
    try:
        await supervisor.boot()
    except Exception as exc:
        if not isinstance(exc, CorralError):
            exc = BootError(f"{type(exc).__name__}: {exc}")
        reason = str(exc).splitlines()[0]
        supervisor.store.update(name, status="failed", reason=reason, finished_at=time.time())
        if supervisor.qemu is not None:
            supervisor.qemu.kill()
        await supervisor.channel.close()
        report({"ok": False, "kind": type(exc).__name__, "error": str(exc)})
        return 1
    report({"ok": True})
    await supervisor.run()
    if supervisor.stop_reason == "owner process exited":
        rootfs.remove_tree(supervisor.dir)
        supervisor.store.delete(name, supervisor.record.uid)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--owner-pid", type=int, default=0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(Paths(args.home), args.name, args.owner_pid)))


if __name__ == "__main__":
    main()
