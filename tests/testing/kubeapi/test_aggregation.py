"""ClusterRole aggregation: labelled roles add to the bootstrap admin/edit/view and to any
role with an aggregationRule; changes and deletions follow; bindings see the result."""

from __future__ import annotations

import time
from typing import Any

import kubernetes

RBAC = kubernetes.client.RbacAuthorizationV1Api
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
SANDBOXES = {"apiGroups": ["corral.dev"], "resources": ["sandboxes"], "verbs": ["get"]}
EXEC = {"apiGroups": ["corral.dev"], "resources": ["sandboxes/exec"], "verbs": ["create"]}


def _rules(k8s: kubernetes.client.ApiClient, name: str) -> list[dict[str, Any]]:
    role = k8s.sanitize_for_serialization(RBAC(k8s).read_cluster_role(name))
    rules: list[dict[str, Any]] = role.get("rules") or []
    return rules


def _until_rules(
    k8s: kubernetes.client.ApiClient, name: str, expected: list[dict[str, Any]]
) -> None:
    deadline = time.monotonic() + 5
    while (rules := _rules(k8s, name)) != expected:
        assert time.monotonic() < deadline, f"{name} has {rules}, not {expected}"
        time.sleep(0.02)


def _role(name: str, rules: list[dict[str, Any]], *into: str) -> dict[str, Any]:
    labels = {f"{AGGREGATE}{role}": "true" for role in into}
    return {"metadata": {"name": name, "labels": labels}, "rules": rules}


def test_bootstrap_roles_aggregate_view_into_edit_into_admin(
    k8s: kubernetes.client.ApiClient,
) -> None:
    RBAC(k8s).create_cluster_role(_role("sandbox-view", [SANDBOXES], "view"))
    RBAC(k8s).create_cluster_role(_role("sandbox-edit", [EXEC], "edit"))
    _until_rules(k8s, "view", [SANDBOXES])
    # Roles in name order: sandbox-edit, then view.
    _until_rules(k8s, "edit", [EXEC, SANDBOXES])
    _until_rules(k8s, "admin", [EXEC, SANDBOXES])
    assert RBAC(k8s).read_cluster_role("edit").aggregation_rule.cluster_role_selectors[0]


def test_a_changed_or_deleted_role_changes_the_aggregate(
    k8s: kubernetes.client.ApiClient,
) -> None:
    RBAC(k8s).create_cluster_role(_role("sandbox-edit", [SANDBOXES, EXEC], "edit"))
    _until_rules(k8s, "edit", [SANDBOXES, EXEC])
    RBAC(k8s).patch_cluster_role("sandbox-edit", {"rules": [EXEC]})
    _until_rules(k8s, "edit", [EXEC])
    RBAC(k8s).patch_cluster_role("sandbox-edit", {"metadata": {"labels": {"x": "y"}}})
    RBAC(k8s).create_cluster_role(_role("other", [SANDBOXES], "edit"))
    _until_rules(k8s, "edit", [SANDBOXES, EXEC])
    RBAC(k8s).delete_cluster_role("sandbox-edit")
    _until_rules(k8s, "edit", [SANDBOXES])


def test_match_expressions_and_rules_collected_once(k8s: kubernetes.client.ApiClient) -> None:
    RBAC(k8s).create_cluster_role(
        {
            "metadata": {"name": "team"},
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]},
                    {"matchLabels": {"extra": "true"}},
                ]
            },
        }
    )
    RBAC(k8s).create_cluster_role(
        {"metadata": {"name": "b", "labels": {"team": "a"}}, "rules": [EXEC]}
    )
    RBAC(k8s).create_cluster_role(
        {"metadata": {"name": "a", "labels": {"team": "a", "extra": "true"}}, "rules": [SANDBOXES]}
    )
    RBAC(k8s).create_cluster_role({"metadata": {"name": "c", "labels": {"team": "b"}}, "rules": []})
    _until_rules(k8s, "team", [SANDBOXES, EXEC])


def test_a_binding_to_an_aggregated_role_grants_its_rules(
    k8s: kubernetes.client.ApiClient,
) -> None:
    RBAC(k8s).create_cluster_role(_role("sandbox-edit", [EXEC], "edit"))
    RBAC(k8s).create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "alice-edit"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [{"kind": "User", "name": "alice"}],
        },
    )
    _until_rules(k8s, "edit", [EXEC])
    review = kubernetes.client.AuthorizationV1Api(k8s).create_subject_access_review(
        {
            "spec": {
                "user": "alice",
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "create",
                    "group": "corral.dev",
                    "resource": "sandboxes",
                    "subresource": "exec",
                    "name": "sb1",
                },
            }
        }
    )
    assert review.status.allowed is True
