"""Starting and stopping a test server, on the running loop or in a thread; kubeconfig files.

Owns the lifecycle of one server: `KubeAPIServer` listens on 127.0.0.1 with an
ephemeral port (HTTPS, see `tls.py`), either on the caller's event loop (`async with`)
or on its own loop in a daemon thread (`with`, for synchronous callers such as
kubectl subprocesses, the `kubernetes` client or a kopf operator in another
thread). `stop()` is idempotent and ends every open watch. `write_kubeconfig`
writes a kubeconfig that kubectl and both Python clients accept: the server's
self-signed certificate as `certificate-authority-data` and a bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from types import TracebackType

import yaml
from aiohttp import web

from . import tls
from .app import Cluster, build
from .settings import ADMIN_TOKEN, RequestLog, Settings


class KubeAPIServer:
    """One in-memory API server; `url`, `log` and `cluster` are valid once started."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.log = RequestLog()
        self.url = ""
        self._cluster: Cluster | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state = "new"

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("the server is not started")
        return self._cluster

    async def start(self) -> None:
        """Listen on the running loop."""
        if self._state != "new":
            raise RuntimeError(f"cannot start a server that is {self._state}")
        self._state = "starting"
        app, self._cluster = build(self.settings, self.log)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handle_signals=False
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", 0, ssl_context=tls.certificate().server_context()
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
        self.url = f"https://127.0.0.1:{port}"
        self._cluster.address = f"127.0.0.1:{port}"
        self._loop = asyncio.get_running_loop()
        self._state = "running"

    async def stop(self) -> None:
        """Close every watch and the listener; stopping twice is fine."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        if self._cluster is not None:
            self._cluster.store.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> KubeAPIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- in a thread ------------------------------------------------------------------

    def start_in_thread(self) -> None:
        """Run the server on its own loop in a daemon thread; returns once it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="kubeapi-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> KubeAPIServer:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()


def write_kubeconfig(
    path: Path, url: str, token: str = ADMIN_TOKEN, namespace: str = "default"
) -> Path:
    """A kubeconfig with one context pointing at `url` with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "corral-test",
                "cluster": {
                    "server": url,
                    "certificate-authority-data": base64.b64encode(tls.certificate().pem).decode(),
                },
            }
        ],
        "users": [{"name": "corral-test", "user": {"token": token}}],
        "contexts": [
            {
                "name": "corral-test",
                "context": {
                    "cluster": "corral-test",
                    "user": "corral-test",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "corral-test",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
