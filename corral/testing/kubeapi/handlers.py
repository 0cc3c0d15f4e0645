"""The resource verbs: get, list, watch, create, update, patch, delete, deletecollection.

Owns turning one authorized resource request (a `Target` plus query parameters
and body) into an answer: query parameters decoded the way the real server
reads them (`limit`/`continue`, selectors, `dryRun`, `fieldManager`,
`fieldValidation`, `force`, `propagationPolicy`), objects served in the
requested version, lists with kind/apiVersion/resourceVersion, `Warning`
headers, and the TokenReview/SubjectAccessReview endpoints. `app.py` routes here.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from multidict import CIMultiDict

from . import rbac, tables, watch
from .errors import APIError, FieldError, bad_request, invalid, method_not_allowed
from .objects import CRD_KEY, DeleteOptions, Objects, WriteOptions
from .patch import APPLY, check_type, decode
from .resources import Resource
from .selectors import matcher
from .settings import Settings

JSON = dict[str, Any]
_BODY_TYPES = ("application/json", "application/yaml")


@dataclass(frozen=True)
class Target:
    """Where a resource request points."""

    resource: Resource
    version: str
    namespace: str  # "" for cluster-scoped or all namespaces
    name: str
    subresource: str
    user: rbac.User


def respond(body: JSON, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    """A JSON answer; each warning is its own `Warning: 299 - "..."` header, as in Go."""
    headers = CIMultiDict(("Warning", f"299 - {json.dumps(w)}") for w in warnings or ())
    return web.json_response(
        body, status=status, headers=headers, dumps=lambda o: json.dumps(o, separators=(",", ":"))
    )


def parse_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, which the real server uses for boolean query parameters."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _flag(request: web.Request, name: str) -> bool:
    return parse_bool(request.query.get(name))


class Handlers:
    """Verb implementations over `Objects`."""

    def __init__(self, objects: Objects, settings: Settings) -> None:
        self.objects = objects
        self.store = objects.store
        self.settings = settings

    def view(self, target: Target, obj: JSON) -> JSON:
        """An object as served in the requested version."""
        api_version = target.resource.api_version(target.version)
        if obj.get("apiVersion") == api_version:
            return obj
        return {**obj, "apiVersion": api_version}

    # -- reads ------------------------------------------------------------------------

    def _table(self, request: web.Request) -> str | None:
        """The `includeObject` of a Table request, or None when a Table is not wanted."""
        if not tables.wants_table(request.headers.get("Accept", "")):
            return None
        return request.query.get("includeObject") or "Metadata"

    def get(self, request: web.Request, target: Target) -> web.Response:
        obj = self.view(target, self.objects.get(target.resource, target.namespace, target.name))
        if (include := self._table(request)) is not None:
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return respond(tables.table(target.resource, target.version, [obj], meta, include))
        return respond(obj)

    def _match(self, request: web.Request, target: Target) -> Any:
        return matcher(
            request.query.get("labelSelector"),
            request.query.get("fieldSelector"),
            target.resource.field_labels,
        )

    def list(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        match = self._match(request, target)
        items = [o for o in self.store.items(resource.key, target.namespace or None) if match(o)]
        rv = self.store.rv
        start: list[str] | None = None
        if token := request.query.get("continue"):
            try:
                state = json.loads(base64.b64decode(token))
                rv, start = int(state["rv"]), list(state["start"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise bad_request("continue key is not valid: illegal base64 data") from exc
        if start is not None:
            items = [
                o
                for o in items
                if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > start
            ]
        list_meta: JSON = {"resourceVersion": str(rv)}
        limit = int(request.query.get("limit") or 0)
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            state = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
            list_meta["continue"] = base64.b64encode(json.dumps(state).encode()).decode()
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        rendered = [self.view(target, o) for o in items]
        if (include := self._table(request)) is not None:
            return respond(tables.table(resource, target.version, rendered, list_meta, include))
        if not resource.custom:
            rendered = [
                {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in rendered
            ]
        return respond(
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version(target.version),
                "metadata": list_meta,
                "items": rendered,
            }
        )

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        rv = request.query.get("resourceVersion", "")
        try:
            since = int(rv) if rv not in ("", "0") else None
        except ValueError as exc:
            raise bad_request(f"invalid resource version: {rv}") from exc
        timeout = request.query.get("timeoutSeconds")
        if timeout is not None and not timeout.lstrip("-").isdigit():
            raise bad_request(f'strconv.ParseInt: parsing "{timeout}": invalid syntax')
        req = watch.WatchRequest(
            key=target.resource.key,
            kind=target.resource.kind,
            api_version=target.resource.api_version(target.version),
            namespace=target.namespace or None,
            match=self._match(request, target),
            since=since,
            bookmarks=_flag(request, "allowWatchBookmarks"),
            initial_events=_flag(request, "sendInitialEvents"),
            timeout=int(timeout) if timeout and int(timeout) > 0 else None,
            bookmark_interval=self.settings.bookmark_interval,
        )
        include = self._table(request)

        def view(obj: JSON) -> JSON:
            obj = self.view(target, obj)
            if include is None:
                return obj
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return tables.table(target.resource, target.version, [obj], meta, include)

        return await watch.serve(request, self.store, req, view)

    # -- writes -----------------------------------------------------------------------

    def _options(self, request: web.Request, target: Target) -> WriteOptions:
        dry_run = request.query.getall("dryRun", [])
        if any(d != "All" for d in dry_run):
            raise bad_request(f"Invalid dry run value: {dry_run}")
        manager = (
            request.query.get("fieldManager")
            or (request.headers.get("User-Agent", "").split("/")[0][:128])
        )
        validation = request.query.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation parameter unsupported: {validation}")
        return WriteOptions(
            manager=manager,
            version=target.version,
            dry_run=bool(dry_run),
            field_validation=validation,
            force=_flag(request, "force"),
        )

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        # Without a Content-Type the real server assumes its first media type, JSON.
        content_type = (
            request.content_type if "Content-Type" in request.headers else "application/json"
        )
        if raw and content_type not in _BODY_TYPES and request.method != "PATCH":
            raise APIError(
                415,
                "the body of the request was in an unknown format - accepted "
                f"media types include: {', '.join(_BODY_TYPES)}",
                reason="UnsupportedMediaType",
            )
        try:
            if content_type in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw) if raw else None
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding request body: {exc}") from exc

    def _no_create_while_terminating(self, resource: Resource) -> None:
        if not resource.custom:
            return
        crd = self.store.get(CRD_KEY, "", f"{resource.plural}.{resource.group}")
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise APIError(
                405,
                "create not allowed while custom resource definition is terminating",
                reason="MethodNotAllowed",
            )

    async def create(self, request: web.Request, target: Target) -> web.Response:
        self._no_create_while_terminating(target.resource)
        opts = self._options(request, target)
        obj = self.objects.create(
            target.resource, target.namespace, await self._body(request), opts
        )
        return respond(self.view(target, obj), 201, opts.warnings)

    async def update(self, request: web.Request, target: Target) -> web.Response:
        opts = self._options(request, target)
        obj = self.objects.replace(
            target.resource,
            target.namespace,
            target.name,
            await self._body(request),
            target.subresource,
            opts,
        )
        return respond(self.view(target, obj), 200, opts.warnings)

    async def patch(self, request: web.Request, target: Target) -> web.Response:
        content_type = request.content_type
        check_type(content_type, target.resource.custom)
        opts = self._options(request, target)
        if content_type == APPLY:
            if not request.query.get("fieldManager"):
                raise invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    [FieldError("Required", "fieldManager", detail="is required for apply patch")],
                )
        elif opts.force:
            raise invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                [
                    FieldError(
                        "Forbidden", "force", detail="may not be specified for non-apply patch"
                    )
                ],
            )
        document = decode(await request.read(), content_type)
        existed = self.store.get(target.resource.key, target.namespace, target.name) is not None
        if not existed:
            self._no_create_while_terminating(target.resource)
        obj = self.objects.patch(
            target.resource,
            target.namespace,
            target.name,
            content_type,
            document,
            target.subresource,
            opts,
        )
        return respond(self.view(target, obj), 200 if existed else 201, opts.warnings)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body = await self._body(request) or {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be an object")
        policy = request.query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = body.get("orphanDependents")
        if orphan is None and "orphanDependents" in request.query:
            orphan = _flag(request, "orphanDependents")
        if policy is None:
            policy = "Orphan" if orphan else "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                [
                    FieldError(
                        "NotSupported",
                        "propagationPolicy",
                        policy,
                        'supported values: "Foreground", "Background", "Orphan", "nil"',
                    )
                ],
            )
        pre = body.get("preconditions") or {}
        dry = request.query.getall("dryRun", []) or body.get("dryRun") or []
        return DeleteOptions(
            propagation=policy,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            dry_run=bool(dry),
        )

    async def delete(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        resource = target.resource
        obj, deleted = self.objects.delete(resource, target.namespace, target.name, options)
        if not deleted:
            return respond(self.view(target, obj))
        meta = obj["metadata"]
        return respond(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": meta["name"],
                    "group": resource.group,
                    "kind": resource.plural,
                    "uid": meta["uid"],
                },
            }
        )

    async def delete_collection(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        match = self._match(request, target)
        resource = target.resource
        gone = []
        for obj in self.store.items(resource.key, target.namespace or None):
            if not match(obj):
                continue
            meta = obj["metadata"]
            try:
                result, _ = self.objects.delete(
                    resource, meta.get("namespace", ""), meta["name"], options
                )
            except APIError as exc:
                if exc.code == 404:
                    continue
                raise
            gone.append(self.view(target, result))
        return respond(
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version(target.version),
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": gone,
            }
        )

    # -- reviews ----------------------------------------------------------------------

    async def review(
        self, request: web.Request, target: Target, auth: rbac.Authenticator
    ) -> web.Response:
        if request.method != "POST" or target.name:
            raise method_not_allowed(request.method)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        spec = body.get("spec") or {}
        kind = target.resource.kind
        if kind == "TokenReview":
            user = auth.user_for_token(spec.get("token", ""))
            status: JSON = {"authenticated": True, "user": user.info()} if user else {"user": {}}
            if spec.get("audiences"):
                status["audiences"] = spec["audiences"]
        else:
            subject = target.user
            if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
                subject = rbac.User(
                    spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", "")
                )
            if kind == "LocalSubjectAccessReview":
                ns = (spec.get("resourceAttributes") or {}).get("namespace")
                if ns != target.namespace:
                    raise invalid(
                        target.resource.group,
                        kind,
                        "",
                        [
                            FieldError(
                                "Invalid",
                                "spec.resourceAttributes.namespace",
                                ns,
                                "must match metadata.namespace",
                            )
                        ],
                    )
            status = rbac.review_status(self.store, rbac.review_attributes(spec, subject))
        meta = dict(body.get("metadata") or {})
        meta.setdefault("creationTimestamp", None)
        return respond(
            {
                "kind": kind,
                "apiVersion": target.resource.api_version(target.version),
                "metadata": meta,
                "spec": spec,
                "status": status,
            },
            201,
        )
