"""Argument handling shared by the commands that run a guest command (`run`, `exec`).

click drops `--`, so `corral run -- echo hi` would make `echo` the image. `TailCommand`
cuts the raw arguments at the first `--` before click sees them: what follows is the
guest command, verbatim (`corral exec w -- grep -- -v f` keeps the second `--`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class TailCommand(click.Command):
    """A command whose arguments after the first `--` arrive as the `command` parameter."""

    def __init__(self, *args: Any, example: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example = example

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head, tail = split_command(args)
        ctx.allow_extra_args = True
        rest = super().parse_args(ctx, head)
        if rest and not ctx.resilient_parsing:
            ctx.fail(
                f"unexpected argument {rest[0]!r}: put the command after '--', e.g. {self.example}"
            )
        ctx.params["command"] = tuple(tail)
        return rest

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND...]"]


def split_command(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the guest command) around the first `--`."""
    if "--" not in args:
        return list(args), []
    cut = list(args).index("--")
    return list(args[:cut]), list(args[cut + 1 :])


def parse_env(
    ctx: click.Context | None, param: click.Parameter | None, values: Sequence[str]
) -> dict[str, str]:
    """`-e KEY=VALUE` options as a mapping; later values win, like a shell's `export`."""
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx, param)
        env[key] = value
    return env


def process_options(function: F) -> F:
    """The options that shape the guest process, common to `run` and `exec`."""
    decorators = [
        click.option("-i", "--interactive", is_flag=True, help="Forward our stdin to the command."),
        click.option("-t", "--tty", is_flag=True, help="Give the command a terminal (PTY)."),
        click.option(
            "-e",
            "--env",
            multiple=True,
            callback=parse_env,
            metavar="KEY=VALUE",
            help="Set an environment variable (repeatable).",
        ),
        click.option("-w", "--workdir", metavar="DIR", help="Working directory in the guest."),
        click.option("-u", "--user", metavar="USER", help="User: name, uid or uid:gid."),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="Kill the command after this long (exit code 124).",
        ),
    ]
    for decorate in reversed(decorators):
        function = decorate(function)
    return function
