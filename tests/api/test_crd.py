"""The generated CRDs: committed files match the models, schemas are structural, names
do not collide, printer columns point at real fields."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.api.crd import RESOURCES, crds, write
from corral.testing.kubeapi import cel
from corral.testing.kubeapi import schema as server_schema

from .conftest import REPO

JSON = dict[str, Any]
# `kubectl api-resources` on Kubernetes 1.32: every built-in short name and resource name.
BUILTIN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa",
    "svc", "crd", "crds", "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol",
    "pdb", "pc", "sc", "vac", "ip",
}  # fmt: skip
# Short names of CRDs common enough to meet on a cluster (Cilium's CiliumNetworkPolicy is
# `cnp`, which is why Corral's NetworkPolicy is `cnetpol`).
WELL_KNOWN_SHORT_NAMES = {"cnp", "ccnp", "ciliumnp", "cep", "anp", "acnp", "gnp", "np"}
_JUNCTORS = ("$ref", "allOf", "anyOf", "oneOf", "not", "$defs", "definitions", "const")
_SCALARS = ("string", "integer", "number", "boolean")


def test_committed_crds_match_the_models(tmp_path: Path) -> None:
    write(tmp_path)
    committed = {p.name: p.read_text() for p in (REPO / "crds").iterdir()}
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert committed == generated, "crds/ drifted: run python -m corral.api.crd --write crds/"


def test_the_command_writes_one_file_per_crd(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral.api.crd", "--write", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    names = sorted(Path(line).name for line in result.stdout.split())
    expected = ["networkpolicies.corral.dev.yaml", "sandboxes.corral.dev.yaml"]
    assert names == [*expected, "volumes.corral.dev.yaml"]


def structural_problems(node: JSON, path: str) -> list[str]:
    """What the apiextensions-apiserver would reject as non-structural, or we as undocumented."""
    problems = [f"{path}: {key}" for key in _JUNCTORS if key in node]
    if "type" not in node:
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{path}: array without items")
    items = node.get("items") or {}
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set" and items.get("type") not in _SCALARS:
        problems.append(f"{path}: a set of non-scalars")
    if list_type == "map":
        for key in node["x-kubernetes-list-map-keys"]:
            prop = items["properties"][key]
            if key not in items.get("required", []) and "default" not in prop:
                problems.append(f"{path}: map key {key} neither required nor defaulted")
    if "default" in node:
        errors = server_schema.validate(node["default"], node, path)
        unknown: list[str] = []
        server_schema.prune(node["default"], node, path, unknown)
        problems += [f"{path}: default invalid: {e}" for e in errors]
        problems += [f"{path}: default not pruned: {u}" for u in unknown]
    for rule in node.get("x-kubernetes-validations", []):
        if problem := cel.compile_error(rule["rule"]):
            problems.append(f"{path}: {problem}")
        field = rule.get("fieldPath", "").lstrip(".")
        if field and field not in node["properties"]:
            problems.append(f"{path}: fieldPath {field} is not a property")
    for name, sub in (node.get("properties") or {}).items():
        if not sub.get("description") and name != "metadata":
            problems.append(f"{path}.{name}: no description")
        problems += structural_problems(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            problems += structural_problems(node[key], f"{path}.{key}")
    return problems


@pytest.mark.parametrize("definition", crds(), ids=lambda d: d["spec"]["names"]["kind"])
def test_schemas_are_structural(definition: JSON) -> None:
    root = definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["properties"]["metadata"] == {"type": "object"}
    assert structural_problems(root, definition["spec"]["names"]["kind"]) == []


@pytest.mark.parametrize("definition", crds(), ids=lambda d: d["spec"]["names"]["kind"])
def test_printer_columns_point_at_schema_fields(definition: JSON) -> None:
    version = definition["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        node = root
        for part in re.sub(r"\[.*?\]", "[]", column["jsonPath"]).split(".")[1:]:
            if part == "metadata":
                break
            name, _, condition_filter = part.partition("[")
            node = node["properties"][name]
            if condition_filter:
                node = node["items"]
        assert column["type"] in ("date", node["type"]), column


def test_names_do_not_collide_with_builtins_or_common_crds() -> None:
    names = [definition["spec"]["names"] for definition in crds()]
    short_names = [short for n in names for short in n["shortNames"]]
    assert len(set(short_names)) == len(short_names)
    assert not set(short_names) & (BUILTIN_SHORT_NAMES | WELL_KNOWN_SHORT_NAMES)
    assert all(n["categories"] == ["corral"] for n in names)
    assert [n["kind"] for n in names] == [r.__name__ for r in RESOURCES]


def test_every_version_has_the_status_subresource() -> None:
    for definition in crds():
        (version,) = definition["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        assert definition["spec"]["scope"] == "Namespaced"
