"""Who may connect: TokenReview + SubjectAccessReview against the test API server's RBAC,
the brief cache of positive answers, and how refusals are worded."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from kubernetes_asyncio import client as k8s_async

from cluster_exec.conftest import ALICE_TOKEN, BOB_TOKEN, rbac
from corral.api import SYSTEM_NAMESPACE
from corral.node_agent.daemon.auth import (
    Authorizer,
    Identity,
    Refusal,
    Target,
    access_review,
    bearer_token,
)
from corral.testing.kubeapi import KubeAPIServer

SB = Target("default", "sb")


@pytest.fixture
def roles(k8s: kubernetes.client.ApiClient) -> Iterator[None]:
    kubernetes.client.CoreV1Api(k8s).create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
    rbac(k8s)
    yield


def reviews(kubeapi: KubeAPIServer) -> int:
    return kubeapi.log.count(resource="tokenreviews") + kubeapi.log.count(
        resource="subjectaccessreviews"
    )


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  ", "Basic YWxpY2U6eA=="])
def test_a_request_without_a_bearer_token_is_401(header: str | None) -> None:
    with pytest.raises(Refusal) as refused:
        bearer_token(header)
    assert (refused.value.code, refused.value.reason) == (401, "Unauthorized")


def test_the_review_names_the_exec_subresource_of_one_sandbox() -> None:
    review = access_review(Identity("alice", ("devs",), "u-1", {"scope": ["x"]}), SB)
    spec = review.spec
    assert (spec.user, spec.groups, spec.uid, spec.extra) == (
        "alice",
        ["devs"],
        "u-1",
        {"scope": ["x"]},
    )
    attributes = spec.resource_attributes
    assert (attributes.verb, attributes.group, attributes.resource, attributes.subresource) == (
        "create",
        "corral.dev",
        "sandboxes",
        "exec",
    )
    assert (attributes.namespace, attributes.name) == ("default", "sb")


async def test_allowed_answers_are_cached_per_token_and_target(
    roles: None, kubeapi: KubeAPIServer, agent_api: k8s_async.ApiClient
) -> None:
    authorizer = Authorizer(agent_api, ttl=60, max_entries=2)
    identity = await authorizer.authorize(f"Bearer {ALICE_TOKEN}", SB)
    assert identity.user == "alice" and "developers" in identity.groups
    before = reviews(kubeapi)
    await authorizer.authorize(f"Bearer {ALICE_TOKEN}", SB)
    assert reviews(kubeapi) == before
    for name in ("a", "b"):
        await authorizer.authorize(f"Bearer {ALICE_TOKEN}", Target("default", name))
    assert reviews(kubeapi) == before + 4
    await authorizer.authorize(f"Bearer {ALICE_TOKEN}", SB)  # evicted: at most 2 kept
    assert reviews(kubeapi) == before + 6


async def test_answers_expire(
    roles: None, kubeapi: KubeAPIServer, agent_api: k8s_async.ApiClient
) -> None:
    authorizer = Authorizer(agent_api, ttl=0)
    await authorizer.authorize(f"Bearer {ALICE_TOKEN}", SB)
    before = reviews(kubeapi)
    await authorizer.authorize(f"Bearer {ALICE_TOKEN}", SB)
    assert reviews(kubeapi) == before + 2


async def test_refusals_are_not_cached_and_say_who_and_what(
    roles: None, kubeapi: KubeAPIServer, agent_api: k8s_async.ApiClient
) -> None:
    authorizer = Authorizer(agent_api)
    for _ in range(2):
        with pytest.raises(Refusal) as refused:
            await authorizer.authorize(f"Bearer {BOB_TOKEN}", SB)
        assert refused.value.code == 403
    assert refused.value.message.startswith(
        'sandboxes.corral.dev "sb" is forbidden: User "bob" cannot create resource '
        '"sandboxes/exec" in API group "corral.dev" in the namespace "default"'
    )
    assert kubeapi.log.count(resource="subjectaccessreviews") == 2
    with pytest.raises(Refusal) as unknown:
        await authorizer.authorize("Bearer not-a-token", SB)
    assert unknown.value.code == 401


async def test_an_agent_that_may_not_review_answers_503(
    kubeapi: KubeAPIServer, agent_api: k8s_async.ApiClient
) -> None:
    with pytest.raises(Refusal) as refused:
        await Authorizer(agent_api).authorize(f"Bearer {ALICE_TOKEN}", SB)
    assert (refused.value.code, refused.value.reason) == (503, "ServiceUnavailable")
    assert "403" in refused.value.message
