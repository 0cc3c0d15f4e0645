"""`corral shell NAME`: an interactive shell on a PTY in a running sandbox.

The local terminal goes raw for the session (restored after), keystrokes go to the
guest as typed, window resizes follow. Without a local terminal it still works at
24x80, so pexpect or tmux can drive it.
"""

from __future__ import annotations

import asyncio

import click

from corral._cli.stream import attach
from corral._sandbox import Sandbox


@click.command()
@click.argument("name")
@click.option("--shell", "program", default="/bin/sh", show_default=True, help="Shell to run.")
def shell(name: str, program: str) -> int:
    """Open an interactive shell in the running sandbox NAME; exits with the shell's code."""
    return asyncio.run(_shell(name, program))


async def _shell(name: str, program: str) -> int:
    sandbox = await Sandbox.get(name)
    try:
        return await attach(sandbox, [program], stdin=True, tty=True)
    finally:
        await sandbox.close()
