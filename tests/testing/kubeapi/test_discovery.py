"""Discovery: /version, /api, /api/v1, /apis, /apis/GROUP/VERSION and the OpenAPI documents."""

from __future__ import annotations

import json
from typing import Any

import kubernetes

from corral.testing.kubeapi import KubeAPIServer


def _get(k8s: kubernetes.client.ApiClient, path: str) -> Any:
    response = k8s.call_api(*k8s.param_serialize("GET", path, auth_settings=["BearerToken"]))
    response.read()
    return json.loads(response.data) if response.data else None


def test_version(k8s: kubernetes.client.ApiClient) -> None:
    info = kubernetes.client.VersionApi(k8s).get_code()
    assert (info.major, info.minor) == ("1", "32")


def test_core_and_groups(k8s: kubernetes.client.ApiClient, kubeapi: KubeAPIServer) -> None:
    versions = kubernetes.client.CoreApi(k8s).get_api_versions()
    assert versions.versions == ["v1"]
    assert versions.server_address_by_client_cidrs[0].server_address == kubeapi.url.removeprefix(
        "https://"
    )
    groups = {g.name: g for g in kubernetes.client.ApisApi(k8s).get_api_versions().groups}
    assert {
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
    } <= set(groups)
    assert groups["coordination.k8s.io"].preferred_version.group_version == "coordination.k8s.io/v1"


def test_resource_lists(k8s: kubernetes.client.ApiClient) -> None:
    core = {r.name: r for r in kubernetes.client.CoreV1Api(k8s).get_api_resources().resources}
    assert core["namespaces"].namespaced is False
    assert core["namespaces"].short_names == ["ns"]
    assert core["events"].namespaced is True
    assert core["namespaces/status"].verbs == ["get", "patch", "update"]
    leases = _get(k8s, "/apis/coordination.k8s.io/v1")
    assert leases["groupVersion"] == "coordination.k8s.io/v1"
    assert [r["kind"] for r in leases["resources"]] == ["Lease"]
    assert _get(k8s, "/apis/apps")["preferredVersion"]["version"] == "v1"


def test_openapi_v3_advertises_server_side_field_validation(
    k8s: kubernetes.client.ApiClient, widgets: Any
) -> None:
    root = _get(k8s, "/openapi/v3")
    url = root["paths"]["apis/test.corral.dev/v1"]["serverRelativeURL"]
    document = _get(k8s, url.split("?")[0])
    patch = document["paths"]["/apis/test.corral.dev/v1/namespaces/{namespace}/widgets/{name}"][
        "patch"
    ]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "test.corral.dev",
        "version": "v1",
        "kind": "Widget",
    }
    assert {"fieldValidation", "dryRun"} <= {p["name"] for p in patch["parameters"]}
    assert "api/v1" in root["paths"]


def test_openapi_v2_is_an_empty_protobuf_document(k8s: kubernetes.client.ApiClient) -> None:
    response = k8s.call_api(
        *k8s.param_serialize("GET", "/openapi/v2", auth_settings=["BearerToken"])
    )
    response.read()
    assert response.status == 200 and response.data == b""
    # kube-openapi's answer, whichever of the two protobuf names the client asked for.
    assert response.getheader("Content-Type") == (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    )
