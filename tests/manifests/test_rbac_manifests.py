"""The manifests' RBAC on the test server: each service account can do exactly what its
component needs and no more, users bound to corral-edit may exec and those bound to
corral-view may not (also through the aggregated `edit` and `view`), and every
authenticated user may read node agents' Leases in corral-system, nothing else there.

Each check is a SubjectAccessReview, the question the API server's authorizer answers
for a real request; one test also makes real requests with a service account's token."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
from testing.kubeapi.conftest import Kubectl

from corral.api import SYSTEM_NAMESPACE
from corral.testing.kubeapi import ADMIN_TOKEN, KubeAPIServer, Settings, User, write_kubeconfig

OPERATOR = f"system:serviceaccount:{SYSTEM_NAMESPACE}:corral-operator"
AGENT = f"system:serviceaccount:{SYSTEM_NAMESPACE}:corral-node-agent"
SA_GROUPS = (
    "system:serviceaccounts",
    f"system:serviceaccounts:{SYSTEM_NAMESPACE}",
    "system:authenticated",
)
USER_GROUPS = ("system:authenticated",)
TEAM = "team-a"
REPO = Path(__file__).resolve().parents[2]
CORRAL = "corral.dev"
COORDINATION = "coordination.k8s.io"


@dataclass(frozen=True)
class Ask:
    """One request's attributes: `verb resource[/subresource] in namespace`."""

    verb: str
    resource: str
    group: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {self.resource}.{self.group or 'core'}{where}"


def can(k8s: kubernetes.client.ApiClient, user: str, groups: Iterable[str], ask: Ask) -> bool:
    resource, _, subresource = ask.resource.partition("/")
    review = kubernetes.client.AuthorizationV1Api(k8s).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": list(groups),
                "resourceAttributes": {
                    "verb": ask.verb,
                    "group": ask.group,
                    "resource": resource,
                    "subresource": subresource,
                    "namespace": ask.namespace,
                    "name": ask.name,
                },
            }
        }
    )
    return bool(review.status.allowed)


def check(
    k8s: kubernetes.client.ApiClient,
    user: str,
    groups: Iterable[str],
    may: list[Ask],
    may_not: list[Ask],
) -> None:
    """Every answer at once, so a failure names all the wrong ones."""
    wrong = [f"denied: {a}" for a in may if not can(k8s, user, groups, a)]
    wrong += [f"allowed: {a}" for a in may_not if can(k8s, user, groups, a)]
    assert wrong == [], f"{user}: {wrong}"


