"""Rule 6: discovery of built-ins and CRDs, CRDs installed through the API, Table responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.emulator_tables import human_duration
from tests.support.kube import ApiStatusError, KubeClient

PROJECT_CRD = Path(__file__).parents[2] / "crds" / "servicelevelobjectives.yaml"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def resources(kube: KubeClient, group_version: str) -> dict[str, dict[str, Any]]:
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return {entry["name"]: entry for entry in kube.request("GET", prefix)["resources"]}


@pytest.mark.parametrize(
    ("group_version", "name", "kind", "namespaced"),
    [
        ("v1", "namespaces", "Namespace", False),
        ("v1", "events", "Event", True),
        ("v1", "pods", "Pod", True),
        ("apps/v1", "deployments", "Deployment", True),
        ("apps/v1", "deployments/status", "Deployment", True),
        ("apps/v1", "deployments/scale", "Scale", True),
        ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
        ("events.k8s.io/v1", "events", "Event", True),
        ("coordination.k8s.io/v1", "leases", "Lease", True),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
        ("kopf.dev/v1", "kopfpeerings", "KopfPeering", True),
        ("kopf.dev/v1", "clusterkopfpeerings", "ClusterKopfPeering", False),
        ("example.test/v1", "widgets", "Widget", True),
        ("example.test/v1", "widgets/scale", "Scale", True),
    ],
)
def test_discovery_serves_the_resources_clients_need(
    kube: KubeClient, group_version: str, name: str, kind: str, namespaced: bool
) -> None:
    entry = resources(kube, group_version)[name]
    assert (entry["kind"], entry["namespaced"]) == (kind, namespaced)
    expected_verbs = {"get", "patch", "update"} if "/" in name else {"get", "list", "watch", "create", "patch"}
    assert expected_verbs <= set(entry["verbs"])


def test_groups_list_their_preferred_version_first(kube: KubeClient) -> None:
    groups = {group["name"]: group for group in kube.request("GET", "/apis")["groups"]}
    assert groups["example.test"]["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in groups["example.test"]["versions"]] == ["v1", "v1beta1"]
    assert kube.request("GET", "/apis/example.test")["preferredVersion"]["version"] == "v1"
    assert kube.request("GET", "/api")["versions"] == ["v1"]


def test_a_crd_file_is_served_with_its_names(emulator: KubeEmulator, kube: KubeClient) -> None:
    assert emulator.load_crd(PROJECT_CRD) == ["servicelevelobjectives.sloguard.io"]
    entry = resources(kube, "sloguard.io/v1alpha1")["servicelevelobjectives"]
    assert (entry["kind"], entry["shortNames"], entry["namespaced"]) == ("ServiceLevelObjective", ["slo"], True)
    assert "servicelevelobjectives/status" in resources(kube, "sloguard.io/v1alpha1")


def test_every_served_version_of_a_crd_reads_the_same_objects(kube: KubeClient) -> None:
    kube.create_object({"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "gizmo"}})
    old = kube.get_object("example.test/v1beta1", "Widget", "gizmo", namespace="default")
    assert (old["apiVersion"], old["metadata"]["name"]) == ("example.test/v1beta1", "gizmo")


def test_a_crd_created_through_the_api_is_established_and_served(emulator: KubeEmulator, kube: KubeClient) -> None:
    crd = emulator.read_object("customresourcedefinitions", None, "widgets.example.test")
    assert crd is not None
    renamed: dict[str, Any] = {
        "apiVersion": crd["apiVersion"],
        "kind": crd["kind"],
        "metadata": {"name": "gadgets.example.test"},
        "spec": {**crd["spec"], "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"}},
    }
    created = kube.create_object(renamed)
    established = kube.get_object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gadgets.example.test")
    kube.create_object({"apiVersion": "example.test/v1", "kind": "Gadget", "metadata": {"name": "g1"}})
    conditions = {c["type"]: c["status"] for c in established["status"]["conditions"]}

    assert "status" not in created  # the controller sets it in a second write
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert established["status"]["storedVersions"] == ["v1"]
    assert [obj["metadata"]["name"] for obj in emulator.list_objects("gadgets")] == ["g1"]


def test_deleting_a_crd_stops_serving_it(kube: KubeClient) -> None:
    kube.delete_object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.test")
    with pytest.raises(ApiStatusError) as error:
        kube.request("GET", "/apis/example.test/v1/widgets")
    assert error.value.status == 404
    assert "example.test" not in {group["name"] for group in kube.request("GET", "/apis")["groups"]}


def test_a_crd_name_must_be_plural_dot_group(kube: KubeClient) -> None:
    names = {"plural": "things", "kind": "Thing"}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "wrong.example.test"},
        "spec": {"group": "example.test", "scope": "Namespaced", "names": names, "versions": []},
    }
    with pytest.raises(ApiStatusError) as error:
        kube.create_object(crd)
    assert error.value.status == 422


def test_tables_use_the_printer_columns(emulator: KubeEmulator, kube: KubeClient) -> None:
    kube.create_object(
        {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "gizmo"}, "spec": {"size": 3}}
    )
    conditions = [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]
    emulator.patch_object("widgets", "default", "gizmo", {"status": {"conditions": conditions}}, subresource="status")
    table = kube.request("GET", "/apis/example.test/v1/namespaces/default/widgets", accept=TABLE)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    [row] = table["rows"]
    assert row["cells"][:3] == ["gizmo", 3, "True"]
    assert row["cells"][3].endswith("s")
    assert row["object"]["metadata"]["name"] == "gizmo"


def test_watches_send_table_rows_when_asked(kube: KubeClient) -> None:
    widget = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "gizmo"}, "spec": {"size": 3}}
    kube.create_object(widget)
    with kube.watch("example.test/v1", "Widget", accept=TABLE) as stream:
        event = stream.next_event()
    assert event is not None
    assert (event["type"], event["object"]["kind"]) == ("ADDED", "Table")
    assert event["object"]["rows"][0]["cells"][:2] == ["gizmo", 3]


def test_tables_without_printer_columns_show_name_and_age(kube: KubeClient) -> None:
    table = kube.request("GET", "/api/v1/namespaces", accept=TABLE)
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Age"]
    assert [row["cells"][0] for row in table["rows"]] == ["default", "kube-node-lease", "kube-public", "kube-system"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (59, "59s"),
        (150, "2m30s"),
        (601, "10m"),
        (3 * 3600 + 5, "3h"),
        (9 * 3600, "9h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_a_cluster_never_prepared_for_kopf_serves_no_peering_group() -> None:
    # Like a fresh cluster: kopf.dev exists only once someone installs kopf's CRDs.
    with running_emulator(kopf_peering=False) as emulator:
        kube = KubeClient(str(emulator.url))
        with pytest.raises(ApiStatusError) as missing:
            kube.request("GET", "/apis/kopf.dev/v1")
        assert missing.value.status == 404
        groups = {group["name"] for group in kube.request("GET", "/apis")["groups"]}
        assert "kopf.dev" not in groups
