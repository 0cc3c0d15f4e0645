"""Who may exec into a sandbox: the caller's Kubernetes token, reviewed by the API server.

The caller's bearer token is checked with a TokenReview, then the user it names is
checked with a SubjectAccessReview for `create` on `sandboxes/exec` (group corral.dev)
of that one sandbox, so RBAC Roles decide exactly as they would for `pods/exec`.
Positive answers are cached briefly, keyed by a hash of the token and the target; the
token itself is kept nowhere. Building the review bodies and reading their answers is
pure; `Authorizer` only adds the two API calls and the cache. The API server
(`server.py`) calls `Authorizer.authorize` for every connect request.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from corral.api import GROUP

RESOURCE = "sandboxes"
SUBRESOURCE = "exec"
VERB = "create"


class Refusal(Exception):
    """The request is refused; `code` and `reason` are the HTTP status and Kubernetes reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Identity:
    """The authenticated user, as the TokenReview named it."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Target:
    """The sandbox a request wants to exec into."""

    namespace: str
    name: str


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header; 401 when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refusal(401, "Unauthorized", "Unauthorized: a bearer token is required")
    return token


def token_review(token: str) -> k8s.V1TokenReview:
    return k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))


def identity_of(review_status: Any) -> Identity:
    """The user a TokenReview's status names; 401 when it did not authenticate."""
    user = getattr(review_status, "user", None)
    if (
        review_status is None
        or not review_status.authenticated
        or user is None
        or not user.username
    ):
        raise Refusal(401, "Unauthorized", "Unauthorized")
    return Identity(
        user=user.username,
        groups=tuple(user.groups or ()),
        uid=user.uid or "",
        extra={key: list(values) for key, values in (user.extra or {}).items()},
    )


def access_review(identity: Identity, target: Target) -> k8s.V1SubjectAccessReview:
    return k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=identity.user,
            groups=list(identity.groups),
            uid=identity.uid or None,
            extra=identity.extra or None,
            resource_attributes=k8s.V1ResourceAttributes(
                namespace=target.namespace,
                verb=VERB,
                group=GROUP,
                resource=RESOURCE,
                subresource=SUBRESOURCE,
                name=target.name,
            ),
        )
    )


def check_allowed(review_status: Any, identity: Identity, target: Target) -> None:
    """403 unless the SubjectAccessReview allowed it, worded like the API server's."""
    if review_status is not None and review_status.allowed and not review_status.denied:
        return
    message = (
        f'{RESOURCE}.{GROUP} "{target.name}" is forbidden: User "{identity.user}" cannot '
        f'{VERB} resource "{RESOURCE}/{SUBRESOURCE}" in API group "{GROUP}" '
        f'in the namespace "{target.namespace}"'
    )
    reason = getattr(review_status, "reason", None)
    raise Refusal(403, "Forbidden", f"{message}: {reason}" if reason else message)


class Authorizer:
    """Authenticates and authorizes connect requests with the agent's own API client."""

    def __init__(self, api: k8s.ApiClient, ttl: float = 10.0, max_entries: int = 1024) -> None:
        self._authentication = k8s.AuthenticationV1Api(api)
        self._authorization = k8s.AuthorizationV1Api(api)
        self._ttl = ttl
        self._max_entries = max_entries
        self._allowed: OrderedDict[tuple[str, Target], tuple[float, Identity]] = OrderedDict()

    async def authorize(self, authorization: str | None, target: Target) -> Identity:
        """The caller, when allowed to exec into `target`; otherwise raises `Refusal`."""
        token = bearer_token(authorization)
        key = (hashlib.sha256(token.encode()).hexdigest(), target)
        cached = self._allowed.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            reviewed = await self._authentication.create_token_review(token_review(token))
            identity = identity_of(reviewed.status)
            decided = await self._authorization.create_subject_access_review(
                access_review(identity, target)
            )
        except ApiException as exc:
            raise Refusal(
                503, "ServiceUnavailable", f"cannot review the request: {exc.status} {exc.reason}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Refusal(503, "ServiceUnavailable", f"cannot review the request: {exc}") from exc
        check_allowed(decided.status, identity, target)
        self._remember(key, identity)
        return identity

    def _remember(self, key: tuple[str, Target], identity: Identity) -> None:
        self._allowed[key] = (time.monotonic() + self._ttl, identity)
        self._allowed.move_to_end(key)
        while len(self._allowed) > self._max_entries:
            self._allowed.popitem(last=False)