@pytest.fixture
def api(deployed: str, k8s: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """An admin client of a server with the manifests applied and a users' namespace."""
    kubernetes.client.CoreV1Api(k8s).create_namespace({"metadata": {"name": TEAM}})
    return k8s


def test_the_operator_may_place_sandboxes_and_nothing_more(
    api: kubernetes.client.ApiClient,
) -> None:
    may = [
        *(Ask(v, "sandboxes", CORRAL) for v in ("list", "watch")),
        *(Ask(v, "sandboxes", CORRAL, TEAM, "sb") for v in ("get", "patch")),
        *(Ask(v, "sandboxes/status", CORRAL, TEAM, "sb") for v in ("get", "patch")),
        *(Ask(v, "leases", COORDINATION, SYSTEM_NAMESPACE) for v in ("get", "list", "watch")),
        *(Ask(v, "events", g, TEAM) for v in ("create", "patch") for g in ("", "events.k8s.io")),
        *(Ask(v, "clusterkopfpeerings", "kopf.dev") for v in ("list", "watch")),
        *(
            Ask(v, "clusterkopfpeerings", "kopf.dev", name="corral-operator")
            for v in ("get", "patch")
        ),
        *(Ask(v, "customresourcedefinitions", "apiextensions.k8s.io") for v in ("list", "watch")),
        *(Ask(v, "namespaces") for v in ("list", "watch")),
    ]
    may_not = [
        *(Ask(v, "sandboxes", CORRAL, TEAM, "sb") for v in ("create", "update", "delete")),
        Ask("update", "sandboxes/status", CORRAL, TEAM, "sb"),
        Ask("create", "sandboxes/exec", CORRAL, TEAM, "sb"),
        *(Ask(v, "volumes", CORRAL, TEAM) for v in ("get", "list")),
        *(Ask(v, "secrets", "", TEAM, "pull") for v in ("get", "list")),
        Ask("list", "secrets"),
        Ask("list", "leases", COORDINATION, TEAM),
        Ask("get", "leases", COORDINATION, "kube-node-lease", "node-1"),
        *(Ask(v, "leases", COORDINATION, SYSTEM_NAMESPACE) for v in ("create", "delete")),
        Ask("update", "leases", COORDINATION, SYSTEM_NAMESPACE, "node-1"),
        *(Ask(v, "clusterkopfpeerings", "kopf.dev") for v in ("create", "delete")),
        *(
            Ask(v, "customresourcedefinitions", "apiextensions.k8s.io")
            for v in ("create", "delete")
        ),
        Ask("delete", "namespaces", name=TEAM),
        Ask("create", "pods", "", TEAM),
        Ask("create", "tokenreviews", "authentication.k8s.io"),
    ]
    check(api, OPERATOR, SA_GROUPS, may, may_not)


def test_the_node_agent_may_run_its_sandboxes_and_nothing_more(
    api: kubernetes.client.ApiClient,
) -> None:
    may = [
        *(Ask(v, "sandboxes", CORRAL) for v in ("list", "watch")),
        *(Ask(v, "sandboxes", CORRAL, TEAM, "sb") for v in ("get", "patch")),
        *(Ask(v, "sandboxes/status", CORRAL, TEAM, "sb") for v in ("get", "patch")),
        Ask("create", "leases", COORDINATION, SYSTEM_NAMESPACE),
        *(
            Ask(v, "leases", COORDINATION, SYSTEM_NAMESPACE, "node-1")
            for v in ("get", "update", "patch")
        ),
        *(Ask(v, "events", g, TEAM) for v in ("create", "patch") for g in ("", "events.k8s.io")),
        Ask("get", "secrets", "", TEAM, "registry-credentials"),
        Ask("create", "tokenreviews", "authentication.k8s.io"),
        Ask("create", "subjectaccessreviews", "authorization.k8s.io"),
    ]
    may_not = [
        *(Ask(v, "sandboxes", CORRAL, TEAM, "sb") for v in ("create", "update", "delete")),
        Ask("create", "sandboxes/exec", CORRAL, TEAM, "sb"),
        *(Ask(v, "secrets", "", TEAM) for v in ("list", "watch", "create")),
        Ask("list", "secrets"),
        *(Ask(v, "secrets", "", TEAM, "registry-credentials") for v in ("update", "delete")),
        Ask("create", "leases", COORDINATION, TEAM),
        Ask("create", "leases", COORDINATION, "kube-node-lease"),
        Ask("delete", "leases", COORDINATION, SYSTEM_NAMESPACE, "node-1"),
        Ask("list", "leases", COORDINATION, SYSTEM_NAMESPACE),
        *(Ask(v, "clusterkopfpeerings", "kopf.dev") for v in ("list", "patch")),
        Ask("list", "namespaces"),
        Ask("get", "nodes", name="node-1"),
        Ask("create", "pods", "", TEAM),
    ]
    check(api, AGENT, SA_GROUPS, may, may_not)


def _bind(k8s: kubernetes.client.ApiClient, user: str, role: str) -> None:
    kubernetes.client.RbacAuthorizationV1Api(k8s).create_namespaced_role_binding(
        TEAM,
        {
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


KINDS = ("sandboxes", "volumes", "networkpolicies")
READ = [Ask(v, k, CORRAL, TEAM) for k in KINDS for v in ("get", "list", "watch")]
READ_STATUS = [Ask("get", f"{k}/status", CORRAL, TEAM) for k in KINDS]
WRITE = [Ask(v, k, CORRAL, TEAM) for k in KINDS for v in ("create", "update", "patch", "delete")]
EXEC = Ask("create", "sandboxes/exec", CORRAL, TEAM, "sb")
ELSEWHERE = [
    Ask("get", "sandboxes", CORRAL, "team-b"),
    Ask("create", "sandboxes/exec", CORRAL, "team-b", "sb"),
]
STATUS_WRITES = [Ask("patch", f"{k}/status", CORRAL, TEAM) for k in KINDS]


@pytest.mark.parametrize("role", ["corral-edit", "edit"])
def test_an_editor_may_exec(api: kubernetes.client.ApiClient, role: str) -> None:
    """corral-edit bound directly, or Kubernetes' `edit` which aggregates it."""
    _bind(api, "alice", role)
    may = [*READ, *READ_STATUS, *WRITE, EXEC]
    check_aggregated(api, "alice", may, [*STATUS_WRITES, *ELSEWHERE])


@pytest.mark.parametrize("role", ["corral-view", "view"])
def test_a_viewer_may_read_but_not_exec(api: kubernetes.client.ApiClient, role: str) -> None:
    _bind(api, "bob", role)
    check_aggregated(api, "bob", [*READ, *READ_STATUS], [*WRITE, EXEC, *STATUS_WRITES, *ELSEWHERE])


def check_aggregated(
    k8s: kubernetes.client.ApiClient, user: str, may: list[Ask], may_not: list[Ask]
) -> None:
    """`check`, once the aggregation controller has added corral-edit and corral-view to
    Kubernetes' edit and view (it runs just after their creation, as on a real cluster)."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(k8s)
    deadline = time.monotonic() + 5
    for role in ("edit", "view"):
        while not any(
            CORRAL in (r.api_groups or []) for r in rbac.read_cluster_role(role).rules or []
        ):
            assert time.monotonic() < deadline, f"{role} never aggregated corral-{role}"
            time.sleep(0.02)
    check(k8s, user, USER_GROUPS, may, may_not)


def test_any_authenticated_user_may_read_agent_leases_and_no_more(
    api: kubernetes.client.ApiClient,
) -> None:
    may = [Ask("get", "leases", COORDINATION, SYSTEM_NAMESPACE, "node-1")]
    may_not = [
        *(Ask(v, "leases", COORDINATION, SYSTEM_NAMESPACE) for v in ("list", "watch", "create")),
        *(Ask(v, "leases", COORDINATION, SYSTEM_NAMESPACE, "node-1") for v in ("update", "delete")),
        Ask("get", "leases", COORDINATION, "kube-node-lease", "node-1"),
        Ask("get", "secrets", "", SYSTEM_NAMESPACE, "any"),
        Ask("get", "sandboxes", CORRAL, TEAM, "sb"),
    ]
    check(api, "carol", USER_GROUPS, may, may_not)
    anonymous = ("system:unauthenticated",)
    assert not can(api, "system:anonymous", anonymous, may[0])


@pytest.fixture
def kubeapi_settings() -> Settings:
    return Settings(
        tokens={
            ADMIN_TOKEN: User("admin", ("system:masters",)),
            "operator-token": User(OPERATOR, SA_GROUPS),
        }
    )


def test_real_requests_with_the_operators_token(
    api: kubernetes.client.ApiClient, kubeapi: KubeAPIServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"}}, "-n", TEAM)
    kubectl("apply", "-n", TEAM, "-f", str(REPO / "examples/sandbox.yaml"))
    config = write_kubeconfig(tmp_path / "operator.kubeconfig", kubeapi.url, "operator-token")
    operator = Kubectl(config, kubectl.home)
    operator("get", "sbx", "-A")  # each raises unless kubectl succeeds
    operator("get", "leases", "-n", SYSTEM_NAMESPACE)
    operator("patch", "clusterkopfpeering", "corral-operator", "--type=merge", "-p", "{}")
    for forbidden in (
        ("get", "secrets", "-n", TEAM),
        ("delete", "sbx", "hello", "-n", TEAM),
        ("get", "leases", "-n", TEAM),
    ):
        result = operator(*forbidden, check=False)
        assert result.returncode != 0 and "Forbidden" in result.stderr, forbidden
