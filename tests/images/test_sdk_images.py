"""The SDK's `corral.pull`: credentials given per pull (a RegistryAuth, a mapping of them,
a bearer token, an identity token), progress events, the `Image` it returns, and Docker configs as
Kubernetes dockerconfigjson secrets carry them. Credentials never reach a file."""

from __future__ import annotations

import base64
import itertools
import json
import urllib.request
from pathlib import Path

import pytest

from corral import (
    Image,
    ImageError,
    PullProgress,
    RegistryAuth,
    pull,
    registry_auths_from_docker_config,
)
from images.oci_layout import Layout, busybox_layer, entry, tar
from images.registry import PASSWORD, USER, RegistryServer, run_registry
from images.token_auth import IDENTITY_TOKEN, run_token_server

CONFIG = {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"], "Env": ["A=1"], "User": "7"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CORRAL_HOME with no Docker config: credentials come from the SDK call only."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CORRAL_HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return home


def declare(home: Path, server: RegistryServer) -> None:
    hosts = {}
    for host, settings in server.settings.hosts.items():
        ca = str(settings.ca_file) if settings.ca_file else None
        hosts[host] = {"insecure": settings.insecure, "ca_file": ca}
    (home / "registries.json").write_text(json.dumps(hosts))


def push(server: RegistryServer, tmp_path: Path, name: str, *layers: bytes) -> str:
    layout = Layout(tmp_path / f"layout-{name.replace('/', '-')}")
    layout.tag(layout.image(list(layers), config=CONFIG), "v1")
    return server.push(layout.path, "v1", name)


def files_containing(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


async def test_pull_with_a_registry_auth_and_progress(
    secure_registry: RegistryServer, home: Path, tmp_path: Path
) -> None:
    declare(home, secure_registry)
    reference = push(secure_registry, tmp_path, "sdk/private", busybox_layer())
    with pytest.raises(ImageError, match="requires a login"):
        await pull(reference)
    with pytest.raises(ImageError, match="rejected the credentials"):
        await pull(reference, auth=RegistryAuth(USER, "wrong"))
    events: list[PullProgress] = []
    image = await pull(reference, auth=RegistryAuth(USER, PASSWORD), progress=events.append)
    assert isinstance(image, Image)
    assert image.reference == reference and image.digest.startswith("sha256:")
    assert (image.architecture, image.os) == ("amd64", "linux")
    assert (image.entrypoint, image.cmd, image.env) == (("/bin/sh",), ("-c", "true"), ("A=1",))
    assert (image.workdir, image.user) == ("", "7")
    [layer] = image.layers
    assert image.size == layer.size
    assert events[-1] == PullProgress(layer.digest, layer.size, layer.size)
    assert all(a.done <= b.done for a, b in itertools.pairwise(events))
    # Now local: IfMissing needs no credentials; a mapping by host works for Always.
    assert (await pull(reference)).digest == image.digest
    by_host = {f"https://{secure_registry.host}/v1/": RegistryAuth(USER, PASSWORD)}
    assert (await pull(reference, auth=by_host, policy="Always")).digest == image.digest
    assert files_containing(home, PASSWORD.encode()) == []
    assert "s3cret" not in repr(RegistryAuth(USER, PASSWORD))


async def test_pull_with_a_bearer_token(home: Path, tmp_path: Path) -> None:
    """A token obtained elsewhere (here from the test's token endpoint) is presented as
    is: the client never contacts the token endpoint itself."""
    with (
        run_token_server(tmp_path / "token") as tokens,
        run_registry(tmp_path / "registry", tls=False, auth=tokens.registry_auth()) as server,
    ):
        declare(home, server)
        reference = push(server, tmp_path, "sdk/token", tar(entry("f", b"x")))
        scope = "repository:sdk/token:pull"
        token = _token(f"{tokens.realm}?service=corral-registry&scope={scope}")
        issued = len(tokens.issued)
        image = await pull(reference, auth=RegistryAuth(token=token))
        assert len(image.layers) == 1
        assert len(tokens.issued) == issued
        with pytest.raises(ImageError, match="rejected the credentials"):
            await pull(reference, auth=RegistryAuth(token="not-a-jwt"), policy="Always")
        # An identity token (docker login's, for OAuth2 registries) is exchanged for one.
        await pull(reference, auth=RegistryAuth(identity_token=IDENTITY_TOKEN), policy="Always")
        assert tokens.issued[-1] == scope
        with pytest.raises(ImageError, match=r"authentication failed at .*/token \(HTTP 401\)"):
            await pull(reference, auth=RegistryAuth(identity_token="stale"), policy="Always")


def _token(url: str) -> str:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})
    token: str = json.loads(urllib.request.urlopen(request, timeout=10).read())["token"]
    return token


def test_registry_auths_from_a_dockerconfigjson_secret() -> None:
    encoded = base64.b64encode(b"alice:pa:ss").decode()
    secret = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": encoded},
            "ghcr.io": {"username": "bob", "password": "pw"},
            "registry.example:5000": {"registrytoken": "tok"},
            "acr.example": {"auth": base64.b64encode(b"0000:").decode(), "identitytoken": "id"},
            "helper.example": {"email": "only@example"},
        }
    }
    assert registry_auths_from_docker_config(secret) == {
        "docker.io": RegistryAuth("alice", "pa:ss"),
        "ghcr.io": RegistryAuth("bob", "pw"),
        "registry.example:5000": RegistryAuth(token="tok"),
        "acr.example": RegistryAuth(identity_token="id"),
    }
    with pytest.raises(ImageError, match="auth is not base64"):
        registry_auths_from_docker_config({"auths": {"x.io": {"auth": "%%%"}}})
    with pytest.raises(ImageError, match="auths is not an object"):
        registry_auths_from_docker_config({"auths": []})
    with pytest.raises(ImageError, match="a username and password, a token or an identity_token"):
        RegistryAuth("u", "p", token="t")


async def test_bad_policy_and_bad_auth_are_clear_errors(home: Path) -> None:
    with pytest.raises(ImageError, match="pull policy 'Sometimes'"):
        await pull("x.io/a:1", policy="Sometimes")  # type: ignore[arg-type]
    with pytest.raises(ImageError, match=r"auth for 'x\.io' is a str"):
        await pull("x.io/a:1", auth={"x.io": "user:pw"})  # type: ignore[dict-item]
    with pytest.raises(ImageError, match="invalid image reference 'UPPER!'"):
        await pull("UPPER!")
