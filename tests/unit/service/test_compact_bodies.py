"""The SLO bodies the runtime keeps between passes: what a pass, the UI and the gates read back."""

from __future__ import annotations

from slo_guard.service.bodies import CompactBodies

BODY = {
    "apiVersion": "sloguard.io/v1alpha1",
    "kind": "ServiceLevelObjective",
    "metadata": {
        "name": "checkout",
        "namespace": "shop",
        "generation": 3,
        "annotations": {"sloguard.io/override-until": "2026-12-05T10:00:00Z"},
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"objective": 99.9, "window": "30d", "targets": [{"kind": "Deployment", "name": "checkout"}]},
    "status": {"state": "Healthy", "burnRates": {"1h": 0.5, "5m": None}},
}


def test_a_stored_body_reads_back_whole_except_its_managed_fields() -> None:
    bodies = CompactBodies()
    bodies["shop/checkout"] = BODY
    read = bodies["shop/checkout"]
    assert "managedFields" not in read["metadata"]
    assert {**read, "metadata": {**read["metadata"], "managedFields": BODY["metadata"]["managedFields"]}} == BODY
    assert "managedFields" in BODY["metadata"], "the caller's body is left as it was"


def test_each_read_is_a_private_copy_so_a_pass_cannot_change_what_the_next_one_reads() -> None:
    bodies = CompactBodies()
    bodies["shop/checkout"] = BODY
    first = bodies["shop/checkout"]
    first["status"]["state"] = "Exhausted"
    assert bodies["shop/checkout"]["status"]["state"] == "Healthy"


def test_it_behaves_as_a_mapping_of_keys_to_bodies() -> None:
    bodies = CompactBodies()
    bodies["shop/checkout"] = BODY
    bodies["search/api"] = {**BODY, "metadata": {"name": "api", "namespace": "search"}}
    assert "shop/checkout" in bodies
    assert "shop/cart" not in bodies
    assert bodies.get("shop/cart") is None
    assert sorted(bodies) == ["search/api", "shop/checkout"]
    del bodies["shop/checkout"]
    assert len(bodies) == 1
    assert bodies.pop("search/api")["metadata"]["name"] == "api"
    assert not bodies
