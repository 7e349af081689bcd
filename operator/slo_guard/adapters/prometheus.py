"""Instant queries against Prometheus, behind a bulkhead, a circuit breaker and a jittered retry.

The service builds the PromQL; this module only carries it. Every failure surfaces as one of two
exceptions: `PrometheusUnavailable` (worth retrying later) or `QueryError` (the request itself is wrong),
which is a `QueryRejected` when Prometheus refused to run the query it was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
import requests.auth
from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from slo_guard.adapters.resilience import (
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    Remote,
    RetryPolicy,
)
from slo_guard.service.ports import (
    PrometheusError,
    PrometheusUnavailable,
    QueryError,
    QueryRejected,
    Sample,
    UnavailableReason,
)
from slo_guard.telemetry import OperatorMetrics, PrometheusOutcome

BREAKER_NAME = "prometheus"

# Our own retry is the only one: urllib3 must neither retry nor turn a read timeout into a connection error.
_NO_URLLIB3_RETRY = Retry(total=0, read=False)


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """How to reach Prometheus and how hard to try. Comes only from the operator's configuration."""

    url: str
    """Base URL, e.g. `http://prometheus:9090` (no trailing `/api/v1`)."""
    timeout: float = 10.0
    """Seconds one HTTP request may take (connect, and each read); also the query's server-side timeout."""
    retries: int = 3
    """Extra attempts after the first, on connection errors, timeouts and 5xx; never on 4xx."""
    backoff_base: float = 0.5
    """Seconds; the cap of the first retry's jittered wait, doubling per retry."""
    backoff_max: float = 5.0
    """Seconds; no wait between attempts is longer."""
    breaker_failure_threshold: int = 5
    """Consecutive failed requests that open the circuit breaker."""
    breaker_reset_timeout: float = 30.0
    """Seconds the breaker stays open before one probe request is let through."""
    max_concurrency: int = 8
    """Process-wide bound on requests in flight (and the size of the thread pool that sends them)."""
    bearer_token_file: Path | None = None
    """File holding a bearer token; re-read on every request so a rotated token is used at once."""
    ca_file: Path | None = None
    """CA bundle that verifies Prometheus's TLS certificate; the system bundle when unset."""
    insecure_skip_verify: bool = False
    """Skip TLS verification entirely. For test clusters only."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """(name, value) of each extra header on every request, e.g. `X-Scope-OrgID`; kept out of repr (credentials)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https://, got {self.url!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be above 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")
        names = [name.lower() for name, _ in self.headers]
        for name, _ in self.headers:
            if names.count(name.lower()) > 1:
                raise ValueError(f"header {name} is given more than once (--prometheus-header)")
        if self.bearer_token_file is not None and "authorization" in names:
            raise ValueError(
                "an Authorization header (--prometheus-header) would replace the bearer token from"
                " --prometheus-token-file; give one of them"
            )

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


_OUTCOMES = {
    UnavailableReason.UNREACHABLE: PrometheusOutcome.UNAVAILABLE,
    UnavailableReason.CREDENTIALS: PrometheusOutcome.UNAVAILABLE,
    UnavailableReason.TIMEOUT: PrometheusOutcome.TIMEOUT,
    UnavailableReason.SERVER_ERROR: PrometheusOutcome.ERROR,
    UnavailableReason.CIRCUIT_OPEN: PrometheusOutcome.CIRCUIT_OPEN,
}


