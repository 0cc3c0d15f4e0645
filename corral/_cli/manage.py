"""Sandbox lifecycle commands: `ls`, `inspect`, `stop`, `kill`, `rm`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import click

from corral._cli.errors import Failure, report
from corral._errors import ChannelError, CorralError, SandboxNotRunning
from corral._sandbox import Sandbox, remove
from corral._state import SandboxRecord

COLUMNS = ("NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "ACCEL", "CREATED")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for machines.")
def ls(as_json: bool) -> int:
    """List sandboxes; a sandbox whose supervisor died shows as `stale`."""
    records = Sandbox.list()
    if as_json:
        print(json.dumps([record.to_dict() for record in records], indent=2))
    else:
        print(render_table([COLUMNS, *(table_row(record, time.time()) for record in records)]))
    return 0


def table_row(record: SandboxRecord, now: float) -> tuple[str, ...]:
    config = record.config
    return (
        record.name,
        record.effective_status[0],
        str(config.get("image", "")),
        str(config.get("cpus", "")),
        f"{config.get('memory_mib', '?')}MiB",
        record.accel or "-",
        age(now - record.created_at),
    )


def render_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def age(seconds: float) -> str:
    """'12s ago', '5m ago', '3h ago', '2d ago': enough to tell sandboxes apart."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{max(0, int(seconds))}s ago"


@click.command()
@click.argument("name")
def inspect(name: str) -> int:
    """Show the sandbox's record as JSON, with live guest facts when it is running."""
    print(json.dumps(asyncio.run(_inspect(name)), indent=2))
    return 0


async def _inspect(name: str) -> dict[str, Any]:
    details = Sandbox.inspect(name).to_dict()
    if details["status"] != "running":
        return details
    with contextlib.suppress(SandboxNotRunning, ChannelError):  # it stopped meanwhile
        sandbox = await Sandbox.get(name)
        try:
            details = await sandbox.info()
        finally:
            await sandbox.close()
    return details


@click.command()
@click.argument("name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the guest to shut down.",
)
def stop(name: str, timeout: float) -> int:
    """Shut the sandbox down cleanly and wait until it has stopped."""
    asyncio.run(_stop(name, timeout))
    print(name)
    return 0


async def _stop(name: str, timeout: float) -> None:
    sandbox = await Sandbox.get(name)
    try:
        await sandbox.stop_and_wait(timeout)
    except TimeoutError:
        raise Failure(
            f"sandbox {name!r} did not stop within {timeout:g}s; `corral kill {name}` forces it"
        ) from None
    finally:
        await sandbox.close()


@click.command()
@click.argument("name")
def kill(name: str) -> int:
    """Kill the sandbox's VM at once (no clean shutdown) and wait until it is gone."""
    asyncio.run(_kill(name))
    print(name)
    return 0


async def _kill(name: str) -> None:
    sandbox = await Sandbox.get(name)
    try:
        await sandbox.kill()
        await sandbox.wait()
    except TimeoutError as exc:
        raise Failure(f"sandbox {name!r} was killed but is not gone yet: {exc}") from None
    finally:
        await sandbox.close()


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running sandbox first.")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
def rm(force: bool, names: tuple[str, ...]) -> int:
    """Remove sandboxes (their record and files); each removed name is printed."""
    failed = False
    for name in names:
        try:
            remove(name, force=force)
        except CorralError as exc:
            report(str(exc))
            failed = True
        else:
            print(name)
    return 1 if failed else 0
