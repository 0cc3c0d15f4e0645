"""Boot snapshots with real VMs: the first sandbox of a shape boots cold and records one,
later sandboxes of that shape restore it, each with its own identity and disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from corral import BootError, Sandbox
from corral.node_agent.snapshots import ENABLED_ENV
from corral.testing.home import isolated_home

pytestmark = pytest.mark.vm

IDENTITY = "hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s"


async def identity(sandbox: Sandbox) -> tuple[str, str, int]:
    out = await sandbox.exec("sh", ["-c", IDENTITY])
    assert out.exit_code == 0, out.stderr
    hostname, random, clock = out.stdout.decode().split()
    return hostname, random, int(clock)


def snapshot_dirs(home: Path) -> list[Path]:
    return sorted((home / "images/snapshots").glob("[0-9a-f]*"))


async def test_later_sandboxes_of_a_shape_restore_the_first_ones_snapshot(
    corral_home: Path,
) -> None:
    before = snapshot_dirs(corral_home)
    async with await Sandbox.builder("snap-first").memory(224).create() as first:
        assert Sandbox.inspect("snap-first").boot_mode == "cold"
        recorded = [d for d in snapshot_dirs(corral_home) if d not in before]
        assert len(recorded) == 1 and (recorded[0] / "state").stat().st_size > 0
        await first.fs.write("/tmp/only-in-first", b"x")
        seen = {await identity(first)}
        async with (
            await Sandbox.builder("snap-second").memory(224).create() as second,
            await Sandbox.builder("snap-third").memory(224).create() as third,
        ):
            for sandbox in (second, third):
                assert Sandbox.inspect(sandbox.name).boot_mode == "snapshot"
                hostname, random, clock = await identity(sandbox)
                assert hostname == sandbox.name
                assert random not in {r for _, r, _ in seen}, "a restored guest reused entropy"
                assert abs(clock - time.time()) < 5, "a restored guest kept the snapshot's clock"
                assert not await sandbox.fs.exists("/tmp/only-in-first")
                seen.add((hostname, random, clock))
            await second.fs.write("/tmp/only-in-second", b"y")
            assert not await third.fs.exists("/tmp/only-in-second")
            boot_ids = {
                Sandbox.inspect(n).boot_id for n in ("snap-first", "snap-second", "snap-third")
            }
            assert len(boot_ids) == 3
        assert (await first.exec("cat", ["/tmp/only-in-first"])).stdout == b"x"
    assert snapshot_dirs(corral_home) == sorted(before + recorded)


async def test_another_shape_or_snapshots_off_boot_cold(
    corral_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Sandbox.builder("shape-a").memory(232).create():
        pass
    async with await Sandbox.builder("shape-b").memory(232).cpus(2).create():
        assert Sandbox.inspect("shape-b").boot_mode == "cold"
    monkeypatch.setenv(ENABLED_ENV, "0")
    async with await Sandbox.builder("shape-c").memory(232).create():
        assert Sandbox.inspect("shape-c").boot_mode == "cold"


async def test_a_snapshot_that_cannot_be_restored_is_discarded(corral_home: Path) -> None:
    before = snapshot_dirs(corral_home)
    async with await Sandbox.builder("bad-first").memory(216).create():
        pass
    (recorded,) = [d for d in snapshot_dirs(corral_home) if d not in before]
    (recorded / "state").write_bytes(b"not a QEMU migration stream")
    with pytest.raises(BootError, match="discarded"):
        await Sandbox.builder("bad-second").memory(216).create()
    assert not recorded.exists()
    async with await Sandbox.builder("bad-third").memory(216).create() as third:
        assert Sandbox.inspect("bad-third").boot_mode == "cold"
        assert (await third.exec("true")).exit_code == 0
    assert recorded.exists(), "the next cold boot records the shape's snapshot again"


async def test_a_snapshot_that_cannot_be_recorded_costs_only_the_speed_up(
    corral_home: Path,
) -> None:
    with isolated_home() as home:
        (home / "images").mkdir()
        (home / "images/snapshots").write_text("in the way")
        for name in ("unrecorded-1", "unrecorded-2"):
            async with await Sandbox.builder(name).create() as sandbox:
                assert Sandbox.inspect(name).boot_mode == "cold"
                assert (await sandbox.exec("hostname")).stdout == f"{name}\n".encode()
        log = next(home.glob("sandboxes/*/supervisor.log"), None)
        assert log is None or "boot snapshot not recorded" in log.read_text()
