"""The node agent's HTTPS serving certificate: self-signed, made once, reused across restarts.

Clients do not need a CA: the agent publishes this certificate on its Lease
(`corral.dev/ca`) and clients pin it, trusting it because they read it through the
authenticated, TLS-verified Kubernetes API. `main` calls `serving_certificate` at start
and hands `server_context` to the API server.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
"""A certificate closer than this to expiry is replaced at the next start."""

Name = x509.DNSName | x509.IPAddress


def serving_certificate(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path]:
    """(cert, key) files valid for `hosts` (IP addresses or DNS names), made if needed.

    An existing pair is reused while it names exactly these hosts, belongs together and
    is not about to expire; otherwise a new pair replaces it (each file atomically, the
    key readable by its owner only).
    """
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    names = {_san(host) for host in hosts}
    if _reusable(cert_path, key_path, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hosts[0], names)
    _write_atomically(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context serving `cert` (TLS 1.2 or later)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _san(host: str) -> Name:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _self_signed(
    key: ec.EllipticCurvePrivateKey, common_name: str, names: set[Name]
) -> x509.Certificate:
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"corral-node-agent {common_name}")]
    )
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sorted(names, key=str)), critical=False)
        # Its own trust anchor: clients load it as the only CA they accept.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _reusable(cert_path: Path, key_path: Path, names: set[Name]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)
    return fresh and set(sans) == names and key.public_key() == cert.public_key()


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
