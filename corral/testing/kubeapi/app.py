"""The aiohttp application: URL parsing, authentication, authorization, logging, routing.

Owns the request path of the real API server's handler chain: every request is
authenticated (401 without a known bearer token), its attributes derived from
the URL and method (`/api/v1/namespaces/NS/PLURAL/NAME/SUB`, `/apis/G/V/...`,
legacy `/watch/` paths), authorized by RBAC (403), then answered by
`discovery.py` or `handlers.py`; every answer is recorded in the `RequestLog`.
`Cluster` holds the state of one server (store, registry, objects).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from . import discovery, rbac
from .errors import APIError, method_not_allowed, page_not_found
from .handlers import Handlers, Target, parse_bool, respond
from .objects import Objects, WriteOptions
from .resources import Registry
from .settings import Record, RequestLog, Settings
from .store import Store

_REVIEW_GROUPS = ("authentication.k8s.io", "authorization.k8s.io")
_MANAGER = "kube-apiserver"


@dataclass(frozen=True)
class Parsed:
    """A resource URL taken apart (before the resource is looked up)."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str
    subresource: str
    watch: bool


def parse_path(path: str) -> Parsed | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watching = bool(rest) and rest[0] == "watch"
    if watching:
        rest = rest[1:]
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    rest += [""] * (3 - len(rest))
    return Parsed(group, version, rest[0], namespace, rest[1], rest[2], watching)


def _verb(method: str, parsed: Parsed, watch_param: bool) -> str:
    if method in ("GET", "HEAD"):
        if parsed.watch or watch_param:
            return "watch"
        return "get" if parsed.name else "list"
    if method == "DELETE":
        return "delete" if parsed.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class Cluster:
    """The state of one test server and its request handling."""

    def __init__(self, settings: Settings, log: RequestLog) -> None:
        self.settings = settings
        self.log = log
        self.registry = Registry()
        self.store = Store(settings.history_size)
        self.objects = Objects(self.store, self.registry)
        self.handlers = Handlers(self.objects, settings)
        self.auth = rbac.Authenticator(settings.tokens)
        self.address = ""

    def seed(self) -> None:
        """What a fresh cluster has: the initial namespaces and the bootstrap RBAC policy."""
        for name in self.settings.namespaces:
            self._seed("", "namespaces", {"metadata": {"name": name}})
        for plural, obj in rbac.bootstrap_objects():
            self._seed(rbac.RBAC, plural, obj)

    def _seed(self, group: str, plural: str, obj: dict[str, object]) -> None:
        resource = self.registry.get(group, plural)
        assert resource is not None
        self.objects.create(resource, "", obj, WriteOptions(manager=_MANAGER, version="v1"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        record = {"method": request.method, "path": request.path, "verb": request.method.lower()}
        try:
            response = await self._handle(request, record)
        except APIError as exc:
            response = respond(exc.status, exc.code)
        self.log.add(Record(code=response.status, **record))
        return response

    async def _handle(self, request: web.Request, record: dict[str, str]) -> web.StreamResponse:
        user = self.auth.authenticate(request.headers.get("Authorization"))
        if user is None:
            raise rbac.unauthorized()
        record["user"] = user.name
        parsed = parse_path(request.path)
        if parsed is None:
            verb = request.method.lower()
            attrs = rbac.Attributes(
                user, "get" if verb == "head" else verb, False, path=request.path
            )
            self._authorize(attrs)
            return self._non_resource(request)
        verb = _verb(request.method, parsed, parse_bool(request.query.get("watch")))
        record.update(
            verb=verb,
            group=parsed.group,
            resource=parsed.plural,
            subresource=parsed.subresource,
            namespace=parsed.namespace,
            name=parsed.name,
        )
        self._authorize(
            rbac.Attributes(
                user,
                verb,
                True,
                group=parsed.group,
                version=parsed.version,
                resource=parsed.plural,
                subresource=parsed.subresource,
                namespace=parsed.namespace,
                name=parsed.name,
                path=request.path,
            )
        )
        resource = self.registry.lookup(parsed.group, parsed.version, parsed.plural)
        if resource is None or (
            parsed.subresource and parsed.subresource not in resource.subresources
        ):
            raise page_not_found()
        if parsed.namespace and not resource.namespaced:
            raise page_not_found()
        if resource.namespaced and parsed.name and not parsed.namespace:
            raise page_not_found()
        target = Target(
            resource, parsed.version, parsed.namespace, parsed.name, parsed.subresource, user
        )
        if resource.group in _REVIEW_GROUPS:
            return await self.handlers.review(request, target, self.auth)
        if verb not in resource.verbs:
            raise method_not_allowed(verb)
        return await self._dispatch(request, verb, target)

    def _authorize(self, attrs: rbac.Attributes) -> None:
        allowed, _ = rbac.authorize(self.store, attrs)
        if not allowed:
            raise rbac.forbidden(attrs)

    async def _dispatch(
        self, request: web.Request, verb: str, target: Target
    ) -> web.StreamResponse:
        h = self.handlers
        if verb == "get":
            return h.get(request, target)
        if verb == "list":
            return h.list(request, target)
        if verb == "watch":
            return await h.watch(request, target)
        if verb == "create":
            if target.name or target.subresource:
                raise method_not_allowed(verb)
            return await h.create(request, target)
        if not target.name and verb != "deletecollection":
            raise method_not_allowed(verb)
        if verb == "update":
            return await h.update(request, target)
        if verb == "patch":
            return await h.patch(request, target)
        if target.subresource:
            raise method_not_allowed(verb)
        if verb == "delete":
            return await h.delete(request, target)
        return await h.delete_collection(request, target)

    def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return respond(discovery.KUBE_VERSION)
        if path == "/api":
            return respond(discovery.api_versions(self.address))
        if path == "/apis":
            return respond(discovery.api_groups(self.registry))
        if path == "/openapi/v2":
            return web.Response(body=b"", content_type=discovery.OPENAPI_V2_PROTOBUF)
        if path == "/openapi/v3":
            return respond(discovery.openapi_v3_root(self.registry))
        parts = [p for p in path.split("/") if p]
        body = None
        if len(parts) == 2 and parts[0] == "apis":
            body = discovery.api_group(self.registry, parts[1])
        elif len(parts) == 2 and parts[0] == "api":
            body = discovery.resource_list(self.registry, "", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.resource_list(self.registry, parts[1], parts[2])
        elif parts[:2] == ["openapi", "v3"] and len(parts) >= 4:
            group, version = (
                ("", parts[3])
                if parts[2] == "api"
                else (parts[3], parts[4])
                if len(parts) == 5
                else ("", "")
            )
            body = discovery.openapi_v3_document(self.registry, group, version)
        if body is None:
            raise page_not_found()
        return respond(body)


def build(settings: Settings, log: RequestLog) -> tuple[web.Application, Cluster]:
    cluster = Cluster(settings, log)
    cluster.seed()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", cluster.handle)
    return app, cluster
