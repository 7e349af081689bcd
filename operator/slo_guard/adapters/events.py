"""Events on SLOs and targets: core/v1 Events, de-duplicated, best effort."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes.client import CoreV1Api, CoreV1Event

from slo_guard.adapters.kubernetes_api import KubernetesApi, ObjectNotFound
from slo_guard.service.ports import KubernetesUnavailable, ObjectRef, WorkloadConflict
from slo_guard.telemetry import EventOutcome

logger = logging.getLogger("slo_guard.kubernetes")

EVENT_SOURCE_COMPONENT = "slo-guard"
EVENT_REPORTING_COMPONENT = "sloguard.io/slo-guard"
EVENT_MESSAGE_LIMIT = 1024
_EVENT_NAME_PREFIX_LIMIT = 236
"""Leaves room for `.` and 16 hex digits within the 253 characters of an object name."""


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
