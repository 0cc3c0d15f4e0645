"""ObjectMeta rules: names, generateName, labels, timestamps, system fields.

Owns what `k8s.io/apimachinery/pkg/api/validation` checks on every object's
metadata (name formats by resource, label syntax) and the server-set fields on
create (uid, creationTimestamp, generation). Called by `objects.py`.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import FieldError
from .resources import Resource

JSON = dict[str, Any]

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_QUALIFIED = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# Resources whose generation the real API server maintains.
_GENERATION = {
    ("apps", "deployments"),
    ("apps", "daemonsets"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tracks_generation(resource: Resource) -> bool:
    return resource.custom or resource.key in _GENERATION


def generate_name(prefix: str) -> str:
    return prefix + "".join(random.choices(_NAME_CHARS, k=5))


def new_uid() -> str:
    return str(uuid.uuid4())


def _subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN}')"
        )
    return errors


def _label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{_DNS1123_LABEL}')"
        )
    return errors


def _path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def _name_rule(resource: Resource) -> Any:
    if resource.key == ("", "namespaces"):
        return _label
    if resource.group == "rbac.authorization.k8s.io":
        return _path_segment
    return _subdomain


def validate_meta(resource: Resource, meta: JSON) -> list[FieldError]:
    """Name format and label syntax, as ValidateObjectMeta words them."""
    errors = []
    name = meta.get("name") or ""
    if not name:
        errors.append(
            FieldError("Required", "metadata.name", detail="name or generateName is required")
        )
    else:
        errors += [
            FieldError("Invalid", "metadata.name", name, msg) for msg in _name_rule(resource)(name)
        ]
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, local = key.rpartition("/")
        if (
            (prefix and _subdomain(prefix))
            or len(local) > 63
            or not re.fullmatch(_QUALIFIED, local)
        ):
            errors.append(
                FieldError(
                    "Invalid",
                    "metadata.labels",
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                    f"or '123-abc', regex used for validation is '{_QUALIFIED}')",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            errors.append(
                FieldError(
                    "Invalid",
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    f"'{_LABEL_VALUE}')",
                )
            )
    return errors
