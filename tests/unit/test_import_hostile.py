"""Whatever a source document holds, `slo-guard import` answers with lines, never a traceback, and everything it
prints is a valid ServiceLevelObjective."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slo_guard.importers import ImportOptions, Source, import_slos
from slo_guard.resources import objective_from_resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
SOURCES = {
    "sloth": ["sloth.yaml", "sloth-resource.yaml", "sloth-refused.yaml"],
    "pyrra": ["pyrra.yaml", "pyrra-refused.yaml"],
    "openslo": ["openslo.yaml", "openslo-refused.yaml"],
}
DOCUMENTS = {
    tool: [document for name in names for document in yaml.safe_load_all((FIXTURES / name).read_text())]
    for tool, names in SOURCES.items()
}

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", "100", "0.5", "1M", "sum(rate(x[5m]))", '{a="b"}', "{{.window}}", "le", "Occurrences"]),
)
JUNK = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], junk: Any) -> Any:
    if not path:
        return junk
    changed = copy.deepcopy(document)
    node = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = junk
    return changed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool=st.sampled_from(sorted(DOCUMENTS)), data=st.data(), junk=JUNK)
def test_any_field_replaced_by_anything_gives_lines_or_valid_slos(tool: str, data: st.DataObject, junk: Any) -> None:
    documents = DOCUMENTS[tool]
    index = data.draw(st.integers(0, len(documents) - 1))
    path = data.draw(st.sampled_from(paths(documents[index])))
    hostile = [*documents[:index], replaced(documents[index], path, junk), *documents[index + 1 :]]

    result = import_slos(tool, [Source("hostile.yaml", hostile)], ImportOptions())

    for line in (*result.errors, *result.warnings):
        assert "\n" not in line
    for resource in result.resources:
        objective_from_resource(resource, min_step=30)
