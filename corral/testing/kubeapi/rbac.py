"""Authentication (bearer tokens the test maps to users) and RBAC authorization.

Owns who a request is (a `User` from the `Authorization: Bearer` header, with
`system:authenticated` added) and whether RBAC allows it, evaluated from the
Roles, ClusterRoles and bindings the server stores, with the rules of
`k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac` (verbs, apiGroups,
resources incl. `resource/subresource` and `*/subresource`, resourceNames,
nonResourceURLs). `system:masters` bypasses RBAC as on a real cluster. Also
answers TokenReview and (Self/Local)SubjectAccessReview, and seeds the bootstrap
roles every cluster has (cluster-admin, system:discovery, system:basic-user, and the
aggregated admin, edit and view that `aggregation.py` fills).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import APIError

if TYPE_CHECKING:
    from .store import Store

JSON = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    """An authenticated identity, as TokenReview reports it."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    def info(self) -> JSON:
        out: JSON = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (authorizer.Attributes)."""

    user: User
    verb: str
    resource_request: bool
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


class Authenticator:
    """Bearer tokens -> users; the test decides the mapping."""

    def __init__(self, tokens: Mapping[str, User]) -> None:
        self.tokens = dict(tokens)

    def user_for_token(self, token: str) -> User | None:
        user = self.tokens.get(token)
        if user is None:
            return None
        groups = user.groups if AUTHENTICATED in user.groups else (*user.groups, AUTHENTICATED)
        return User(user.name, groups, user.uid)

    def authenticate(self, header: str | None) -> User | None:
        if not header or not header.startswith("Bearer "):
            return None
        return self.user_for_token(header[len("Bearer ") :].strip())


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized")


def _matches(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(rule: JSON, attrs: Attributes) -> bool:
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for item in rule.get("resources") or []:
        if item in ("*", combined):
            return True
        if attrs.subresource and item == f"*/{attrs.subresource}":
            return True
    return False


def rule_allows(rule: JSON, attrs: Attributes) -> bool:
    if not _matches(rule.get("verbs") or [], attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if (
                url == "*"
                or url == attrs.path
                or (url.endswith("*") and attrs.path.startswith(url[:-1]))
            ):
                return True
        return False
    if not _matches(rule.get("apiGroups") or [], attrs.group):
        return False
    if not _resource_matches(rule, attrs):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _subject_matches(subject: JSON, user: User, binding_ns: str) -> str | None:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User" and name == user.name:
        return f'User "{name}"'
    if kind == "Group" and name in user.groups:
        return f'Group "{name}"'
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        if user.name == f"system:serviceaccount:{ns}:{name}":
            return f'ServiceAccount "{name}/{ns}"'
    return None


def authorize(store: Store, attrs: Attributes) -> tuple[bool, str]:
    """(allowed, reason) from the stored RBAC objects."""
    if MASTERS in attrs.user.groups:
        return True, ""
    for binding in store.items((RBAC, "clusterrolebindings")):
        for subject in binding.get("subjects") or []:
            who = _subject_matches(subject, attrs.user, "")
            if who is None:
                continue
            role_name = binding.get("roleRef", {}).get("name", "")
            role = store.get((RBAC, "clusterroles"), "", role_name)
            if role and any(rule_allows(r, attrs) for r in role.get("rules") or []):
                return True, (
                    f"RBAC: allowed by ClusterRoleBinding "
                    f"{json.dumps(binding['metadata']['name'])} of ClusterRole "
                    f"{json.dumps(role_name)} to {who}"
                )
    if not attrs.namespace:
        return False, ""
    for binding in store.items((RBAC, "rolebindings"), attrs.namespace):
        for subject in binding.get("subjects") or []:
            who = _subject_matches(subject, attrs.user, attrs.namespace)
            if who is None:
                continue
            ref = binding.get("roleRef", {})
            if ref.get("kind") == "ClusterRole":
                role = store.get((RBAC, "clusterroles"), "", ref.get("name", ""))
            else:
                role = store.get((RBAC, "roles"), attrs.namespace, ref.get("name", ""))
            if role and any(rule_allows(r, attrs) for r in role.get("rules") or []):
                return True, (
                    f"RBAC: allowed by RoleBinding "
                    f'"{binding["metadata"]["name"]}/{attrs.namespace}" of '
                    f"{ref.get('kind')} {json.dumps(ref.get('name'))} to {who}"
                )
    return False, ""


def forbidden(attrs: Attributes, reason: str = "") -> APIError:
    """The 403 the real server words from the request attributes."""
    user = json.dumps(attrs.user.name)
    if not attrs.resource_request:
        text = f"User {user} cannot {attrs.verb} path {json.dumps(attrs.path)}"
        return APIError(403, f"forbidden: {text}", details={})
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = (
        f"in the namespace {json.dumps(attrs.namespace)}"
        if attrs.namespace
        else "at the cluster scope"
    )
    text = (
        f"User {user} cannot {attrs.verb} resource {json.dumps(resource)} in API group "
        f"{json.dumps(attrs.group)} {where}"
    )
    if reason:
        text = f"{text}: {reason}"
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    prefix = f"{qualified} {json.dumps(attrs.name)}" if attrs.name else qualified
    return APIError(
        403,
        f"{prefix} is forbidden: {text}",
        details={"name": attrs.name, "group": attrs.group, "kind": attrs.resource},
    )


def review_attributes(spec: JSON, user: User) -> Attributes:
    """Attributes of a SubjectAccessReview spec (resource or non-resource)."""
    if spec.get("nonResourceAttributes"):
        nra = spec["nonResourceAttributes"]
        return Attributes(user, nra.get("verb", ""), False, path=nra.get("path", ""))
    ra = spec.get("resourceAttributes") or {}
    return Attributes(
        user,
        ra.get("verb", ""),
        True,
        group=ra.get("group", ""),
        version=ra.get("version", ""),
        resource=ra.get("resource", ""),
        subresource=ra.get("subresource", ""),
        namespace=ra.get("namespace", ""),
        name=ra.get("name", ""),
    )


def review_status(store: Store, attrs: Attributes) -> JSON:
    allowed, reason = authorize(store, attrs)
    status: JSON = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def _role(name: str, rules: list[JSON]) -> JSON:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    }


def _aggregated(name: str, into: str | None) -> JSON:
    """A user-facing role (admin, edit, view) made of the roles labelled aggregate-to-NAME;
    `into` is the role it is itself aggregated into. The rules the real bootstrap policy
    gives it for built-in resources (system:aggregate-to-NAME) are left out."""
    role = _role(name, [])
    role["aggregationRule"] = {
        "clusterRoleSelectors": [{"matchLabels": {f"{RBAC}/aggregate-to-{name}": "true"}}]
    }
    if into:
        role["metadata"]["labels"][f"{RBAC}/aggregate-to-{into}"] = "true"
    return role


def _binding(name: str, group: str) -> JSON:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}],
    }


def bootstrap_objects() -> list[tuple[str, JSON]]:
    """(plural, object) of the bootstrap RBAC policy a fresh cluster has."""
    discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ]
    return [
        (
            "clusterroles",
            _role(
                "cluster-admin",
                [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            ),
        ),
        (
            "clusterroles",
            _role("system:discovery", [{"nonResourceURLs": discovery, "verbs": ["get"]}]),
        ),
        (
            "clusterroles",
            _role(
                "system:basic-user",
                [
                    {
                        "apiGroups": ["authorization.k8s.io"],
                        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                        "verbs": ["create"],
                    },
                    {
                        "apiGroups": ["authentication.k8s.io"],
                        "resources": ["selfsubjectreviews"],
                        "verbs": ["create"],
                    },
                ],
            ),
        ),
        ("clusterroles", _aggregated("admin", None)),
        ("clusterroles", _aggregated("edit", "admin")),
        ("clusterroles", _aggregated("view", "edit")),
        ("clusterrolebindings", _binding("cluster-admin", MASTERS)),
        ("clusterrolebindings", _binding("system:discovery", AUTHENTICATED)),
        ("clusterrolebindings", _binding("system:basic-user", AUTHENTICATED)),
    ]
