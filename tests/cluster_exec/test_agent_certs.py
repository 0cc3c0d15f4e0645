"""The agent's serving certificate: made once, reused while it fits, replaced when not."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from corral.node_agent.daemon import certs
from corral.node_agent.daemon.certs import serving_certificate


def names(cert: Path) -> set[str]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in sans}


def test_made_once_then_reused(tmp_path: Path) -> None:
    cert, key = serving_certificate(tmp_path / "tls", ["10.0.0.7", "node-1.example"])
    assert names(cert) == {str(ipaddress.ip_address("10.0.0.7")), "node-1.example"}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = cert.read_bytes()
    assert serving_certificate(tmp_path / "tls", ["node-1.example", "10.0.0.7"]) == (cert, key)
    assert cert.read_bytes() == first
    assert [p.name for p in (tmp_path / "tls").iterdir()] in (
        ["tls.crt", "tls.key"],
        ["tls.key", "tls.crt"],
    )


def test_other_hosts_a_foreign_key_or_near_expiry_make_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = serving_certificate(tmp_path, ["10.0.0.7"])
    first = cert.read_bytes()
    serving_certificate(tmp_path, ["10.0.0.8"])
    assert names(cert) == {"10.0.0.8"} and cert.read_bytes() != first
    second = cert.read_bytes()
    other = serving_certificate(tmp_path / "other", ["10.0.0.8"])[1]
    key.write_bytes(other.read_bytes())
    serving_certificate(tmp_path, ["10.0.0.8"])
    assert cert.read_bytes() != second
    third = cert.read_bytes()
    monkeypatch.setattr(certs, "RENEW_BEFORE", datetime.timedelta(days=400))  # > validity
    serving_certificate(tmp_path, ["10.0.0.8"])
    assert cert.read_bytes() != third


def test_garbage_files_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate")
    (tmp_path / "tls.key").write_text("not a key")
    cert, _ = serving_certificate(tmp_path, ["127.0.0.1"])
    assert names(cert) == {"127.0.0.1"}
