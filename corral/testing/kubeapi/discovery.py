"""Discovery and OpenAPI documents: what clients read before they talk to a resource.

Owns `/version`, `/api`, `/api/v1`, `/apis`, `/apis/GROUP`, `/apis/GROUP/VERSION`
(the legacy, unaggregated discovery documents; clients asking for aggregated
discovery fall back to them because the answer is plain `application/json`),
and the OpenAPI endpoints kubectl reads: `/openapi/v3` lists one document per
group/version whose PATCH operations advertise the `fieldValidation` and
`dryRun` query parameters (so kubectl leaves validation to the server, as
with a real cluster), and `/openapi/v2` is an empty protobuf document (so
nothing is validated client-side against stale schemas).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .resources import Registry, Resource

JSON = dict[str, Any]
KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# What kube-openapi answers for both the `…spec.v2@v1.0+protobuf` clients ask for and the
# newer `…spec.v2.v1.0+protobuf`: client-go cannot parse a Content-Type with the '@' (an
# unknown kind then fails kubectl's validation with "mime: unexpected content").
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving the Kubernetes version order (v1 > v1beta2 > v1beta1 > v1alpha1)."""
    match = _VERSION.match(version)
    if not match:
        return (-1, 0, 0, version)
    major, level, minor = match.groups()
    rank = {"alpha": 0, "beta": 1, None: 2}[level]
    return (rank, int(major), int(minor or 0), "")


def _sorted_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=version_priority, reverse=True)


def api_versions(address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group_entry(name: str, versions: list[str]) -> JSON:
    ordered = _sorted_versions(versions)
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in ordered]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_groups(registry: Registry) -> JSON:
    groups = [
        _group_entry(name, versions)
        for name, versions in sorted(registry.group_versions().items())
        if name
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> JSON | None:
    versions = registry.group_versions().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _entries(resource: Resource) -> list[JSON]:
    entry: JSON = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
        "storageVersionHash": _hash(f"{resource.group}/{resource.plural}"),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    out = [entry]
    for sub in sorted(resource.subresources):
        out.append(
            {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return out


def _served(registry: Registry, group: str, version: str) -> list[Resource]:
    return sorted(
        (r for r in registry.all() if r.group == group and version in r.versions),
        key=lambda r: r.plural,
    )


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    resources = _served(registry, group, version)
    if not resources:
        return None
    group_version = f"{group}/{version}" if group else version
    body: JSON = {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": [e for r in resources for e in _entries(r)],
    }
    if group:
        body["apiVersion"] = "v1"
    return body


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _patch_operation(resource: Resource, version: str) -> JSON:
    params = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
    ]
    return {
        "operationId": f"patch{resource.kind}",
        "parameters": params,
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": version,
            "kind": resource.kind,
        },
        "responses": {"200": {"description": "OK"}},
    }


def _schema_name(resource: Resource, version: str) -> str:
    group = ".".join(reversed(resource.group.split("."))) if resource.group else "io.k8s.api.core"
    return f"{group}.{version}.{resource.kind}"


def openapi_v3_document(registry: Registry, group: str, version: str) -> JSON | None:
    resources = _served(registry, group, version)
    if not resources:
        return None
    paths: JSON = {}
    schemas: JSON = {}
    for resource in resources:
        if "patch" not in resource.verbs:
            continue
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        base = f"/{_gv_path(group, version)}{scope}/{resource.plural}/{{name}}"
        paths[base] = {"patch": _patch_operation(resource, version)}
        for sub in sorted(resource.subresources):
            paths[f"{base}/{sub}"] = {"patch": _patch_operation(resource, version)}
        if resource.custom and resource.schemas.get(version):
            schema = dict(resource.schemas[version])
            schema["x-kubernetes-group-version-kind"] = [
                {"group": resource.group, "version": version, "kind": resource.kind}
            ]
            schemas[_schema_name(resource, version)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_root(registry: Registry) -> JSON:
    paths = {}
    for group, versions in sorted(registry.group_versions().items()):
        for version in versions:
            document = openapi_v3_document(registry, group, version)
            digest = _hash(json.dumps(document, sort_keys=True)).upper()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
