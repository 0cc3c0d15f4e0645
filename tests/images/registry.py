"""Test helper: a real registry on loopback (Debian's `docker-registry`), over plain HTTP
or over TLS (a test CA made with openssl) with htpasswd basic auth. Images are pushed to
it with skopeo from OCI layouts the tests build (oci_layout.py)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dependencies

from corral._images import RegistryAuth
from corral.node_agent.images.settings import RegistryHost, RegistrySettings

USER, PASSWORD = "corral", "s3cret-pw"
TOOLS = ("docker-registry", "skopeo", "htpasswd", "openssl")


@dataclass
class RegistryServer:
    host: str
    storage: Path
    settings: RegistrySettings
    """What the client needs: insecure or the CA, and the credentials."""
    skopeo_flags: tuple[str, ...]
    directory: Path
    context: ssl.SSLContext | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Serve (again) from `directory`/config.yml, on the same port and storage."""
        with (self.directory / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.directory / "config.yml")],
                stdout=log,
                stderr=log,
            )
        scheme = "http" if self.context is None else "https"
        _wait_ready(f"{scheme}://{self.host}/v2/", self.context, self.process)

    def stop(self, abrupt: bool = False) -> None:
        """Stop serving; `abrupt` kills it (a crash) rather than asking it to exit."""
        if self.process is None:
            return
        if abrupt:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def push(self, layout: Path, tag: str, repository: str) -> str:
        """Copy `layout`'s `tag` (an image or an index) to `repository:tag`; the reference."""
        reference = f"{self.host}/{repository}:{tag}"
        command = ["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "-q"]
        command += [*self.skopeo_flags, f"oci:{layout}:{tag}", f"docker://{reference}"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        return reference

    def blob_data(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (for tests that corrupt one)."""
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=corral test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


def _wait_ready(url: str, context: ssl.SSLContext | None, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2, context=context)
            return
        except urllib.error.HTTPError:
            return  # 401 from an auth-protected registry: it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer at {url}")


@contextlib.contextmanager
def run_registry(
    directory: Path, tls: bool, auth: str = "", access_log: bool = False
) -> Iterator[RegistryServer]:
    """A registry in `directory`; `auth` (a YAML `auth:` line, plain HTTP only) makes it
    demand that, with the client and skopeo given USER/PASSWORD. With `access_log`, every
    request's line (method, path, status, bytes) goes to `directory`/registry.log."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        dependencies.missing(f"missing {missing}: run scripts/setup")
    directory.mkdir(parents=True)
    port = _free_port()
    storage = directory / "storage"
    config = [
        "version: 0.1",
        f"log: {{level: error, accesslog: {{disabled: {str(not access_log).lower()}}}}}",
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    host = f"127.0.0.1:{port}"
    context = None
    if tls:
        ca, cert, key = _make_ca(directory)
        config += [f"  tls: {{certificate: {cert}, key: {key}}}"]
        htpasswd = directory / "htpasswd"
        subprocess.run(
            ["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True
        )
        config += [f"auth: {{htpasswd: {{realm: corral-test, path: {htpasswd}}}}}"]
        certs = directory / "certs.d"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        settings = RegistrySettings(
            hosts={host: RegistryHost(ca_file=ca)}, credentials={host: RegistryAuth(USER, PASSWORD)}
        )
        flags: tuple[str, ...] = (
            "--dest-cert-dir",
            str(certs),
            "--dest-creds",
            f"{USER}:{PASSWORD}",
        )
        context = ssl.create_default_context(cafile=str(ca))
    else:
        config += [auth] if auth else []
        credentials = {host: RegistryAuth(USER, PASSWORD)} if auth else {}
        settings = RegistrySettings(
            hosts={host: RegistryHost(insecure=True)}, credentials=credentials
        )
        flags = ("--dest-tls-verify=false",)
        flags += ("--dest-creds", f"{USER}:{PASSWORD}") if auth else ()
    (directory / "config.yml").write_text("\n".join(config) + "\n")
    server = RegistryServer(host, storage, settings, flags, directory, context)
    try:
        server.start()
        yield server
    finally:
        server.stop()
