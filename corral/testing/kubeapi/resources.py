"""The resource types the server serves: the built-in ones and those CRDs add.

Owns `Resource` (one group/plural with its served versions, kind, scope,
subresources and, for custom resources, the schema and CEL rules per version)
and `Registry`, which `discovery.py`, `app.py` and `store.py` consult. CRD
objects are turned into `Resource`s here; nothing else reads CRD specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CRD_GROUP = "apiextensions.k8s.io"


@dataclass(frozen=True)
class Resource:
    """One group/plural: what discovery advertises and what the routes serve."""

    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    versions: tuple[str, ...] = ("v1",)
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = VERBS
    custom: bool = False
    schemas: dict[str, JSON] = field(default_factory=dict, compare=False, hash=False)
    printer_columns: dict[str, list[JSON]] = field(default_factory=dict, compare=False, hash=False)
    field_labels: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> Resource:
    return Resource("", plural, kind.lower(), kind, namespaced, **kw)


def _grp(group: str, plural: str, kind: str, namespaced: bool = True, **kw: Any) -> Resource:
    return Resource(group, plural, kind.lower(), kind, namespaced, **kw)


_CREATE_ONLY = ("create",)
_RBAC = "rbac.authorization.k8s.io"
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTINS: tuple[Resource, ...] = (
    _core(
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        subresources=frozenset({"status"}),
        field_labels=("status.phase",),
    ),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret", field_labels=("type",)),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS),
    _core(
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=frozenset({"status"}),
        field_labels=("spec.nodeName", "status.phase"),
    ),
    _core(
        "services",
        "Service",
        short_names=("svc",),
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    _core("nodes", "Node", False, short_names=("no",), subresources=frozenset({"status"})),
    _grp(
        "apps",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    _grp(
        "apps",
        "daemonsets",
        "DaemonSet",
        short_names=("ds",),
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    _grp("coordination.k8s.io", "leases", "Lease"),
    _grp("events.k8s.io", "events", "Event", short_names=("ev",)),
    _grp(
        CRD_GROUP,
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=frozenset({"status"}),
    ),
    _grp(_RBAC, "roles", "Role"),
    _grp(_RBAC, "rolebindings", "RoleBinding"),
    _grp(_RBAC, "clusterroles", "ClusterRole", False),
    _grp(_RBAC, "clusterrolebindings", "ClusterRoleBinding", False),
    _grp("authentication.k8s.io", "tokenreviews", "TokenReview", False, verbs=_CREATE_ONLY),
    _grp(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "SubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
    ),
    _grp(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
    ),
    _grp(
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        verbs=_CREATE_ONLY,
    ),
)


def from_crd(crd: JSON) -> Resource:
    """The `Resource` a CustomResourceDefinition declares (served versions, storage first)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    served.sort(key=lambda v: not v.get("storage", False))
    subresources = (
        {"status"}
        if any((v.get("subresources") or {}).get("status") is not None for v in served)
        else set()
    )
    return Resource(
        group=spec["group"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=tuple(v["name"] for v in served),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=frozenset(subresources),
        custom=True,
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in served},
        printer_columns={v["name"]: list(v.get("additionalPrinterColumns") or ()) for v in served},
    )


class Registry:
    """Resources by (group, plural); CRDs are added and removed as they come and go."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Resource] = {r.key: r for r in BUILTINS}

    def add(self, resource: Resource) -> None:
        self._by_key[resource.key] = resource

    def remove(self, key: tuple[str, str]) -> None:
        self._by_key.pop(key, None)

    def get(self, group: str, plural: str) -> Resource | None:
        return self._by_key.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        resource = self._by_key.get((group, plural))
        if resource is None or version not in resource.versions:
            return None
        return resource

    def all(self) -> list[Resource]:
        return list(self._by_key.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first, in a stable order."""
        groups: dict[str, list[str]] = {}
        for resource in self._by_key.values():
            versions = groups.setdefault(resource.group, [])
            for version in resource.versions:
                if version not in versions:
                    versions.append(version)
        return groups
