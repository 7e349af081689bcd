"""Targets, Events and SLO status over the official Kubernetes client.

Every call goes through one `KubernetesApi`: one ApiClient, one bulkhead (a bounded thread pool for the blocking
client), one circuit breaker, bounded jittered retries, and a token bucket in front of every write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV2Api,
    Configuration,
    CoreV1Api,
    CoreV1Event,
    CustomObjectsApi,
)
from kubernetes.client.exceptions import ApiException

from slo_guard import __version__
from slo_guard.adapters import resilience
from slo_guard.adapters.ratelimit import TokenBucket
from slo_guard.adapters.resilience import BreakerState, Bulkhead, CircuitBreaker, CircuitOpenError, RetryPolicy
from slo_guard.domain.model import GROUP, PLURAL, VERSION, Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    ORIGINAL_REPLICAS,
    OVERRIDE_UNTIL,
    PAUSED_BY,
    REASSERTED_AT,
    REASSERTIONS,
    REVERTED_BY,
    SCALED_BY,
    Change,
    WorkloadState,
    parse_holders,
)
from slo_guard.telemetry import EventOutcome, KubernetesOutcome, OperatorMetrics

logger = logging.getLogger("slo_guard.kubernetes")


@dataclass(frozen=True, slots=True)
class WorkloadSnapshot:
    """A target's state plus the resourceVersion it was read at, for optimistic concurrency."""

    state: WorkloadState
    resource_version: str | None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None


class WorkloadConflict(Exception):
    """The target changed since it was read (HTTP 409/422): re-read and decide again."""


class KubernetesUnavailable(Exception):
    """The API server did not answer usefully after bounded retries (timeouts, 429, 5xx, circuit open)."""


class ObjectNotFound(Exception):
    """The API server answered 404: the object (or its namespace) does not exist."""


BREAKER_NAME = "kubernetes"
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "slo-guard"
"""The fieldManager of slo-guard's target writes, so managedFields tell them from a GitOps tool's or a human's."""
DEPLOYMENT = "Deployment"
EVENT_SOURCE_COMPONENT = "slo-guard"
EVENT_REPORTING_COMPONENT = "sloguard.io/slo-guard"
EVENT_MESSAGE_LIMIT = 1024
_EVENT_NAME_PREFIX_LIMIT = 236
"""Leaves room for `.` and 16 hex digits within the 253 characters of an object name."""
_TOO_MANY_REQUESTS = 429
_CONFLICTS = frozenset({409, 422})


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """How hard to try the API server, and how hard to push it."""

    timeout: float = 10.0
    """Seconds one request may take in total; sent as the client's per-request timeout."""
    max_concurrency: int = 8
    """Process-wide bound on requests in flight (and the size of the thread pool and connection pool)."""
    retries: int = 4
    """Extra attempts after the first, on connection errors, timeouts, 429 and 5xx; never on other 4xx."""
    backoff_base: float = 0.2
    """Seconds; the cap of the first retry's jittered wait, doubling per retry."""
    backoff_max: float = 5.0
    """Seconds; no jittered wait between attempts is longer."""
    retry_after_max: float = 10.0
    """Seconds; the longest `Retry-After` slo-guard honours before it tries again."""
    breaker_failure_threshold: int = 10
    """Consecutive failed attempts (timeouts, unreachable, 5xx) that open the circuit breaker; twice the attempts
    of one request, so a single unlucky object cannot open it for every SLO."""
    breaker_reset_timeout: float = 30.0
    """Seconds the breaker stays open before one probe request is let through."""
    writes_per_second: float = 20.0
    """Sustained rate of writes (patches and Event creations) across the whole process."""
    write_burst: int = 40
    """Writes that may go out back to back before `writes_per_second` applies."""
    event_dedup_window: float = 600.0
    """Seconds during which the same Event (object, reason, message) is posted only once."""
    event_dedup_size: int = 10_000
    """Most recent distinct Events remembered for de-duplication; the oldest are forgotten first."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be above 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")
        if self.retry_after_max < 0:
            raise ValueError(f"retry_after_max must not be negative, got {self.retry_after_max}")


def load_api_client(settings: KubernetesSettings | None = None) -> ApiClient:
    """Connect like kubectl: `KUBECONFIG` or ~/.kube/config when present, else the pod's service account."""
    settings = settings or KubernetesSettings()
    configuration = Configuration()
    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        if any(Path(path).expanduser().exists() for path in kubeconfig.split(os.pathsep) if path):
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
        else:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException as error:
        raise KubernetesUnavailable(f"no usable kubeconfig ({kubeconfig}) and not in a cluster: {error}") from error
    # Our own retry is the only one: urllib3 must raise the first error as it is.
    configuration.retries = False
    configuration.connection_pool_maxsize = settings.max_concurrency
    client = ApiClient(configuration)
    client.user_agent = f"slo-guard/{__version__}"
    return client


