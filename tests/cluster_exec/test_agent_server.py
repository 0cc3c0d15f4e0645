"""Exec through the node agent's HTTPS API against a real VM: the SDK and the CLI over
the cluster path, auth refusals (401/403/404) as Status objects, and hostile input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pexpect
import pytest

from cluster_exec.conftest import ALICE_TOKEN, BOB_TOKEN, Cluster
from corral import (
    ChannelError,
    ClusterClient,
    ClusterSandbox,
    Exited,
    Forbidden,
    SandboxNotFound,
    SandboxNotRunning,
    Stdout,
    Unauthorized,
)
from corral._cluster import pinned_context
from corral.node_agent.daemon.server import MAX_MESSAGE

pytestmark = pytest.mark.vm
CORRAL = str(Path(sys.executable).with_name("corral"))


async def connect(cluster: Cluster, user: str = "alice", name: str = "sb") -> ClusterSandbox:
    async with await ClusterClient.from_kubeconfig(str(cluster.kubeconfig(user))) as client:
        return await client.sandbox("default", name)


async def agent_get(cluster: Cluster, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            cluster.endpoint + path, headers=headers, ssl=pinned_context(cluster.ca)
        ) as response,
    ):
        body = await response.text()
        return response.status, json.loads(body) if body.startswith("{") else body


CONNECT = "/v1/namespaces/default/sandboxes/sb/connect"


async def test_exec_and_files_through_the_agent(cluster: Cluster) -> None:
    async with await connect(cluster) as sandbox:
        assert sandbox.node == "node-1" and sandbox.boot_id
        result = await sandbox.exec("sh", ["-c", "echo hi; echo oops >&2; exit 3"])
        assert (result.stdout, result.stderr, result.exit_code) == (b"hi\n", b"oops\n", 3)
        payload = bytes(range(256)) * 4096
        assert await sandbox.fs.write("/tmp/cluster.bin", payload) == len(payload)
        assert await sandbox.fs.read("/tmp/cluster.bin") == payload
        shell = await sandbox.shell("cat", stdin=b"piped")
        assert shell.stdout == b"piped"


async def test_a_pty_through_the_agent(cluster: Cluster) -> None:
    async with await connect(cluster) as sandbox:
        output = b""
        async with sandbox.exec_stream("sh", ["-c", "tty; stty size"], tty=(33, 101)) as process:
            async for event in process:
                if isinstance(event, Stdout):
                    output += event.data
                elif isinstance(event, Exited):
                    assert event.exit_code == 0
        assert b"/dev/pts/" in output and b"33 101" in output


async def test_the_token_never_reaches_the_guest(cluster: Cluster) -> None:
    async with await connect(cluster) as sandbox:
        environment = (await sandbox.exec("env")).stdout
        processes = (await sandbox.shell("cat /proc/*/environ /proc/*/cmdline 2>/dev/null")).stdout
    assert environment
    assert ALICE_TOKEN.encode() not in environment + processes


async def test_the_cli_execs_and_copies_through_the_cluster(
    cluster: Cluster, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("from the host\n")

    async def corral(*args: str) -> tuple[int, bytes, bytes]:
        env = {**os.environ, "CORRAL_KUBECONFIG": str(cluster.kubeconfig("alice"))}
        process = await asyncio.create_subprocess_exec(
            CORRAL,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out, err

    code, out, _ = await corral("exec", "default/sb", "--", "sh", "-c", "echo cli; exit 5")
    assert (code, out) == (5, b"cli\n")
    assert (await corral("cp", str(source), "default/sb:/tmp/in.txt"))[0] == 0
    assert (await corral("cp", "default/sb:/tmp/in.txt", str(tmp_path / "out.txt")))[0] == 0
    assert (tmp_path / "out.txt").read_text() == "from the host\n"
    code, out, _ = await corral("ls")
    assert code == 0 and b"sb" in out and b"node-1" in out
    code, _, err = await corral("exec", "default/missing", "--", "true")
    assert code == 1 and err.startswith(b"corral: error: no sandbox named 'default/missing'")
    code, _, err = await corral("stop", "default/sb")
    assert code == 2 and b"works on this machine's sandboxes only" in err


async def test_health_needs_no_token(cluster: Cluster) -> None:
    assert await agent_get(cluster, "/healthz", None) == (200, "ok")


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_no_or_unknown_token_is_401(cluster: Cluster, token: str | None) -> None:
    code, status = await agent_get(cluster, CONNECT, token)
    assert code == 401
    assert (
        status["kind"] == "Status" and status["code"] == 401 and status["reason"] == "Unauthorized"
    )


async def test_a_user_without_sandboxes_exec_is_403(cluster: Cluster) -> None:
    code, status = await agent_get(cluster, CONNECT, BOB_TOKEN)
    assert (code, status["reason"]) == (403, "Forbidden")
    assert status["message"].startswith(
        'sandboxes.corral.dev "sb" is forbidden: User "bob" cannot create resource '
        '"sandboxes/exec" in API group "corral.dev" in the namespace "default"'
    )
    with pytest.raises(Forbidden, match='User "bob" cannot create resource "sandboxes/exec"'):
        await connect(cluster, "bob")


async def test_a_bad_kubeconfig_token_is_unauthorized(cluster: Cluster) -> None:
    with pytest.raises(Unauthorized):
        await connect(cluster, "nobody")


async def test_a_sandbox_not_on_this_node_is_404(cluster: Cluster) -> None:
    code, status = await agent_get(
        cluster, "/v1/namespaces/default/sandboxes/elsewhere/connect", ALICE_TOKEN
    )
    assert (code, status["reason"]) == (404, "NotFound")
    assert status["message"] == 'sandbox "default/elsewhere" does not run on node "node-1"'
    with pytest.raises(SandboxNotRunning, match="node agent of 'node-1' does not run it"):
        await connect(cluster, name="elsewhere")
    with pytest.raises(SandboxNotFound, match="default/nope"):
        await connect(cluster, name="nope")


async def test_a_plain_request_that_passes_the_checks_is_400(cluster: Cluster) -> None:
    code, status = await agent_get(cluster, CONNECT, ALICE_TOKEN)
    assert (code, status["reason"]) == (400, "BadRequest")


@contextlib.asynccontextmanager
async def raw_connection(cluster: Cluster) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """Alice's WebSocket to the agent's connect endpoint, without the SDK's framing."""
    async with aiohttp.ClientSession() as session:
        yield await session.ws_connect(
            cluster.endpoint + CONNECT,
            headers={"Authorization": f"Bearer {ALICE_TOKEN}"},
            ssl=pinned_context(cluster.ca),
        )


