"""Guest file access in a real VM: round trips, metadata, tree operations, errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral import FsError, Sandbox
from corral._protocol import FrameType, decode_fields

pytestmark = pytest.mark.vm


async def test_binary_round_trip(sb: Sandbox) -> None:
    data = bytes(range(256)) * 4 + b"\x00" * 10
    assert await sb.fs.write("/tmp/x.bin", data) == len(data)
    assert await sb.fs.read("/tmp/x.bin") == data
    assert await sb.fs.write("/tmp/empty", b"") == 0
    assert await sb.fs.read("/tmp/empty") == b""


async def test_64_mib_round_trip_matches_the_guest_checksum(sb: Sandbox) -> None:
    data = os.urandom(64 << 20)
    await sb.fs.write("/tmp/big.bin", data)
    out = await sb.exec("sha256sum", ["/tmp/big.bin"])
    assert out.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert await sb.fs.read("/tmp/big.bin") == data
    await sb.fs.remove("/tmp/big.bin")


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm"])  # direct I/O; tmpfs has none
async def test_sizes_around_the_direct_write_alignment_arrive_intact(
    sb: Sandbox, directory: str
) -> None:
    mib = 1 << 20
    for size in (1, 4095, 4096, 4097, mib - 1, mib, mib + 1, 3 * mib + 4096 + 123):
        data = os.urandom(size)
        path = f"{directory}/aligned-{size}"
        assert await sb.fs.write(path, data, mode=0o640) == size
        out = await sb.exec("sh", ["-c", f"sha256sum {path}; stat -c %a {path}"])
        digest, _, mode = out.stdout.decode().split()
        assert (digest, mode) == (hashlib.sha256(data).hexdigest(), "640")
        assert await sb.fs.read(path) == data
        await sb.fs.remove(path)


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_concurrent_large_writes_beyond_the_stage_budget_arrive_intact(sb: Sandbox) -> None:
    # Ten writes at once ask for more direct-I/O stages than the agent's budget (eight):
    # some are written buffered, the others share the stages. Pieces of 300,000 bytes
    # make DATA frames straddle the 1 MiB stages.
    mib = 1 << 20
    blobs = [os.urandom(6 * mib + 4096 * index + index) for index in range(10)]
    paths = [f"/tmp/concurrent-{index}" for index in range(len(blobs))]
    writes = [sb.fs.write_chunks(p, _pieces(d, 300_000)) for p, d in zip(paths, blobs, strict=True)]
    sizes = await asyncio.gather(*writes)
    assert sizes == [len(data) for data in blobs]
    out = await sb.exec("sha256sum", paths)
    digests = [line.split()[0] for line in out.stdout.decode().splitlines()]
    assert digests == [hashlib.sha256(data).hexdigest() for data in blobs]
    assert not [e.name for e in await sb.fs.list("/tmp") if e.name.startswith(".corral-write")]
    await sb.shell("rm /tmp/concurrent-*")


async def test_a_write_cut_off_mid_transfer_leaves_no_temporary_file(
    sb: Sandbox, shared_sandbox: str
) -> None:
    await sb.fs.mkdir("/tmp/cut", parents=True)
    writer = await Sandbox.get(shared_sandbox)

    async def endless() -> AsyncIterator[bytes]:
        chunk = os.urandom(1 << 20)
        while True:
            yield chunk

    async def temporary_sizes() -> list[int]:
        entries = await sb.fs.list("/tmp/cut")
        return [entry.size for entry in entries if entry.name.startswith(".corral-write.")]

    task = asyncio.create_task(writer.fs.write_chunks("/tmp/cut/file", endless()))
    sizes: list[int] = []
    for _ in range(600):
        sizes = await temporary_sizes()
        if sizes and sizes[0] > 16 << 20:
            break
        await asyncio.sleep(0.05)
    assert sizes and sizes[0] > 16 << 20
    # Well into the transfer, with direct writes in flight, the client goes away: the
    # supervisor cancels the write in the guest.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await writer.close()
    for _ in range(200):
        if not await temporary_sizes():
            break
        await asyncio.sleep(0.05)
    assert await sb.fs.list("/tmp/cut") == []
    data = os.urandom(5 << 20)
    assert await sb.fs.write("/tmp/cut/after", data) == len(data)
    assert await sb.fs.read("/tmp/cut/after") == data
    await sb.fs.remove("/tmp/cut", recursive=True)


async def test_a_write_cancelled_while_its_stages_are_written_leaves_no_temporary_file(
    sb: Sandbox,
) -> None:
    # CANCEL right behind 6 MiB of DATA reaches the agent while stages are being written:
    # it must drop the file at once and free those stages only when their writes complete.
    await sb.fs.mkdir("/tmp/cancelled", parents=True)
    for _ in range(3):
        stream = sb._connection.open_stream()
        await stream.send(FrameType.FS, [(1, "write"), (2, "/tmp/cancelled/f")])
        await stream.send_data(FrameType.DATA, os.urandom(6 << 20))
        await stream.send(FrameType.CANCEL)
        reply = await stream.receive()
        stream.close()
        assert reply.type is FrameType.ERROR
        assert decode_fields(reply.payload).str(1) == "Cancelled"
        assert await sb.fs.list("/tmp/cancelled") == []
    data = os.urandom(9 << 20)
    assert await sb.fs.write("/tmp/cancelled/f", data) == len(data)
    assert await sb.fs.read("/tmp/cancelled/f") == data
    await sb.fs.remove("/tmp/cancelled", recursive=True)


async def test_a_write_that_runs_out_of_space_fails_and_leaves_nothing(corral_home: Path) -> None:
    # The smallest upper disk (64 MiB) fills up under a direct-I/O write to the overlay
    # root; a tmpfs would not do, having no direct I/O.
    async with await Sandbox.builder("fs-full").disk(64).create() as sb:
        await sb.fs.mkdir("/tmp/full", parents=True)
        with pytest.raises(FsError) as error:
            await sb.fs.write("/tmp/full/f", os.urandom(96 << 20))
        assert (error.value.kind, error.value.errno) == ("Io", errno.ENOSPC)
        assert "/tmp/full/f: No space left on device" in str(error.value)
        assert await sb.fs.list("/tmp/full") == []
        data = os.urandom(32 << 20)
        for _ in range(50):  # the space comes back as the writes still in flight complete
            with contextlib.suppress(FsError):
                await sb.fs.write("/tmp/full/g", data)
                break
            await asyncio.sleep(0.2)
        assert await sb.fs.read("/tmp/full/g") == data


async def test_mode_stat_and_list(sb: Sandbox) -> None:
    await sb.fs.mkdir("/tmp/tree/a/b", parents=True)
    await sb.fs.write("/tmp/tree/a/run.sh", b"#!/bin/sh\necho ran\n", mode=0o750)
    info = await sb.fs.stat("/tmp/tree/a/run.sh")
    assert (info.kind, info.mode & 0o7777, info.size) == ("file", 0o750, 19)
    assert (await sb.exec("/tmp/tree/a/run.sh")).stdout == b"ran\n"
    await sb.exec("ln", ["-s", "run.sh", "/tmp/tree/a/link"])
    entries = {entry.name: entry for entry in await sb.fs.list("/tmp/tree/a")}
    assert set(entries) == {"b", "run.sh", "link"}
    assert entries["b"].kind == "dir"
    assert (entries["link"].kind, entries["link"].target) == ("symlink", "run.sh")


async def test_rename_and_recursive_remove(sb: Sandbox) -> None:
    await sb.fs.mkdir("/tmp/rm/x/y", parents=True)
    await sb.fs.write("/tmp/rm/x/y/f", b"f")
    await sb.fs.rename("/tmp/rm/x", "/tmp/rm/z")
    assert await sb.fs.read("/tmp/rm/z/y/f") == b"f"
    with pytest.raises(FsError) as error:
        await sb.fs.remove("/tmp/rm")
    assert error.value.kind == "NotEmpty"
    await sb.fs.remove("/tmp/rm", recursive=True)
    assert not await sb.fs.exists("/tmp/rm")


async def test_recursive_remove_does_not_follow_symlinks(sb: Sandbox) -> None:
    await sb.fs.mkdir("/tmp/keep", parents=True)
    await sb.fs.write("/tmp/keep/precious", b"p")
    await sb.fs.mkdir("/tmp/victim", parents=True)
    await sb.exec("ln", ["-s", "/tmp/keep", "/tmp/victim/link"])
    await sb.fs.remove("/tmp/victim", recursive=True)
    assert await sb.fs.read("/tmp/keep/precious") == b"p"


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        (lambda fs: fs.read("/no/such/file"), "NotFound"),
        (lambda fs: fs.write("/no/such/dir/file", b"x"), "NotFound"),
        (lambda fs: fs.read("/tmp"), "IsADirectory"),
        (lambda fs: fs.list("/etc/passwd"), "NotADirectory"),
        (lambda fs: fs.stat("/nope"), "NotFound"),
        (lambda fs: fs.remove("/nope"), "NotFound"),
        (lambda fs: fs.mkdir("/etc", parents=False), "Exists"),
        (lambda fs: fs.write("/tmp/bad-mode", b"x", mode=0o170000), "InvalidArgument"),
    ],
)
async def test_errors_have_kinds(sb: Sandbox, operation, kind: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FsError) as error:
        await operation(sb.fs)
    assert error.value.kind == kind


async def test_failed_write_leaves_nothing_behind(sb: Sandbox) -> None:
    await sb.fs.mkdir("/tmp/atomic", parents=True)
    await sb.fs.write("/tmp/atomic/f", b"old")
    with pytest.raises(FsError):
        await sb.fs.write("/tmp/atomic/f/child", b"x")
    assert [entry.name for entry in await sb.fs.list("/tmp/atomic")] == ["f"]
    assert await sb.fs.read("/tmp/atomic/f") == b"old"


async def test_copy_in_and_out_keep_content_and_mode(sb: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.write_bytes(os.urandom(3 << 20))
    source.chmod(0o751)
    await sb.fs.copy_in(source, "/tmp/tool")
    assert (await sb.fs.stat("/tmp/tool")).mode & 0o777 == 0o751
    target = tmp_path / "back"
    assert await sb.fs.copy_out("/tmp/tool", target) == 3 << 20
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(FsError):
        await sb.fs.copy_out("/no/such", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "tool"]


async def test_listing_a_directory_larger_than_one_frame(sb: Sandbox) -> None:
    await sb.shell("mkdir -p /tmp/many && cd /tmp/many && seq 1 6000 | xargs touch")
    names = {entry.name for entry in await sb.fs.list("/tmp/many")}
    assert names == {str(index) for index in range(1, 6001)}
    await sb.fs.remove("/tmp/many", recursive=True)
