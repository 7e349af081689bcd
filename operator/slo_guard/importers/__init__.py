"""`slo-guard import`: Sloth, Pyrra and OpenSLO SLOs as ServiceLevelObjectives, mapped exactly or refused.

Pure conversion: parsed YAML documents in, resources and one line per finding out. Every resource is checked with
`objective_from_resource`, as `slo-guard evaluate` and the operator would check it. docs/import.md is the user's
side of the mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from slo_guard.importers import openslo, pyrra, sloth
from slo_guard.importers.common import ImportOptions, Note, Outcome, Source, Target
from slo_guard.resources import DnsLabel, SpecError, TargetSpec, objective_from_resource

__all__ = [
    "TOOLS",
    "ImportOptions",
    "ImportResult",
    "Source",
    "Target",
    "import_slos",
    "parse_namespace",
    "parse_target",
]

_Importer = Callable[[list[Source], ImportOptions], Iterator[Outcome]]
_IMPORTERS: dict[str, tuple[_Importer, str]] = {
    "sloth": (sloth.outcomes, sloth.DESCRIPTION),
    "pyrra": (pyrra.outcomes, pyrra.DESCRIPTION),
    "openslo": (openslo.outcomes, openslo.DESCRIPTION),
}
TOOLS = tuple(_IMPORTERS)
_MIN_STEP = 30
"""Imported SLOs set no burnRateAlerts, the only field the operator's min step validates."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    resources: tuple[dict[str, Any], ...]
    """ServiceLevelObjective objects, in the order of the sources."""
    errors: tuple[str, ...]
    """One line per construct that could not map: `FILE: document N (name): FIELD: why`."""
    warnings: tuple[str, ...]
    """One line per thing dropped that changes no number, or changes it in a way the line says."""


def import_slos(tool: str, sources: Sequence[Source], options: ImportOptions) -> ImportResult:
    importer, description = _IMPORTERS[tool]
    resources: list[dict[str, Any]] = []
    errors: list[str] = []
    warnings: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    found = 0
    for outcome in importer(list(sources), options):
        found += 1
        warnings += [f"{outcome.where}: {note}" for note in outcome.warnings]
        problems = list(outcome.refusals)
        if outcome.resource is not None:
            problems += _invalid(outcome.resource)
            key = (outcome.resource["metadata"]["namespace"], outcome.resource["metadata"]["name"])
            if not problems and key in seen:
                problems.append(Note("name", f"imports as {'/'.join(key)} again, like {seen[key]}"))
            if not problems:
                seen[key] = outcome.where
                resources.append(outcome.resource)
        errors += [f"{outcome.where}: {note}" for note in problems]
    if not found and sources:
        errors.append(f"no {description} in {', '.join(source.path for source in sources)}")
    return ImportResult(tuple(resources), tuple(errors), tuple(warnings))


def parse_target(text: str) -> Target:
    """`KIND/NAME` as `--target` takes it; ValueError says what is expected."""
    kind, _, name = text.partition("/")
    try:
        target = TargetSpec.model_validate({"kind": kind, "name": name})
    except ValidationError:
        raise ValueError(
            f"expected KIND/NAME with KIND Deployment, StatefulSet or Rollout and NAME a DNS subdomain (got {text!r})"
        ) from None
    return Target(target.kind, target.name)


def parse_namespace(text: str) -> str:
    try:
        return TypeAdapter(DnsLabel).validate_python(text)
    except ValidationError:
        raise ValueError(f"not a namespace name, a DNS label (got {text!r})") from None


def _invalid(resource: dict[str, Any]) -> list[Note]:
    """What the operator would reject; the importers check the source first, so this is a safety net."""
    try:
        objective_from_resource(resource, min_step=_MIN_STEP)
    except SpecError as err:
        return [Note(f"the imported {error.field}", error.message) for error in err.errors]
    return []
