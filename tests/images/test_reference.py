"""Image references: Docker Hub short names, registries with ports, tags and digests,
and errors that name the bad input."""

from __future__ import annotations

import pytest

from corral import ImageError
from corral.node_agent.images.reference import Reference, parse, validate_digest

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", Reference("docker.io", "library/alpine", "latest")),
        ("alpine:3.19", Reference("docker.io", "library/alpine", "3.19")),
        ("bitnami/redis", Reference("docker.io", "bitnami/redis", "latest")),
        ("docker.io/alpine", Reference("docker.io", "library/alpine", "latest")),
        ("index.docker.io/library/alpine", Reference("docker.io", "library/alpine", "latest")),
        ("localhost/app", Reference("localhost", "app", "latest")),
        ("localhost:5000/x", Reference("localhost:5000", "x", "latest")),
        ("127.0.0.1:5000/a/b/c:v1", Reference("127.0.0.1:5000", "a/b/c", "v1")),
        ("ghcr.io/org/app:1.2", Reference("ghcr.io", "org/app", "1.2")),
        ("[::1]:5000/app", Reference("[::1]:5000", "app", "latest")),
        (f"alpine@{DIGEST}", Reference("docker.io", "library/alpine", None, DIGEST)),
        (f"r.io/a:t@{DIGEST}", Reference("r.io", "a", "t", DIGEST)),
        ("a_b/c__d/e-f--g/h.i:T_a.g-1", Reference("docker.io", "a_b/c__d/e-f--g/h.i", "T_a.g-1")),
    ],
)
def test_parse(text: str, expected: Reference) -> None:
    assert parse(text) == expected


def test_locator_and_text() -> None:
    assert parse("alpine").locator == "latest"
    assert parse(f"r.io/a:t@{DIGEST}").locator == DIGEST
    assert str(parse("alpine")) == "docker.io/library/alpine:latest"
    assert str(parse(f"r.io/a:t@{DIGEST}")) == f"r.io/a:t@{DIGEST}"
    assert parse("alpine").api_host == "registry-1.docker.io"
    assert parse("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (" alpine", "spaces"),
        ("Alpine", "bad repository component 'Alpine'"),
        ("alpine:", "bad tag ''"),
        ("alpine:-x", "bad tag '-x'"),
        ("alpine:" + "t" * 129, "bad tag"),
        ("a//b", "bad repository component ''"),
        ("a/b/", "bad repository component ''"),
        ("a/../b", r"bad repository component '\.\.'"),
        ("r.io/a-/b", "bad repository component 'a-'"),
        ("bad_host.io:x/a", "bad registry 'bad_host.io:x'"),
        ("alpine@sha256:abc", "invalid digest 'sha256:abc'"),
        ("alpine@md5:" + "a" * 32, "invalid digest"),
        ("alpine@sha256:" + "AB" * 32, "invalid digest"),
        ("r.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_invalid_references_name_the_input(text: str, problem: str) -> None:
    with pytest.raises(ImageError, match=problem) as caught:
        parse(text)
    assert repr(text)[:40] in str(caught.value) or text == ""


def test_validate_digest() -> None:
    assert validate_digest(DIGEST) == DIGEST
    with pytest.raises(ImageError, match="sha256:zz"):
        validate_digest("sha256:zz")
