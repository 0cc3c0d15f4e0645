"""CEL validation rules (`x-kubernetes-validations`) of custom resources, run with cel-python.

Owns compiling rules (cached per rule text), checking them when a CRD is
written, and evaluating them against a custom resource: `self` is the value at
the rule's node, `oldSelf` the correlated old value; a transition rule (one that
mentions `oldSelf`) runs only on update when an old value exists, as in the real
API server. Failures are `FieldError`s shaped like the apiextensions ones:
`spec: Invalid value: "object": <message>`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from .errors import FieldError
from .schema import RuleSite, json_type

JSON = dict[str, Any]
_OLD_SELF = re.compile(r"\boldSelf\b")
_REASONS = {
    "FieldValueInvalid": "Invalid",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required",
    "FieldValueDuplicate": "Duplicate",
}


@lru_cache(maxsize=1)
def _environment() -> celpy.Environment:
    return celpy.Environment()  # builds the parser: ~0.3 s, so only when a rule is first used


@lru_cache(maxsize=512)
def _program(expression: str) -> celpy.Runner:
    env = _environment()
    return env.program(env.compile(expression))


def compile_error(expression: str) -> str | None:
    """None when the expression compiles, else the parser's complaint."""
    try:
        _program(expression)
    except CELParseError as exc:
        return f"compilation failed: {exc}"
    return None


def _schema_nodes(schema: JSON, path: str) -> list[tuple[str, JSON]]:
    nodes = [(path, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        nodes += _schema_nodes(sub, f"{path}.properties[{key}]")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            nodes += _schema_nodes(schema[key], f"{path}.{key}")
    return nodes


def check_rules(schema: JSON, path: str) -> list[FieldError]:
    """Compile every rule and message expression of a CRD schema (for CRD validation)."""
    errors = []
    for node_path, node in _schema_nodes(schema, path):
        for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
            for key in ("rule", "messageExpression"):
                if key in rule and (problem := compile_error(rule[key])):
                    where = f"{node_path}.x-kubernetes-validations[{i}].{key}"
                    errors.append(FieldError("Invalid", where, rule[key], problem))
    return errors


def _message(rule: JSON, activation: dict[str, Any]) -> str:
    if "messageExpression" in rule:
        try:
            text = _program(rule["messageExpression"]).evaluate(activation)
        except CELEvalError:
            text = None
        if isinstance(text, str) and text.strip():
            return text.strip()
    if rule.get("message"):
        return str(rule["message"]).strip()
    return f"failed rule: {rule['rule']}"


def evaluate(site: RuleSite) -> list[FieldError]:
    """Run the rules of one schema node; each failing rule gives one field error."""
    errors = []
    type_name = site.schema.get("type") or json_type(site.value)
    activation: dict[str, Any] = {"self": json_to_cel(site.value)}
    if site.has_old:
        activation["oldSelf"] = json_to_cel(site.old)
    for rule in site.schema.get("x-kubernetes-validations") or []:
        expression = rule["rule"]
        if _OLD_SELF.search(expression) and not site.has_old:
            continue
        path = site.path
        if rule.get("fieldPath"):
            suffix = str(rule["fieldPath"]).lstrip(".")
            path = f"{path}.{suffix}" if path else suffix
        error_type = _REASONS.get(rule.get("reason") or "FieldValueInvalid", "Invalid")
        try:
            result = _program(expression).evaluate(activation)
        except CELEvalError as exc:
            detail = f"{expression}: {exc.args[0] if exc.args else exc}"
            errors.append(FieldError("Invalid", path, type_name, detail))
            continue
        if not (isinstance(result, celtypes.BoolType) and bool(result)):
            errors.append(FieldError(error_type, path, type_name, _message(rule, activation)))
    return errors
