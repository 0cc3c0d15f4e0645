"""Pydantic's JSON Schema of a model → the structural OpenAPI v3 schema a CRD requires.

Owns the translation rules: `$ref`s are inlined (sibling keys such as a field's
description win over the referenced model's), titles dropped, and `X | None` becomes
an optional `X`: the API server prunes a null of a non-nullable field before
validation, so `nullable` is never needed and a `null` in a manifest means "unset".
The `immutable()` / `set_once()` field markers become CEL transition rules here.
Anything the translation does not know (another `anyOf`, `exclusiveMinimum`, …)
raises `NotStructural` rather than emitting a schema the API server would reject.
`corral.api.crd` calls `structural()`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from corral.api._meta import TRANSITION_KEY

JSON = dict[str, Any]
_ALLOWED = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "maxItems",
        "maxProperties",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-validations",
        TRANSITION_KEY,
    }
)
IMMUTABLE_MESSAGE = "field is immutable"
SET_ONCE_MESSAGE = "field cannot be changed or removed once set"


class NotStructural(ValueError):
    """The model uses a construct that has no structural-schema form."""


def structural(model: type[BaseModel]) -> JSON:
    """The structural schema of `model`, with camelCase property names."""
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _node(raw, defs, model.__name__)


def _inline(node: JSON, defs: JSON, path: str) -> JSON:
    node = dict(node)
    while True:
        if "$ref" in node:
            node = {**defs[node.pop("$ref").rpartition("/")[2]], **node}
        elif "anyOf" in node:
            branches = [b for b in node.pop("anyOf") if b != {"type": "null"}]
            if len(branches) != 1:
                raise NotStructural(f"{path}: a union other than Optional has no structural form")
            node = {**branches[0], **node}
        else:
            return node


def _node(node: JSON, defs: JSON, path: str) -> JSON:
    node = _inline(node, defs, path)
    node.pop("title", None)
    if "default" in node and node["default"] is None:
        del node["default"]
    if "description" in node:
        node["description"] = prose(node["description"])
    if unknown := sorted(set(node) - _ALLOWED):
        raise NotStructural(f"{path}: {', '.join(unknown)} not supported in a CRD schema")
    if "type" not in node:
        raise NotStructural(f"{path}: every node of a structural schema needs a type")
    if "properties" in node:
        node["properties"] = {
            name: _node(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()
        }
        _transition_rules(node)
    for key in ("items", "additionalProperties"):
        if key not in node:
            continue
        if not isinstance(node[key], dict):
            raise NotStructural(f"{path}.{key}: must be a schema, not {node[key]!r}")
        node[key] = _node(node[key], defs, f"{path}.{key}")
    return dict(sorted(node.items()))


def prose(text: str) -> str:
    """A docstring as a description: lines of a paragraph joined, paragraphs kept."""
    return "\n\n".join(" ".join(part.split()) for part in text.strip().split("\n\n"))


def _transition_rules(node: JSON) -> None:
    """Turn the markers of `node`'s properties into CEL rules.

    A field that is always present (required or defaulted) gets `self == oldSelf` on
    itself. An optional one needs the rule on its parent, because a rule on the field
    never runs when the field is added or removed.
    """
    required = set(node.get("required") or ())
    parent_rules = []
    for name, prop in node["properties"].items():
        marker = prop.pop(TRANSITION_KEY, None)
        if marker is None:
            continue
        here, old = f"self.{name}", f"oldSelf.{name}"
        if marker == "immutable" and (name in required or "default" in prop):
            rule = {"rule": "self == oldSelf", "message": IMMUTABLE_MESSAGE}
            prop["x-kubernetes-validations"] = [rule, *prop.get("x-kubernetes-validations", [])]
            continue
        if marker == "immutable":
            expression = f"has({here}) == has({old}) && (!has({here}) || {here} == {old})"
            message = IMMUTABLE_MESSAGE
        else:
            expression = f"!has({old}) || (has({here}) && {here} == {old})"
            message = SET_ONCE_MESSAGE
        parent_rules.append({"rule": expression, "message": message, "fieldPath": f".{name}"})
    if parent_rules:
        node["x-kubernetes-validations"] = [
            *node.get("x-kubernetes-validations", []),
            *parent_rules,
        ]
