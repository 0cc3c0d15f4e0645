"""The `corral` command line, a thin client of the async SDK (one `asyncio.run` per command).

Each module owns one group of commands; this one assembles them and turns every
failure into one `corral: error: …` line and an exit code (see `errors`). With
`--kubeconfig`, the commands that have a cluster form come from `cluster` instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from corral._cli import errors, fs, images, info, manage, run, shell
from corral._errors import CorralError


class CorralGroup(click.Group):
    """Resolves `exec`, `shell`, `cp` and `ls` to their cluster form under --kubeconfig."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if not ctx.params.get("kubeconfig"):
            return super().get_command(ctx, cmd_name)
        from corral._cli import cluster  # the Kubernetes client loads only when used

        command = cluster.COMMANDS.get(cmd_name)
        if command is None and cmd_name in self.commands:
            raise click.UsageError(
                f"`corral {cmd_name}` works on this machine's sandboxes only, not with "
                "--kubeconfig; in a cluster, manage Sandbox resources with kubectl"
            )
        return command


@click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="corral", prog_name="corral")
@click.option(
    "--kubeconfig",
    envvar="CORRAL_KUBECONFIG",
    metavar="FILE",
    help="Reach sandboxes in a Kubernetes cluster (exec, shell, cp, ls take NAMESPACE/NAME).",
)
@click.option("--context", metavar="NAME", help="The kubeconfig context (default: current).")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: str | None, context: str | None) -> None:
    """Run untrusted code in microVM sandboxes."""
    if context is not None and kubeconfig is None:
        raise click.UsageError("--context needs --kubeconfig")
    if kubeconfig is not None:
        from corral._cli.cluster import ClusterTarget

        ctx.obj = ClusterTarget(kubeconfig, context)


for command in (
    run.run,
    run.exec_,
    shell.shell,
    fs.cp,
    manage.ls,
    manage.inspect,
    manage.stop,
    manage.kill,
    manage.rm,
    info.info,
    images.pull,
    images.image,
):
    cli.add_command(command)


def run_cli(argv: Sequence[str]) -> int:
    """Run the command line `corral ARGV...`; the exit code."""
    try:
        result = cli.main(list(argv), prog_name="corral", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return errors.USAGE
    except click.UsageError as exc:
        if exc.ctx is not None:
            print(exc.ctx.get_usage(), file=sys.stderr)
            print(f"Try '{exc.ctx.command_path} --help' for help.", file=sys.stderr)
        errors.report(exc.format_message())
        return errors.USAGE
    except click.ClickException as exc:
        errors.report(exc.format_message())
        return exc.exit_code
    except errors.Failure as exc:
        errors.report(str(exc))
        return exc.code
    except CorralError as exc:
        errors.report(str(exc))
        return errors.exit_code(exc)
    except TimeoutError as exc:  # the SDK's waits for a sandbox to reach a final status
        errors.report(str(exc))
        return errors.GENERAL
    except (click.Abort, KeyboardInterrupt):
        return errors.INTERRUPTED
    except BrokenPipeError:
        # Our reader went away (`corral run -- yes | head`): stop quietly, like a shell
        # command killed by SIGPIPE, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    sys.exit(run_cli(sys.argv[1:]))
