"""Label and field selectors, parsed from query strings and matched against objects.

Owns the selector grammar of `k8s.io/apimachinery/pkg/labels` (`=`, `==`, `!=`,
`in`, `notin`, exists, `!`not-exists) and `.../fields` (`=`, `==`, `!=` on the
field labels a resource supports). Used by list, watch and deletecollection, and
(label selector objects) by ClusterRole aggregation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import APIError, bad_request

JSON = dict[str, Any]
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_OP = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _check(key: str, values: list[str], text: str) -> None:
    if not _LABEL_KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    for value in values:
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise bad_request(
                f"unable to parse requirement: values[0][{key}]: Invalid value: "
                f'"{value}": a valid label must be an empty string or consist of alphanumeric '
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character"
            )


def parse_labels(text: str | None) -> list[Requirement]:
    requirements = []
    for part in _split(text or ""):
        set_op = _SET_OP.match(part)
        if set_op:
            key, op, raw = set_op.groups()
            values = [v.strip() for v in raw.split(",") if v.strip()]
            _check(key, values, part)
            requirements.append(Requirement(key, op, frozenset(values)))
            continue
        for token, op in (("!=", "!="), ("==", "="), ("=", "=")):
            if token in part:
                key, _, value = (s.strip() for s in part.partition(token))
                _check(key, [value], part)
                requirements.append(Requirement(key, op, frozenset({value})))
                break
        else:
            if part.startswith("!"):
                _check(part[1:].strip(), [], part)
                requirements.append(Requirement(part[1:].strip(), "!"))
            elif " " in part:
                raise bad_request(
                    f"unable to parse requirement: found '{part}', expected: "
                    "'=', '!=', '==', 'in', notin'"
                )
            else:
                _check(part, [], part)
                requirements.append(Requirement(part, "exists"))
    return requirements


_EXPRESSION_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def from_label_selector(selector: JSON) -> list[Requirement]:
    """The requirements of a `metav1.LabelSelector` object (matchLabels, matchExpressions);
    none, which matches everything, for an empty one."""
    requirements = [
        Requirement(key, "=", frozenset({value}))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        op = _EXPRESSION_OPS[expression["operator"]]
        values = frozenset(expression.get("values") or ())
        requirements.append(Requirement(expression["key"], op, values))
    return requirements


def _field_value(obj: JSON, path: str) -> str | None:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    if current is None:
        return "" if path == "metadata.namespace" else None
    return str(current).lower() if isinstance(current, bool) else str(current)


def parse_fields(text: str | None, supported: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(field, op, value) triples; an unsupported field is a 400 like the real server's."""
    allowed = {"metadata.name", "metadata.namespace", *supported}
    terms = []
    for part in _split(text or ""):
        for token in ("!=", "==", "="):
            if token in part:
                name, _, value = (s.strip() for s in part.partition(token))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        if name not in allowed:
            raise APIError(400, f"field label not supported: {name}")
        terms.append((name, "!=" if token == "!=" else "=", value))
    return terms


Matcher = Callable[[JSON], bool]


def matcher(
    label_selector: str | None, field_selector: str | None, supported_fields: tuple[str, ...] = ()
) -> Matcher:
    """One predicate for both selectors; raises 400 when either does not parse."""
    labels = parse_labels(label_selector)
    fields = parse_fields(field_selector, supported_fields)

    def match(obj: JSON) -> bool:
        obj_labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(r.matches(obj_labels) for r in labels):
            return False
        for name, op, value in fields:
            actual = _field_value(obj, name)
            if (actual == value) != (op == "="):
                return False
        return True

    return match
