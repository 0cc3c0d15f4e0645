"""CustomResourceDefinitions generated from the API models, and the command that writes them.

`crds/` in the repository is this module's output (`python -m corral.api.crd --write
crds/`); a test regenerates it and fails on drift, so the models stay the one source.
`crds()` is pure, for callers that install the CRDs through a client.

The folder is also a kustomize base (manifests/ includes it): its kustomization is the
file `Kustomization`, the one name kustomize reads that `kubectl apply -f crds/` skips
(it reads only .yaml, .yml and .json files, and a kustomization is no API object).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from corral.api._meta import CATEGORY, GROUP, VERSION, Resource
from corral.api._network import NetworkPolicy
from corral.api._sandbox import Sandbox
from corral.api._schema import prose, structural
from corral.api._volume import Volume

JSON = dict[str, Any]
RESOURCES: tuple[type[Resource], ...] = (Sandbox, Volume, NetworkPolicy)
_HEADER = "# Generated from corral.api by `python -m corral.api.crd --write crds/`; do not edit.\n"


def _model(resource: type[Resource], field: str) -> type[BaseModel]:
    annotation = resource.model_fields[field].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise TypeError(f"{resource.__name__}.{field} must be a model, not {annotation!r}")
    return annotation


def _root_schema(resource: type[Resource]) -> JSON:
    """The object's schema. `metadata` is the API server's (a CRD may only narrow names);
    a spec with nothing required defaults to `{}`, so its own defaults apply too."""
    spec = structural(_model(resource, "spec"))
    schema: JSON = {
        "type": "object",
        "description": prose(resource.__doc__ or ""),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "The versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "The REST resource this object represents.",
            },
            "metadata": {"type": "object"},
            "spec": spec,
            "status": structural(_model(resource, "status")),
        },
    }
    if resource.model_fields["spec"].is_required():
        schema["required"] = ["spec"]
    else:
        spec["default"] = {}
    return schema


def crd(resource: type[Resource]) -> JSON:
    """The CustomResourceDefinition of one resource model."""
    kind = resource.__name__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": resource.plural,
                "singular": kind.lower(),
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_json() for c in resource.printer_columns],
                    "schema": {"openAPIV3Schema": _root_schema(resource)},
                }
            ],
        },
    }


def crds() -> list[JSON]:
    """Every Corral CRD, in a stable order."""
    return [crd(resource) for resource in RESOURCES]


def write(directory: Path) -> list[Path]:
    """Write one `<plural>.<group>.yaml` per CRD into `directory`, and the `Kustomization`
    listing them; returns the CRDs' paths."""
    import yaml  # a development tool's dependency, not the runtime's

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for definition in crds():
        path = directory / f"{definition['metadata']['name']}.yaml"
        text = yaml.safe_dump(definition, sort_keys=False, width=100, allow_unicode=True)
        path.write_text(_HEADER + text)
        paths.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [path.name for path in paths],
    }
    (directory / "Kustomization").write_text(
        _HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m corral.api.crd", description=__doc__)
    parser.add_argument("--write", metavar="DIR", type=Path, required=True, help="output folder")
    for path in write(parser.parse_args(argv).write):
        print(path)


if __name__ == "__main__":
    main()
