"""CustomResourceDefinition objects: validation, status, and the cleanup finalizer.

Owns what the apiextensions-apiserver does to a CRD object itself: name must be
`<plural>.<group>`, exactly one storage version, CEL rules must compile; a stored
CRD gets the `customresourcecleanup.apiextensions.k8s.io` finalizer and the
Established/NamesAccepted conditions. `objects.py` calls these; registering the
resource in the `Registry` is done there when the CRD is stored.
"""

from __future__ import annotations

from typing import Any

from . import cel
from .errors import FieldError
from .meta import now

JSON = dict[str, Any]
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def validate(crd: JSON) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    for key in ("plural", "kind"):
        if not names.get(key):
            errors.append(FieldError("Required", f"spec.names.{key}"))
    if not spec.get("group"):
        errors.append(FieldError("Required", "spec.group"))
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if name != expected:
        errors.append(
            FieldError("Invalid", "metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    versions = spec.get("versions") or []
    if not versions or sum(bool(v.get("storage")) for v in versions) != 1:
        errors.append(
            FieldError(
                "Invalid",
                "spec.versions",
                versions,
                "must have exactly one version marked as storage version",
            )
        )
    for i, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        path = f"spec.versions[{i}].schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            errors.append(FieldError("Required", path, detail="schemas are required"))
            continue
        if schema.get("type") != "object":
            errors.append(
                FieldError(
                    "Invalid", f"{path}.type", schema.get("type"), "must be object at the root"
                )
            )
        errors += cel.check_rules(schema, path)
    return errors


def establish(crd: JSON) -> None:
    """What the CRD controllers write once the names are accepted and the API is served."""
    stamp = now()
    spec = crd["spec"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": stamp,
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": stamp,
        },
    ]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    old_status = crd.get("status") or {}
    stored = list(old_status.get("storedVersions") or [])
    if storage not in stored:
        stored.append(storage)
    crd["status"] = {"conditions": conditions, "acceptedNames": names, "storedVersions": stored}
    finalizers = crd["metadata"].setdefault("finalizers", [])
    if CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CLEANUP_FINALIZER)


def terminating(crd: JSON) -> None:
    for condition in crd.get("status", {}).get("conditions", []):
        if condition["type"] == "Established":
            condition.update(
                status="False",
                reason="Terminating",
                message="the object is being deleted",
                lastTransitionTime=now(),
            )
    crd.setdefault("status", {}).setdefault("conditions", []).append(
        {
            "type": "Terminating",
            "status": "True",
            "reason": "InstanceDeletionInProgress",
            "message": "CustomResource deletion is in progress",
            "lastTransitionTime": now(),
        }
    )
