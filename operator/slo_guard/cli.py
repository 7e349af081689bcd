"""The `slo-guard` command: `evaluate` (a deploy gate that needs no cluster), `gate` (one that reads the cluster),
`rules`, `import` (SLOs from Sloth, Pyrra or OpenSLO) and `run` (the operator)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from slo_guard import __version__
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.config import OPERATOR_SETTINGS, PROMETHEUS_SETTINGS, ConfigError, add_settings, duration_argument
from slo_guard.domain.display import NOT_AVAILABLE, budget_percent
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.domain.model import KIND, Objective
from slo_guard.domain.rules import DEFAULT_RUNBOOK_BASE, prometheus_rule, rule_file
from slo_guard.importers import TOOLS, ImportOptions, Source, import_slos, parse_namespace, parse_target
from slo_guard.resources import MIN_WINDOW, SpecError, objective_from_resource, status_from_evaluation
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.gate import Poll, SLOGate, SLOsMissing, wait_for_gates
from slo_guard.service.ports import KubernetesUnavailable

EXIT_OK = 0
EXIT_GATE_CLOSED = 1
EXIT_UNKNOWN_OR_BAD_INPUT = 2
JSON_DIGITS = 6
SLO_KEY = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?")
"""NAMESPACE/NAME: a DNS label, a slash, a DNS subdomain."""
_CLEAR_LINE = "\r\x1b[K"


class InputError(Exception):
    """Bad input: each problem reported as one line, exit 2."""

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "gate":
            return _gate(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "import":
            return _import(args)
        if args.command == "run":
            return _run(args)
        parser.print_help()
        return EXIT_UNKNOWN_OR_BAD_INPUT
    except (InputError, ConfigError) as err:
        for problem in err.problems if isinstance(err, InputError) else (str(err),):
            print(f"slo-guard: error: {problem}", file=sys.stderr)
        return EXIT_UNKNOWN_OR_BAD_INPUT
    except KeyboardInterrupt:
        return 130


class _OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit 2, like every other CLI error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_UNKNOWN_OR_BAD_INPUT, f"{self.prog}: error: {message}\n")


class _Help(argparse.HelpFormatter):
    """Wraps help only at spaces, so `slo-guard-rules` and URLs stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="slo-guard", description="Enforce error-budget policies on Kubernetes.", formatter_class=_Help
    )
    parser.add_argument("--version", action="version", version=f"slo-guard {__version__}")
    commands = parser.add_subparsers(dest="command")

    evaluate = commands.add_parser(
        "evaluate",
        formatter_class=_Help,
        help="evaluate SLO files against Prometheus (exit 0 healthy/burning, 1 exhausted, 2 unknown/bad input)",
    )
    evaluate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files of SLOs")
    evaluate.add_argument(
        "--at",
        type=_parse_time,
        default=None,
        metavar="TIME",
        help="evaluation time: RFC 3339 or unix seconds (default now)",
    )
    evaluate.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="a table or the status fields as JSON (default table)",
    )
    add_settings(evaluate, PROMETHEUS_SETTINGS)

    gate = commands.add_parser(
        "gate",
        formatter_class=_Help,
        help="read SLOs' gates from the cluster (exit 0 all open, 1 any closed, 2 missing SLO/bad input)",
        description="Read each SLO's status through KUBECONFIG (else the pod's service account); needs only `get` on "
        "servicelevelobjectives, and no Prometheus. A gate is closed while the SLO's policy holds its targets; an "
        "Unknown SLO is open, with a warning.",
    )
    gate.add_argument("slos", nargs="+", metavar="NAMESPACE/NAME", help="ServiceLevelObjectives to gate on")
    add_gate_options(gate)

    rules = commands.add_parser(
        "rules", formatter_class=_Help, help="print Prometheus recording and alerting rules for SLO files"
    )
    rules.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files of SLOs")
    rules.add_argument(
        "--format",
        choices=("rules", "prometheusrule"),
        default="rules",
        help="a Prometheus rule file, or a prometheus-operator PrometheusRule object (default %(default)s)",
    )
    rules.add_argument("--name", default="slo-guard-rules", help="PrometheusRule name (default %(default)s)")
    rules.add_argument("--namespace", default="monitoring", help="PrometheusRule namespace (default %(default)s)")
    rules.add_argument(
        "--runbook-base",
        default=DEFAULT_RUNBOOK_BASE,
        metavar="URL",
        help="runbook URL the alerts link to (default %(default)s)",
    )
    add_settings(rules, [setting for setting in PROMETHEUS_SETTINGS if setting.name == "min_step"])

    imports = commands.add_parser(
        "import",
        formatter_class=_Help,
        help="print ServiceLevelObjectives for Sloth, Pyrra or OpenSLO SLOs (exit 2 if any cannot map)",
        description="Map each SLO exactly or not at all: one line on stderr per construct that cannot map, and the "
        "SLOs that did map still printed. See docs/import.md.",
    )
    imports.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files of the source tool's SLOs")
    imports.add_argument("--from", dest="tool", required=True, choices=TOOLS, help="the tool the files are for")
    imports.add_argument(
        "--namespace",
        type=_checked(parse_namespace),
        default=None,
        help="namespace of every SLO (default: the source's, else default)",
    )
    imports.add_argument(
        "--target",
        type=_checked(parse_target),
        action="append",
        default=[],
        dest="targets",
        metavar="KIND/NAME",
        help="a workload every SLO acts on, e.g. Deployment/checkout (repeatable); default: none, the SLOs only report",
    )
    imports.add_argument(
        "--window",
        type=_window,
        default="30d",
        metavar="DURATION",
        help="SLO window for sources that state none, as Sloth never does (default %(default)s)",
    )

    run = commands.add_parser("run", formatter_class=_Help, help="run the operator")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    add_settings(run, PROMETHEUS_SETTINGS + OPERATOR_SETTINGS)
    return parser


