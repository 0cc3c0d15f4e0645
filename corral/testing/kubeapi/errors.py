"""API errors and the `Status` objects the real API server answers with.

Owns the error tree of the test server and the exact message shapes of
`k8s.io/apimachinery/pkg/api/errors` and `.../util/validation/field`:

    APIError                      any non-2xx answer, rendered as a v1 Status
    └── raised by every module; `app.py` turns it into a response

`FieldError` mirrors `field.Error`; `invalid()` mirrors `errors.NewInvalid`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}

# field.ErrorType -> (text shown in messages, metav1.CauseType)
_FIELD_TYPES = {
    "Required": ("Required value", "FieldValueRequired"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
}
_VALUE_OMITTED = ("Required", "Forbidden", "TooLong")


class APIError(Exception):
    """An answer other than success; `status` is the v1 Status body."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason if reason is not None else _REASONS.get(code, "Unknown")
        self.details = details

    @property
    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def go_value(value: Any) -> str:
    """Render a bad value the way `field.Error.ErrorBody` does (Go `%v` / `%q` / JSON)."""
    if value is None:
        return '"null"'  # Go turns nil into the string "null", then quotes it
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One `field.Error`: a type, the field path, the bad value and a detail."""

    type: str
    field: str
    value: Any = None
    detail: str = ""
    omit_value: bool = False

    def body(self) -> str:
        text = _FIELD_TYPES[self.type][0]
        if self.type not in _VALUE_OMITTED and not self.omit_value:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> JSON:
        return {"reason": _FIELD_TYPES[self.type][1], "message": self.body(), "field": self.field}


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> APIError:
    """`errors.NewInvalid`: 422 with one cause per field error, messages aggregated."""
    qualified = f"{kind}.{group}" if group else kind
    messages: list[str] = []
    for err in errors:
        if str(err) not in messages:
            messages.append(str(err))
    aggregate = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    return APIError(
        422,
        f"{qualified} {json.dumps(name)} is invalid: {aggregate}",
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [err.cause() for err in errors],
        },
    )


def qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> APIError:
    return APIError(
        404,
        f"{qualified(group, plural)} {json.dumps(name)} not found",
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(group: str, plural: str, name: str) -> APIError:
    return APIError(
        409,
        f"{qualified(group, plural)} {json.dumps(name)} already exists",
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(group: str, plural: str, name: str, detail: str) -> APIError:
    return APIError(
        409,
        f"Operation cannot be fulfilled on {qualified(group, plural)} {json.dumps(name)}: {detail}",
        details={"name": name, "group": group, "kind": plural},
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def page_not_found() -> APIError:
    return APIError(404, "the server could not find the requested resource", details={})


def method_not_allowed(verb: str) -> APIError:
    return APIError(
        405, f"the server does not allow this method on the requested resource ({verb})"
    )
