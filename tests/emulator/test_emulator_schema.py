"""CRD structural schemas: unknown fields pruned, defaults applied, OpenAPI violations answered with 422."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from tests.support.kube import ApiStatusError, KubeClient

GADGET = ("example.test/v1", "Gadget")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "enum": ["Fast", "Safe"], "default": "Safe"},
                "limits": {"type": "object", "properties": {"burst": {"type": "number", "default": 0.5}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string", "enum": ["Ready", "Failed"]}}},
    },
}


@pytest.fixture
def gadgets(kube: KubeClient) -> KubeClient:
    version = {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}
    kube.create_object(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.test"},
            "spec": {
                "group": "example.test",
                "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{**version, "schema": {"openAPIV3Schema": SCHEMA}}],
            },
        }
    )
    return kube


def gadget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.test/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": spec}


def test_unknown_fields_are_pruned_and_defaults_applied(gadgets: KubeClient) -> None:
    created = gadgets.create_object(
        {**gadget(size=2, colour="red", limits={}, extra={"anything": [1]}, port="http"), "junk": True}
    )
    assert created["spec"] == {
        "size": 2,
        "mode": "Safe",
        "limits": {"burst": 0.5},
        "extra": {"anything": [1]},
        "port": "http",
    }
    assert "junk" not in created


def test_schema_violations_are_422_with_causes(gadgets: KubeClient) -> None:
    with pytest.raises(ApiStatusError) as error:
        gadgets.create_object(gadget(size=0, mode="Slow"))
    causes = {(cause["field"], cause["reason"]) for cause in error.value.body["details"]["causes"]}
    assert error.value.status == 422
    assert causes == {("spec.size", "FieldValueInvalid"), ("spec.mode", "FieldValueInvalid")}
    assert error.value.body["message"].startswith('Gadget.example.test "g" is invalid: spec.mode: ')


def test_updates_and_status_writes_are_validated_too(gadgets: KubeClient) -> None:
    gadgets.create_object(gadget(size=1, note=None))
    with pytest.raises(ApiStatusError) as spec_error:
        gadgets.patch_object(*GADGET, "g", {"spec": {"size": "big"}}, namespace="default")
    with pytest.raises(ApiStatusError) as status_error:
        gadgets.patch_object(*GADGET, "g", {"status": {"phase": "Lost"}}, namespace="default", subresource="status")
    ready = gadgets.patch_object(
        *GADGET, "g", {"status": {"phase": "Ready"}}, namespace="default", subresource="status"
    )
    assert (spec_error.value.status, status_error.value.status) == (422, 422)
    assert ready["status"] == {"phase": "Ready"}


def post(url: str, body: dict[str, Any]) -> tuple[int, list[str], dict[str, Any]]:
    """POST and keep the Warning headers, which KubeClient drops."""
    data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http only)
            return response.status, response.headers.get_all("Warning") or [], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, [], json.loads(error.read())


def test_pruned_fields_are_warned_about_or_refused_when_strict(gadgets: KubeClient) -> None:
    url = gadgets.base_url + gadgets.path(*GADGET, namespace="default")
    created = post(url, gadget(size=1, colour="red"))
    refused = post(url + "?fieldValidation=Strict", {**gadget(size=1, colour="red"), "metadata": {"name": "h"}})
    assert created[:2] == (201, ['299 - "unknown field \\"spec.colour\\""'])
    assert refused[0] == 400
    assert 'strict decoding error: unknown field "spec.colour"' in refused[2]["message"]
    assert [item["metadata"]["name"] for item in gadgets.list_objects(*GADGET)["items"]] == ["g"]