class BearerTokenFileAuth(requests.auth.AuthBase):
    """Sends `Authorization: Bearer <token>` read from a file on every request: rotation needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise PrometheusUnavailable(
                UnavailableReason.CREDENTIALS, f"cannot read bearer token file {self.path}: {error.strerror}"
            ) from error
        request.headers["Authorization"] = f"Bearer {token}"
        return request


class PrometheusClient:
    """Instant queries at explicit times; one instance per process so its bounds are global."""

    def __init__(
        self, settings: PrometheusSettings, *, metrics: OperatorMetrics | None = None, breaker_name: str = BREAKER_NAME
    ) -> None:
        self.settings = settings
        self._metrics = metrics if metrics is not None else OperatorMetrics()
        self._session = _session(settings)
        self._connect = PrometheusConnect(url=settings.base_url, session=self._session, retry=_NO_URLLIB3_RETRY)
        # Replaces the adapter PrometheusConnect mounted, to size its connection pool to the bulkhead.
        self._session.mount(
            settings.base_url,
            HTTPAdapter(max_retries=_NO_URLLIB3_RETRY, pool_maxsize=settings.max_concurrency),
        )
        self._remote = Remote(
            bulkhead=Bulkhead(settings.max_concurrency, thread_name_prefix="slo-guard-prometheus"),
            breaker=CircuitBreaker(
                breaker_name,
                failure_threshold=settings.breaker_failure_threshold,
                reset_timeout=settings.breaker_reset_timeout,
                is_failure=lambda error: isinstance(error, PrometheusUnavailable),
                on_state_change=self._metrics.breaker_moved,
            ),
            policy=RetryPolicy(
                attempts=settings.retries + 1, base_delay=settings.backoff_base, max_delay=settings.backoff_max
            ),
            retryable=self._worth_retrying,
        )
        self._metrics.set_breaker_state(breaker_name, BreakerState.CLOSED)
        self._last_failure = f"Prometheus at {settings.base_url} failed"
        """The message of the latest failed request: what an open breaker reports as the cause."""

    @property
    def breaker_state(self) -> BreakerState:
        return self._remote.breaker.state

    async def query(self, expr: str, *, at: datetime) -> list[Sample]:
        """Evaluate `expr` at `at` (timezone-aware). Raises PrometheusUnavailable or QueryError."""
        if at.tzinfo is None:
            raise ValueError("query time must be timezone-aware")
        params = {"time": f"{at.timestamp():.3f}", "timeout": str(self.settings.timeout)}
        try:
            result = await self._remote.call(partial(self._send, expr, params), on_attempt=self._count)
        except CircuitOpenError as error:
            raise PrometheusUnavailable(UnavailableReason.CIRCUIT_OPEN, self._open_message()) from error
        return _samples(result)

    async def query_range(self, expr: str, *, start: datetime, end: datetime, step: float) -> list[tuple[float, float]]:
        """The one series of an aggregated range query as (unix seconds, value); empty when it is absent.

        The same timeout, retries and breaker as instant queries. Raises PrometheusUnavailable or QueryError.
        """
        params = {"timeout": str(self.settings.timeout)}
        try:
            result = await self._remote.call(
                partial(self._send_range, expr, start, end, f"{step:g}", params), on_attempt=self._count
            )
        except CircuitOpenError as error:
            raise PrometheusUnavailable(UnavailableReason.CIRCUIT_OPEN, self._open_message()) from error
        if len(result) > 1:
            raise QueryError(f"the range query returned {len(result)} series; only aggregated ones are supported")
        return [(float(moment), float(value)) for moment, value in result[0]["values"]] if result else []

    async def ready(self) -> bool:
        """Whether Prometheus answers `/-/ready` with 200. Bypasses the breaker and the retry."""
        return await self._remote.bulkhead.run(self._get_ready)

    async def close(self) -> None:
        # Requests of callers that gave up may still run: their answers must not arrive once the event loop is gone.
        await self._remote.bulkhead.aclose()
        self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _count(self, error: BaseException | None) -> None:
        if error is None:
            outcome = PrometheusOutcome.SUCCESS
        elif isinstance(error, CircuitOpenError):
            outcome = PrometheusOutcome.CIRCUIT_OPEN
        elif isinstance(error, PrometheusUnavailable):
            outcome = _OUTCOMES[error.reason]
            self._last_failure = str(error)
        elif isinstance(error, QueryError):
            outcome = PrometheusOutcome.BAD_QUERY
        else:
            return
        self._metrics.count_prometheus_request(outcome)

    def _worth_retrying(self, error: BaseException) -> bool:
        """Transient failures, unless the breaker is open: that retry would fail fast and hide what went wrong."""
        return (
            isinstance(error, PrometheusUnavailable)
            and error.reason is not UnavailableReason.CIRCUIT_OPEN
            and self._remote.breaker.state is not BreakerState.OPEN
        )

    def _open_message(self) -> str:
        """The cause, not a countdown: one outage reads the same on every evaluation."""
        reset = self.settings.breaker_reset_timeout
        return f"{self._last_failure} (circuit breaker open: one probe every {reset:g} s until Prometheus answers)"

    def _send(self, expr: str, params: Mapping[str, str]) -> Any:
        """Blocking; runs on the bulkhead's threads."""
        return self._answer(
            lambda: self._connect.custom_query(expr, params=dict(params), timeout=self.settings.timeout)
        )

    def _send_range(self, expr: str, start: datetime, end: datetime, step: str, params: Mapping[str, str]) -> Any:
        """Blocking; runs on the bulkhead's threads."""
        return self._answer(
            lambda: self._connect.custom_query_range(
                expr, start_time=start, end_time=end, step=step, params=dict(params), timeout=self.settings.timeout
            )
        )

    def _answer(self, request: Callable[[], Any]) -> Any:
        """The decoded answer of one request, with failures translated and its duration observed."""
        started = time.perf_counter()
        try:
            return request()
        except (requests.JSONDecodeError, KeyError, TypeError) as error:
            raise PrometheusUnavailable(
                UnavailableReason.SERVER_ERROR,
                f"Prometheus at {self.settings.base_url} sent an unreadable answer",
            ) from error
        except requests.RequestException as error:
            raise self._translate(error) from error
        finally:
            self._metrics.prometheus_request_duration.observe(time.perf_counter() - started)

    def _get_ready(self) -> bool:
        try:
            response = self._session.get(f"{self.settings.base_url}/-/ready", timeout=self.settings.timeout)
        except (requests.RequestException, PrometheusUnavailable):
            return False
        return response.status_code == requests.codes.ok

    def _translate(self, error: requests.RequestException) -> PrometheusError:
        where = f"Prometheus at {self.settings.base_url}"
        if isinstance(error, requests.HTTPError) and error.response is not None:
            return _http_error(where, error.response)
        root = _root_cause(error)
        # A timeout while reading the body arrives as a ConnectionError wrapping a socket timeout.
        if isinstance(error, requests.Timeout) or isinstance(root, TimeoutError):
            return PrometheusUnavailable(
                UnavailableReason.TIMEOUT, f"{where} did not answer within {self.settings.timeout:g} s"
            )
        return PrometheusUnavailable(UnavailableReason.UNREACHABLE, f"cannot reach {where}: {_describe(root)}")


