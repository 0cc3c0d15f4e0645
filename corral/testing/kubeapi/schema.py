"""Structural OpenAPI v3 schemas of custom resources: defaulting, pruning, validation.

Owns what the apiextensions-apiserver does to a custom resource before it is
stored: nulls dropped where not nullable, `default`s applied, unknown fields
pruned (kept under `x-kubernetes-preserve-unknown-fields`), and the value
checked against types, required, enum, bounds, lengths and patterns. Errors are
`FieldError`s with the kube-openapi messages (`spec.cpus in body should be
greater than or equal to 1`). CEL rules are collected here and run by `cel.py`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import FieldError

JSON = dict[str, Any]

# ObjectMeta fields a custom resource keeps; everything else under metadata is pruned.
META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_type(value: Any) -> str:
    """The OpenAPI type name of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preserves(schema: JSON) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def _child(schema: JSON, key: str) -> JSON | None:
    """The schema of property `key`, or None when the field is unknown."""
    props = schema.get("properties") or {}
    if key in props:
        return dict(props[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    if extra is True or _preserves(schema):
        return {"x-kubernetes-preserve-unknown-fields": True}
    return None


def apply_defaults(value: Any, schema: JSON) -> Any:
    """Drop non-nullable nulls, fill in `default`s, recursively (a copy is returned)."""
    if isinstance(value, dict):
        out = {}
        props = schema.get("properties") or {}
        for key, item in value.items():
            sub = _child(schema, key)
            if item is None and sub is not None and not sub.get("nullable"):
                if "default" in sub:
                    out[key] = apply_defaults(copy.deepcopy(sub["default"]), sub)
                continue
            out[key] = apply_defaults(item, sub) if sub is not None else item
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = apply_defaults(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _prune_meta(meta: Any) -> Any:
    if not isinstance(meta, dict):
        return meta
    return {k: v for k, v in meta.items() if k in META_FIELDS}


def prune(value: Any, schema: JSON, path: str, unknown: list[str], root: bool = False) -> Any:
    """Remove fields the schema does not declare; their paths are appended to `unknown`."""
    if isinstance(value, dict):
        if _preserves(schema) and not schema.get("properties"):
            return value
        embedded = root or schema.get("x-kubernetes-embedded-resource")
        out = {}
        for key, item in value.items():
            if embedded and key in ("apiVersion", "kind"):
                out[key] = item
                continue
            if embedded and key == "metadata":
                out[key] = _prune_meta(item)
                continue
            sub = _child(schema, key)
            if sub is None:
                unknown.append(_join(path, key))
                continue
            out[key] = prune(item, sub, _join(path, key), unknown)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            prune(item, schema["items"], f"{path}[{i}]", unknown) for i, item in enumerate(value)
        ]
    return value


def _type_ok(value: Any, schema: JSON) -> bool:
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    if value is None:
        return bool(schema.get("nullable")) or not expected
    if not expected:
        return True
    actual = json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and actual == "number":
        return bool(float(value).is_integer())
    return bool(actual == expected)


def _bound_error(value: float, schema: JSON, path: str, key: str) -> FieldError | None:
    """minimum/maximum with their exclusive forms, worded like kube-openapi."""
    if key not in schema:
        return None
    bound = schema[key]
    exclusive = bool(schema.get(f"exclusive{key.capitalize()}"))
    if key == "minimum":
        failed = value <= bound if exclusive else value < bound
        text = "greater than" if exclusive else "greater than or equal to"
    else:
        failed = value >= bound if exclusive else value > bound
        text = "less than" if exclusive else "less than or equal to"
    if not failed:
        return None
    detail = f"{path} in body should be {text} {json.dumps(bound)}"
    return FieldError("Invalid", path, value, detail)


def _bounds(value: float, schema: JSON, path: str) -> list[FieldError]:
    errors = [
        e
        for key in ("minimum", "maximum")
        if (e := _bound_error(value, schema, path, key)) is not None
    ]
    if "multipleOf" in schema and value % schema["multipleOf"]:
        detail = f"{path} in body should be a multiple of {json.dumps(schema['multipleOf'])}"
        errors.append(FieldError("Invalid", path, value, detail))
    return errors


def _string(value: str, schema: JSON, path: str) -> list[FieldError]:
    errors = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        n = schema["maxLength"]
        detail = f"may not be more than {n} byte{'' if n == 1 else 's'}"
        errors.append(FieldError("TooLong", path, value, detail))
    if "minLength" in schema and len(value) < schema["minLength"]:
        detail = f"{path} in body should be at least {schema['minLength']} chars long"
        errors.append(FieldError("Invalid", path, value, detail))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        detail = f"{path} in body should match '{schema['pattern']}'"
        errors.append(FieldError("Invalid", path, value, detail))
    return errors


def _array(value: list[Any], schema: JSON, path: str) -> list[FieldError]:
    errors = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        detail = f"must have at most {schema['maxItems']} items"
        errors.append(FieldError("TooMany", path, len(value), detail))
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{path} in body should have at least {schema['minItems']} items"
        errors.append(FieldError("Invalid", path, value, detail))
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errors.append(FieldError("Duplicate", f"{path}[{i}]", item))
            seen.append(item)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[tuple[Any, ...]] = []
        for i, item in enumerate(value):
            key = tuple((item or {}).get(k) for k in keys)
            if key in seen_keys:
                errors.append(FieldError("Duplicate", f"{path}[{i}]", item))
            seen_keys.append(key)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            errors += validate(item, items, f"{path}[{i}]")
    return errors


def _object(value: JSON, schema: JSON, path: str) -> list[FieldError]:
    errors = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        detail = f"must have at most {schema['maxProperties']} items"
        errors.append(FieldError("TooMany", path, len(value), detail))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        detail = f"{path} in body should have at least {schema['minProperties']} properties"
        errors.append(FieldError("Invalid", path, value, detail))
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(FieldError("Required", _join(path, key)))
    for key, item in value.items():
        if not path and key in ("apiVersion", "kind", "metadata"):
            continue
        sub = _child(schema, key)
        if sub is not None:
            errors += validate(item, sub, _join(path, key))
    return errors


def validate(value: Any, schema: JSON, path: str = "") -> list[FieldError]:
    """Check `value` against a structural schema; errors as the API server words them."""
    if not _type_ok(value, schema):
        kind = json_type(value)
        expected = schema.get("type") or "string"
        detail = f"{path} in body must be of type {expected}: {json.dumps(kind)}"
        return [FieldError("TypeInvalid", path, kind, detail)]
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(
            json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in schema["enum"]
        )
        errors.append(FieldError("NotSupported", path, value, f"supported values: {allowed}"))
    if isinstance(value, bool) or value is None:
        return errors
    if isinstance(value, int | float):
        return errors + _bounds(value, schema, path)
    if isinstance(value, str):
        return errors + _string(value, schema, path)
    if isinstance(value, list):
        return errors + _array(value, schema, path)
    return errors + _object(value, schema, path)


@dataclass(frozen=True)
class RuleSite:
    """A schema node carrying `x-kubernetes-validations`, with its value (and old value)."""

    path: str
    schema: JSON
    value: Any
    old: Any
    has_old: bool


def _map_key(item: Any, keys: list[str]) -> tuple[Any, ...]:
    return tuple((item or {}).get(k) for k in keys) if isinstance(item, dict) else (item,)


def rule_sites(
    value: Any, old: Any, has_old: bool, schema: JSON, path: str = ""
) -> Iterator[RuleSite]:
    """Every node with CEL rules; `old` is correlated through objects and map/set lists."""
    if schema.get("x-kubernetes-validations"):
        yield RuleSite(path, schema, value, old, has_old)
    if isinstance(value, dict):
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in value.items():
            if not path and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = _child(schema, key)
            if sub is not None:
                yield from rule_sites(item, old_map.get(key), key in old_map, sub, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type")
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        olds: dict[tuple[Any, ...], Any] = {}
        if has_old and isinstance(old, list) and list_type in ("map", "set"):
            olds = {_map_key(o, keys): o for o in old}
        for i, item in enumerate(value):
            key = _map_key(item, keys)
            yield from rule_sites(item, olds.get(key), key in olds, schema["items"], f"{path}[{i}]")
