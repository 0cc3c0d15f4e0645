"""Custom resources against their CRD: schema, defaults, pruning, CEL rules, 422 messages."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, api_status, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def _invalid(widgets: Any, body: dict[str, Any], **query: Any) -> dict[str, Any]:
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.create_namespaced_custom_object(*ARGS, body, **query)
    return api_status(exc.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"size": 0},
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"size": 65, "mode": "slow"},
            "spec.size: Invalid value: 65: spec.size in body should be less than or equal to 64",
        ),
        (
            {"size": "big"},
            'spec.size: Invalid value: "string": spec.size in body must be of type '
            'integer: "string"',
        ),
        (
            {"size": 1, "tags": [1]},
            'spec.tags[0]: Invalid value: "integer": spec.tags[0] in body '
            'must be of type string: "integer"',
        ),
        (
            {"size": 1, "mode": "warp"},
            'spec.mode: Unsupported value: "warp": supported values: "fast", "slow"',
        ),
        (
            {"size": 1, "nickname": "toolongname"},
            "spec.nickname: Too long: may not be more than 8 bytes",
        ),
        (
            {"size": 1, "nickname": "ABC"},
            "spec.nickname: Invalid value: \"ABC\": spec.nickname in body should match '^[a-z]+$'",
        ),
        (
            {"size": 1, "tags": ["a", "b", "c", "d"]},
            "spec.tags: Too many: 4: must have at most 3 items",
        ),
    ],
)
def test_schema_errors(widgets: Any, spec: dict[str, Any], message: str) -> None:
    body = widget("w1")
    body["spec"] = spec
    status = _invalid(widgets, body)
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith(f'Widget.{GROUP} "w1" is invalid: ')
    assert message in status["message"]
    assert status["details"]["kind"] == "Widget" and status["details"]["group"] == GROUP
    assert status["details"]["causes"][0]["field"] == message.split(":")[0]


def test_several_errors_are_bracketed(widgets: Any) -> None:
    body = widget("w1", size=0, mode="warp")
    message = _invalid(widgets, body)["message"]
    assert message.startswith(f'Widget.{GROUP} "w1" is invalid: [') and message.endswith("]")


def test_cel_rules_wait_for_blocking_schema_errors(widgets: Any) -> None:
    body = widget("w1")
    body["spec"] = {}
    assert _invalid(widgets, body)["message"] == (
        f'Widget.{GROUP} "w1" is invalid: [spec.size: Required value, <nil>: Invalid value: '
        '"null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation]"
    )


def test_invalid_name(widgets: Any) -> None:
    status = _invalid(widgets, widget("Bad_Name"))
    assert status["message"].startswith(
        f'Widget.{GROUP} "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a '
        "lowercase RFC 1123 subdomain"
    )


def test_defaults_are_applied(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    assert obj["spec"] == {"size": 1, "mode": "fast", "limits": {"memory": 256}}


def test_unknown_fields_are_pruned_unless_preserved(widgets: Any) -> None:
    body = widget("w1", extra={"anything": {"goes": 1}}, bogus=True)
    body["metadata"]["junk"] = 1
    body["top"] = 1
    obj = widgets.create_namespaced_custom_object(*ARGS, body)
    assert "bogus" not in obj["spec"] and "top" not in obj and "junk" not in obj["metadata"]
    assert obj["spec"]["extra"] == {"anything": {"goes": 1}}


def test_strict_field_validation_rejects_unknown_fields(widgets: Any) -> None:
    status = _invalid(widgets, widget("w1", bogus=True), field_validation="Strict")
    assert status["code"] == 400
    assert status["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict '
        'decoding error: unknown field "spec.bogus"'
    )


def test_warn_field_validation_answers_a_warning_header(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    api = kubernetes.client.CustomObjectsApi(k8s)
    response = api.create_namespaced_custom_object_with_http_info(
        *ARGS, widget("w1", bogus=True), field_validation="Warn"
    )
    assert response[2]["Warning"] == '299 - "unknown field \\"spec.bogus\\""'


def test_cel_rule_with_message(widgets: Any) -> None:
    status = _invalid(widgets, widget("w1", size=40))
    assert status["message"] == (
        f'Widget.{GROUP} "w1" is invalid: spec: Invalid value: '
        '"object": sizes above 32 must be slow'
    )
    assert widgets.create_namespaced_custom_object(*ARGS, widget("w1", size=40, mode="slow"))


def test_cel_message_expression_and_field_path(widgets: Any) -> None:
    status = _invalid(widgets, widget("w1", tags=["ok", "bad"]))
    assert status["message"] == (
        f'Widget.{GROUP} "w1" is invalid: spec.tags: Invalid value: '
        '"object": tag bad is not allowed'
    )


def test_cel_transition_rule_uses_old_self(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1", immutable="x"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"immutable": "y"}})
    assert api_status(exc.value)["message"] == (
        f'Widget.{GROUP} "w1" is invalid: spec.immutable: Invalid value: "string": immutable is '
        "immutable"
    )
    widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 2}})
