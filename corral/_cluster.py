"""Exec, shell and file access to a Sandbox resource in a Kubernetes cluster.

`ClusterClient` reads the Sandbox through the Kubernetes API (with the kubeconfig's
credentials), finds the node it runs on (`status.nodeName`) and that node's agent
through its Lease (`corral.dev/endpoint`, `corral.dev/ca`), then opens a WebSocket to
the agent's HTTPS API with the caller's bearer token, pinning the certificate the Lease
published. The agent relays the WebSocket to the sandbox's supervisor, so the
`ClusterSandbox` it returns speaks the ordinary protocol over it and offers the same
exec / exec_stream / shell / fs API as the embedded `Sandbox` (docs/cluster-api.md).
Kubernetes refusals become `Unauthorized`, `Forbidden`, `SandboxNotFound` or
`SandboxNotRunning`.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from corral._connection import Connection
from corral._errors import (
    ChannelError,
    CorralError,
    Forbidden,
    InvalidConfig,
    SandboxNotFound,
    SandboxNotRunning,
    Unauthorized,
)
from corral._protocol import HEADER, MAX_PAYLOAD
from corral._sandbox import SandboxHandle
from corral.api import CA_ANNOTATION, ENDPOINT_ANNOTATION, GROUP, SYSTEM_NAMESPACE, VERSION

CONNECT_PATH = "/v1/namespaces/{namespace}/sandboxes/{name}/connect"
MAX_MESSAGE = HEADER.size + MAX_PAYLOAD
"""Largest WebSocket message either side sends: one protocol frame's worth."""


class WebSocketTransport:
    """The protocol's byte stream over a WebSocket to a node agent (binary messages)."""

    def __init__(
        self, socket: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession
    ) -> None:
        self._socket = socket
        self._session = session

    async def read(self) -> bytes:
        message = await self._socket.receive()
        if message.type is aiohttp.WSMsgType.BINARY:
            data: bytes = message.data
            return data
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
        ):
            return b""
        if message.type is aiohttp.WSMsgType.ERROR:
            raise ChannelError(f"the node agent's WebSocket broke: {message.data}")
        raise ChannelError(f"the node agent sent a {message.type.name} message, not binary")

    async def write(self, *parts: bytes | memoryview) -> None:
        try:
            await self._socket.send_bytes(b"".join(parts))
        except aiohttp.ClientError as exc:
            raise ChannelError(f"the node agent's WebSocket broke: {exc}") from exc

    async def close(self) -> None:
        try:
            await self._socket.close()
        finally:
            await self._session.close()


