"""Server-side printing: `meta.k8s.io/v1` Tables, which `kubectl get` asks for.

Owns the Table answer to `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`:
a Name column, then a custom resource's `additionalPrinterColumns` (simple
JSONPath, including `[?(@.type=="Ready")]` filters) or Age by default, with
`date` columns rendered as ages the way the real server does. Built-in
resources get Name and Age. Rows carry the object as `includeObject` asks.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .resources import Resource

JSON = dict[str, Any]
_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
}
_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_SEGMENT = re.compile(r"([^.\[]+)|\[(\d+)\]|\[\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first


def human_duration(seconds: float) -> str:
    """`k8s.io/apimachinery/pkg/util/duration.HumanDuration`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def json_path(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath (`.a.b[0]`, `.a[?(@.k=="v")].b`), or None."""
    current = obj
    for name, index, key, value in _SEGMENT.findall(path.strip().lstrip(".")):
        if name:
            current = current.get(name) if isinstance(current, dict) else None
        elif index:
            items = current if isinstance(current, list) else []
            current = items[int(index)] if int(index) < len(items) else None
        else:
            items = current if isinstance(current, list) else []
            current = next(
                (i for i in items if isinstance(i, dict) and str(json_path(i, key)) == value), None
            )
        if current is None:
            return None
    return current


def _cell(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "date":
        try:
            stamp = datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return str(value)
        return human_duration((datetime.now(UTC) - stamp).total_seconds())
    if column_type in ("integer", "number", "boolean"):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _columns(resource: Resource, version: str) -> list[JSON]:
    if resource.custom:
        return list(resource.printer_columns.get(version) or []) or [_AGE]
    return [_AGE]


def _row_object(obj: JSON, include: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    resource: Resource, version: str, objs: list[JSON], list_meta: JSON, include: str = "Metadata"
) -> JSON:
    columns = _columns(resource, version)
    definitions = [_NAME] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objs:
        cells = [obj["metadata"]["name"]] + [
            _cell(json_path(obj, c["jsonPath"]), c.get("type", "string")) for c in columns
        ]
        row: JSON = {"cells": cells}
        if (row_object := _row_object(obj, include)) is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