def add_gate_options(gate: argparse.ArgumentParser) -> None:
    """`--wait` and `--strict`, the same for `slo-guard gate` and `kubectl slo gate`."""
    gate.add_argument(
        "--wait",
        type=duration_argument,
        default=None,
        metavar="DURATION",
        help="poll until every gate is open, for at most DURATION (e.g. 10m); default: answer at once",
    )
    gate.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on an Unknown SLO (no data, not evaluated yet, invalid spec) instead of letting it through",
    )


def _window(text: str) -> str:
    seconds = duration_argument(text)
    if seconds < MIN_WINDOW:
        raise argparse.ArgumentTypeError(f"must be at least {format_duration(MIN_WINDOW)} (got {text!r})")
    return format_duration(seconds)


def _checked(parse: Callable[[str], object]) -> Callable[[str], object]:
    """argparse reports only ArgumentTypeError's own message; a ValueError would become 'invalid value'."""

    def check(text: str) -> object:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return check


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not RFC 3339 or unix seconds: {text!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"RFC 3339 time needs a UTC offset or Z: {text!r}")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Loaded:
    objective: Objective
    resource: dict[str, Any]


def load_objectives(paths: Sequence[Path], *, min_step: int) -> list[_Loaded]:
    """Every ServiceLevelObjective document in the files, validated; InputError lists every problem in all of them."""
    loaded: list[_Loaded] = []
    problems: list[str] = []
    for path in paths:
        try:
            documents = _documents(path)
        except InputError as err:
            problems += err.problems
            continue
        for index, document in enumerate(documents, start=1):
            where = f"{path}: document {index}"
            if not isinstance(document, dict):
                problems.append(f"{where}: expected a mapping, got {type(document).__name__}")
                continue
            if document.get("kind") != KIND:
                continue
            name = document.get("metadata", {}).get("name") if isinstance(document.get("metadata"), dict) else None
            if isinstance(name, str):
                where = f"{where} ({name})"
            try:
                loaded.append(_Loaded(objective_from_resource(document, min_step=min_step), document))
            except SpecError as err:
                problems += [f"{where}: {error}" for error in err.errors]
    if problems:
        raise InputError(*problems)
    if not loaded:
        raise InputError(f"no {KIND} documents in {', '.join(map(str, paths))}")
    return loaded


