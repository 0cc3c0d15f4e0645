"""Test helper: a loopback HTTP proxy in front of a registry that drops the `Range`
header of every request, i.e. a registry that always answers 200 with the whole blob.
It records the Range headers clients sent. A stdlib server in a thread."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

PASSED_HEADERS = ("Content-Type", "Content-Length", "Docker-Content-Digest")


@dataclass
class RangeDroppingProxy:
    host: str
    ranges: list[str] = field(default_factory=list)
    """The Range header of each request that had one, in order."""


@contextlib.contextmanager
def run_range_dropping_proxy(upstream: str) -> Iterator[RangeDroppingProxy]:
    """A proxy to the plain-HTTP registry at `upstream` ("host:port")."""
    proxy = RangeDroppingProxy("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "Range" in self.headers:
                proxy.ranges.append(self.headers["Range"])
            accept = self.headers.get("Accept", "*/*")
            request = urllib.request.Request(f"http://{upstream}{self.path}")
            request.add_header("Accept", accept)
            try:
                response = urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as error:
                response = error
            with response:
                self.send_response(response.status)
                for name in PASSED_HEADERS:
                    if response.headers.get(name):
                        self.send_header(name, response.headers[name])
                self.end_headers()
                while chunk := response.read(1 << 20):
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
