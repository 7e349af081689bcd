"""The `kubectl-slo` command line: parse like kubectl, run one command, and fail in one line like kubectl."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from slo_guard import __version__
from slo_guard.adapters.slo_reader import SLOObjects
from slo_guard.cli import EXIT_OK, EXIT_UNKNOWN_OR_BAD_INPUT, SLO_KEY, GateReport, InputError, add_gate_options
from slo_guard.config import duration_argument
from slo_guard.domain.model import API_VERSION, KIND
from slo_guard.domain.policy import OVERRIDE_UNTIL
from slo_guard.kubectl_slo import override as overrides
from slo_guard.kubectl_slo.cluster import SLO_RESOURCE, Cluster, CommandError, connect
from slo_guard.kubectl_slo.render import Style, describe_text, description, list_table, machine, summary
from slo_guard.service.gate import SLOsMissing, wait_for_gates
from slo_guard.service.gate_board import entry_from_resource, gate_document
from slo_guard.service.ports import KubernetesUnavailable, ObjectRef

PROG = "kubectl slo"
EXIT_USAGE = 2
"""Bad flags or arguments, as argparse exits; a failed request exits 1, as kubectl does."""
DEFAULT_CEILING = "24h"
OUTPUTS = ("json", "yaml")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line, `error: ...`, as kubectl prints them."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = asyncio.run(args.command(args))
    except CommandError as error:
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Read slo-guard's ServiceLevelObjectives, gate on them and override them, from the API server "
        "alone (no Prometheus). Connects like kubectl: KUBECONFIG or ~/.kube/config, else the pod's service account.",
    )
    parser.add_argument("--version", action="version", version=f"kubectl-slo (slo-guard) {__version__}")
    _connection_flags(parser, after_command=False)
    connection = _Parser(add_help=False)
    _connection_flags(connection, after_command=True)
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list",
        parents=[connection],
        help="list SLOs: state, budget, the fastest firing tier, time to exhaustion, held targets",
        description="List the ServiceLevelObjectives of a namespace (or of all), sorted by namespace and name. "
        "On a terminal BUDGET is a bar; piped, the number alone.",
    )
    listing.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list the SLOs of every namespace, with a NAMESPACE column"
    )
    _output_flag(listing)
    listing.set_defaults(command=_list)

    describe = commands.add_parser(
        "describe",
        parents=[connection],
        help="show one SLO: objective, SLI, budget, every tier, conditions, targets and its actions as a timeline",
        description="Show one ServiceLevelObjective in full, from its spec and the status the operator wrote.",
    )
    describe.add_argument("name", metavar="NAME", help="the ServiceLevelObjective")
    _output_flag(describe)
    describe.set_defaults(command=_describe)

    override = commands.add_parser(
        "override",
        parents=[connection],
        help="let a target's rollouts through for a while, whatever its SLOs say",
        description="Set sloguard.io/override-until (now + --for) and sloguard.io/override-reason on a Deployment, "
        "StatefulSet or Argo Rollout: slo-guard releases its holds on it at once and keeps off it until then. The "
        "SLOs' gates stay as they are. Needs `patch` on the workload.",
    )
    override.add_argument("target", metavar="KIND/NAME", help="e.g. deployment/checkout, sts/db, ro/web")
    override.add_argument(
        "--for",
        dest="duration",
        required=True,
        type=duration_argument,
        metavar="DURATION",
        help="how long, e.g. 2h or 90m",
    )
    override.add_argument("--reason", required=True, help="why (an incident, a security fix); shown in Events")
    override.add_argument(
        "--max",
        dest="ceiling",
        type=duration_argument,
        default=DEFAULT_CEILING,
        metavar="DURATION",
        help=f"refuse a --for longer than this (default {DEFAULT_CEILING})",
    )
    override.set_defaults(command=_override)

    gate = commands.add_parser(
        "gate",
        parents=[connection],
        help="exit 0 when every SLO's gate is open, 1 when one is closed, 2 for a missing SLO or bad input",
        description="The gate of `slo-guard gate`: closed while the SLO's policy holds its targets; an Unknown SLO "
        "is open, with a warning. Exit 0 all open, 1 one closed, 2 a missing SLO, bad input or (with --strict) an "
        "Unknown SLO. Needs only `get` on servicelevelobjectives.",
    )
    gate.add_argument(
        "slos", nargs="+", metavar="NAME", help="SLO names in the namespace, or NAMESPACE/NAME for another one"
    )
    add_gate_options(gate)
    _output_flag(gate)
    gate.set_defaults(command=_gate)
    return parser


def _connection_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    # kubectl takes these before or after the command: a flag absent after it keeps the value given before it.
    default = argparse.SUPPRESS if after_command else None
    parser.add_argument("--context", default=default, metavar="NAME", help="the kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=default, metavar="NS", help="default: the context's namespace, else default"
    )


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUTS, default=None, help="machine output instead of text")


@contextmanager
def _connected(args: argparse.Namespace) -> Iterator[Cluster]:
    cluster = connect(args.context)
    try:
        yield cluster
    finally:
        cluster.close()


def _style() -> Style:
    return Style.of(tty=sys.stdout.isatty(), environ=os.environ)


async def _list(args: argparse.Namespace) -> int:
    with _connected(args) as cluster:
        namespace = None if args.all_namespaces else args.namespace or cluster.namespace
        resources = await cluster.list_slos(namespace)
    summaries = sorted(map(summary, resources), key=lambda item: (str(item["namespace"]), str(item["name"])))
    if args.output:
        sys.stdout.write(machine({"items": summaries}, args.output))
    elif not summaries:
        print(
            "No resources found" if namespace is None else f"No resources found in {namespace} namespace.",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(list_table(summaries, _style(), all_namespaces=namespace is None))
    return EXIT_OK


async def _describe(args: argparse.Namespace) -> int:
    with _connected(args) as cluster:
        resource = await cluster.get_slo(args.namespace or cluster.namespace, args.name)
    document = description(resource)
    sys.stdout.write(machine(document, args.output) if args.output else describe_text(document, _style()))
    return EXIT_OK


async def _override(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    try:
        kind, name = overrides.workload(args.target)
        overrides.check_ceiling(args.duration, args.ceiling)
    except overrides.OverrideRefused as refused:
        raise CommandError(str(refused), code=EXIT_USAGE) from None
    if not reason:
        raise CommandError("--reason must say why", code=EXIT_USAGE)
    annotations = overrides.override_annotations(now=datetime.now(UTC), duration=args.duration, reason=reason)
    with _connected(args) as cluster:
        await cluster.annotate(kind, args.namespace or cluster.namespace, name, annotations)
    until = annotations[OVERRIDE_UNTIL]
    print(f"{overrides.display_name(kind, name)} overridden until {until} ({reason})")
    return EXIT_OK


async def _gate(args: argparse.Namespace) -> int:
    with _connected(args) as cluster:
        named = {text: _slo_key(text, args.namespace or cluster.namespace) for text in args.slos}
        bad = [text for text, key in named.items() if not SLO_KEY.fullmatch(key)]
        if bad:
            raise CommandError(*(f"{text!r} is not NAME or NAMESPACE/NAME" for text in bad), code=EXIT_USAGE)
        keys = list(dict.fromkeys(named.values()))
        reader = _RememberingReader(SLOObjects(cluster.api))
        # Machine output is one document at the end: the lines `slo-guard gate` prints go nowhere, its warnings
        # still go to stderr.
        out = io.StringIO() if args.output else sys.stdout
        report = GateReport(strict=args.strict, wait=args.wait, out=out, err=sys.stderr)
        try:
            poll = await wait_for_gates(reader, keys, passes=report.passes, within=args.wait or 0, report=report.show)
        except SLOsMissing as missing:
            lines = (f'{SLO_RESOURCE} "{key.partition("/")[2]}" not found' for key in missing.keys)
            raise CommandError(*lines, code=EXIT_UNKNOWN_OR_BAD_INPUT) from None
        except KubernetesUnavailable as error:
            raise CommandError(str(error), code=EXIT_UNKNOWN_OR_BAD_INPUT) from None
    if args.output and poll.problem is None:
        documents = [gate_document(entry_from_resource(_ref(key), reader.last[key])) for key in keys]
        sys.stdout.write(machine({"items": documents}, args.output))
    try:
        return report.finish(poll)
    except InputError as error:
        raise CommandError(*error.problems, code=EXIT_UNKNOWN_OR_BAD_INPUT) from None


def _slo_key(text: str, namespace: str) -> str:
    return text if "/" in text else f"{namespace}/{text}"


def _ref(key: str) -> ObjectRef:
    namespace, _, name = key.partition("/")
    return ObjectRef(API_VERSION, KIND, namespace, name)


class _RememberingReader:
    """The gate's reader, keeping each SLO as last read, for the machine output's state, budget and time."""

    def __init__(self, reader: SLOObjects) -> None:
        self._reader = reader
        self.last: dict[str, dict[str, Any]] = {}

    async def read(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        resource = await self._reader.read(namespace=namespace, name=name)
        if resource is not None:
            self.last[f"{namespace}/{name}"] = resource
        return resource
