"""A Kubernetes-API-compatible test server (aiohttp, in memory) for kubectl, kopf and clients.

No real API server can be installed where Corral is tested, so this stand-in
reproduces the behaviours the project relies on: discovery and OpenAPI, CRDs
(served as they are applied, unserved when removed), object metadata and
resourceVersions, every verb (including watch with history, 410 and bookmarks,
JSON/merge/strategic patches and server-side apply), the status subresource,
finalizers, garbage collection, selectors, CRD schema validation, defaulting,
pruning and CEL rules, and bearer-token authentication with RBAC.

Transport: HTTPS on 127.0.0.1 with a self-signed certificate (`tls.py`), written
into the kubeconfig as `certificate-authority-data`. Plain HTTP would be simpler,
but client-go (kubectl) silently drops a kubeconfig's bearer token for `http://`
servers, so authentication could not be tested; with the certificate as CA,
kubectl, `kubernetes` and `kubernetes_asyncio` verify the server normally and
need no `insecure-skip-tls-verify` or per-client special case.

    with KubeAPIServer() as server:                 # or: async with (on the running loop)
        write_kubeconfig(tmp / "kubeconfig", server.url)
        server.log.writes()["sandboxes/status"]

It is test infrastructure: the product never imports it.
"""

from .rbac import User
from .server import KubeAPIServer, write_kubeconfig
from .settings import ADMIN_TOKEN, Record, RequestLog, Settings

__all__ = [
    "ADMIN_TOKEN",
    "KubeAPIServer",
    "Record",
    "RequestLog",
    "Settings",
    "User",
    "write_kubeconfig",
]
