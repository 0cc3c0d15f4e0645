"""Guest file access (`sandbox.fs`): read, write, list, stat, mkdir, remove, rename, copy.

Transfers stream in window-sized chunks, so a 64 MiB file never sits whole in the
supervisor; writes land in the guest atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from corral._connection import Connection, Stream
from corral._errors import ChannelError, FsError
from corral._protocol import DATA_CHUNK, Fields, Frame, FrameType, decode_fields
from corral._protocol.fields import Value


@dataclass(frozen=True)
class FileInfo:
    name: str
    kind: str
    size: int
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    target: str | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> FileInfo:
        return cls(
            name=fields.str(1),
            kind=fields.str(2),
            size=fields.int(3) or 0,
            mode=fields.int(4) or 0,
            mtime_ns=fields.int(5) or 0,
            uid=fields.int(6) or 0,
            gid=fields.int(7) or 0,
            target=fields.str(8) if fields.get(8) is not None else None,
        )


def _check(frame: Frame, path: str) -> Fields:
    fields = decode_fields(frame.payload)
    if frame.type is FrameType.ERROR:
        if fields.str(1) == "SandboxStopped":
            raise ChannelError(fields.str(3))
        raise FsError(fields.str(1), path, fields.str(3), fields.int(2) or 0)
    if frame.type is not FrameType.DONE:
        raise ChannelError(f"unexpected {frame.type.name} in a file operation on {path}")
    return fields


class FsGateway:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def _request(self, items: list[tuple[int, Value]]) -> Stream:
        stream = self._connection.open_stream()
        await stream.send(FrameType.FS, items)
        return stream

    async def _simple(self, path: str, items: list[tuple[int, Value]]) -> Fields:
        stream = await self._request(items)
        try:
            return _check(await stream.receive(), path)
        finally:
            stream.close()

    async def read_chunks(self, path: str) -> AsyncIterator[bytes]:
        stream = await self._request([(1, "read"), (2, path)])
        try:
            while True:
                frame = await stream.receive()
                if frame.type is FrameType.DATA:
                    if frame.payload:
                        yield frame.payload
                    continue
                _check(frame, path)
                return
        finally:
            if not stream.finished:
                with contextlib.suppress(ChannelError):
                    await stream.send(FrameType.CANCEL)
            stream.close()

    async def read(self, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.read_chunks(path)])

    async def write(self, path: str, data: bytes, mode: int = 0o644) -> int:
        async def once() -> AsyncIterator[bytes]:
            yield data

        return await self.write_chunks(path, once(), mode)

    async def write_chunks(self, path: str, chunks: AsyncIterator[bytes], mode: int = 0o644) -> int:
        if not 0 <= mode <= 0o7777:
            raise FsError("InvalidArgument", path, f"mode {mode:#o} is not a permission mode")
        stream = await self._request([(1, "write"), (2, path), (4, mode)])
        try:
            async for chunk in chunks:
                await stream.send_data(FrameType.DATA, chunk)
                if stream.answered:
                    break
            else:
                await stream.send_data(FrameType.DATA, b"", eof=True)
            return _check(await stream.receive(), path).int(1) or 0
        finally:
            stream.close()

    async def list(self, path: str) -> list[FileInfo]:
        """Directory members; large directories arrive in several ENTRIES frames."""
        stream = await self._request([(1, "list"), (2, path)])
        entries: list[FileInfo] = []
        try:
            while True:
                frame = await stream.receive()
                if frame.type is FrameType.ENTRIES:
                    fields = decode_fields(frame.payload)
                else:
                    fields = _check(frame, path)
                entries += [FileInfo.from_fields(entry) for entry in fields.nested(10)]
                if frame.type is not FrameType.ENTRIES:
                    return entries
        finally:
            stream.close()

    async def stat(self, path: str) -> FileInfo:
        fields = await self._simple(path, [(1, "stat"), (2, path)])
        entries = fields.nested(10)
        if not entries:
            raise ChannelError(f"stat of {path} returned no entry")
        return FileInfo.from_fields(entries[0])

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except FsError as exc:
            if exc.kind == "NotFound":
                return False
            raise
        return True

    async def mkdir(self, path: str, parents: bool = True, mode: int = 0o755) -> None:
        await self._simple(path, [(1, "mkdir"), (2, path), (4, mode), (5, int(parents))])

    async def remove(self, path: str, recursive: bool = False) -> None:
        await self._simple(path, [(1, "remove"), (2, path), (5, int(recursive))])

    async def rename(self, source: str, target: str) -> None:
        await self._simple(source, [(1, "rename"), (2, source), (3, target)])

    async def copy_in(self, host_path: Path, guest_path: str) -> int:
        """Stream a host file into the guest, keeping its permission bits."""
        mode = os.stat(host_path).st_mode & 0o7777

        async def chunks() -> AsyncIterator[bytes]:
            with host_path.open("rb") as file:
                while block := file.read(DATA_CHUNK):
                    yield block

        return await self.write_chunks(guest_path, chunks(), mode)

    async def copy_out(self, guest_path: str, host_path: Path) -> int:
        """Stream a guest file to the host; the host file appears only when complete."""
        partial = host_path.with_name(f".{host_path.name}.corral-partial")
        size = 0
        try:
            with partial.open("wb") as file:
                async for chunk in self.read_chunks(guest_path):
                    file.write(chunk)
                    size += len(chunk)
            partial.replace(host_path)
        finally:
            partial.unlink(missing_ok=True)
        return size
