"""Operator and CLI settings: one table drives the flags, the `SLO_GUARD_*` env vars and the README."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slo_guard.domain.durations import DurationError, format_duration, parse_duration


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable value, reachable as `--flag` and as `SLO_GUARD_<NAME>`."""

    name: str
    """Attribute name; the flag is `--name-with-dashes`, the env var `SLO_GUARD_NAME`."""
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    env_name: str | None = None
    """Overrides the derived env var name."""
    derived_default: str | None = None
    """What a None default stands for, when the operator works it out from other settings."""
    repeatable: bool = False
    """The flag may be given several times and the env var holds comma-separated values; the value is a tuple."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.env_name or "SLO_GUARD_" + self.name.upper()

    @property
    def shown_default(self) -> str | None:
        """The default as `--help` and the README's settings table write it; None when there is none."""
        if self.default is None:
            return self.derived_default
        if self.parse is _flag:
            return "true" if self.default else "false"
        if self.parse is duration_argument:
            return format_duration(self.default)
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)


def duration_argument(text: str) -> int:
    """A duration flag's value in seconds (`90s`, `10m`, `2h`); argparse reports the error's own message."""
    try:
        return parse_duration(text)
    except DurationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110 `token`)."""


def _header(text: str) -> tuple[str, str]:
    """`NAME=VALUE` as a (name, value) pair. No message quotes the value: it is often a credential."""
    name, equals, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not equals:
        raise argparse.ArgumentTypeError("expected NAME=VALUE, got text without '='")
    if not _HEADER_NAME.fullmatch(name):
        # Not quoted either: text mistyped as `NAME: VALUE=...` would put the value in the name.
        raise argparse.ArgumentTypeError(
            "the text before '=' is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    if not value:
        raise argparse.ArgumentTypeError(f"header {name} has an empty value")
    if any(char in value for char in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"the value of header {name} holds a line break or NUL")
    return name, value


PROMETHEUS_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "prometheus",
        None,
        "Prometheus base URL, e.g. http://prometheus:9090",
        metavar="URL",
        env_name="SLO_GUARD_PROMETHEUS_URL",
    ),
    Setting("prometheus_timeout", 10.0, "Seconds before one Prometheus query times out", _positive_float, "SECONDS"),
    Setting(
        "prometheus_retries",
        3,
        "Extra attempts per query on connection errors, timeouts and 5xx",
        _positive_int,
        "N",
    ),
    Setting("prometheus_max_concurrency", 8, "Global bound on concurrent Prometheus queries", _positive_int, "N"),
    Setting(
        "prometheus_breaker_threshold", 5, "Consecutive failures that open the circuit breaker", _positive_int, "N"
    ),
    Setting(
        "prometheus_breaker_reset", 30.0, "Seconds the breaker stays open before a probe", _positive_float, "SECONDS"
    ),
    Setting(
        "prometheus_token_file",
        None,
        "File holding a bearer token, re-read on every request (rotation-safe)",
        metavar="PATH",
    ),
    Setting("prometheus_ca_file", None, "CA bundle for verifying Prometheus's TLS certificate", metavar="PATH"),
    Setting(
        "prometheus_header",
        None,
        "HTTP header sent with every Prometheus query, e.g. X-Scope-OrgID=tenant for Mimir or Cortex; repeat the"
        " flag for more (the env var takes NAME=VALUE[,NAME=VALUE]). Values are never logged",
        _header,
        "NAME=VALUE",
        repeatable=True,
    ),
    Setting(
        "min_step",
        30,
        "Smallest window step (about the scrape interval); scaled burn-rate windows never go below twice it",
        duration_argument,
        "DURATION",
    ),
    Setting(
        "max_staleness",
        180,
        "Newest sample older than this makes the SLO Unknown/StaleData",
        duration_argument,
        "DURATION",
    ),
    Setting(
        "tenant_label",
        None,
        'Force LABEL="<SLO namespace>" into every selector so tenants only read their own metrics',
        metavar="LABEL",
    ),
)

OPERATOR_SETTINGS: tuple[Setting, ...] = (
    Setting("health_port", 8080, "Port serving /healthz, /readyz and /metrics", _positive_int, "PORT"),
    Setting(
        "gate_port",
        8081,
        "Port serving the gate API (GET /gate/v1/..., POST /gate/v1/flagger) over plain HTTP; 0 turns it off",
        _non_negative_int,
        "PORT",
    ),
    Setting(
        "gate_token_file",
        None,
        "File holding a bearer token every gate API request must send; re-read on every request",
        metavar="PATH",
    ),
    Setting(
        "ui_port",
        8082,
        "Port serving the read-only web UI (docs/ui.md) over plain HTTP; 0 turns it off",
        _non_negative_int,
        "PORT",
    ),
    Setting(
        "ui_token_file",
        None,
        "File holding a token every web UI request must carry (Authorization: Bearer, or the cookie a ?token= link "
        "sets); re-read on every request",
        metavar="PATH",
    ),
    Setting(
        "ui_auth_header",
        None,
        "Header an authenticating proxy sets on every web UI request (e.g. X-Auth-Request-User); requests without "
        "it are 401",
        metavar="HEADER",
    ),
    Setting(
        "webhook_port",
        9443,
        "Port serving the validating admission webhook (POST /validate, TLS) for policy action Deny",
        _positive_int,
        "PORT",
    ),
    Setting(
        "webhook_cert_file",
        None,
        "TLS certificate (PEM) of the admission webhook; with --webhook-key-file it turns the webhook on",
        metavar="PATH",
    ),
    Setting("webhook_key_file", None, "TLS private key (PEM) of the admission webhook", metavar="PATH"),
    Setting("log_format", "json", "Log format: json (one object per line) or text", metavar="FORMAT"),
    Setting("log_level", "INFO", "Log level", metavar="LEVEL"),
    Setting(
        "status_heartbeat",
        300,
        "Refresh status.evaluatedAt at least this often even when nothing else changed",
        duration_argument,
        "DURATION",
    ),
    Setting(
        "reassert_backoff_max",
        600,
        "Longest wait between re-assertions of an action someone keeps reverting (it doubles from the interval)",
        duration_argument,
        "DURATION",
    ),
    Setting("kube_max_concurrency", 8, "Global bound on concurrent Kubernetes API calls", _positive_int, "N"),
    Setting("kube_timeout", 10.0, "Seconds before one Kubernetes API call times out", _positive_float, "SECONDS"),
    Setting("kube_writes_per_second", 20.0, "Token-bucket rate for Kubernetes writes", _positive_float, "RATE"),
    Setting("kube_write_burst", 40, "Token-bucket burst for Kubernetes writes", _positive_int, "N"),
    Setting(
        "kube_startup_wait",
        60,
        "How long `run` waits at start for the Kubernetes API to answer before it exits non-zero",
        duration_argument,
        "DURATION",
    ),
    Setting("standalone", False, "Run without kopf peering (only one replica may run)", _flag),
    Setting(
        "peering_name",
        "slo-guard",
        "kopf peering object name (replicas with one name elect one active)",
        metavar="NAME",
    ),
    Setting("priority", 0, "kopf peering priority of this replica", int, "N"),
    Setting(
        "identity",
        None,
        "This replica's name among its peers, in kopf peering and on shard Leases",
        metavar="NAME",
        derived_default="$POD_ID (as kopf names peers), else <hostname>-<pid>",
    ),
    Setting(
        "shards",
        1,
        "Split the SLOs between replicas into N shards, each claimed through a coordination.k8s.io Lease "
        "(docs/scale.md); 1 keeps kopf peering, with one active replica",
        _positive_int,
        "N",
    ),
    Setting(
        "shard_lease_duration",
        15,
        "How long a shard Lease lasts without renewal; a dead replica's shards move after about this long",
        duration_argument,
        "DURATION",
    ),
    Setting(
        "shard_lease_namespace",
        None,
        "Namespace of the shard Leases",
        metavar="NAMESPACE",
        derived_default="$POD_NAMESPACE, else slo-guard",
    ),
    Setting(
        "peering_lifetime",
        60,
        "Seconds a replica counts as alive after its last peering keep-alive; a standby takes over after this",
        _positive_int,
        "SECONDS",
    ),
    Setting(
        "rules_file",
        None,
        "Manage recording rules in this file (Prometheus must load it) and read SLIs through them",
        metavar="PATH",
    ),
    Setting(
        "rules_reload_url",
        None,
        "URL POSTed after writing --rules-file; `none` to skip",
        metavar="URL",
        derived_default="<prometheus>/-/reload",
    ),
    Setting(
        "rules_reload_timeout",
        120.0,
        "Seconds to wait for a rules reload; Prometheus answers once it has reread every rule file",
        _positive_float,
        "SECONDS",
    ),
    Setting(
        "rules_prometheusrule",
        False,
        "Manage recording rules as one PrometheusRule per SLO (prometheus-operator) and read SLIs through them",
        _flag,
    ),
    Setting(
        "rules_prometheusrule_labels",
        "role=slo-guard-rules",
        "Labels on those PrometheusRules, for the Prometheus ruleSelector: KEY=VALUE[,KEY=VALUE]",
        metavar="LABELS",
    ),
    Setting(
        "rules_read_every",
        1.0,
        "Seconds between reads of what the recording rules wrote since the last read; an SLO's pass runs right "
        "after the read that brings its values, so this bounds how late it acts on them",
        _positive_float,
        "SECONDS",
    ),
    Setting(
        "rules_settle",
        2.0,
        "Seconds to gather SLO changes before rewriting the recording rules",
        _positive_float,
        "SECONDS",
    ),
)


class ConfigError(ValueError):
    """A setting's env var holds a value its parser rejects."""


def add_settings(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Add each setting as a flag whose default comes from its env var."""
    for setting in settings:
        shown = setting.shown_default
        help_text = f"{setting.help} (env {setting.env}" + (f", default {shown})" if shown is not None else ")")
        default = _env_default(setting, os.environ)
        if setting.parse is _flag:
            # A switch: `--standalone` turns it on; the env var can set it either way.
            parser.add_argument(setting.flag, dest=setting.name, default=default, action="store_true", help=help_text)
            continue
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            default=default,
            type=setting.parse,
            action=_Repeated if setting.repeatable else "store",
            metavar=setting.metavar,
            help=help_text,
        )


class _Repeated(argparse.Action):
    """Collects every use of a repeatable flag into a tuple; flags replace the env var's values, as for others."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest)
        earlier = () if current is self.default else current
        setattr(namespace, self.dest, (*earlier, values))


def _env_default(setting: Setting, environ: Mapping[str, str]) -> Any:
    raw = environ.get(setting.env)
    if raw is None:
        return setting.default
    try:
        if setting.repeatable:
            return tuple(setting.parse(part) for part in raw.split(",") if part.strip())
        return setting.parse(raw)
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"{setting.env}: {err}") from None
