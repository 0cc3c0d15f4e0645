"""Test helper: a token endpoint on loopback for docker-registry's `auth: token:` mode.

It answers `GET /token?service=…&scope=…` from clients that send USER/PASSWORD (Basic),
and the OAuth2 refresh-token grant (`POST /token`) with IDENTITY_TOKEN, with an RS256
JWT granting the scopes asked for, signed with `openssl dgst` by a key whose
self-signed certificate is the registry's rootcertbundle. The registry finds the
key by the JWT's `kid`, libtrust's key ID of that public key. A stdlib server in a
thread, since skopeo pushes while the test's event loop is blocked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from images.registry import PASSWORD, USER

SERVICE, ISSUER = "corral-registry", "corral-token-issuer"
IDENTITY_TOKEN = "corral-identity-token"
"""The refresh token the endpoint accepts (what a `docker login` would have stored)."""


@dataclass(frozen=True)
class TokenServer:
    realm: str
    certificate: Path
    issued: list[str]
    """The scopes of every token handed out, in order."""

    def registry_auth(self) -> str:
        """The `auth:` line of the registry's config that trusts this endpoint."""
        return (
            f"auth: {{token: {{realm: {self.realm}, service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: {self.certificate}}}}}"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key_id(certificate: Path) -> str:
    """libtrust's KeyID: base32 of the first 240 bits of the SPKI DER's sha256, in 4s."""
    der = subprocess.run(
        f"openssl x509 -in {certificate} -pubkey -noout | openssl pkey -pubin -outform DER",
        shell=True,
        check=True,
        capture_output=True,
    ).stdout
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _sign(key: Path, kid: str, claims: dict[str, object]) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key)],
        input=signing_input.encode(),
        check=True,
        capture_output=True,
    ).stdout
    return f"{signing_input}.{_b64(signature)}"


def _access(scope: str) -> list[dict[str, object]]:
    """`repository:name:pull,push` scopes as the JWT's access claim."""
    access = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": name, "actions": actions.split(",")})
    return access


@contextlib.contextmanager
def run_token_server(directory: Path) -> Iterator[TokenServer]:
    directory.mkdir(parents=True)
    key, certificate = directory / "token.key", directory / "token.crt"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subprocess.run(
        [
            *request,
            "-subj",
            "/CN=corral token signer",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    kid = _key_id(certificate)
    issued: list[str] = []
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            self._issue(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query), "token")

        def do_POST(self) -> None:
            """The OAuth2 refresh-token grant: an identity token instead of a password."""
            length = min(int(self.headers.get("Content-Length", "0")), 1 << 16)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            grant = (form.get("grant_type", [""])[0], form.get("refresh_token", [""])[0])
            if grant != ("refresh_token", IDENTITY_TOKEN) or not form.get("client_id"):
                self.send_response(401)
                self.end_headers()
                return
            self._issue(form, "access_token")

        def _issue(self, query: dict[str, list[str]], field: str) -> None:
            scope = " ".join(query.get("scope", []))
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": USER,
                "aud": query.get("service", [""])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": f"{now}-{len(issued)}",
                "access": _access(scope),
            }
            issued.append(scope)
            body = json.dumps({field: _sign(key, kid, claims), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="token-server", daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield TokenServer(f"http://127.0.0.1:{port}/token", certificate, issued)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
