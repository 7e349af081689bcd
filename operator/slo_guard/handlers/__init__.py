"""kopf handlers: thin glue from watch events to the service. Everything else lives below this layer."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import kopf

from slo_guard.adapters.kubernetes_api import NoCredentials, load_api_client, wait_until_reachable
from slo_guard.domain.model import GROUP, PLURAL, VERSION
from slo_guard.handlers.logs import configure_logging
from slo_guard.handlers.runtime import Runtime, RuntimeConfig
from slo_guard.service.ports import KubernetesUnavailable

logger = logging.getLogger("slo_guard.run")

FINALIZER = "sloguard.io/finalizer"
WATCH_INACTIVITY_TIMEOUT = 60.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: RuntimeConfig = memo.config
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # kopf would copy the SLO's annotations and labels into its own annotation, doubling them past the API
    # server's 256 KiB limit for large ones; only the spec matters to slo-guard.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP,
        key="last-handled-configuration",
        ignored_fields=["metadata.annotations", "metadata.labels"],
    )
    # No watching of CRDs or namespaces: RBAC stays limited to the resources slo-guard really uses.
    settings.scanning.disabled = True
    # slo-guard posts its own Events; kopf's per-handler chatter would drown them.
    settings.posting.level = logging.WARNING
    # A watch silent for a minute is replaced (and re-lists), so a stalled stream hides changes for about that long.
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = config.kubernetes.timeout * 3
    # A shorter lifetime lets a standby take over sooner after a crash, for more keep-alive writes.
    settings.peering.lifetime = config.peering_lifetime
    runtime = Runtime(config)
    memo.runtime = runtime
    stop: asyncio.Event = memo.stop
    await runtime.start(stop_operator=stop.set)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
def observe(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Feed the scheduler: kopf delivers the first listing, every change and every deletion here."""
    runtime: Runtime = memo.runtime
    runtime.observe(event["type"], event["object"])


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def release_on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Undo every pause and scale this SLO holds; kopf keeps the finalizer until this succeeds."""
    runtime: Runtime = memo.runtime
    await runtime.finalize(body)


def run_operator(config: RuntimeConfig) -> int:
    """Exit codes: 0 stopped, 1 the API server never answered (or a restart is due), 2 no credentials."""
    configure_logging(log_format=config.log_format, level=config.log_level)
    try:
        _check_files(config)
        _check_api(config)
    except _CannotStart as error:
        logger.error(str(error))
        return error.exit_code
    memo = kopf.Memo(config=config, stop=asyncio.Event())
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=config.standalone,
            priority=config.priority,
            # Named by us, so the runtime finds this replica among the peers kopf lists (see handlers/peering.py).
            identity=config.identity,  # type: ignore[arg-type]
            # Naming a peering makes it mandatory in kopf, which would then wait for the peering CRD.
            peering_name=None if config.standalone else config.peering_name,
            memo=memo,
            stop_flag=memo.stop,
        )
    )
    runtime: Runtime | None = getattr(memo, "runtime", None)
    return 1 if runtime is not None and runtime.restart_reason is not None else 0


class _CannotStart(Exception):
    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _check_files(config: RuntimeConfig) -> None:
    """A missing or broken key pair or token fails at start, in one line, not at the first request."""
    if config.webhook is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                config.webhook.cert_file, config.webhook.key_file
            )
        except (OSError, ssl.SSLError) as error:
            problem = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise _CannotStart(
                f"cannot start: webhook key pair {config.webhook.cert_file}, {config.webhook.key_file}: {problem}",
                exit_code=2,
            ) from error
    if config.gate_token_file is not None:
        try:
            config.gate_token_file.read_text(encoding="utf-8")
        except OSError as error:
            raise _CannotStart(
                f"cannot start: gate token file {config.gate_token_file}: {error.strerror}", exit_code=2
            ) from error


def _check_api(config: RuntimeConfig) -> None:
    """Fail fast before kopf starts: kopf would retry forever, with a traceback per attempt."""
    try:
        client = load_api_client(config.kubernetes)
    except NoCredentials as error:
        raise _CannotStart(f"cannot start: {error}", exit_code=2) from error
    try:
        asyncio.run(
            wait_until_reachable(
                client,
                within=config.startup_wait,
                attempt_timeout=config.kubernetes.timeout,
                on_retry=lambda attempt, problem: logger.warning(
                    "waiting for the Kubernetes API (attempt %d): %s", attempt, problem
                ),
            )
        )
    except KubernetesUnavailable as error:
        raise _CannotStart(f"giving up: {error}", exit_code=1) from error
    finally:
        client.close()  # type: ignore[no-untyped-call]