class _ApiError(Exception):
    """One failed attempt, classified on the worker thread."""

    def __init__(
        self, message: str, *, outcome: KubernetesOutcome, status: int = 0, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (`Retry-After`), when it did."""

    @property
    def transient(self) -> bool:
        """Worth another attempt: the same request may succeed later."""
        return self.outcome in _TRANSIENT

    @property
    def server_failed(self) -> bool:
        """Counts against the circuit breaker: the API server itself is in trouble."""
        return self.outcome in _SERVER_FAILURES

    def public(self) -> Exception:
        if self.status == 404:
            return ObjectNotFound(str(self))
        if self.status in _CONFLICTS:
            return WorkloadConflict(str(self))
        return KubernetesUnavailable(str(self))


_SERVER_FAILURES = frozenset({KubernetesOutcome.SERVER_ERROR, KubernetesOutcome.TIMEOUT, KubernetesOutcome.UNAVAILABLE})
_TRANSIENT = _SERVER_FAILURES | {KubernetesOutcome.THROTTLED}
_SINGLE_ATTEMPT = RetryPolicy(attempts=1, base_delay=0, max_delay=0)


class KubernetesApi:
    """The one way slo-guard talks to the API server; share one instance per process so its bounds are global."""

    def __init__(
        self,
        client: ApiClient,
        settings: KubernetesSettings | None = None,
        *,
        metrics: OperatorMetrics | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings or KubernetesSettings()
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._sleep = sleep
        self._rng = rng
        self._bulkhead = Bulkhead(self.settings.max_concurrency, thread_name_prefix="slo-guard-kubernetes")
        self._retry_policy = RetryPolicy(
            attempts=self.settings.retries + 1,
            base_delay=self.settings.backoff_base,
            max_delay=self.settings.backoff_max,
        )
        self._breaker = CircuitBreaker(
            BREAKER_NAME,
            failure_threshold=self.settings.breaker_failure_threshold,
            reset_timeout=self.settings.breaker_reset_timeout,
            clock=clock,
            is_failure=lambda error: isinstance(error, _ApiError) and error.server_failed,
            on_state_change=self.metrics.breaker_moved,
        )
        self.metrics.set_breaker_state(BREAKER_NAME, BreakerState.CLOSED)
        self._writes = TokenBucket(self.settings.writes_per_second, self.settings.write_burst, clock, sleep=sleep)

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    async def request(self, verb: str, call: Callable[..., Any], *, write: bool = False, retry: bool = True) -> Any:
        """Run one generated-client call (without its timeout options) and return the decoded JSON body.

        Raises ObjectNotFound (404), WorkloadConflict (409/422) or KubernetesUnavailable (anything else).
        Writes wait for a token first; `retry=False` makes exactly one attempt.
        """

        async def attempt() -> Any:
            if write:
                await self._writes.acquire()
            return await self._attempt(verb, call)

        try:
            return await resilience.retry(
                attempt,
                policy=self._retry_policy if retry else _SINGLE_ATTEMPT,
                retryable=lambda error: isinstance(error, _ApiError) and error.transient,
                sleep=self._sleep,
                rng=self._rng,
                requested_delay=self._requested_delay,
            )
        except _ApiError as error:
            raise error.public() from error

    def close(self) -> None:
        """Refuse new calls and drop pooled connections; calls already running finish in the background."""
        self._bulkhead.close()
        self.client.close()  # type: ignore[no-untyped-call]

    async def _attempt(self, verb: str, call: Callable[..., Any]) -> Any:
        send = partial(self._send, call)
        try:
            result = await self._breaker.call(lambda: self._bulkhead.run(send))
        except CircuitOpenError as error:
            self.metrics.count_kubernetes_request(verb, KubernetesOutcome.CIRCUIT_OPEN)
            raise KubernetesUnavailable(f"Kubernetes API: {error}") from error
        except _ApiError as error:
            self.metrics.count_kubernetes_request(verb, error.outcome)
            raise
        self.metrics.count_kubernetes_request(verb, KubernetesOutcome.SUCCESS)
        return result

    def _send(self, call: Callable[..., Any]) -> Any:
        """Blocking; runs on the bulkhead's threads."""
        try:
            response = call(_request_timeout=self.settings.timeout, _preload_content=False)
        except ApiException as error:
            raise _classify(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _transport_error(error, timeout=self.settings.timeout) from error
        try:
            return _decode(response.data)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            raise _ApiError(
                f"Kubernetes API sent an unreadable answer: {error}", outcome=KubernetesOutcome.SERVER_ERROR
            ) from error
        finally:
            response.release_conn()

    def _requested_delay(self, error: BaseException) -> float | None:
        if isinstance(error, _ApiError) and error.retry_after is not None:
            return min(error.retry_after, self.settings.retry_after_max)
        return None


def _transport_error(error: Exception, *, timeout: float) -> _ApiError:
    # urllib3 makes a refused connection a subclass of its connect timeout: rule that out first.
    refused = isinstance(error, urllib3.exceptions.NewConnectionError)
    if isinstance(error, urllib3.exceptions.TimeoutError) and not refused:
        return _ApiError(f"Kubernetes API did not answer within {timeout:g} s", outcome=KubernetesOutcome.TIMEOUT)
    return _ApiError(f"Kubernetes API is unreachable: {error}", outcome=KubernetesOutcome.UNAVAILABLE)


def _decode(data: bytes) -> Any:
    return json.loads(data) if data else {}


def _classify(error: ApiException) -> _ApiError:
    status = int(error.status or 0)
    outcome = _outcome(status)
    retry_after = _retry_after(error) if outcome in _TRANSIENT else None
    message = f"Kubernetes API answered {status or error.reason}: {_api_message(error)}"
    return _ApiError(message, outcome=outcome, status=status, retry_after=retry_after)


def _outcome(status: int) -> KubernetesOutcome:
    if status == 0:
        # The client raises these itself, e.g. for a TLS handshake that failed.
        return KubernetesOutcome.UNAVAILABLE
    if status == _TOO_MANY_REQUESTS:
        return KubernetesOutcome.THROTTLED
    if status >= 500:
        return KubernetesOutcome.SERVER_ERROR
    if status == 404:
        return KubernetesOutcome.NOT_FOUND
    return KubernetesOutcome.CONFLICT if status in _CONFLICTS else KubernetesOutcome.REJECTED


def _api_message(error: ApiException) -> str:
    """The `message` of the API's Status object when the body is one, else the start of the body."""
    body = error.body or ""
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return " ".join(str(body)[:200].split()) or str(error.reason or "no details")


def _retry_after(error: ApiException) -> float | None:
    """`Retry-After` in seconds; the HTTP-date form is not used by the API server and is ignored."""
    value = (error.headers or {}).get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class DeploymentWorkloads:
    """The WorkloadController for apps/v1 Deployments; touches only the namespace it is given."""

    def __init__(self, api: KubernetesApi) -> None:
        self._api = api
        self._apps = AppsV1Api(api.client)
        self._autoscaling = AutoscalingV2Api(api.client)

    async def read(self, *, namespace: str, target: Target, check_autoscaler: bool) -> WorkloadSnapshot:
        """The target as it is now; a missing Deployment is `exists=False`, not an error."""
        call = partial(self._apps.read_namespaced_deployment, target.name, namespace)
        try:
            deployment = await self._api.request("get", call)
        except ObjectNotFound:
            return WorkloadSnapshot(WorkloadState(target=target, exists=False), resource_version=None)
        autoscaler = await self._autoscaler(namespace=namespace, deployment=target.name) if check_autoscaler else None
        return deployment_snapshot(deployment, target=target, autoscaler=autoscaler)

    async def apply(self, *, namespace: str, snapshot: WorkloadSnapshot, change: Change) -> None:
        """One merge patch, conditional on the resourceVersion the snapshot was read at."""
        if snapshot.resource_version is None:
            raise WorkloadConflict(f"{_describe(snapshot)} was read without a resourceVersion; read it again")
        call = partial(
            self._apps.patch_namespaced_deployment,
            snapshot.state.target.name,
            namespace,
            merge_patch(resource_version=snapshot.resource_version, change=change),
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", call, write=True)
        except ObjectNotFound as error:
            # Deleted since it was read: the re-read the service does next reports it missing.
            raise WorkloadConflict(f"{_describe(snapshot)} no longer exists") from error

    async def held(self, *, namespace: str) -> list[WorkloadSnapshot]:
        """Every Deployment in the namespace that carries the hold label."""
        call = partial(self._apps.list_namespaced_deployment, namespace, label_selector=f"{HELD_LABEL}=true")
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return []
        return [
            deployment_snapshot(item, target=Target(DEPLOYMENT, item["metadata"]["name"]), autoscaler=None)
            for item in listing.get("items") or []
        ]

    async def _autoscaler(self, *, namespace: str, deployment: str) -> str | None:
        call = partial(self._autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace)
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return None
        names = sorted(
            item["metadata"]["name"] for item in listing.get("items") or [] if _scales_deployment(item, deployment)
        )
        return names[0] if names else None


def merge_patch(*, resource_version: str, change: Change) -> dict[str, Any]:
    """The JSON merge patch that carries `change`; None values become null, which removes the key."""
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if change.annotations:
        metadata["annotations"] = dict(change.annotations)
    if change.labels:
        metadata["labels"] = dict(change.labels)
    spec: dict[str, Any] = {}
    if change.paused is not None:
        spec["paused"] = change.paused
    if change.replicas is not None:
        spec["replicas"] = change.replicas
    return {"metadata": metadata, "spec": spec} if spec else {"metadata": metadata}


def deployment_snapshot(deployment: Mapping[str, Any], *, target: Target, autoscaler: str | None) -> WorkloadSnapshot:
    """What slo-guard reads from a Deployment's JSON: its spec, slo-guard's annotations and managedFields."""
    metadata = deployment.get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas")
    state = WorkloadState(
        target=target,
        exists=True,
        paused=bool(spec.get("paused", False)),
        # The API server defaults an unset replica count to 1.
        replicas=1 if replicas is None else int(replicas),
        paused_by=parse_holders(annotations.get(PAUSED_BY)),
        scaled_by=parse_holders(annotations.get(SCALED_BY)),
        original_replicas=_non_negative_int(annotations.get(ORIGINAL_REPLICAS)),
        override_until=_override_until(annotations.get(OVERRIDE_UNTIL), target=target),
        autoscaler=autoscaler,
        paused_set_by=field_owner(metadata.get("managedFields"), "paused"),
        replicas_set_by=field_owner(metadata.get("managedFields"), "replicas"),
        reassertions=_non_negative_int(annotations.get(REASSERTIONS)) or 0,
        reasserted_at=_timestamp(annotations.get(REASSERTED_AT)),
        reverted_by=annotations.get(REVERTED_BY) or None,
    )
    return WorkloadSnapshot(state, resource_version=metadata.get("resourceVersion"))


def field_owner(managed_fields: Any, field: str) -> str | None:
    """The manager that last took `spec.<field>` over, from managedFields; slo-guard itself and unknowns are None.

    An update that changes a field moves its ownership to the writer's manager (its fieldManager, by default the
    start of its user agent), so right after a revert the owner is whoever reverted it.
    """
    owners = []
    for entry in managed_fields if isinstance(managed_fields, list) else []:
        if not isinstance(entry, Mapping):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        manager = entry.get("manager")
        if isinstance(spec, Mapping) and f"f:{field}" in spec and manager and manager != FIELD_MANAGER:
            owners.append((str(entry.get("time") or ""), str(manager)))
    return max(owners)[1] if owners else None


def _non_negative_int(value: str | None) -> int | None:
    try:
        count = int(value) if value is not None else None
    except ValueError:
        return None
    return count if count is not None and count >= 0 else None


def _timestamp(value: str | None) -> datetime | None:
    """An RFC 3339 time with an offset, or None."""
    try:
        moment = datetime.fromisoformat(value) if value is not None else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _override_until(value: str | None, *, target: Target) -> datetime | None:
    """RFC 3339 with an offset; anything else is ignored with a warning, as if absent."""
    until = _timestamp(value)
    if value is not None and until is None:
        logger.warning("ignoring %s=%r on %s %s: not an RFC 3339 time", OVERRIDE_UNTIL, value, target.kind, target.name)
    return until


def _scales_deployment(autoscaler: Mapping[str, Any], deployment: str) -> bool:
    ref = (autoscaler.get("spec") or {}).get("scaleTargetRef") or {}
    group = str(ref.get("apiVersion") or "apps").split("/")[0]
    return ref.get("kind") == DEPLOYMENT and ref.get("name") == deployment and group in {"apps", "extensions"}


def _describe(snapshot: WorkloadSnapshot) -> str:
    return f"{snapshot.state.target.kind} {snapshot.state.target.name}"


class _RecentEvents:
    """A bounded LRU of Events posted lately, keyed by (object, reason, message)."""

    def __init__(self, *, window: float, size: int, clock: Callable[[], float]) -> None:
        self._window = window
        self._size = size
        self._clock = clock
        self._posted_at: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def seen(self, key: tuple[str, ...]) -> bool:
        posted_at = self._posted_at.get(key)
        return posted_at is not None and self._clock() - posted_at < self._window

    def remember(self, key: tuple[str, ...]) -> None:
        self._posted_at[key] = self._clock()
        self._posted_at.move_to_end(key)
        while len(self._posted_at) > self._size:
            self._posted_at.popitem(last=False)


class KubernetesEvents:
    """The EventSink: core/v1 Events, de-duplicated, best effort (failures are logged and counted, never raised)."""

    def __init__(
        self,
        api: KubernetesApi,
        *,
        instance: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._core = CoreV1Api(api.client)
        self._instance = instance or socket.gethostname()
        self._clock = clock
        self._recent = _RecentEvents(
            window=api.settings.event_dedup_window, size=api.settings.event_dedup_size, clock=monotonic
        )

    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        key = (regarding.api_version, regarding.kind, regarding.namespace, regarding.name, reason, message)
        if self._recent.seen(key):
            self._api.metrics.count_kubernetes_event(EventOutcome.SUPPRESSED)
            return
        body = self._event(regarding=regarding, type_=type_, reason=reason, message=message)
        call = partial(self._core.create_namespaced_event, regarding.namespace, CoreV1Event.model_validate(body))
        try:
            # One attempt: an Event is worth less than the time a retry would hold up enforcement.
            await self._api.request("create", call, write=True, retry=False)
        except (KubernetesUnavailable, ObjectNotFound, WorkloadConflict) as error:
            self._api.metrics.count_kubernetes_event(EventOutcome.FAILED)
            logger.warning(
                "could not post Event %s on %s %s/%s: %s",
                reason,
                regarding.kind,
                regarding.namespace,
                regarding.name,
                error,
            )
            return
        self._recent.remember(key)
        self._api.metrics.count_kubernetes_event(EventOutcome.POSTED)

    def _event(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> dict[str, Any]:
        # Event timestamps have whole-second precision.
        now = self._clock().replace(microsecond=0)
        involved = {
            "apiVersion": regarding.api_version,
            "kind": regarding.kind,
            "namespace": regarding.namespace,
            "name": regarding.name,
        }
        if regarding.uid is not None:
            involved["uid"] = regarding.uid
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{regarding.name[:_EVENT_NAME_PREFIX_LIMIT]}.{secrets.token_hex(8)}",
                "namespace": regarding.namespace,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": _truncate(message),
            "type": type_,
            "source": {"component": EVENT_SOURCE_COMPONENT},
            "reportingComponent": EVENT_REPORTING_COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }


def _truncate(message: str) -> str:
    if len(message) <= EVENT_MESSAGE_LIMIT:
        return message
    return message[: EVENT_MESSAGE_LIMIT - 1] + "…"


class SLOStatusStore:
    """The StatusStore: merge patches to the status subresource of ServiceLevelObjectives."""

    def __init__(self, api: KubernetesApi) -> None:
        self._api = api
        self._custom = CustomObjectsApi(api.client)

    async def patch_status(self, *, namespace: str, name: str, status: Mapping[str, object]) -> None:
        """A deleted SLO is ignored; any other failure raises KubernetesUnavailable."""
        call = partial(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", call, write=True)
        except ObjectNotFound:
            logger.debug("ServiceLevelObjective %s/%s is gone; status not written", namespace, name)
        except WorkloadConflict as error:
            raise KubernetesUnavailable(f"status of ServiceLevelObjective {namespace}/{name}: {error}") from error
