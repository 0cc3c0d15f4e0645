"""Authentication and RBAC: 401, 403, roles and bindings, TokenReview, SubjectAccessReview."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from corral.testing.kubeapi import ADMIN_TOKEN, KubeAPIServer, Settings, User, write_kubeconfig

from .manifests import GROUP, PLURAL, VERSION, api_status, widget

RBAC = kubernetes.client.RbacAuthorizationV1Api
SA = "system:serviceaccount:corral-system:node-agent"


@pytest.fixture
def kubeapi_settings() -> Settings:
    return Settings(
        tokens={
            ADMIN_TOKEN: User("admin", ("system:masters",)),
            "alice-token": User("alice", ("developers",)),
            "agent-token": User(SA, ("system:serviceaccounts",)),
        }
    )


@pytest.fixture
def as_user(kubeapi: KubeAPIServer, tmp_path: Path) -> Iterator[Any]:
    clients: list[kubernetes.client.ApiClient] = []

    def make(token: str) -> kubernetes.client.ApiClient:
        path = write_kubeconfig(tmp_path / f"{token}.kubeconfig", kubeapi.url, token)
        client = kubernetes.client.ApiClient(_config(path))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _config(path: Path) -> kubernetes.client.Configuration:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(path), client_configuration=config)
    return config


def test_missing_or_unknown_token_is_401(as_user: Any) -> None:
    with pytest.raises(kubernetes.client.ApiException) as exc:
        kubernetes.client.CoreV1Api(as_user("nobody")).list_namespace()
    assert exc.value.status == 401
    assert api_status(exc.value)["message"] == "Unauthorized"


def test_no_permission_is_403_with_the_real_message(as_user: Any) -> None:
    alice = kubernetes.client.CoreV1Api(as_user("alice-token"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        alice.read_namespaced_config_map("c", "default")
    status = api_status(exc.value)
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'configmaps "c" is forbidden: User "alice" cannot get resource '
        '"configmaps" in API group "" in the namespace "default"'
    )
    with pytest.raises(kubernetes.client.ApiException) as cluster:
        alice.list_namespace()
    assert api_status(cluster.value)["message"] == (
        'namespaces is forbidden: User "alice" cannot list resource "namespaces" in API group '
        '"" at the cluster scope'
    )


def test_authenticated_users_may_discover(as_user: Any) -> None:
    assert kubernetes.client.VersionApi(as_user("alice-token")).get_code().major == "1"


def test_role_binding_grants_verbs_and_resource_names(
    k8s: kubernetes.client.ApiClient, as_user: Any
) -> None:
    RBAC(k8s).create_namespaced_role(
        "default",
        {
            "metadata": {"name": "cm-reader"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get"],
                    "resourceNames": ["allowed"],
                }
            ],
        },
    )
    RBAC(k8s).create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "devs"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "cm-reader",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "developers"}
            ],
        },
    )
    core = kubernetes.client.CoreV1Api(k8s)
    for name in ("allowed", "other"):
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    alice = kubernetes.client.CoreV1Api(as_user("alice-token"))
    assert alice.read_namespaced_config_map("allowed", "default").metadata.name == "allowed"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        alice.read_namespaced_config_map("other", "default")
    assert exc.value.status == 403
    with pytest.raises(kubernetes.client.ApiException):
        alice.read_namespaced_config_map("allowed", "kube-system")


def test_cluster_role_for_a_service_account_with_subresources(
    k8s: kubernetes.client.ApiClient, widgets: Any, as_user: Any
) -> None:
    RBAC(k8s).create_cluster_role(
        {
            "metadata": {"name": "agent"},
            "rules": [
                {"apiGroups": [GROUP], "resources": ["widgets"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [GROUP], "resources": ["widgets/status"], "verbs": ["patch"]},
            ],
        }
    )
    RBAC(k8s).create_cluster_role_binding(
        {
            "metadata": {"name": "agent"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "agent",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "node-agent", "namespace": "corral-system"}
            ],
        }
    )
    widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w1"))
    agent = kubernetes.client.CustomObjectsApi(as_user("agent-token"))
    args = (GROUP, VERSION, "default", PLURAL)
    agent.patch_namespaced_custom_object_status(*args, "w1", {"status": {"phase": "Up"}})
    with pytest.raises(kubernetes.client.ApiException) as exc:
        agent.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": 2}})
    assert exc.value.status == 403


def test_token_review(k8s: kubernetes.client.ApiClient) -> None:
    auth = kubernetes.client.AuthenticationV1Api(k8s)
    review = auth.create_token_review({"spec": {"token": "alice-token"}})
    assert review.status.authenticated is True
    assert review.status.user.username == "alice"
    assert review.status.user.groups == ["developers", "system:authenticated"]
    unknown = auth.create_token_review({"spec": {"token": "nope"}})
    assert not unknown.status.authenticated


def test_subject_access_review_of_an_exec_subresource(k8s: kubernetes.client.ApiClient) -> None:
    RBAC(k8s).create_cluster_role(
        {
            "metadata": {"name": "exec"},
            "rules": [
                {
                    "apiGroups": ["corral.dev"],
                    "resources": ["sandboxes/exec"],
                    "verbs": ["create"],
                    "resourceNames": ["sb1"],
                }
            ],
        }
    )
    RBAC(k8s).create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "alice-exec"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "exec",
            },
            "subjects": [{"kind": "User", "name": "alice"}],
        },
    )
    authz = kubernetes.client.AuthorizationV1Api(k8s)

    def review(name: str, subresource: str = "exec") -> Any:
        return authz.create_subject_access_review(
            {
                "spec": {
                    "user": "alice",
                    "groups": ["developers"],
                    "resourceAttributes": {
                        "namespace": "default",
                        "verb": "create",
                        "group": "corral.dev",
                        "resource": "sandboxes",
                        "subresource": subresource,
                        "name": name,
                    },
                }
            }
        ).status

    allowed = review("sb1")
    assert allowed.allowed is True
    assert allowed.reason == (
        'RBAC: allowed by RoleBinding "alice-exec/default" of ClusterRole "exec" to User "alice"'
    )
    assert review("sb2").allowed is False
    assert review("sb1", subresource="").allowed is False


def test_self_subject_access_review(as_user: Any) -> None:
    authz = kubernetes.client.AuthorizationV1Api(as_user("alice-token"))
    status = authz.create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "get",
                    "resource": "configmaps",
                }
            }
        }
    ).status
    assert status.allowed is False
