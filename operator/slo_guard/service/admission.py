"""The validating admission webhook's logic: an `admission.k8s.io/v1` AdmissionReview in, its answer out.

Decisions come from the gate board alone. Events about them are posted in the background, a bounded number at a
time, so a burst of applies neither waits on the API server nor piles up tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slo_guard.domain.admission import AdmissionDecision, AdmissionVerdict, Freeze, admit
from slo_guard.domain.model import API_VERSION, KIND, PolicyAction
from slo_guard.service.gate_board import GateBoard
from slo_guard.service.ports import EventSink, ObjectRef
from slo_guard.telemetry import OperatorMetrics

logger = logging.getLogger("slo_guard.admission")

REVIEW_API_VERSION = "admission.k8s.io/v1"
GATED_KINDS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("argoproj.io", "Rollout")})
MAX_PENDING_EVENTS = 32
"""Events about admission decisions in flight at once; more are dropped (the same Event is likely among them)."""


class NotAReview(ValueError):
    """The body is not an admission.k8s.io/v1 AdmissionReview request."""


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """What slo-guard reads of an AdmissionReview's `request`."""

    uid: str
    group: str
    kind: str
    namespace: str
    name: str
    operation: str
    subresource: str
    user: str
    template_changed: bool
    annotations: dict[str, str]
    """The new object's annotations."""

    @property
    def workload(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def parse_review(body: object) -> ReviewRequest:
    """Raises NotAReview naming what is wrong."""
    if not isinstance(body, Mapping) or body.get("apiVersion") != REVIEW_API_VERSION:
        raise NotAReview(f"expected an {REVIEW_API_VERSION} AdmissionReview")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise NotAReview("the AdmissionReview has no request.uid")
    kind = request.get("kind") or {}
    new, old = request.get("object") or {}, request.get("oldObject") or {}
    metadata = new.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    return ReviewRequest(
        uid=request["uid"],
        group=str(kind.get("group", "")),
        kind=str(kind.get("kind", "")),
        namespace=str(request.get("namespace") or metadata.get("namespace") or ""),
        name=str(request.get("name") or metadata.get("name") or ""),
        operation=str(request.get("operation", "")),
        subresource=str(request.get("subResource") or ""),
        user=str((request.get("userInfo") or {}).get("username") or "someone"),
        template_changed=(new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"),
        annotations={str(key): str(value) for key, value in annotations.items()},
    )


def review_response(uid: str, verdict: AdmissionVerdict) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


class AdmissionReviewer:
    def __init__(
        self,
        board: GateBoard,
        *,
        events: EventSink,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._board = board
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def review(self, body: object) -> dict[str, Any]:
        """The AdmissionReview answering `body`; raises NotAReview."""
        request = parse_review(body)
        verdict = self.decide(request)
        self._metrics.admission_decisions.labels(decision=verdict.decision.value).inc()
        if verdict.frozen_by:
            self._announce(request, verdict)
        return review_response(request.uid, verdict)

    def decide(self, request: ReviewRequest) -> AdmissionVerdict:
        if request.operation != "UPDATE" or request.subresource or (request.group, request.kind) not in GATED_KINDS:
            return AdmissionVerdict(AdmissionDecision.ALLOWED, "not an update that starts a rollout")
        freezes = [
            Freeze(entry.key, entry.policy.mode, entry.verdict, entry.unknown)
            for entry in self._board.targeting(request.namespace, request.name, kind=request.kind)
            if entry.policy is not None and entry.policy.action is PolicyAction.DENY
        ]
        return admit(
            workload=request.workload,
            template_changed=request.template_changed,
            annotations=request.annotations,
            now=self._clock(),
            freezes=freezes,
        )

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    def _announce(self, request: ReviewRequest, verdict: AdmissionVerdict) -> None:
        if verdict.decision is AdmissionDecision.DENIED:
            type_, reason = "Warning", "RolloutDenied"
            message = f"Denied {request.user}'s change to the pod template of {request.workload}"
        else:
            type_, reason = "Normal", "RolloutOverridden"
            message = f"Let {request.user}'s change to the pod template of {request.workload} through: "
            message += verdict.message
        for slo in verdict.frozen_by:
            if len(self._pending) >= MAX_PENDING_EVENTS:
                logger.warning("too many admission Events in flight; not posting one", extra={"slo": slo})
                return
            namespace, _, name = slo.partition("/")
            regarding = ObjectRef(API_VERSION, KIND, namespace, name)
            task = asyncio.create_task(
                self._events.post(regarding=regarding, type_=type_, reason=reason, message=message)
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
