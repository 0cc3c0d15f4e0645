"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge.

Owns decoding a patch by its Content-Type and applying it to an object, with
the answers of the real API server: a failed JSON-patch `test` is a 422, a
strategic merge patch on a custom resource a 415. Strategic merge is the lite
form: merge-patch semantics, `$patch: delete|replace` directives honoured, other
`$` directives dropped, and lists of objects merged by their `name`. Server-side
apply bodies (`application/apply-patch+yaml`) are handed to `fields.apply`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import yaml

from .errors import APIError, bad_request

JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_CR_TYPES = (JSON_PATCH, MERGE, APPLY)


def unsupported(content_type: str, custom: bool) -> APIError:
    accepted = _CR_TYPES if custom else (JSON_PATCH, MERGE, STRATEGIC, APPLY)
    return APIError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        reason="UnsupportedMediaType",
    )


def check_type(content_type: str, custom: bool) -> None:
    accepted = _CR_TYPES if custom else (JSON_PATCH, MERGE, STRATEGIC, APPLY)
    if content_type not in accepted:
        raise unsupported(content_type, custom)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _merge_list(target: list[Any], patch: list[Any]) -> list[Any]:
    keyed = all(isinstance(p, dict) and "name" in p for p in patch)
    if not keyed or not all(isinstance(t, dict) for t in target):
        return [strategic_merge(None, p) for p in patch if p != {"$patch": "delete"}]
    out = list(target)
    for item in patch:
        index = next((i for i, t in enumerate(out) if t.get("name") == item["name"]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append(strategic_merge(None, item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch, lite (see the module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value)
        else:
            out[key] = strategic_merge(out.get(key), value)
    return out


def json_patch(target: JSON, operations: Any) -> JSON:
    """RFC 6902 with the real server's errors: 400 for a malformed patch, 422 when it fails."""
    try:
        jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
        raise bad_request(str(exc)) from exc
    result: JSON = target
    for op in operations:
        try:
            result = jsonpatch.JsonPatch([op]).apply(result)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise _unprocessable(f"testing value {op['path']} failed: test failed") from exc
        except (
            jsonpatch.JsonPatchConflict,
            jsonpatch.JsonPointerException,
            KeyError,
            IndexError,
        ) as exc:
            raise _unprocessable(str(exc)) from exc
    return result


def _unprocessable(text: str) -> APIError:
    return APIError(
        422,
        "the server rejected our request due to an error in our request",
        details={"causes": [{"reason": "UnexpectedServerResponse", "message": text}]},
    )


def decode(body: bytes, content_type: str) -> Any:
    """The patch document: YAML for apply patches (JSON is YAML), JSON otherwise."""
    try:
        if content_type == APPLY:
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from exc


def apply_patch(target: JSON, content_type: str, document: Any) -> JSON:
    if content_type == JSON_PATCH:
        return json_patch(target, document)
    if not isinstance(document, dict):
        raise bad_request("error decoding patch: the patch must be a JSON object")
    if content_type == STRATEGIC:
        result: JSON = strategic_merge(target, document)
        return result
    merged: JSON = merge_patch(target, document)
    return merged
