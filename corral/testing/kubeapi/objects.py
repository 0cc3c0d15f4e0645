"""Object lifecycle: create, update, patch, apply and delete with the API server's rules.

Owns the registry-store semantics of the real API server on top of `store.py`:
server-set metadata, generation bumped on spec changes only, resourceVersion
preconditions (409), the status subresource (the main endpoint ignores status,
`/status` changes only status), finalizers and deletionTimestamp, namespace
lifecycle, custom resources pruned/defaulted/validated against their CRD (422),
managedFields, and the CRD side effects (registering and unregistering the
resource). `app.py` calls it; `gc.py` is called back after deletions, `aggregation.py`
after ClusterRole writes.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from . import aggregation, cel, crds, fields, gc
from .errors import STALE, APIError, FieldError, already_exists, conflict, invalid, not_found
from .meta import generate_name, new_uid, now, tracks_generation, validate_meta
from .patch import APPLY, apply_patch
from .resources import Registry, Resource, from_crd
from .schema import apply_defaults, prune, rule_sites, validate
from .store import Store, ident

JSON = dict[str, Any]
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NS_KEY = ("", "namespaces")
# Errors after which the real server skips CEL rules (hasBlockingErr).
_BLOCKING = ("NotSupported", "Required", "TooLong", "TooMany", "TypeInvalid")
_SYSTEM = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)


@dataclass
class WriteOptions:
    """Per-request options of a write (query parameters of the real API)."""

    manager: str
    version: str
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteOptions:
    propagation: str = "Background"  # Background | Foreground | Orphan
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


def _spec_content(resource: Resource, obj: JSON) -> JSON:
    content = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if "status" in resource.subresources:
        content.pop("status", None)
    return content


class Objects:
    """The writers of the store; every mutation of the cluster goes through here."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.collector = gc.Collector(self)
        self.aggregator = aggregation.Aggregator(self)

    # -- reads ------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> JSON:
        obj = self.store.get(resource.key, namespace if resource.namespaced else "", name)
        if obj is None:
            raise not_found(resource.group, resource.plural, name)
        return obj

    # -- admission --------------------------------------------------------------------

    def _admit_custom(
        self, resource: Resource, obj: JSON, old: JSON | None, opts: WriteOptions
    ) -> JSON:
        schema = resource.schemas.get(opts.version) or {}
        if not schema:
            return obj
        unknown: list[str] = []
        obj = prune(obj, schema, "", unknown, root=True)
        if unknown and opts.field_validation == "Strict":
            raise APIError(
                400,
                f"{resource.kind} in version {json.dumps(opts.version)} cannot be "
                f"handled as a {resource.kind}: strict decoding error: "
                + ", ".join(f"unknown field {json.dumps(p)}" for p in unknown),
            )
        if opts.field_validation == "Warn":
            opts.warnings += [f"unknown field {json.dumps(p)}" for p in unknown]
        result: JSON = apply_defaults(obj, schema)
        return result

    def _validate(
        self, resource: Resource, obj: JSON, old: JSON | None, opts: WriteOptions
    ) -> None:
        errors = validate_meta(resource, obj["metadata"])
        if old is not None and obj["metadata"].get("uid") != old["metadata"]["uid"]:
            errors.append(
                FieldError(
                    "Invalid", "metadata.uid", obj["metadata"].get("uid"), "field is immutable"
                )
            )
        if resource.custom and (schema := resource.schemas.get(opts.version)):
            errors += validate(obj, schema)
            if any(e.type in _BLOCKING for e in errors):
                errors.append(
                    FieldError(
                        "Invalid",
                        "<nil>",
                        None,
                        "some validation rules were not checked because the object was "
                        "invalid; correct the existing errors to complete validation",
                    )
                )
            else:
                for site in rule_sites(obj, old, old is not None, schema):
                    errors += cel.evaluate(site)
        if resource.key == CRD_KEY:
            errors += crds.validate(obj)
        if old is not None and old["metadata"].get("deletionTimestamp"):
            added = [
                f
                for f in obj["metadata"].get("finalizers") or []
                if f not in (old["metadata"].get("finalizers") or [])
            ]
            if added:
                errors.append(
                    FieldError(
                        "Forbidden",
                        "metadata.finalizers",
                        detail="no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers []string{{{_go_strings(added)}}}",
                    )
                )
        if errors:
            raise invalid(resource.group, resource.kind, obj["metadata"].get("name", ""), errors)

    def _check_namespace(self, resource: Resource, namespace: str, name: str) -> None:
        if not resource.namespaced:
            return
        ns = self.store.get(NS_KEY, "", namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise APIError(
                403,
                f"{resource.plural}{'.' + resource.group if resource.group else ''} "
                f"{json.dumps(name)} is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated",
                details={
                    "name": name,
                    "group": resource.group,
                    "kind": resource.plural,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def _normalise(self, resource: Resource, body: Any, namespace: str) -> JSON:
        if not isinstance(body, dict):
            raise APIError(400, "the body of the request must be a JSON object")
        obj: JSON = copy.deepcopy(body)
        kind = obj.get("kind")
        if kind and kind != resource.kind:
            raise APIError(
                400,
                f"the kind in the body ({kind}) does not match the kind of the "
                f"resource ({resource.kind})",
            )
        api_version = obj.get("apiVersion")
        if api_version and resource.api_version(api_version.rpartition("/")[2]) != api_version:
            raise APIError(
                400,
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({resource.api_version()})",
            )
        obj["apiVersion"] = resource.api_version()
        obj["kind"] = resource.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(400, "metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise APIError(
                    400,
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    # -- create -----------------------------------------------------------------------

    def create(
        self,
        resource: Resource,
        namespace: str,
        body: Any,
        opts: WriteOptions,
        applied: bool = False,
    ) -> JSON:
        obj = self._normalise(resource, body, namespace)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise APIError(
                500,
                "Internal error occurred: resourceVersion should not be set on "
                "objects to be created",
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        self._check_namespace(resource, namespace, meta.get("name", ""))
        for key in _SYSTEM:
            meta.pop(key, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now()
        if tracks_generation(resource):
            meta["generation"] = 1
        if "status" in resource.subresources:
            obj.pop("status", None)
        if resource.key == NS_KEY:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        if resource.custom:
            obj = self._admit_custom(resource, obj, None, opts)
        self._validate(resource, obj, None, opts)
        if resource.key == CRD_KEY:
            crds.establish(obj)
        if self.store.get(resource.key, *ident(obj)) is not None:
            raise already_exists(resource.group, resource.plural, meta["name"])
        if not applied:
            fields.record_update(
                None, obj, opts.manager, "", resource.api_version(opts.version), now()
            )
        if opts.dry_run:
            return obj
        stored = self.store.put(resource.key, obj)
        if resource.key == CRD_KEY:
            self.registry.add(from_crd(stored))
        self.aggregator.changed(resource)
        return stored

    # -- update -----------------------------------------------------------------------

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        opts: WriteOptions,
    ) -> JSON:
        old = self.get(resource, namespace, name)
        new = self._normalise(resource, body, namespace)
        self._check_name(new, name)
        rv = new["metadata"].get("resourceVersion")
        if not rv and resource.custom:
            raise invalid(
                resource.group,
                resource.kind,
                name,
                [
                    FieldError(
                        "Invalid",
                        "metadata.resourceVersion",
                        detail="0x0: must be specified for an update",
                        omit_value=True,
                    )
                ],
            )
        return self.update(resource, old, new, subresource, opts)

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        document: Any,
        subresource: str,
        opts: WriteOptions,
    ) -> JSON:
        old = self.store.get(resource.key, namespace if resource.namespaced else "", name)
        if content_type == APPLY:
            return self._apply(resource, namespace, name, old, document, subresource, opts)
        if old is None:
            raise not_found(resource.group, resource.plural, name)
        view = {**old, "apiVersion": resource.api_version(opts.version)}
        new = self._normalise(
            resource, apply_patch(copy.deepcopy(view), content_type, document), namespace
        )
        self._check_name(new, name)
        return self.update(resource, old, new, subresource, opts)

    def _apply(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        old: JSON | None,
        document: Any,
        subresource: str,
        opts: WriteOptions,
    ) -> JSON:
        applied = self._normalise(resource, document, namespace)
        if not applied["metadata"].get("name"):
            applied["metadata"]["name"] = name
        self._check_name(applied, name)
        if subresource == "status":
            applied = {
                "apiVersion": applied["apiVersion"],
                "kind": applied["kind"],
                "metadata": applied["metadata"],
                "status": applied.get("status"),
            }
        elif "status" in resource.subresources:
            applied.pop("status", None)
        api_version = resource.api_version(opts.version)
        if old is None:
            if subresource:
                raise not_found(resource.group, resource.plural, name)
            created = fields.apply(None, applied, opts.manager, opts.force, "", api_version, now())
            return self.create(resource, namespace, created, opts, applied=True)
        live = {**old, "apiVersion": api_version}
        rv = applied["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE)
        merged = fields.apply(
            live, applied, opts.manager, opts.force, subresource, api_version, now()
        )
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.update(resource, old, merged, subresource, opts, track=False)

    @staticmethod
    def _check_name(obj: JSON, name: str) -> None:
        actual = obj["metadata"].get("name")
        if actual != name:
            raise APIError(
                400,
                f"the name of the object ({actual}) does not match the name on the URL ({name})",
            )

    def update(
        self,
        resource: Resource,
        old: JSON,
        new: JSON,
        subresource: str,
        opts: WriteOptions,
        track: bool = True,
    ) -> JSON:
        """Write a new state of an existing object (PUT, PATCH, apply and internal writers)."""
        name = old["metadata"]["name"]
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE)
        if subresource == "status":
            status = new.get("status")
            managed = new["metadata"].get("managedFields")
            new = copy.deepcopy(old)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
            if managed is not None:
                new["metadata"]["managedFields"] = managed
        elif "status" in resource.subresources:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta = new["metadata"]
        meta.setdefault("uid", old["metadata"]["uid"])
        for key in _SYSTEM[1:]:
            meta.pop(key, None)
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        if resource.key == NS_KEY:
            new["spec"] = new.get("spec") or old.get("spec") or {}
        if resource.custom:
            new = self._admit_custom(resource, new, old, opts)
        self._validate(resource, new, old, opts)
        if tracks_generation(resource) and _spec_content(resource, new) != _spec_content(
            resource, old
        ):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        if resource.key == CRD_KEY and not meta.get("deletionTimestamp"):
            crds.establish(new)
        if track:
            fields.record_update(
                old, new, opts.manager, subresource, resource.api_version(opts.version), now()
            )
        if _same(old, new):
            return old
        if opts.dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self.finalize(resource, new)
        stored = self.store.put(resource.key, new)
        if resource.key == CRD_KEY:
            self.registry.add(from_crd(stored))
        self.collector.changed(resource, old, stored)
        self.aggregator.changed(resource)
        return stored

    # -- delete -----------------------------------------------------------------------

    def delete(
        self, resource: Resource, namespace: str, name: str, options: DeleteOptions
    ) -> tuple[JSON, bool]:
        """Delete or mark for deletion; returns (object, deleted now)."""
        obj = self.get(resource, namespace, name)
        meta = obj["metadata"]
        if options.uid and options.uid != meta["uid"]:
            raise conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {options.uid}, UID in "
                f"object meta: {meta['uid']}",
            )
        if options.resource_version and options.resource_version != meta["resourceVersion"]:
            raise conflict(
                resource.group,
                resource.plural,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{options.resource_version}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )
        finalizers = list(meta.get("finalizers") or [])
        extra = {"Foreground": gc.FOREGROUND, "Orphan": gc.ORPHAN}.get(options.propagation)
        if extra and extra not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append(extra)
        blocked = bool(finalizers) or resource.key == NS_KEY
        if not blocked:
            if options.dry_run:
                return obj, True
            return self.finalize(resource, obj), True
        if meta.get("deletionTimestamp"):
            return obj, False
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = finalizers
        if not finalizers:
            new["metadata"].pop("finalizers")
        new["metadata"]["deletionTimestamp"] = now()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        if tracks_generation(resource):
            new["metadata"]["generation"] = meta.get("generation", 0) + 1
        if resource.key == NS_KEY:
            new["status"] = {"phase": "Terminating"}
        if resource.key == CRD_KEY:
            crds.terminating(new)
        if options.dry_run:
            return new, False
        stored = self.store.put(resource.key, new)
        self.collector.deleting(resource, stored)
        return stored, False

    def finalize(self, resource: Resource, obj: JSON) -> JSON:
        """Remove an object for good (no finalizers left) and let the collector react."""
        gone = self.store.remove(resource.key, obj)
        if resource.key == CRD_KEY:
            custom = from_crd(obj)
            self.registry.remove(custom.key)
            self.store.drop_resource(custom.key)
        self.collector.deleted(resource, gone)
        self.aggregator.changed(resource)
        return gone

    def internal_update(self, resource: Resource, obj: JSON, manager: str) -> None:
        """A controller's write (garbage collector, namespace controller)."""
        old = self.store.get(resource.key, *ident(obj))
        if old is None:
            return
        opts = WriteOptions(
            manager=manager, version=resource.storage_version, field_validation="Ignore"
        )
        self.update(resource, old, obj, "", opts)

    def schedule(self, callback: Any) -> None:
        asyncio.get_running_loop().call_soon(callback)


def _go_strings(values: list[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _same(old: JSON, new: JSON) -> bool:
    def strip(obj: JSON) -> JSON:
        meta = {
            k: v
            for k, v in obj["metadata"].items()
            if k not in ("managedFields", "resourceVersion")
        }
        return {**obj, "metadata": meta}

    return strip(old) == strip(new)
