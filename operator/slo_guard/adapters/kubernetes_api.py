"""The one way slo-guard talks to the Kubernetes API server: transport with timeouts, retries and a breaker.

Every call goes through one `KubernetesApi`: one ApiClient, one bulkhead (a bounded thread pool for the blocking
client), one circuit breaker, bounded jittered retries, and a token bucket in front of every write.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi, VersionApi
from kubernetes.client.exceptions import ApiException

from slo_guard import __version__
from slo_guard.adapters.ratelimit import TokenBucket
from slo_guard.adapters.resilience import BreakerState, Bulkhead, CircuitBreaker, CircuitOpenError, Remote, RetryPolicy
from slo_guard.service.ports import WRITE_PERMISSION, KubernetesUnavailable, OwnershipLost, WorkloadConflict
from slo_guard.telemetry import KubernetesOutcome, OperatorMetrics


class ObjectNotFound(Exception):
    """The API server answered 404: the object (or its namespace) does not exist."""


class NoCredentials(Exception):
    """Neither a usable kubeconfig nor a pod's service account: nothing to connect with."""

    def __init__(self, *, kubeconfig: str, error: Exception) -> None:
        paths = [path for path in kubeconfig.split(os.pathsep) if path]
        if any(Path(path).expanduser().exists() for path in paths):
            message = f"kubeconfig {kubeconfig} is not usable: {error}"
        else:
            message = (
                f"no Kubernetes credentials: no kubeconfig at {kubeconfig} (KUBECONFIG) and not in a cluster ({error})"
            )
        super().__init__(message)


BREAKER_NAME = "kubernetes"
USER_AGENT = f"slo-guard/{__version__}"
MERGE_PATCH = "application/merge-patch+json"
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


def load_api_client(
    settings: KubernetesSettings | None = None, *, context: str | None = None, user_agent: str = USER_AGENT
) -> ApiClient:
    """Connect like kubectl: `KUBECONFIG` or ~/.kube/config (its current context, or `context`) when present, else
    the pod's service account."""
    settings = settings or KubernetesSettings()
    configuration = Configuration()
    kubeconfig = kubeconfig_path()
    try:
        if any(Path(path).expanduser().exists() for path in kubeconfig.split(os.pathsep) if path):
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False
            )
        else:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException as error:
        raise NoCredentials(kubeconfig=kubeconfig, error=error) from error
    # Our own retry is the only one: urllib3 must raise the first error as it is.
    configuration.retries = False
    configuration.connection_pool_maxsize = settings.max_concurrency
    client = ApiClient(configuration)
    client.user_agent = user_agent
    return client


