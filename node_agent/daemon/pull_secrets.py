"""Registry credentials for a Sandbox from its imagePullSecrets, as the kubelet reads them.

Each named Secret of the sandbox's namespace must be of type
`kubernetes.io/dockerconfigjson`; its `.dockerconfigjson` is a Docker config whose
`auths` become one RegistryAuth per registry host (later secrets win on the same host,
as the kubelet tries them in order). A missing or malformed secret is an ImageError
naming it, so the sandbox reports `ImagePullFailed` with the reason and is retried: the
secret may be created later. The credentials go to the pull in this process only.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client as k8s

from corral import ImageError, RegistryAuth, registry_auths_from_docker_config
from corral.api import LocalObjectReference

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
MAX_SECRET_BYTES = 1 << 20
"""The API server's own limit on a Secret's data."""


def auths_from_secret(secret: Mapping[str, Any], where: str) -> dict[str, RegistryAuth]:
    """The credentials in one Secret (as JSON); `where` names it in errors."""
    if secret.get("type") != DOCKER_CONFIG_JSON:
        raise ImageError(f"{where} is of type {secret.get('type')!r}, not {DOCKER_CONFIG_JSON}")
    encoded = (secret.get("data") or {}).get(".dockerconfigjson")
    if not isinstance(encoded, str) or len(encoded) > MAX_SECRET_BYTES * 4 // 3 + 4:
        raise ImageError(f"{where} has no usable .dockerconfigjson")
    try:
        config = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{where}: .dockerconfigjson is not base64 JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ImageError(f"{where}: .dockerconfigjson is not a JSON object")
    return registry_auths_from_docker_config(config, source=where)


async def registry_auths(
    api: k8s.ApiClient, namespace: str, secrets: Sequence[LocalObjectReference]
) -> dict[str, RegistryAuth]:
    """The credentials of every named secret, read through the API."""
    core = k8s.CoreV1Api(api)
    found: dict[str, RegistryAuth] = {}
    for ref in secrets:
        where = f"imagePullSecret {namespace}/{ref.name}"
        try:
            secret = await core.read_namespaced_secret(ref.name, namespace)
        except k8s.ApiException as exc:
            if exc.status in (403, 404):
                raise ImageError(f"{where}: {exc.reason}") from None
            raise
        found.update(auths_from_secret(api.sanitize_for_serialization(secret), where))
    return found
