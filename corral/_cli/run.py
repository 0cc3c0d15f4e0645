"""`corral run` (create a sandbox, run one command in it, remove it) and `corral exec`."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import click

from corral._cli.errors import creating
from corral._cli.images import ProgressBar
from corral._cli.options import TailCommand, process_options
from corral._cli.stream import attach
from corral._config import DEFAULT_IMAGE
from corral._sandbox import Sandbox, SandboxBuilder

PULL_POLICIES = {"always": "Always", "missing": "IfMissing", "never": "Never"}
"""`--pull` values (docker's names) and the SandboxConfig.pull_policy each means."""


@click.command(cls=TailCommand, example="corral run -- echo hello")
@click.argument("image", required=False, default=DEFAULT_IMAGE)
@click.option("--name", metavar="NAME", help="Sandbox name (default: run-<random hex>).")
@click.option("-d", "--detach", is_flag=True, help="Leave the sandbox running; print its name.")
@click.option("--cpus", type=int, help="Virtual CPUs.")
@click.option("--memory", type=int, metavar="MiB", help="Guest memory in MiB.")
@click.option("--disk", type=int, metavar="MiB", help="Root disk size in MiB.")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), help="Accelerator.")
@click.option(
    "--kernel",
    metavar="NAME|PATH",
    help="Guest kernel: a variant from `corral info` (e.g. debian-cloud) or a kernel image path.",
)
@click.option(
    "--pull",
    type=click.Choice(list(PULL_POLICIES)),
    help="When to ask the registry for IMAGE (default: missing, only if not stored).",
)
@process_options
def run(
    image: str,
    name: str | None,
    detach: bool,
    cpus: int | None,
    memory: int | None,
    disk: int | None,
    accel: str | None,
    kernel: str | None,
    pull: str | None,
    interactive: bool,
    tty: bool,
    env: dict[str, str],
    workdir: str | None,
    user: str | None,
    timeout: float | None,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND in a new sandbox made from IMAGE (default: `default`), then remove it.

    Exits with the command's exit code. Without a command, runs the sandbox's shell
    (with a terminal when ours is one). With --detach, creates the sandbox, prints its
    name and leaves it running for `corral exec`, `shell`, `stop` and `rm`.
    """
    builder = Sandbox.builder(name or f"run-{secrets.token_hex(4)}").image(image).env(env)
    if cpus is not None:
        builder.cpus(cpus)
    if memory is not None:
        builder.memory(memory)
    if disk is not None:
        builder.disk(disk)
    if workdir is not None:
        builder.workdir(workdir)
    if user is not None:
        builder.user(user)
    if accel is not None:
        builder.accel(accel)
    if kernel is not None:
        # A path is resolved here, against our working directory, not the supervisor's.
        builder.kernel(os.path.abspath(kernel) if "/" in kernel else kernel)
    if pull is not None:
        builder.pull_policy(PULL_POLICIES[pull])
    bar = ProgressBar.for_terminal(image)
    if bar is not None:
        builder.on_pull_progress(bar)
    if detach:
        given = {"a command": bool(command), "-i": interactive, "-t": tty, "--timeout": timeout}
        misplaced = [what for what, value in given.items() if value]
        if misplaced:
            raise click.UsageError(
                f"--detach runs no command, so it cannot take {', '.join(misplaced)}; "
                "start the sandbox, then use `corral exec NAME -- COMMAND`"
            )
        return asyncio.run(_detached(builder))
    if not command:
        return asyncio.run(_attached(builder, (), timeout, True, sys.stdin.isatty()))
    return asyncio.run(_attached(builder, command, timeout, interactive, tty))


async def _detached(builder: SandboxBuilder) -> int:
    with creating():
        sandbox = await builder.create_detached()
    await sandbox.close()
    print(sandbox.name)
    return 0


async def _attached(
    builder: SandboxBuilder, command: tuple[str, ...], timeout: float | None, stdin: bool, tty: bool
) -> int:
    with creating():
        sandbox = await builder.create()
    async with sandbox:
        return await attach(
            sandbox, command or sandbox.default_command, timeout=timeout, stdin=stdin, tty=tty
        )


@click.command("exec", cls=TailCommand, example="corral exec NAME -- uname -a")
@click.argument("name")
@process_options
def exec_(
    name: str,
    interactive: bool,
    tty: bool,
    env: dict[str, str],
    workdir: str | None,
    user: str | None,
    timeout: float | None,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND in the running sandbox NAME; exits with the command's exit code."""
    if not command:
        raise click.UsageError("no command given: corral exec NAME -- COMMAND...")
    return asyncio.run(
        _exec(name, command, env, workdir, user, timeout, stdin=interactive, tty=tty)
    )


async def _exec(
    name: str,
    command: tuple[str, ...],
    env: dict[str, str],
    workdir: str | None,
    user: str | None,
    timeout: float | None,
    *,
    stdin: bool,
    tty: bool,
) -> int:
    # Not `async with`: leaving it would remove a sandbox that another process owns.
    sandbox = await Sandbox.get(name)
    try:
        return await attach(
            sandbox, command, env=env, cwd=workdir, user=user, timeout=timeout, stdin=stdin, tty=tty
        )
    finally:
        await sandbox.close()