def _session(settings: PrometheusSettings) -> requests.Session:
    session = requests.Session()
    session.headers.update(dict(settings.headers))
    if settings.bearer_token_file is not None:
        session.auth = BearerTokenFileAuth(settings.bearer_token_file)
    if settings.insecure_skip_verify:
        session.verify = False
    elif settings.ca_file is not None:
        session.verify = str(settings.ca_file)
    # Turns every non-2xx answer into an HTTPError that carries the status, before PrometheusConnect sees it.
    session.hooks["response"].append(_raise_for_status)
    return session


def _raise_for_status(response: requests.Response, *_args: object, **_kwargs: object) -> None:
    response.raise_for_status()


_QUERY_REFUSED = frozenset({400, 422})
"""How Prometheus answers a query it will not run: 400 `bad_data` (e.g. a parse error), 422 `execution`."""


def _http_error(where: str, response: requests.Response) -> PrometheusError:
    status = response.status_code
    answer = _error_answer(response)
    detail = _one_line(
        f"{answer[0]}: {answer[1]}" if answer else response.text[:200] or response.reason or "no details"
    )
    if status in _QUERY_REFUSED and answer is not None:
        message = f"{where} rejected the query ({status}): {detail}"
        return QueryRejected(message, status=status, error=_one_line(answer[1]))
    if 400 <= status < 500:
        return QueryError(f"{where} rejected the request ({status}): {detail}", status=status)
    return PrometheusUnavailable(UnavailableReason.SERVER_ERROR, f"{where} answered {status}: {detail}")


def _error_answer(response: requests.Response) -> tuple[str, str] | None:
    """(`errorType`, `error`) when the body is Prometheus's JSON error answer; None for any other body."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body.get("errorType", "error")), body["error"]
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(error: BaseException) -> str:
    """`connection refused` rather than `[Errno 111] Connection refused`."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


def _root_cause(error: BaseException) -> BaseException:
    """The innermost error, e.g. `[Errno 111] Connection refused` rather than urllib3's nested repr."""
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None:
            return error
        error = inner


def _samples(result: Any) -> list[Sample]:
    """Instant vectors become one Sample per series; a scalar becomes one Sample without labels."""
    if _is_scalar(result):
        timestamp, value = result
        return [Sample(labels={}, value=float(value), timestamp=float(timestamp))]
    return [_vector_sample(item) for item in result]


def _is_scalar(result: Any) -> bool:
    return isinstance(result, Sequence) and len(result) == 2 and not isinstance(result[0], dict)


def _vector_sample(item: Mapping[str, Any]) -> Sample:
    if "value" not in item:
        raise QueryError("the query returned a range vector; only instant vectors and scalars are supported")
    timestamp, value = item["value"]
    return Sample(labels=dict(item["metric"]), value=float(value), timestamp=float(timestamp))