def _documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    try:
        return [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise InputError(f"{path}: malformed YAML{position}: {problem}") from None


def _evaluate(args: argparse.Namespace) -> int:
    prometheus_settings(args)
    loaded = load_objectives(args.files, min_step=args.min_step)
    at = args.at or datetime.now(UTC)
    evaluations = asyncio.run(_evaluate_all([item.objective for item in loaded], args=args, at=at))
    if all(ev.reason is UnknownReason.PROMETHEUS_UNAVAILABLE for ev in evaluations):
        raise InputError(evaluations[0].message)
    if args.output == "json":
        print(
            json.dumps(
                [_json_row(item.objective, ev) for item, ev in zip(loaded, evaluations, strict=True)],
                indent=2,
            )
        )
    else:
        print(_table([(item.objective, ev) for item, ev in zip(loaded, evaluations, strict=True)]))
    return _exit_code(evaluations)


def prometheus_settings(args: argparse.Namespace) -> PrometheusSettings:
    if not args.prometheus:
        raise InputError("--prometheus URL (or SLO_GUARD_PROMETHEUS_URL) is required")
    try:
        return PrometheusSettings(
            url=args.prometheus,
            timeout=args.prometheus_timeout,
            retries=args.prometheus_retries,
            max_concurrency=args.prometheus_max_concurrency,
            breaker_failure_threshold=args.prometheus_breaker_threshold,
            breaker_reset_timeout=args.prometheus_breaker_reset,
            bearer_token_file=_optional_path(args.prometheus_token_file),
            ca_file=_optional_path(args.prometheus_ca_file),
            headers=args.prometheus_header or (),
        )
    except ValueError as err:
        raise InputError(f"--prometheus: {err}") from None


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


async def _evaluate_all(objectives: Sequence[Objective], *, args: argparse.Namespace, at: datetime) -> list[Evaluation]:
    client = PrometheusClient(prometheus_settings(args))
    settings = EvaluationSettings(max_staleness=args.max_staleness, tenant_label=args.tenant_label)
    try:
        return list(
            await asyncio.gather(
                *(evaluate_objective(objective, client, at=at, settings=settings) for objective in objectives)
            )
        )
    finally:
        await client.close()


def _json_row(objective: Objective, evaluation: Evaluation) -> dict[str, object]:
    return {
        "name": objective.name,
        "namespace": objective.namespace,
        "status": status_from_evaluation(evaluation, digits=JSON_DIGITS),
    }


def _exit_code(evaluations: Sequence[Evaluation]) -> int:
    states = {evaluation.state for evaluation in evaluations}
    if State.UNKNOWN in states:
        return EXIT_UNKNOWN_OR_BAD_INPUT
    if State.EXHAUSTED in states:
        return EXIT_GATE_CLOSED
    return EXIT_OK


def _table(rows: Sequence[tuple[Objective, Evaluation]]) -> str:
    header = ("NAMESPACE", "NAME", "OBJECTIVE", "WINDOW", "SLI", "BUDGET", "STATE", "REASON", "MESSAGE")
    lines = [header]
    for objective, evaluation in rows:
        lines.append(
            (
                objective.namespace,
                objective.name,
                f"{objective.objective * 100:g}%",
                format_duration(objective.window),
                _sli_percent(evaluation.sli),
                budget_percent(evaluation.budget_remaining),
                evaluation.state.value,
                evaluation.reason.value if evaluation.reason else "",
                evaluation.message,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header) - 1)]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "   " + line[-1]
        for line in lines
    )


def _sli_percent(sli: float | None) -> str:
    return NOT_AVAILABLE if sli is None else f"{sli * 100:.3f}%"


def _gate(args: argparse.Namespace) -> int:
    bad = [text for text in args.slos if not SLO_KEY.fullmatch(text)]
    if bad:
        raise InputError(*(f"{text!r} is not NAMESPACE/NAME (e.g. shop/checkout-availability)" for text in bad))
    report = GateReport(strict=args.strict, wait=args.wait, out=sys.stdout, err=sys.stderr)
    return report.finish(asyncio.run(_wait_for_gates(list(dict.fromkeys(args.slos)), report)))


async def _wait_for_gates(keys: Sequence[str], report: GateReport) -> Poll:
    # The Kubernetes client loads only for `gate`, keeping `evaluate` quick.
    from slo_guard.adapters.kubernetes_api import KubernetesApi, NoCredentials, load_api_client  # noqa: PLC0415
    from slo_guard.adapters.slo_reader import SLOObjects  # noqa: PLC0415

    try:
        api = KubernetesApi(load_api_client())
    except NoCredentials as err:
        raise InputError(str(err)) from None
    try:
        return await wait_for_gates(
            SLOObjects(api), keys, passes=report.passes, within=report.wait or 0, report=report.show
        )
    except SLOsMissing as missing:
        raise InputError(*(f"ServiceLevelObjective {key} not found" for key in missing.keys)) from None
    except KubernetesUnavailable as err:
        raise InputError(str(err)) from None
    finally:
        api.close()


