"""The node agent's HTTPS API: exec and file access to this node's sandboxes.

`GET /v1/namespaces/{namespace}/sandboxes/{name}/connect` authenticates the caller's
bearer token and authorizes `create` on `sandboxes/exec` (`auth.py`), finds the sandbox
in the `SandboxDirectory`, upgrades to a WebSocket and relays bytes both ways between
it and the sandbox supervisor's unix socket: the caller speaks the ordinary Corral
protocol (docs/protocol.md), handshake included. The token stays here; the supervisor
and the VM never see it. `GET /healthz` needs no token. Refusals are Kubernetes
`Status` objects (docs/cluster-api.md). `main` starts and stops `AgentServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from kubernetes_asyncio.client import ApiClient

from corral._protocol import HEADER, MAX_PAYLOAD
from corral.api import GROUP
from corral.node_agent.daemon.auth import Authorizer, Refusal, Target
from corral.node_agent.daemon.directory import SandboxDirectory

CONNECT_PATH = "/v1/namespaces/{namespace}/sandboxes/{name}/connect"
MAX_MESSAGE = HEADER.size + MAX_PAYLOAD
"""Largest WebSocket message accepted: one protocol frame's worth. Larger closes (1009)."""
READ_CHUNK = 256 * 1024
"""Bytes read from the supervisor per WebSocket message sent to the caller."""
CONNECT_TIMEOUT = 10.0

log = logging.getLogger(__name__)


def status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Kubernetes `Status` (failure) object, which kubectl-style clients print well."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class AgentServer:
    """The HTTPS API server; one per node agent, started once and stopped once."""

    def __init__(self, directory: SandboxDirectory, api: ApiClient, node_name: str) -> None:
        self._directory = directory
        self._authorizer = Authorizer(api)
        self._node_name = node_name
        self._runner: web.AppRunner | None = None
        self._sessions: set[web.WebSocketResponse] = set()
        self._state = "new"

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext) -> int:
        """Listen on `host:port` (0: an ephemeral port); the bound port."""
        if self._state != "new":
            raise RuntimeError(f"cannot start an AgentServer that is {self._state}")
        self._state = "running"
        app = web.Application(middlewares=[_refusals])
        app.router.add_get("/healthz", _healthz)
        app.router.add_get(CONNECT_PATH, self._connect)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        return _bound_port(self._runner)

    async def stop(self) -> None:
        """Close the listener and every open session (1001, going away); idempotent."""
        self._state = "stopped"
        for session in list(self._sessions):
            await session.close(code=WSCloseCode.GOING_AWAY, message=b"node agent stopping")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        target = Target(request.match_info["namespace"], request.match_info["name"])
        identity = await self._authorizer.authorize(request.headers.get(hdrs.AUTHORIZATION), target)
        sandbox = self._directory.find(target.namespace, target.name)
        if sandbox is None:
            raise Refusal(
                404,
                "NotFound",
                f'sandbox "{target.namespace}/{target.name}" does not run on node '
                f'"{self._node_name}"',
            )
        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        if not socket.can_prepare(request).ok:
            raise Refusal(400, "BadRequest", "connect needs a WebSocket upgrade")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(sandbox.socket, limit=READ_CHUNK), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise Refusal(
                503, "ServiceUnavailable", f"the sandbox's supervisor does not answer: {exc}"
            ) from exc
        log.info("%s connected to %s/%s", identity.user, target.namespace, target.name)
        try:
            await socket.prepare(request)
            self._sessions.add(socket)
            await relay(socket, reader, writer)
        finally:
            self._sessions.discard(socket)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if socket.prepared:
                await socket.close()
        return socket


async def relay(
    socket: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy bytes both ways until either side ends; each write waits for the other side
    to drain, so a slow reader slows its writer instead of filling memory."""

    async def inbound() -> None:
        async for message in socket:
            if message.type is not WSMsgType.BINARY:
                await socket.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary only")
                return
            writer.write(message.data)
            await writer.drain()

    async def outbound() -> None:
        while data := await reader.read(READ_CHUNK):
            await socket.send_bytes(data)

    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(inbound(), name="agent-relay-inbound"),
        loop.create_task(outbound(), name="agent-relay-outbound"),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@web.middleware
async def _refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except Refusal as refusal:
        details = {"name": request.match_info.get("name", ""), "group": GROUP, "kind": "sandboxes"}
        return web.json_response(
            status(refusal.code, refusal.reason, refusal.message, details), status=refusal.code
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            status(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason),
            status=exc.status,
        )
    return response


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the API server is not listening")
