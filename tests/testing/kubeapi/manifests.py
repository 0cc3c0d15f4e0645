"""Shared by the test-server tests: a Widget CRD exercising schemas and CEL, and helpers."""

from __future__ import annotations

import copy
import json
from typing import Any

GROUP = "test.corral.dev"
VERSION = "v1"
PLURAL = "widgets"

_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["size"],
    "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": 64},
        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
        "nickname": {"type": "string", "maxLength": 8, "pattern": "^[a-z]+$"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "limits": {
            "type": "object",
            "properties": {"memory": {"type": "integer", "default": 256}},
            "default": {},
        },
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "immutable": {
            "type": "string",
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "immutable is immutable"}
            ],
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.size <= 32 || self.mode == 'slow'",
            "message": "sizes above 32 must be slow",
        },
        {
            "rule": "!has(self.tags) || self.tags.all(t, t != 'bad')",
            "messageExpression": "'tag ' + 'bad' + ' is not allowed'",
            "fieldPath": ".tags",
        },
    ],
}

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": _SPEC_SCHEMA,
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget_crd() -> dict[str, Any]:
    return copy.deepcopy(WIDGET_CRD)


def widget(name: str, size: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


def api_status(exc: Exception) -> dict[str, Any]:
    """The Status object of a `kubernetes` ApiException."""
    body = json.loads(getattr(exc, "body", None) or "{}")
    assert isinstance(body, dict)
    return body
