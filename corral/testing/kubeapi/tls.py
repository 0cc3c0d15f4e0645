"""The server's TLS certificate: self-signed for 127.0.0.1, made once per process by openssl.

TLS is needed because client-go (kubectl) only sends a kubeconfig's user
credentials to `https://` servers; over plain HTTP the bearer token is dropped.
The certificate doubles as its own CA, so kubeconfigs carry it as
`certificate-authority-data` and every client verifies the server normally.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    @property
    def pem(self) -> bytes:
        return self.cert.read_bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@lru_cache(maxsize=1)
def certificate() -> Certificate:
    """A self-signed EC certificate for 127.0.0.1/localhost, valid ten years."""
    directory = Path(tempfile.mkdtemp(prefix="kubeapi-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=kubeapi-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)
