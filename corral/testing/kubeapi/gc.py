"""The controllers the real control plane runs around deletion, run on the server's loop.

Owns ownerReferences garbage collection (background: dependents whose owners are
all gone are deleted, dangling references removed; foreground: the owner keeps
the `foregroundDeletion` finalizer until its blocking dependents are gone;
orphan: references are removed, then the `orphan` finalizer), the namespace
controller (a terminating namespace is emptied, then removed) and CRD cleanup
(instances deleted, then the cleanup finalizer removed). Like the real
controllers these run asynchronously, just after the write that triggered them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import APIError
from .resources import Resource, from_crd

if TYPE_CHECKING:
    from .objects import Objects

JSON = dict[str, Any]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_NS_KEY = ("", "namespaces")
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_MANAGER = "generic-garbage-collector"


def _refs(obj: JSON) -> list[JSON]:
    return list(obj["metadata"].get("ownerReferences") or [])


class Collector:
    """Reacts to deletions and deletion marks recorded by `Objects`."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        self.objects.schedule(lambda: fn(*args))

    # -- hooks called by Objects ------------------------------------------------------

    def deleting(self, resource: Resource, obj: JSON) -> None:
        finalizers = obj["metadata"].get("finalizers") or []
        uid = obj["metadata"]["uid"]
        if resource.key == _NS_KEY:
            self._soon(self._namespace, obj["metadata"]["name"])
        if resource.key == _CRD_KEY:
            self._soon(self._crd, obj["metadata"]["name"])
        if FOREGROUND in finalizers:
            self._soon(self._foreground, uid)
        if ORPHAN in finalizers:
            self._soon(self._orphan, uid)

    def deleted(self, resource: Resource, obj: JSON) -> None:
        self._soon(self._background, obj["metadata"]["uid"])
        for ref in _refs(obj):
            self._soon(self._foreground, ref.get("uid"))
        namespace = obj["metadata"].get("namespace")
        if namespace:
            self._soon(self._namespace, namespace)
        if resource.custom:
            self._soon(self._crd, f"{resource.plural}.{resource.group}")

    def changed(self, resource: Resource, old: JSON, new: JSON) -> None:
        kept = {r.get("uid") for r in _refs(new)}
        for ref in _refs(old):
            if ref.get("uid") not in kept:
                self._soon(self._foreground, ref.get("uid"))

    # -- lookups ----------------------------------------------------------------------

    def _resource(self, key: tuple[str, str]) -> Resource | None:
        return self.objects.registry.get(*key)

    def _find(self, uid: str | None) -> tuple[Resource, JSON] | None:
        for key, obj in self.objects.store.everything():
            resource = self._resource(key)
            if resource is not None and obj["metadata"].get("uid") == uid:
                return resource, obj
        return None

    def _dependents(self, uid: str) -> list[tuple[Resource, JSON, JSON]]:
        out = []
        for key, obj in self.objects.store.everything():
            resource = self._resource(key)
            for ref in _refs(obj):
                if resource is not None and ref.get("uid") == uid:
                    out.append((resource, obj, ref))
        return out

    def _delete(self, resource: Resource, obj: JSON, propagation: str) -> None:
        from .objects import DeleteOptions

        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            self.objects.delete(
                resource,
                meta.get("namespace", ""),
                meta["name"],
                DeleteOptions(propagation=propagation),
            )
        except APIError:
            return

    def _write(self, resource: Resource, obj: JSON) -> None:
        try:
            self.objects.internal_update(resource, obj, _MANAGER)
        except APIError:
            return

    def _drop_finalizer(self, resource: Resource, obj: JSON, finalizer: str) -> None:
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != finalizer
        ]
        self._write(resource, new)

    # -- controllers ------------------------------------------------------------------

    def _background(self, uid: str) -> None:
        for resource, obj, _ in self._dependents(uid):
            alive = [r for r in _refs(obj) if r.get("uid") != uid and self._find(r.get("uid"))]
            if alive:
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in _refs(obj) if r.get("uid") != uid]
                self._write(resource, new)
            else:
                self._delete(resource, obj, "Background")

    def _foreground(self, uid: str | None) -> None:
        found = self._find(uid)
        if found is None or uid is None:
            return
        owner = found[1]
        if FOREGROUND not in (owner["metadata"].get("finalizers") or []):
            return
        for dep_resource, dep, ref in self._dependents(uid):
            blocking = bool(ref.get("blockOwnerDeletion"))
            self._delete(dep_resource, dep, "Foreground" if blocking else "Background")
        if any(ref.get("blockOwnerDeletion") for _, _, ref in self._dependents(uid)):
            return
        current = self._find(uid)
        if current is not None:
            self._drop_finalizer(current[0], current[1], FOREGROUND)

    def _orphan(self, uid: str) -> None:
        for resource, obj, _ in self._dependents(uid):
            new = copy.deepcopy(obj)
            new["metadata"]["ownerReferences"] = [r for r in _refs(obj) if r.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                new["metadata"].pop("ownerReferences")
            self._write(resource, new)
        found = self._find(uid)
        if found is not None:
            self._drop_finalizer(found[0], found[1], ORPHAN)

    def _namespace(self, name: str) -> None:
        namespaces = self._resource(_NS_KEY)
        ns = self.objects.store.get(_NS_KEY, "", name)
        if namespaces is None or ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = False
        for resource in self.objects.registry.all():
            if not resource.namespaced:
                continue
            for obj in self.objects.store.items(resource.key, name):
                remaining = True
                self._delete(resource, obj, "Background")
        if not remaining and not ns["metadata"].get("finalizers"):
            self.objects.finalize(namespaces, ns)

    def _crd(self, name: str) -> None:
        crds = self._resource(_CRD_KEY)
        crd = self.objects.store.get(_CRD_KEY, "", name)
        if crds is None or crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        custom = from_crd(crd)
        instances = self.objects.store.items(custom.key)
        for obj in instances:
            self._delete(custom, obj, "Background")
        if not self.objects.store.items(custom.key):
            self._drop_finalizer(crds, crd, "customresourcecleanup.apiextensions.k8s.io")