def kubeconfig_path() -> str:
    """Where kubectl would look: `KUBECONFIG` (several files joined with the path separator) or ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


async def wait_until_reachable(
    client: ApiClient, *, within: float, attempt_timeout: float, on_retry: Callable[[int, str], None]
) -> None:
    """Return once the API server answers `GET /version`; KubernetesUnavailable after `within` seconds.

    `on_retry(attempt, problem)` is told about each failed attempt before the next one.
    """
    version = partial(VersionApi(client).get_code, _request_timeout=attempt_timeout)
    deadline = time.monotonic() + within
    attempt = 0
    while True:
        attempt += 1
        try:
            await asyncio.to_thread(version)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            problem = _startup_problem(error, timeout=attempt_timeout)
            pause = min(2.0 ** (attempt - 1), 10.0)
            if time.monotonic() + pause >= deadline:
                raise KubernetesUnavailable(
                    f"Kubernetes API at {client.configuration.host} did not answer within {within:g} s: {problem}"
                ) from error
            on_retry(attempt, problem)
            await asyncio.sleep(pause)
        else:
            return


def _startup_problem(error: Exception, *, timeout: float) -> str:
    if isinstance(error, ApiException):
        return str(_classify(error))
    return str(_transport_error(error, timeout=timeout))


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
        breaker_name: str = BREAKER_NAME,
    ) -> None:
        self.client = client
        self.settings = settings or KubernetesSettings()
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._remote = Remote(
            bulkhead=Bulkhead(self.settings.max_concurrency, thread_name_prefix="slo-guard-kubernetes"),
            breaker=CircuitBreaker(
                breaker_name,
                failure_threshold=self.settings.breaker_failure_threshold,
                reset_timeout=self.settings.breaker_reset_timeout,
                clock=clock,
                is_failure=lambda error: isinstance(error, _ApiError) and error.server_failed,
                on_state_change=self.metrics.breaker_moved,
            ),
            policy=RetryPolicy(
                attempts=self.settings.retries + 1,
                base_delay=self.settings.backoff_base,
                max_delay=self.settings.backoff_max,
            ),
            retryable=lambda error: isinstance(error, _ApiError) and error.transient,
            requested_delay=self._requested_delay,
            sleep=sleep,
            rng=rng,
        )
        self.metrics.set_breaker_state(breaker_name, BreakerState.CLOSED)
        self._writes = TokenBucket(self.settings.writes_per_second, self.settings.write_burst, clock, sleep=sleep)

    @property
    def breaker_state(self) -> BreakerState:
        return self._remote.breaker.state

    async def serves(self, *, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `group/version`, from API discovery."""
        call = partial(CustomObjectsApi(self.client).get_api_resources, group, version)
        try:
            listing = await self.request("get", call)
        except ObjectNotFound:
            return False
        return any(item.get("name") == plural for item in listing.get("resources") or [])

    async def request(self, verb: str, call: Callable[..., Any], *, write: bool = False, retry: bool = True) -> Any:
        """Run one generated-client call (without its timeout options) and return the decoded JSON body.

        Raises ObjectNotFound (404), WorkloadConflict (409/422) or KubernetesUnavailable (anything else).
        Writes wait for a token first; `retry=False` makes exactly one attempt.
        """

        permission = WRITE_PERMISSION.get() if write else None
        try:
            return await self._remote.call(
                partial(self._send, call, permission),
                on_attempt=partial(self._count, verb),
                before_attempt=self._writes.acquire if write else None,
                policy=None if retry else _SINGLE_ATTEMPT,
            )
        except CircuitOpenError as error:
            raise KubernetesUnavailable(f"Kubernetes API: {error}") from error
        except _ApiError as error:
            raise error.public() from error

    def close(self) -> None:
        """Refuse new calls and drop pooled connections; calls already running finish in the background."""
        self._remote.bulkhead.close()
        self.client.close()  # type: ignore[no-untyped-call]

    def _count(self, verb: str, error: BaseException | None) -> None:
        if error is None:
            outcome = KubernetesOutcome.SUCCESS
        elif isinstance(error, CircuitOpenError):
            outcome = KubernetesOutcome.CIRCUIT_OPEN
        elif isinstance(error, _ApiError):
            outcome = error.outcome
        else:
            return
        self.metrics.count_kubernetes_request(verb, outcome)

    def _send(self, call: Callable[..., Any], permission: Callable[[], str | None] | None = None) -> Any:
        """Blocking; runs on the bulkhead's threads. A write goes out only while `permission` still allows it."""
        if permission is not None and (lost := permission()) is not None:
            raise OwnershipLost(lost)
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


async def list_custom_objects(
    api: KubernetesApi, *, group: str, version: str, plural: str, namespaces: Sequence[str]
) -> list[dict[str, Any]]:
    """Every object of a custom resource in `namespaces` (cluster-wide when empty); a kind not served lists none."""
    custom = CustomObjectsApi(api.client)
    if namespaces:
        calls = [partial(custom.list_namespaced_custom_object, group, version, ns, plural) for ns in namespaces]
    else:
        calls = [partial(custom.list_cluster_custom_object, group, version, plural)]
    items: list[dict[str, Any]] = []
    for call in calls:
        try:
            listing = await api.request("list", call)
        except ObjectNotFound:
            continue
        items += listing.get("items") or []
    return items
