"""The OCI distribution client: manifests and blobs over HTTP(S), with auth.

One `Registry` per pull, owning an aiohttp session. Requests carry the OCI and Docker
v2 Accept types. A 401 is answered by following its `WWW-Authenticate` challenge once:
`Basic` sends the configured credentials, `Bearer` fetches a token from the realm (with
the credentials, if any) for the repository's pull scope. Plain HTTP is used only for
registries configured as insecure; a registry's own CA file replaces the system's.
Everything a registry sends is bounded: manifests and token responses by size, blobs by
the size their descriptor announced (the blob store checks the digest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import aiohttp

from corral._errors import ImageError
from corral.node_agent.images import manifest
from corral.node_agent.images.blobs import Sink
from corral.node_agent.images.manifest import Descriptor
from corral.node_agent.images.reference import Reference
from corral.node_agent.images.settings import RegistrySettings

ACCEPT = ", ".join((*manifest.MANIFEST_TYPES, *manifest.INDEX_TYPES))
MAX_TOKEN_BYTES = 1 << 20
MAX_ERROR_BYTES = 512
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]
"""Called as (layer digest, bytes received so far, total bytes)."""

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Registry:
    """An async context manager; tokens are cached per registry and repository."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._auth: dict[tuple[str, str], str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def __aenter__(self) -> Registry:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, reference: Reference, kind: str, locator: str) -> str:
        scheme = "http" if self.settings.host(reference.registry).insecure else "https"
        return f"{scheme}://{reference.api_host}/v2/{reference.repository}/{kind}/{locator}"

    def _ssl(self, registry: str) -> ssl.SSLContext | bool:
        ca_file = self.settings.host(registry).ca_file
        if ca_file is None:
            return True
        if registry not in self._contexts:
            try:
                self._contexts[registry] = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                problem = f"cannot load CA file {ca_file}: {exc}"
                raise ImageError(f"registry {registry}: {problem}") from None
        return self._contexts[registry]

    async def manifest(self, reference: Reference, locator: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of the manifest or index at `locator`."""
        url = self._url(reference, "manifests", locator)
        async with self._get(reference, url, ACCEPT) as response:
            data = await _read_bounded(response, manifest.MAX_MANIFEST_BYTES, url)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if locator.startswith("sha256:") and digest != locator:
            raise ImageError(f"{url}: the registry sent a manifest with digest {digest}")
        if media_type not in (*manifest.MANIFEST_TYPES, *manifest.INDEX_TYPES):
            media_type = ""  # e.g. application/json: the document's own mediaType decides
        return data, media_type, digest

    async def blob(
        self,
        reference: Reference,
        descriptor: Descriptor,
        sink: Sink,
        progress: Progress | None = None,
    ) -> None:
        """Stream a blob's bytes into `sink` (which bounds them by the descriptor's size),
        asking only for the bytes after `sink.offset` when it already holds some."""
        url = self._url(reference, "blobs", descriptor.digest)
        ranged = f"bytes={sink.offset}-" if sink.offset else ""
        async with self._get(reference, url, "*/*", ranged) as response:
            if response.status == 200 and sink.offset:
                sink.restart()  # the registry ignored the Range: take the whole blob
            elif response.status == 206:
                _check_range(response, sink.offset, descriptor, url)
            try:
                async for chunk in response.content.iter_chunked(CHUNK):
                    sink.write(chunk)
                    if progress is not None:
                        progress(descriptor.digest, sink.received, descriptor.size)
            except (aiohttp.ClientError, OSError) as exc:
                raise ImageError(
                    f"registry {reference.registry}: the download of {descriptor.digest} "
                    f"broke off after {sink.received} of {descriptor.size} bytes "
                    f"({type(exc).__name__}: {exc}); the next pull resumes from there"
                ) from None

    @asynccontextmanager
    async def _get(
        self, reference: Reference, url: str, accept: str, ranged: str = ""
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        assert self._session is not None, "Registry is used outside `async with`"
        key = (reference.registry, reference.repository)
        for attempt in range(2):
            headers = {"Accept": accept, **({"Range": ranged} if ranged else {})}
            if key in self._auth:
                headers["Authorization"] = self._auth[key]
            try:
                response = await self._session.get(
                    url, headers=headers, ssl=self._ssl(reference.registry)
                )
            except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
                raise ImageError(f"cannot reach registry {reference.registry}: {exc}") from None
            if response.status == 401 and attempt == 0:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                self._auth[key] = await self._authorize(reference, challenge)
                continue
            break
        try:
            await _check(response, reference, url, key in self._auth, partial=bool(ranged))
            yield response
        finally:
            response.release()

    async def _authorize(self, reference: Reference, challenge: str) -> str:
        """The Authorization header that answers `challenge`."""
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        credentials = self.settings.credentials.get(reference.registry)
        if scheme.lower() == "bearer" and credentials is not None and credentials.token:
            return "Bearer " + credentials.token
        basic = None
        if credentials is not None and credentials.username:
            pair = f"{credentials.username}:{credentials.password}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
        if scheme.lower() == "basic":
            if basic is None:
                raise ImageError(
                    f"registry {reference.registry} requires a login and no credentials "
                    "are configured for it (docker config auths)"
                )
            return basic
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise ImageError(
                f"registry {reference.registry}: unsupported auth challenge {challenge!r:.200}"
            )
        return "Bearer " + await self._token(reference, params, basic)

    async def _token(self, reference: Reference, params: dict[str, str], basic: str | None) -> str:
        """A token from the challenge's realm: a GET (with Basic credentials, if any), or
        with an identity token the OAuth2 refresh-token grant, a POST."""
        realm = params["realm"]
        insecure = self.settings.host(reference.registry).insecure
        if not realm.startswith("https://") and not (insecure and realm.startswith("http://")):
            raise ImageError(f"registry {reference.registry}: token realm {realm!r} is not https")
        query = {"scope": params.get("scope", f"repository:{reference.repository}:pull")}
        if "service" in params:
            query["service"] = params["service"]
        credentials = self.settings.credentials.get(reference.registry)
        identity = credentials.identity_token if credentials is not None else ""
        assert self._session is not None
        try:
            headers = {"Authorization": basic} if basic else {}
            grant = {"grant_type": "refresh_token", "refresh_token": identity, **query}
            async with self._session.request(
                "POST" if identity else "GET",
                realm,
                params=None if identity else query,
                data={**grant, "client_id": "corral"} if identity else None,
                headers=headers,
                ssl=self._ssl(reference.registry),
            ) as response:
                if response.status in (401, 403):
                    raise ImageError(
                        f"registry {reference.registry}: authentication failed at {realm} "
                        f"(HTTP {response.status}): check the credentials"
                    )
                if response.status != 200:
                    raise ImageError(f"token endpoint {realm} answered HTTP {response.status}")
                body = await _read_bounded(response, MAX_TOKEN_BYTES, realm)
        except aiohttp.ClientError as exc:
            raise ImageError(f"cannot reach token endpoint {realm}: {exc}") from None
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ImageError(f"token endpoint {realm} sent no token")
        return token


async def _check(
    response: aiohttp.ClientResponse,
    reference: Reference,
    url: str,
    authorized: bool,
    partial: bool = False,
) -> None:
    if response.status == 200 or (partial and response.status == 206):
        return
    detail = (await response.content.read(MAX_ERROR_BYTES)).decode(errors="replace").strip()
    if response.status == 401:
        problem = "rejected the credentials" if authorized else "requires authentication"
        raise ImageError(f"registry {reference.registry} {problem} for {reference}: {detail}")
    if response.status == 403:
        raise ImageError(f"registry {reference.registry} denied access to {reference}: {detail}")
    if response.status == 404:
        raise ImageError(f"{reference}: not found on registry {reference.registry} ({url})")
    raise ImageError(f"{url}: HTTP {response.status}: {detail}")


def _check_range(
    response: aiohttp.ClientResponse, offset: int, descriptor: Descriptor, url: str
) -> None:
    """A 206 must hold the rest of the blob, from `offset` on."""
    wanted = f"bytes {offset}-{descriptor.size - 1}/"
    content_range = response.headers.get("Content-Range", "")
    if not content_range.startswith(wanted):
        raise ImageError(f"{url}: asked for bytes {offset}- and got range {content_range!r:.80}")


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    if (response.content_length or 0) > limit:
        raise ImageError(f"{url}: {response.content_length} bytes, more than {limit} allowed")
    data = bytearray()
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > limit:
                raise ImageError(f"{url}: more than {limit} bytes")
    except (aiohttp.ClientError, OSError) as exc:
        raise ImageError(f"{url}: the response broke off ({type(exc).__name__}: {exc})") from None
    return bytes(data)
