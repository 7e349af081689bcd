"""Rule 3: status subresource isolation, for resources that declare it (and only for them)."""

from __future__ import annotations

from typing import Any

from tests.support.kube import KubeClient

WIDGET = ("example.test/v1", "Widget")


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1}}


def test_create_drops_status(kube: KubeClient) -> None:
    created = kube.create_object({**widget("gizmo"), "status": {"phase": "Forged"}})
    assert "status" not in created


def test_a_status_write_changes_only_status(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    written = kube.patch_object(
        *WIDGET,
        "gizmo",
        {"status": {"phase": "Ready"}, "spec": {"size": 9}, "metadata": {"labels": {"x": "y"}}},
        namespace="default",
        subresource="status",
    )
    assert written["status"] == {"phase": "Ready"}
    assert written["spec"] == {"size": 1}
    assert "labels" not in written["metadata"]


def test_a_main_resource_write_ignores_status(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    kube.patch_object(*WIDGET, "gizmo", {"status": {"phase": "Ready"}}, namespace="default", subresource="status")
    current = kube.get_object(*WIDGET, "gizmo", namespace="default")
    replaced = kube.replace_object({**current, "spec": {"size": 2}, "status": {"phase": "Forged"}})
    patched = kube.patch_object(*WIDGET, "gizmo", {"status": None}, namespace="default")
    assert (replaced["spec"], replaced["status"]) == ({"size": 2}, {"phase": "Ready"})
    assert patched["status"] == {"phase": "Ready"}


def test_a_status_put_replaces_the_whole_status(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    kube.patch_object(
        *WIDGET, "gizmo", {"status": {"phase": "Ready", "sli": 0.99}}, namespace="default", subresource="status"
    )
    current = kube.get_object(*WIDGET, "gizmo", namespace="default")
    replaced = kube.replace_object({**current, "status": {"phase": "Degraded"}}, subresource="status")
    assert replaced["status"] == {"phase": "Degraded"}


def test_without_a_status_subresource_status_is_plain_content(kube: KubeClient) -> None:
    # kopf's peering CRDs declare no subresources: status is written through the main resource.
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}
    created = kube.create_object({**peering, "status": {"operator-a": {"priority": 0}}})
    patched = kube.patch_object(
        "kopf.dev/v1", "KopfPeering", "default", {"status": {"operator-b": {"priority": 1}}}, namespace="default"
    )
    assert created["status"] == {"operator-a": {"priority": 0}}
    assert patched["status"] == {"operator-a": {"priority": 0}, "operator-b": {"priority": 1}}
    assert patched["metadata"]["generation"] == 2  # without the subresource, status is part of the content