class ClusterSandbox(SandboxHandle):
    """A connection to one Sandbox resource's VM, through its node agent.

    `async with` only disconnects: the resource's lifecycle belongs to Kubernetes."""

    def __init__(self, connection: Connection, namespace: str, name: str, node: str) -> None:
        super().__init__(connection)
        self.namespace = namespace
        self.name = name
        self.node = node

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class ClusterClient:
    """Kubernetes API access with one kubeconfig context; hands out `ClusterSandbox`es."""

    def __init__(self, api: k8s.ApiClient, namespace: str = "default") -> None:
        self._api = api
        self.namespace = namespace
        """The context's namespace, for callers that were given none."""

    @classmethod
    async def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None
    ) -> ClusterClient:
        """A client for `context` (default: the current one) of the kubeconfig at `path`
        (default: $KUBECONFIG, then ~/.kube/config)."""
        files = _kubeconfig_files(path)
        configuration = k8s.Configuration()
        try:
            loader = await k8s_config.load_kube_config(
                config_file=files,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError) as exc:
            raise InvalidConfig("kubeconfig", files, str(exc)) from exc
        namespace = (loader.current_context or {}).get("context", {}).get("namespace") or "default"
        return cls(k8s.ApiClient(configuration), namespace)

    async def sandbox(self, namespace: str, name: str, timeout: float = 10.0) -> ClusterSandbox:
        """Connect to the running VM of Sandbox `namespace/name`."""
        reference = f"{namespace}/{name}"
        resource = await self._read(
            reference,
            k8s.CustomObjectsApi(self._api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, "sandboxes", name
            ),
        )
        status = resource.get("status") or {}
        phase = status.get("phase") or "Pending"
        node = status.get("nodeName")
        if not node:
            raise SandboxNotRunning(reference, phase, "not placed on a node yet")
        endpoint, ca = await self._agent(reference, phase, node)
        url = endpoint.rstrip("/") + CONNECT_PATH.format(
            namespace=quote(namespace, safe=""), name=quote(name, safe="")
        )
        try:
            async with asyncio.timeout(timeout):
                connection = await Connection.over(await self._open(url, ca), timeout)
        except TimeoutError as exc:
            raise ChannelError(
                f"the node agent at {endpoint} did not answer in {timeout:g}s"
            ) from exc
        except _Refused as exc:
            if exc.code == 404:
                raise SandboxNotRunning(
                    reference, phase, f"the node agent of {node!r} does not run it"
                ) from None
            raise _refusal(exc.code, exc.message) from None
        return ClusterSandbox(connection, namespace, name, node)

    async def sandboxes(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The Sandbox resources of `namespace` (None: every namespace), as the API has them."""
        api = k8s.CustomObjectsApi(self._api)
        if namespace is None:
            listing = api.list_cluster_custom_object(GROUP, VERSION, "sandboxes")
        else:
            listing = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "sandboxes")
        items: list[dict[str, Any]] = (await self._read(namespace or "*", listing))["items"]
        return items

    async def _agent(self, reference: str, phase: str, node: str) -> tuple[str, str]:
        """The endpoint and certificate the node's agent published on its Lease."""
        try:
            lease = await k8s.CoordinationV1Api(self._api).read_namespaced_lease(
                node, SYSTEM_NAMESPACE
            )
        except ApiException as exc:
            if exc.status == 404:
                raise SandboxNotRunning(
                    reference, phase, f"node {node!r} has no node agent"
                ) from None
            raise _refusal(exc.status, _message(exc.body, str(exc.reason))) from None
        annotations = lease.metadata.annotations or {}
        endpoint, ca = annotations.get(ENDPOINT_ANNOTATION), annotations.get(CA_ANNOTATION)
        if not endpoint or not ca or urlsplit(endpoint).scheme != "https":
            raise SandboxNotRunning(
                reference,
                phase,
                f"the node agent of {node!r} publishes no HTTPS endpoint and certificate "
                f"({ENDPOINT_ANNOTATION}, {CA_ANNOTATION})",
            )
        return endpoint, ca

    async def _open(self, url: str, ca: str) -> WebSocketTransport:
        token = await self._api.configuration.get_api_key_with_prefix("BearerToken")
        if not token:
            raise Unauthorized(
                "the kubeconfig's user has no bearer token, which node agents require"
            )
        try:
            context = pinned_context(ca)
        except ssl.SSLError as exc:
            raise ChannelError(
                f"the node agent's published certificate is unusable: {exc}"
            ) from exc
        session = aiohttp.ClientSession(middlewares=(_status_errors,))
        try:
            socket = await session.ws_connect(
                url,
                headers={"Authorization": token},
                ssl=context,
                max_msg_size=MAX_MESSAGE,
                autoping=True,
            )
        except BaseException as exc:
            await session.close()
            if isinstance(exc, aiohttp.ClientError):
                raise ChannelError(f"cannot reach the node agent at {url}: {exc}") from exc
            raise
        return WebSocketTransport(socket, session)

    @staticmethod
    async def _read(reference: str, call: Awaitable[Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await call
        except ApiException as exc:
            if exc.status == 404:
                raise SandboxNotFound(reference) from None
            raise _refusal(exc.status, _message(exc.body, str(exc.reason))) from None
        return result

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _kubeconfig_files(path: str | None) -> str:
    """The kubeconfig file(s) to load, like kubectl: `path`, else $KUBECONFIG (a list
    separated by os.pathsep), else ~/.kube/config; at least one must exist."""
    files = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not any(Path(part).expanduser().is_file() for part in files.split(os.pathsep)):
        raise InvalidConfig("kubeconfig", files, "no such file")
    return files


def pinned_context(ca_pem: str) -> ssl.SSLContext:
    """Trust exactly the certificate the agent published. Its name is still checked: the
    agent's certificate names the addresses it serves on (IP SANs for an IP endpoint)."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _status_errors(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Turn the agent's refusal (a Kubernetes Status body) into a typed error before
    aiohttp's WebSocket handshake check drops the body."""
    response = await handler(request)
    if response.status >= 400:
        body = await response.read()
        response.release()
        raise _Refused(response.status, _message(body, response.reason or ""))
    return response


class _Refused(Exception):
    """The node agent answered the connect request with an error status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refusal(code: int | None, message: str) -> CorralError:
    if code == 401:
        return Unauthorized(f"{message}: the cluster did not accept the kubeconfig's credentials")
    if code == 403:
        return Forbidden(message)
    return ChannelError(f"the cluster refused the request ({code}): {message}")


def _message(body: bytes | str | None, fallback: str) -> str:
    """The `message` of a Kubernetes Status body, or `fallback`."""
    try:
        decoded = json.loads(body or b"")
    except ValueError:
        return fallback
    message = decoded.get("message") if isinstance(decoded, dict) else None
    return str(message) if message else fallback
