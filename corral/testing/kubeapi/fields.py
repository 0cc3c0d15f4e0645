"""managedFields-lite: which field manager owns which fields, and apply conflicts.

Owns field sets (leaf paths of an object: maps are granular, lists atomic),
their `fieldsV1` encoding, ownership updates for Update operations (the writer
takes the fields it changed) and Apply operations (the applier owns exactly what
it applied, fields it stops applying are removed unless someone else owns them,
and a field another manager owns with a different value is a 409 conflict unless
forced). Message shapes follow `k8s.io/apiserver/.../fieldmanager`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .errors import APIError

JSON = dict[str, Any]
Path = tuple[str, ...]
_TRACKED_META = ("labels", "annotations", "finalizers", "ownerReferences")


def _walk(value: Any, path: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _walk(item, (*path, key), out)
    else:
        out[path] = value


def leaves(obj: JSON, status: bool | None) -> dict[Path, Any]:
    """Leaf paths and values of the fields managers can own.

    `status` None tracks everything; True only status; False everything but status.
    """
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            for mkey in _TRACKED_META:
                if mkey in (value or {}):
                    _walk(value[mkey], ("metadata", mkey), out)
            continue
        if status is not None and (key == "status") != status:
            continue
        _walk(value, (key,), out)
    return out


def encode(paths: set[Path]) -> JSON:
    """A field set as `fieldsV1` (`{"f:spec": {"f:cpus": {}}}`)."""
    root: JSON = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def decode(fields: JSON, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in fields.items():
        if key == ".":
            out.add(prefix)
            continue
        path = (*prefix, key[2:])
        if sub:
            out |= decode(sub, path)
        else:
            out.add(path)
    return out


@dataclass
class Entry:
    """One managedFields entry, with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str
    fields: set[Path]

    @classmethod
    def parse(cls, raw: JSON) -> Entry:
        return cls(
            raw.get("manager", ""),
            raw.get("operation", "Update"),
            raw.get("apiVersion", ""),
            raw.get("subresource", ""),
            raw.get("time", ""),
            decode(raw.get("fieldsV1") or {}),
        )

    def render(self) -> JSON:
        out: JSON = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def same(self, manager: str, operation: str, subresource: str) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def entries(obj: JSON) -> list[Entry]:
    return [Entry.parse(e) for e in (obj.get("metadata") or {}).get("managedFields") or []]


def store(obj: JSON, managed: list[Entry]) -> None:
    rendered = [e.render() for e in managed if e.fields]
    if rendered:
        obj["metadata"]["managedFields"] = rendered
    else:
        obj["metadata"].pop("managedFields", None)


def _own(
    managed: list[Entry], manager: str, operation: str, subresource: str, api_version: str, now: str
) -> Entry:
    for entry in managed:
        if entry.same(manager, operation, subresource):
            entry.api_version, entry.time = api_version, now
            return entry
    entry = Entry(manager, operation, api_version, subresource, now, set())
    managed.append(entry)
    return entry


def record_update(
    old: JSON | None, new: JSON, manager: str, subresource: str, api_version: str, now: str
) -> None:
    """An Update operation: the writer takes every field it changed or added."""
    scope = None if not subresource else True
    before = leaves(old, scope) if old else {}
    after = leaves(new, scope)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = set(before) - set(after)
    managed = entries(old) if old else []
    for entry in managed:
        entry.fields -= removed | changed
    if changed:
        _own(managed, manager, "Update", subresource, api_version, now).fields |= changed
    store(new, managed)


def _remove(obj: JSON, path: Path) -> None:
    node: Any = obj
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def merge(live: Any, applied: Any) -> Any:
    """Deep-merge an applied configuration into the live object (lists are atomic)."""
    if isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = merge(live.get(key), value) if key in live else copy.deepcopy(value)
        return out
    return copy.deepcopy(applied)


def apply(
    live: JSON | None,
    applied: JSON,
    manager: str,
    force: bool,
    subresource: str,
    api_version: str,
    now: str,
) -> JSON:
    """Server-side apply: merge, take ownership, drop fields no longer applied; 409 on conflict."""
    scope = True if subresource else None
    wanted = leaves(applied, scope)
    if live is None:
        created = copy.deepcopy(applied)
        store(created, [Entry(manager, "Apply", api_version, subresource, now, set(wanted))])
        return created
    current = leaves(live, scope)
    managed = entries(live)
    conflicts: list[tuple[Entry, Path]] = []
    for entry in managed:
        if entry.same(manager, "Apply", subresource):
            continue
        for path in sorted(entry.fields & set(wanted)):
            if path in current and current[path] != wanted[path]:
                conflicts.append((entry, path))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for entry, path in conflicts:
        entry.fields.discard(path)
    result: JSON = merge(live, applied)
    mine = _own(managed, manager, "Apply", subresource, api_version, now)
    others = set().union(*(e.fields for e in managed if e is not mine))
    for path in mine.fields - set(wanted) - others:
        _remove(result, path)
    mine.fields = set(wanted)
    store(result, managed)
    return result


def _path_text(path: Path) -> str:
    return "".join(f".{part}" for part in path)


def _conflict_error(conflicts: list[tuple[Entry, Path]]) -> APIError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {e.describe()}",
            "field": _path_text(p),
        }
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {entry.describe()}: {_path_text(path)}"
        )
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(_path_text(path))
        lines = [f"conflicts with {m}:\n- " + "\n- ".join(ps) for m, ps in by_manager.items()]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return APIError(409, message, details={"causes": causes})