class GateReport:
    """Every SLO's line once, then a line per change of its gate; on a terminal, a progress line while waiting."""

    def __init__(self, *, strict: bool, wait: int | None, out: TextIO, err: TextIO) -> None:
        self.strict = strict
        self.wait = wait
        self._out = out
        self._err = err
        self._tty = out.isatty()
        self._shown: dict[str, tuple[bool, str]] = {}
        self._problem_shown = False
        self._progress = False

    def passes(self, item: SLOGate) -> bool:
        return item.verdict.open and not (self.strict and item.unknown is not None)

    def show(self, poll: Poll) -> None:
        if poll.problem is not None and not self._problem_shown:
            self._write(self._err, f"slo-guard: warning: {poll.problem}; trying again")
        self._problem_shown = poll.problem is not None
        for item in poll.gates:
            if self._shown.get(item.key) != (item.verdict.open, item.verdict.reason):
                self._shown[item.key] = (item.verdict.open, item.verdict.reason)
                self._show_gate(item)
        waiting = [item.key for item in poll.gates if not self.passes(item)]
        if self._tty and self.wait is not None and (waiting or poll.problem is not None):
            what = "the Kubernetes API" if poll.problem is not None else ", ".join(waiting)
            progress = f"waiting for {what}: {_elapsed(poll.elapsed)} of {format_duration(self.wait)}"
            self._out.write(_CLEAR_LINE + progress)
            self._out.flush()
            self._progress = True

    def finish(self, poll: Poll) -> int:
        self._clear_progress()
        if poll.problem is not None:
            raise InputError(poll.problem)
        waiting = [item for item in poll.gates if not self.passes(item)]
        if waiting and self.wait is not None:
            states = ", ".join(f"{item.key} {'closed' if not item.verdict.open else 'unknown'}" for item in waiting)
            self._write(self._out, f"timed out after {format_duration(self.wait)}: {states}")
        refused = [
            f"{item.key} is Unknown ({item.unknown}) and --strict requires data" for item in waiting if item.unknown
        ]
        if refused:
            raise InputError(*refused)
        return EXIT_GATE_CLOSED if waiting else EXIT_OK

    def _show_gate(self, item: SLOGate) -> None:
        if item.unknown is None:
            self._write(self._out, f"{item.key}: {'open' if item.verdict.open else 'closed'}: {item.verdict.message}")
        elif self.strict:
            self._write(self._out, f"{item.key}: unknown: no usable data ({item.unknown})")
        else:
            self._write(self._out, f"{item.key}: open: {item.verdict.message}")
            self._write(
                self._err,
                f"slo-guard: warning: {item.key} is Unknown ({item.unknown}); its gate is open because missing data "
                "never blocks (--strict refuses it)",
            )

    def _write(self, stream: TextIO, line: str) -> None:
        self._clear_progress()
        print(line, file=stream, flush=True)

    def _clear_progress(self) -> None:
        if self._progress:
            self._out.write(_CLEAR_LINE)
            self._out.flush()
            self._progress = False


def _elapsed(seconds: float) -> str:
    return format_duration(int(seconds)) if seconds >= 1 else "0s"


def _rules(args: argparse.Namespace) -> int:
    objectives = [item.objective for item in load_objectives(args.files, min_step=args.min_step)]
    try:
        if args.format == "prometheusrule":
            document = prometheus_rule(
                objectives, name=args.name, namespace=args.namespace, runbook_base=args.runbook_base
            )
        else:
            document = rule_file(objectives, runbook_base=args.runbook_base)
    except ValueError as err:
        raise InputError(str(err)) from None
    print(yaml.safe_dump(document, sort_keys=False, width=1_000_000), end="")
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    sources: list[Source] = []
    unreadable: list[str] = []
    for path in args.files:
        try:
            sources.append(Source(str(path), _documents(path)))
        except InputError as err:
            unreadable += err.problems
    options = ImportOptions(namespace=args.namespace, targets=tuple(dict.fromkeys(args.targets)), window=args.window)
    result = import_slos(args.tool, sources, options)
    for warning in result.warnings:
        print(f"slo-guard: warning: {warning}", file=sys.stderr)
    if result.resources:
        print(yaml.safe_dump_all(result.resources, sort_keys=False, explicit_start=True, width=1_000_000), end="")
        if not args.targets:
            print(
                "slo-guard: note: no --target: the imported SLOs act on no workload, they only report", file=sys.stderr
            )
    if unreadable or result.errors:
        raise InputError(*unreadable, *result.errors)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    # kopf loads only for `run`, keeping `evaluate` quick.
    from slo_guard.handlers import run_operator  # noqa: PLC0415
    from slo_guard.handlers.runtime import RuntimeConfig  # noqa: PLC0415

    if args.rules_file and args.rules_prometheusrule:
        raise InputError("--rules-file and --rules-prometheusrule: choose one place for the recording rules")
    if (args.webhook_cert_file is None) != (args.webhook_key_file is None):
        raise InputError("--webhook-cert-file and --webhook-key-file: give both to serve the webhook, or neither")
    try:
        config = RuntimeConfig.from_args(args, prometheus=prometheus_settings(args))
    except ValueError as err:
        raise InputError(f"--rules-prometheusrule-labels: {err}") from None
    return run_operator(config)
