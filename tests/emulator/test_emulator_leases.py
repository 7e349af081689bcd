"""Rule 14: coordination.k8s.io/v1 Leases, as kube-apiserver 1.32 stores them (one test per rule)."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from tests.support.emulator import KubeEmulator
from tests.support.emulator_leases import micro_time
from tests.support.kube import ApiStatusError, KubeClient

LEASE = ("coordination.k8s.io/v1", "Lease")
RENEWED = "2025-03-01T10:00:00.250000Z"


def lease(name: str = "shard-0", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def send(url: str, method: str, body: Any) -> tuple[int, list[str], dict[str, Any]]:
    """One request, keeping the status code and the Warning headers, which KubeClient drops."""
    data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http only)
            return response.status, response.headers.get_all("Warning") or [], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, [], json.loads(error.read())


def refusal(call: Any, *args: Any, **kwargs: Any) -> ApiStatusError:
    with pytest.raises(ApiStatusError) as error:
        call(*args, **kwargs)
    return error.value


def causes(error: ApiStatusError) -> list[tuple[str, str]]:
    return [(cause["field"], cause["message"]) for cause in error.body["details"]["causes"]]


def test_a_lease_has_no_generation_and_always_a_spec(kube: KubeClient) -> None:
    created = kube.create_object({**lease(), "spec": None})
    renewed = kube.replace_object({**created, "spec": {"holderIdentity": "a", "renewTime": RENEWED}})
    assert created["spec"] == {}
    assert "generation" not in created["metadata"]
    assert "generation" not in renewed["metadata"]
    assert int(renewed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_a_lease_has_no_status_subresource(kube: KubeClient) -> None:
    created = kube.create_object(lease())
    error = refusal(kube.patch_object, *LEASE, "shard-0", {"status": {}}, namespace="default", subresource="status")
    assert (error.status, error.body) == (404, "404 page not found\n")
    assert kube.get_object(*LEASE, "shard-0", namespace="default") == created


def test_replace_with_a_stale_resource_version_is_a_conflict(kube: KubeClient) -> None:
    created = kube.create_object(lease(holderIdentity="a"))
    kube.replace_object({**created, "spec": {"holderIdentity": "b"}})
    error = refusal(kube.replace_object, {**created, "spec": {"holderIdentity": "c"}})
    assert (error.status, error.reason) == (409, "Conflict")
    assert error.body["details"] == {"name": "shard-0", "group": "coordination.k8s.io", "kind": "leases"}
    assert kube.get_object(*LEASE, "shard-0", namespace="default")["spec"] == {"holderIdentity": "b"}


def test_replace_without_a_resource_version_is_refused(kube: KubeClient) -> None:
    # The Lease strategy does not allow unconditional updates, unlike most built-ins.
    kube.create_object(lease(holderIdentity="a"))
    error = refusal(kube.replace_object, lease(holderIdentity="b"))
    assert (error.status, error.reason) == (422, "Invalid")
    assert error.body["message"] == (
        'leases.coordination.k8s.io "shard-0" is invalid: '
        "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    )


def test_replace_of_a_missing_lease_creates_it(emulator: KubeEmulator, kube: KubeClient) -> None:
    # The Lease strategy allows create on update; a resourceVersion in the body has nothing to be compared with.
    url = kube.base_url + kube.path(*LEASE, namespace="default", name="shard-0")
    body = {
        **lease(holderIdentity="a"),
        "metadata": {"name": "shard-0", "namespace": "default", "resourceVersion": "12345"},
    }
    status, _, created = send(url, "PUT", body)
    assert status == 201
    assert created["metadata"]["resourceVersion"] != "12345"
    assert created["spec"] == {"holderIdentity": "a"}
    assert [record.status for record in emulator.requests(verb="update", resource="leases")] == [201]


def test_create_of_an_existing_name_is_already_exists(kube: KubeClient) -> None:
    kube.create_object(lease(holderIdentity="a"))
    error = refusal(kube.create_object, lease(holderIdentity="b"))
    assert (error.status, error.reason) == (409, "AlreadyExists")
    assert error.body["message"] == 'leases.coordination.k8s.io "shard-0" already exists'


@pytest.mark.parametrize("duration", [0, -15])
def test_lease_duration_must_be_positive(kube: KubeClient, duration: int) -> None:
    error = refusal(kube.create_object, lease(leaseDurationSeconds=duration))
    assert (error.status, error.reason) == (422, "Invalid")
    assert causes(error) == [("spec.leaseDurationSeconds", f"Invalid value: {duration}: must be greater than 0")]
    assert error.body["message"] == (
        f'Lease.coordination.k8s.io "shard-0" is invalid: spec.leaseDurationSeconds: Invalid value: {duration}: '
        "must be greater than 0"
    )


def test_lease_duration_is_checked_on_every_write(kube: KubeClient) -> None:
    created = kube.create_object(lease(leaseDurationSeconds=1))
    replaced = refusal(kube.replace_object, {**created, "spec": {"leaseDurationSeconds": 0}})
    patched = refusal(kube.patch_object, *LEASE, "shard-0", {"spec": {"leaseDurationSeconds": 0}}, namespace="default")
    assert (replaced.status, patched.status) == (422, 422)
    assert kube.get_object(*LEASE, "shard-0", namespace="default") == created


def test_lease_transitions_must_not_be_negative(kube: KubeClient) -> None:
    error = refusal(kube.create_object, lease(leaseTransitions=-1))
    assert causes(error) == [("spec.leaseTransitions", "Invalid value: -1: must be greater than or equal to 0")]
    assert kube.create_object(lease("other", leaseTransitions=0))["spec"] == {"leaseTransitions": 0}


def test_the_name_must_be_a_dns_subdomain(kube: KubeClient) -> None:
    error = refusal(kube.create_object, lease("slo-guard-member-Host_1"))
    [(field, message)] = causes(error)
    assert field == "metadata.name"
    assert message.startswith('Invalid value: "slo-guard-member-Host_1": a lowercase RFC 1123 subdomain must consist')
    assert kube.create_object(lease("slo-guard-member-pod-7f9c.x"))["metadata"]["name"] == "slo-guard-member-pod-7f9c.x"


def test_micro_times_are_stored_in_utc_with_microseconds(kube: KubeClient) -> None:
    created = kube.create_object(lease(acquireTime="2025-03-01T12:00:00.000001+02:00", renewTime=RENEWED))
    assert created["spec"] == {"acquireTime": "2025-03-01T10:00:00.000001Z", "renewTime": RENEWED}
    same = kube.replace_object({**created, "spec": {**created["spec"], "acquireTime": "2025-03-01T10:00:00.000001Z"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], "the same instant: a no-op"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2025-03-01T10:00:00Z", 'cannot parse "Z" as ".000000"'),
        ("2025-03-01T10:00:00+00:00", 'cannot parse "+00:00" as ".000000"'),
        ("2025-03-01T10:00:00.123Z", 'cannot parse ".123Z" as ".000000"'),
        ("2025-03-01T10:00:00.123456789Z", 'cannot parse "789Z" as "Z07:00"'),
        ("2025-03-01 10:00:00.123456Z", 'cannot parse " 10:00:00.123456Z" as "T"'),
        ("yesterday", 'cannot parse "yesterday" as "2006"'),
    ],
)
def test_a_micro_time_must_be_rfc3339_with_six_fractional_digits(text: str, error: str) -> None:
    with pytest.raises(Exception, match="parsing time") as raised:
        micro_time(text)
    assert str(raised.value) == f'parsing time "{text}" as "2006-01-02T15:04:05.000000Z07:00": {error}'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2025-13-01T10:00:00.000000Z", "month out of range"),
        ("2025-02-30T10:00:00.000000Z", "day out of range"),
        ("2025-03-01T24:00:00.000000Z", "hour out of range"),
        ("2025-03-01T10:00:00.000000Zjunk", 'extra text: "junk"'),
    ],
)
def test_a_micro_time_must_be_a_real_instant(text: str, error: str) -> None:
    with pytest.raises(Exception, match="parsing time") as raised:
        micro_time(text)
    assert str(raised.value) == f'parsing time "{text}": {error}'


def test_a_bad_micro_time_is_a_decoding_error(kube: KubeClient) -> None:
    # Decoding fails before validation: 400 BadRequest, and the Go time error names no field.
    error = refusal(kube.create_object, lease(renewTime="2025-03-01T10:00:00Z"))
    assert (error.status, error.reason) == (400, "BadRequest")
    assert error.body["message"] == (
        'Lease in version "v1" cannot be handled as a Lease: parsing time "2025-03-01T10:00:00Z" as '
        '"2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'
    )


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"holderIdentity": 7}, "number into Go struct field LeaseSpec.spec.holderIdentity of type string"),
        ({"renewTime": 1740823200}, "number into Go struct field LeaseSpec.spec.renewTime of type string"),
        (
            {"leaseDurationSeconds": "15"},
            "string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            {"leaseDurationSeconds": 1.5},
            "number 1.5 into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            {"leaseTransitions": 2**31},
            "number 2147483648 into Go struct field LeaseSpec.spec.leaseTransitions of type int32",
        ),
        ({"leaseTransitions": True}, "bool into Go struct field LeaseSpec.spec.leaseTransitions of type int32"),
    ],
)
def test_spec_fields_must_have_their_types(kube: KubeClient, spec: dict[str, Any], error: str) -> None:
    refused = refusal(kube.create_object, lease(**spec))
    assert (refused.status, refused.reason) == (400, "BadRequest")
    assert (
        refused.body["message"] == f'Lease in version "v1" cannot be handled as a Lease: json: cannot unmarshal {error}'
    )


def test_a_spec_that_is_not_an_object_is_a_decoding_error(kube: KubeClient) -> None:
    refused = refusal(kube.create_object, {**lease(), "spec": "holder-a"})
    assert refused.body["message"].endswith(
        "json: cannot unmarshal string into Go struct field Lease.spec of type v1.LeaseSpec"
    )


def test_a_patch_that_breaks_a_type_is_invalid_naming_the_patch(kube: KubeClient) -> None:
    # The real patch handlers decode the patched object and report a failure as field `patch` (422), not 400.
    created = kube.create_object(lease(holderIdentity="a"))
    error = refusal(kube.patch_object, *LEASE, "shard-0", {"spec": {"holderIdentity": 7}}, namespace="default")
    assert (error.status, error.reason) == (422, "Invalid")
    [(field, message)] = causes(error)
    assert field == "patch"
    assert message.endswith(
        ": json: cannot unmarshal number into Go struct field LeaseSpec.spec.holderIdentity of type string"
    )
    assert error.body["message"].startswith(' "" is invalid: patch: Invalid value: "{')
    assert kube.get_object(*LEASE, "shard-0", namespace="default") == created


def test_nulls_and_empty_strings(kube: KubeClient) -> None:
    # Every spec field is a pointer: null means absent; an empty holderIdentity is a value (a released lease).
    created = kube.create_object(lease(holderIdentity=None, renewTime=None, leaseDurationSeconds=15))
    released = kube.replace_object({**created, "spec": {"holderIdentity": "", "leaseDurationSeconds": 15}})
    assert created["spec"] == {"leaseDurationSeconds": 15}
    assert released["spec"] == {"holderIdentity": "", "leaseDurationSeconds": 15}


def test_unknown_fields_are_dropped_with_a_warning_or_refused_when_strict(kube: KubeClient) -> None:
    url = kube.base_url + kube.path(*LEASE, namespace="default")
    status, warnings, created = send(url, "POST", {**lease(holder="a"), "status": {"phase": "Held"}})
    assert (status, created["spec"], "status" in created) == (201, {}, False)
    assert warnings == ['299 - "unknown field \\"spec.holder\\""', '299 - "unknown field \\"status\\""']
    strict, _, refused = send(url + "?fieldValidation=Strict", "POST", lease("other", holder="a"))
    assert strict == 400
    assert refused["message"] == (
        'Lease in version "v1" cannot be handled as a Lease: strict decoding error: unknown field "spec.holder"'
    )


def test_coordinated_election_fields_are_dropped(kube: KubeClient) -> None:
    # strategy and preferredHolder need the CoordinatedLeaderElection feature gate, off by default in 1.32.
    created = kube.create_object(lease(holderIdentity="a", strategy="OldestEmulationVersion", preferredHolder="b"))
    assert created["spec"] == {"holderIdentity": "a"}


def test_the_official_client_round_trips_a_lease_and_its_microsecond_pitfall(emulator: KubeEmulator) -> None:
    # The client writes datetimes with isoformat(), which omits the fraction when microsecond == 0: a real server
    # refuses that MicroTime, and so does the emulator.
    configuration = kubernetes.client.Configuration(host=str(emulator.url))
    with kubernetes.client.ApiClient(configuration) as api_client:
        coordination = kubernetes.client.CoordinationV1Api(api_client)
        renewed = datetime.datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=datetime.UTC)
        body = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name="shard-0"),
            spec=kubernetes.client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15, renew_time=renewed),
        )
        created = coordination.create_namespaced_lease("default", body)
        assert created.spec is not None
        assert created.spec.renew_time == renewed
        created.spec.renew_time = renewed.replace(microsecond=0)
        with pytest.raises(kubernetes.client.ApiException) as refused:
            coordination.replace_namespaced_lease("shard-0", "default", created)
    assert refused.value.status == 400
    assert 'cannot parse "+00:00" as ".000000"' in json.loads(refused.value.body or "{}")["message"]
