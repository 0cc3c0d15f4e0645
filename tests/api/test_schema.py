"""The JSON Schema → structural schema translation, on small models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from corral.api._meta import ApiModel, immutable, set_once
from corral.api._schema import IMMUTABLE_MESSAGE, SET_ONCE_MESSAGE, NotStructural, structural


class Inner(ApiModel):
    """An inner object.

    Its second paragraph stays one."""

    size_mib: int = 1
    """The size,
    wrapped over two lines."""


class Outer(ApiModel):
    """An outer object."""

    name: str = Field(json_schema_extra=immutable())
    """Required and immutable."""
    inner: Inner = Field(default=Inner(), json_schema_extra=immutable())
    """Defaulted and immutable."""
    note: str | None = Field(default=None, json_schema_extra=immutable())
    """Optional and immutable."""
    node_id: str | None = Field(default=None, json_schema_extra=set_once())
    """Set once."""


def test_models_are_inlined_with_the_field_docs_winning() -> None:
    schema = structural(Outer)
    inner = schema["properties"]["inner"]
    assert "$ref" not in str(schema) and "title" not in str(schema)
    assert inner["description"] == "Defaulted and immutable."
    assert inner["properties"]["sizeMiB"] == {
        "default": 1,
        "description": "The size, wrapped over two lines.",
        "type": "integer",
    }
    assert inner["default"] == {"sizeMiB": 1}
    assert structural(Inner)["description"] == "An inner object.\n\nIts second paragraph stays one."


def test_optional_is_optional_not_nullable() -> None:
    schema = structural(Outer)
    assert schema["required"] == ["name"]
    assert schema["properties"]["note"] == {
        "description": "Optional and immutable.",
        "type": "string",
    }


def test_markers_become_transition_rules() -> None:
    schema = structural(Outer)
    props = schema["properties"]
    field_rule = [{"rule": "self == oldSelf", "message": IMMUTABLE_MESSAGE}]
    assert props["name"]["x-kubernetes-validations"] == field_rule
    assert props["inner"]["x-kubernetes-validations"] == field_rule
    assert schema["x-kubernetes-validations"] == [
        {
            "rule": "has(self.note) == has(oldSelf.note)"
            " && (!has(self.note) || self.note == oldSelf.note)",
            "message": IMMUTABLE_MESSAGE,
            "fieldPath": ".note",
        },
        {
            "rule": "!has(oldSelf.nodeID) || (has(self.nodeID) && self.nodeID == oldSelf.nodeID)",
            "message": SET_ONCE_MESSAGE,
            "fieldPath": ".nodeID",
        },
    ]
    assert "x-corral-transition" not in str(schema)


class Union(ApiModel):
    value: int | str


class Exclusive(ApiModel):
    value: int = Field(gt=0)


class Loose(ApiModel):
    value: dict[str, Any]


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        (Union, "a union other than Optional"),
        (Exclusive, "exclusiveMinimum not supported"),
        (Loose, "additionalProperties: must be a schema"),
    ],
)
def test_what_has_no_structural_form_is_refused(model: type[ApiModel], problem: str) -> None:
    with pytest.raises(NotStructural, match=problem):
        structural(model)