async def test_an_oversized_message_closes_only_that_connection(cluster: Cluster) -> None:
    async with raw_connection(cluster) as socket:
        await socket.send_bytes(b"\0" * (MAX_MESSAGE + 1))
        ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        while (await socket.receive()).type not in ends:
            pass
        # aiohttp drops the transport at once (1006) rather than completing a 1009 close.
        assert socket.closed
        assert socket.close_code in (
            aiohttp.WSCloseCode.MESSAGE_TOO_BIG,
            aiohttp.WSCloseCode.ABNORMAL_CLOSURE,
        )
    async with await connect(cluster) as sandbox:
        assert (await sandbox.exec("echo", ["still here"])).stdout == b"still here\n"


async def test_a_text_message_closes_the_connection(cluster: Cluster) -> None:
    async with raw_connection(cluster) as socket:
        await socket.send_str("HELLO")
        message = await socket.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert socket.close_code == aiohttp.WSCloseCode.UNSUPPORTED_DATA


async def test_the_agent_is_pinned_to_the_published_certificate(cluster: Cluster) -> None:
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await agent_get_with(cluster, ssl.create_default_context())


async def agent_get_with(cluster: Cluster, context: ssl.SSLContext) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(cluster.endpoint + "/healthz", ssl=context),
    ):
        pass


async def test_the_cli_shell_gets_a_terminal_through_the_cluster(cluster: Cluster) -> None:
    def session() -> int | None:
        env = {**os.environ, "CORRAL_KUBECONFIG": str(cluster.kubeconfig("alice"))}
        shell = pexpect.spawn(
            CORRAL, ["shell", "default/sb"], env=env, timeout=30, dimensions=(30, 100)
        )
        shell.sendline("stty size; echo $((6*7)); tty")
        shell.expect("30 100")
        shell.expect("42")
        shell.expect("/dev/pts/")
        shell.sendline("exit 4")
        shell.expect(pexpect.EOF)
        shell.close()
        status: int | None = shell.exitstatus
        return status

    assert await asyncio.to_thread(session) == 4


async def test_stopping_the_agent_ends_open_sessions(cluster: Cluster) -> None:
    sandbox = await connect(cluster)
    await asyncio.wait_for(cluster.server.stop(), 5)
    with pytest.raises(ChannelError):
        await sandbox.exec("true")
    await sandbox.close()
