"""The commands that reach sandboxes in a Kubernetes cluster: `corral --kubeconfig FILE …`.

With `--kubeconfig` (or $CORRAL_KUBECONFIG), `exec`, `shell` and `cp` take a
`NAMESPACE/NAME` and go through `corral._cluster` to the sandbox's node agent; `ls` lists
the Sandbox resources. They share the embedded commands' options, streaming, exit codes
and error lines; the lifecycle commands (`run`, `stop`, `rm`, …) stay embedded-only,
since in a cluster the resource's lifecycle belongs to Kubernetes (`kubectl`).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from dataclasses import dataclass
from typing import Any

import click

from corral._cli.fs import CLUSTER_SPEC, parse_copy, run_copy
from corral._cli.manage import age, render_table
from corral._cli.options import TailCommand, process_options
from corral._cli.stream import attach
from corral._cluster import ClusterClient, ClusterSandbox

COLUMNS = ("NAMESPACE", "NAME", "PHASE", "NODE", "IMAGE", "AGE")


@dataclass(frozen=True)
class ClusterTarget:
    """The kubeconfig and context the group options chose."""

    kubeconfig: str
    context: str | None

    async def open(self, reference: str) -> ClusterSandbox:
        """Connect to the sandbox `NAMESPACE/NAME`."""
        namespace, name = parse_reference(reference)
        async with await self.client() as client:
            return await client.sandbox(namespace, name)

    async def client(self) -> ClusterClient:
        return await ClusterClient.from_kubeconfig(self.kubeconfig, self.context)


def parse_reference(reference: str) -> tuple[str, str]:
    namespace, slash, name = reference.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise click.BadParameter(f"{reference!r} is not NAMESPACE/NAME")
    return namespace, name


@click.command("exec", cls=TailCommand, example="corral --kubeconfig F exec NS/NAME -- uname -a")
@click.argument("sandbox", metavar="NAMESPACE/NAME")
@process_options
@click.pass_obj
def exec_(
    target: ClusterTarget,
    sandbox: str,
    interactive: bool,
    tty: bool,
    env: dict[str, str],
    workdir: str | None,
    user: str | None,
    timeout: float | None,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND in the cluster's sandbox NAMESPACE/NAME; exits with the command's code."""
    if not command:
        raise click.UsageError("no command given: corral exec NAMESPACE/NAME -- COMMAND...")
    parse_reference(sandbox)
    options = {"env": env, "cwd": workdir, "user": user, "timeout": timeout}
    return asyncio.run(_attach(target, sandbox, command, stdin=interactive, tty=tty, **options))


@click.command()
@click.argument("sandbox", metavar="NAMESPACE/NAME")
@click.option("--shell", "program", default="/bin/sh", show_default=True, help="Shell to run.")
@click.pass_obj
def shell(target: ClusterTarget, sandbox: str, program: str) -> int:
    """Open an interactive shell in the cluster's sandbox NAMESPACE/NAME."""
    parse_reference(sandbox)
    return asyncio.run(_attach(target, sandbox, (program,), stdin=True, tty=True))


async def _attach(
    target: ClusterTarget, reference: str, argv: tuple[str, ...], **options: Any
) -> int:
    async with await target.open(reference) as sandbox:
        return await attach(sandbox, argv, **options)


@click.command()
@click.argument("source", metavar="SRC")
@click.argument("target_path", metavar="DST")
@click.pass_obj
def cp(target: ClusterTarget, source: str, target_path: str) -> int:
    """Copy a file between the host and a cluster sandbox: one of SRC, DST is
    NAMESPACE/NAME:/path."""
    return run_copy(parse_copy(source, target_path, CLUSTER_SPEC), target.open)


@click.command()
@click.option("-n", "--namespace", metavar="NS", help="Namespace (default: the context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Sandboxes of every namespace.")
@click.option("--json", "as_json", is_flag=True, help="The resources as one JSON array.")
@click.pass_obj
def ls(target: ClusterTarget, namespace: str | None, all_namespaces: bool, as_json: bool) -> int:
    """List the cluster's Sandbox resources."""
    items = asyncio.run(_list(target, namespace, all_namespaces))
    if as_json:
        print(json.dumps(items, indent=2))
    else:
        now = datetime.datetime.now(datetime.UTC)
        print(render_table([COLUMNS, *(table_row(item, now) for item in items)]))
    return 0


async def _list(
    target: ClusterTarget, namespace: str | None, all_namespaces: bool
) -> list[dict[str, Any]]:
    async with await target.client() as client:
        return await client.sandboxes(None if all_namespaces else namespace or client.namespace)


def table_row(item: dict[str, Any], now: datetime.datetime) -> tuple[str, ...]:
    metadata, status = item.get("metadata", {}), item.get("status") or {}
    created = metadata.get("creationTimestamp")
    when = datetime.datetime.fromisoformat(created) if created else now
    return (
        metadata.get("namespace", ""),
        metadata.get("name", ""),
        status.get("phase") or "Pending",
        status.get("nodeName") or "-",
        str(item.get("spec", {}).get("image", "")),
        age((now - when).total_seconds()),
    )


COMMANDS = {command.name: command for command in (exec_, shell, cp, ls) if command.name}
"""The commands that have a cluster form, by name."""
