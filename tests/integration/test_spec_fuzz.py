"""Generated ServiceLevelObjectives, valid and hostile, through every gate down to the real Prometheus.

Each object goes through
(a) the CRD's openAPIV3Schema, with jsonschema (converted as in tests/unit/test_crd_schema.py). The CEL rules
    (x-kubernetes-validations) need an API server and cannot run here: what only CEL catches (window relations,
    scaleTo with Scale only, FastBurn with a page tier) is left to the runtime model, which checks all of it again;
(b) `objective_from_resource`: a rejection must be a SpecError naming a field the generator made suspect;
(c) the PromQL builders: each query the operator sends (and the alerting rules' ratio), parsed by promql_parser,
    must have exactly the intended shape, every label value a literal equal to what the user meant;
and every such query, and every expression of the recording rules slo-guard manages, must run in the real
Prometheus.

The generator knows what each selector means when it wrote it from parts (quoted and escaped as PromQL reads
them). For raw hostile text (injection attempts, unescaped quotes) the meaning is what promql_parser reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import promql_parser
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.support.prometheus import PrometheusQueryFailed, PrometheusServer
from tests.unit.test_crd_schema import VALIDATOR

from slo_guard.domain import promql
from slo_guard.domain.model import LabelMatcher, LatencyIndicator, MatchOp, Objective, Selector
from slo_guard.domain.recording import managed_rule_groups, measurement_queries
from slo_guard.resources import SpecError, objective_from_resource

pytestmark = [
    pytest.mark.prometheus,
    # Hostile regexes such as `[[` make Python's re warn before it refuses them.
    pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning"),
]

FUZZ = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Deterministic: the same examples on every run and machine."""
MIN_STEP = 30
TENANT_LABEL = "namespace"
"""Forced into every selector, as `--tenant-label namespace` does."""

# PromQL words the domain refuses as metric names (Prometheus 2.42 reads them as operators or numbers).
RESERVED = ("on", "Bool", "ignoring", "group_left", "GROUP_RIGHT", "atan2", "NaN", "inf", "Inf")
# Keywords Prometheus still reads as metric names where a metric name is expected.
KEYWORD_NAMES = ("sum", "rate", "offset", "by", "without", "and", "or", "unless", "start", "end", "topk", "avg")
BAD_METRIC_NAMES = ("0abc", "a-b", "a.b", "ünï", "", "m{", "{}")
BAD_LABEL_NAMES = ("__name__", "0a", "a-b", "é", "a.b")
HOSTILE_CHARS = "\"'`\\{}[]()=~!,#@ \n\r\t\x00\x1b\u202e\u200b\ufeff\ufffd漢😀\ud800"
INJECTIONS = (
    '"} or vector(1) #',
    "'} or vector(1) #",
    "`} or vector(1) #",
    '\\"} or vector(1) #',
    '"}[5m]) or vector(1) #',
    "} offset 1w",
    '", __name__=~".+',
    "\\",
    "\u202e} or vector(1)\u202c",
)
PYTHON_ONLY_REGEXES = ("(?=x)", "(?<!a)b", r"(a)\1", "(?>a)", "x*+", r"a\Z", "(?x)a b", "a{1001}", "(?#note)a")
"""Regexes Python's re compiles and Prometheus's RE2 refuses (lookarounds, backreferences, atomic groups, ...)."""
SAFE_REGEXES = ("5..", "(?i)get|post", r"a\.b|c", r"\d+", '[^"]*', ".*", "", "x{2,3}", "(a|b)*c", "[{}]", "é|漢")
"""Regexes both Python's re and Prometheus's RE2 accept (see the xfail test below for ones only Python accepts)."""
TRAILERS = ("", " or vector(1)", "[5m]", " offset 1h", " # comment", ")", "}", " @ 0", "\n", "; drop")


# Writing selectors the way users do


@dataclass(frozen=True, slots=True)
class Written:
    """A selector as written in the spec, and what it means."""

    text: str
    meaning: Selector | None
    """What the text means; None for raw hostile text, whose meaning only a parser can tell."""
    valid: bool
    """Whether slo-guard must accept it (well-formed, allowed names, regexes RE2 accepts)."""


def escaped(value: str, quote: str, *, all_unprintable: bool) -> str:
    """`value` as the inside of a PromQL string in `quote`s (Go escapes), independent of slo_guard's renderer."""
    if quote == "`":
        return f"`{value}`"
    out = []
    for char in value:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif all_unprintable and (not char.isprintable() or char == "\ufffd"):
            out.append(f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return quote + "".join(out) + quote


def has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) < 0xE000 for char in text)


label_values = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=HOSTILE_CHARS, max_size=8),
    st.sampled_from(INJECTIONS),
)
regex_values = st.one_of(label_values.map(re.escape), st.sampled_from(SAFE_REGEXES))


@st.composite
def matchers(draw: st.DrawFn, *, histogram: bool, hostile: bool) -> tuple[LabelMatcher, bool]:
    """A matcher and whether its name is one slo-guard accepts there."""
    valid_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True).filter(lambda n: n != "__name__")
    odd_names = ("on", "by", "offset", "bool", "le", *(BAD_LABEL_NAMES if hostile else ()))
    name = draw(st.one_of(valid_names, st.sampled_from(odd_names)))
    op = draw(st.sampled_from(list(MatchOp)))
    value = draw(regex_values if op in (MatchOp.REGEX, MatchOp.NOT_REGEX) else label_values)
    good_name = re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) is not None and name != "__name__"
    return LabelMatcher(name, op, value), good_name and not (histogram and name == "le")


@st.composite
def structured_selectors(draw: st.DrawFn, *, histogram: bool, hostile: bool) -> Written:
    """A selector written from parts, with any quote style, spacing and escaping; bad names only if `hostile`."""
    valid_metrics = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", fullmatch=True).filter(
        lambda name: name.lower() not in {word.lower() for word in RESERVED} and not name.endswith("_bucket")
    )
    odd_metrics = KEYWORD_NAMES + (RESERVED + BAD_METRIC_NAMES if hostile else ())
    metric = draw(st.one_of(valid_metrics, st.sampled_from(odd_metrics)))
    parts = draw(st.lists(matchers(histogram=histogram, hostile=hostile), max_size=3))
    space = draw(st.sampled_from(["", " ", "\t", "\n "]))
    written = []
    for matcher, _ in parts:
        quote = draw(st.sampled_from(['"', "'", "`"]))
        if quote == "`" and "`" in matcher.value:
            quote = '"'
        literal = escaped(matcher.value, quote, all_unprintable=draw(st.booleans()))
        written.append(f"{space}{matcher.name}{space}{matcher.op.value}{space}{literal}")
    trailing_comma = draw(st.sampled_from(["", ","])) if written else ""
    braces = "{" + ",".join(written) + trailing_comma + space + "}"
    with_braces = bool(parts) or draw(st.booleans())
    text = metric + (braces if with_braces else "")
    good_metric = metric in KEYWORD_NAMES or (
        re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", metric) is not None
        and metric.lower() not in {word.lower() for word in RESERVED}
    )
    valid = (
        good_metric
        and all(good for _, good in parts)
        and not any(has_lone_surrogate(matcher.value) for matcher, _ in parts)
        and not (histogram and metric.endswith("_bucket"))
        and len(text) <= 1024
    )
    return Written(text, Selector(metric, tuple(matcher for matcher, _ in parts)), valid)


@st.composite
def hostile_selectors(draw: st.DrawFn) -> Written:
    """Injection attempts: a value spliced in unescaped, a trailing expression, or plain junk."""
    spliced = st.builds(
        lambda metric, name, op, value, trailer: f'{metric}{{{name}{op}"{value}"}}{trailer}',
        st.sampled_from(["m", "up", "http_requests_total"]),
        st.sampled_from(["a", "code", "job"]),
        st.sampled_from(["=", "!=", "=~", "!~"]),
        label_values,
        st.sampled_from(TRAILERS),
    )
    text = draw(st.one_of(spliced, st.text(max_size=30), st.text(alphabet=HOSTILE_CHARS + "m=a", max_size=30)))
    return Written(text, None, valid=False)


def selectors(*, histogram: bool, hostile: bool) -> st.SearchStrategy[Written]:
    """Half raw hostile text when `hostile`, else one in five (enough for some to be accepted and compared)."""
    structured = structured_selectors(histogram=histogram, hostile=hostile)
    if hostile:
        return st.one_of(structured, hostile_selectors())
    return st.one_of(structured, structured, structured, structured, hostile_selectors())


# Whole objects


Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """`spec.targets[0].name`, the way SpecError names fields."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


@dataclass
class Generated:
    resource: dict[str, Any]
    meanings: dict[str, Selector | None] = field(default_factory=dict)
    """Each selector field's dotted path -> what it means (None: only a parser can tell)."""
    suspects: set[str] = field(default_factory=set)
    """Dotted paths of parts that may be invalid: a rejection must name one of them (or a field inside one)."""
    invalid: set[str] = field(default_factory=set)
    """Dotted paths of parts that are invalid by construction (each also a suspect)."""

    def add_selector(self, path: Path_, written: Written) -> str:
        self.meanings[dotted(path)] = written.meaning
        if written.meaning is None or not written.valid:
            self.suspects.add(dotted(path))
        if written.meaning is not None and not written.valid:
            self.invalid.add(dotted(path))
        return written.text

    def replaced(self, path: str) -> None:
        """Forget what was known about the parts at and under `path`: a mutation replaced them."""
        self.suspects.add(path)
        self.invalid = {part for part in self.invalid if not _within(part, path)}
        for selector_path in self.meanings:
            if _within(selector_path, path):
                self.meanings[selector_path] = None


dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
hostile_names = st.one_of(
    st.text(min_size=1, max_size=12), st.sampled_from(["café", "ÄPI", "a_b", "-a", "a" * 254, "名前", "a..b"])
)
windows = st.one_of(
    st.integers(1, 10**5).map(lambda n: (n * 60, f"{n}m")),
    st.integers(1, 100).map(lambda n: (n * 3600, f"{n}h")),
    st.integers(1, 400).map(lambda n: (n * 86_400, f"{n}d")),
)
junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.just(10**400),
        st.floats(),
        st.text(max_size=20),
        st.just("x" * 2000),
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)
"""Wrong types, huge and non-finite numbers, unicode, deeply nested lists and mappings."""


@st.composite
def burn_rate_alerts(draw: st.DrawFn, *, window: int, fast_burn: bool) -> list[dict[str, Any]]:
    alerts = []
    for _ in range(draw(st.integers(1, 3))):
        long = draw(st.integers(2 * MIN_STEP + 1, window))
        alerts.append(
            {
                "severity": draw(st.sampled_from(["page", "ticket"])),
                "longWindow": f"{long}s",
                "shortWindow": f"{draw(st.integers(2 * MIN_STEP, long - 1))}s",
                "factor": draw(st.floats(0.01, 1000)),
            }
        )
    if fast_burn:
        alerts[0]["severity"] = "page"
    return alerts


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "mode": draw(st.sampled_from(["Enforce", "DryRun"])),
        "action": draw(st.sampled_from(["Pause", "Scale"])),
        "trigger": draw(st.sampled_from(["Exhausted", "FastBurn"])),
        "resumeAbove": draw(st.floats(0, 1, exclude_max=True)),
    }
    if policy["action"] == "Scale":
        policy["scaleTo"] = draw(st.integers(0, 2**31 - 1))
    return policy


@st.composite
def indicators(draw: st.DrawFn, generated: Generated, *, hostile: bool) -> dict[str, Any]:
    base: Path_ = ("spec", "indicator")
    if draw(st.booleans()):
        return {
            "ratio": {
                "errors": generated.add_selector(
                    (*base, "ratio", "errors"), draw(selectors(histogram=False, hostile=hostile))
                ),
                "total": generated.add_selector(
                    (*base, "ratio", "total"), draw(selectors(histogram=False, hostile=hostile))
                ),
            }
        }
    histogram = generated.add_selector(
        (*base, "latency", "histogram"), draw(selectors(histogram=True, hostile=hostile))
    )
    return {"latency": {"histogram": histogram, "threshold": draw(st.floats(1e-9, 1e6))}}


@st.composite
def resources(draw: st.DrawFn, *, hostile: bool) -> Generated:
    """A ServiceLevelObjective: valid in every part the generator does not mark suspect.

    Hostile values in label values always; bad names, raw hostile selectors and mutated fields more often
    when `hostile`.
    """
    generated = Generated({})
    window_seconds, window = draw(windows)
    policy = draw(policies())
    spec: dict[str, Any] = {
        "objective": draw(st.floats(0, 100, exclude_min=True, exclude_max=True)),
        "window": window,
        "indicator": draw(indicators(generated, hostile=hostile)),
        "evaluationInterval": draw(st.sampled_from(["1s", "10s", "30s", "1m", "1m30s", "59m", "1h"])),
        "targets": [
            {"kind": "Deployment", "name": name} for name in draw(st.lists(dns_labels, unique=True, max_size=3))
        ],
        "policy": policy,
    }
    if window_seconds > 2 * MIN_STEP + 1 and draw(st.booleans()):
        spec["burnRateAlerts"] = draw(
            burn_rate_alerts(window=window_seconds, fast_burn=policy["trigger"] == "FastBurn")
        )
    name = draw(st.one_of(dns_labels, hostile_names) if hostile else dns_labels)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name) or len(name) > 253:
        generated.suspects.add("metadata.name")
        generated.invalid.add("metadata.name")
    generated.resource = {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": draw(dns_labels)},
        "spec": spec,
    }
    if hostile and draw(st.booleans()):
        draw(mutations(generated))
    return generated


@st.composite
def mutations(draw: st.DrawFn, generated: Generated) -> None:
    """Replace one field with junk, drop it, or add an unknown field next to it."""
    paths = list(_paths(generated.resource))
    path = draw(st.sampled_from(paths))
    *parents, last = path
    node: Any = generated.resource
    for part in parents:
        node = node[part]
    how = draw(st.sampled_from(["junk", "drop", "unknown field"]))
    if how == "unknown field" and isinstance(node, dict):
        key = draw(st.text(max_size=8).map(lambda text: f"unknown{text}"))
        node[key] = draw(junk)
        generated.suspects.add(dotted((*parents, key)))
        # metadata is Kubernetes's: slo-guard reads its name and namespace and ignores the rest.
        if parents != ["metadata"]:
            generated.invalid.add(dotted((*parents, key)))
        return
    if how == "drop" and isinstance(node, dict):
        del node[last]
    else:
        node[last] = draw(junk)
    generated.replaced(dotted(path))


def _paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every field and list item below the top, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


CROSS_FIELD = {
    "spec.window": ("spec.burnRateAlerts",),
    "spec.policy.trigger": ("spec.burnRateAlerts",),
    "spec.policy.action": ("spec.policy.scaleTo",),
    "spec.targets[": ("spec.targets",),
}
"""Checks that involve two fields name the other one: the burn-rate windows against spec.window, FastBurn
against the page tiers, scaleTo against the action, a duplicate target by its own index."""


def names_a_suspect(field_path: str, suspects: set[str]) -> bool:
    """The field is a suspect, lies inside one, is the object holding one (checks like "exactly one of ratio or
    latency"), or is a suspect's partner in a cross-field check."""
    for suspect in suspects:
        partners = (suspect, *(p for key, ps in CROSS_FIELD.items() if suspect.startswith(key) for p in ps))
        for partner in partners:
            if _within(field_path, partner) or field_path == _parent(partner):
                return True
    return False


def _parent(path: str) -> str:
    return re.sub(r"(\.\w+|\[\d+\])$", "", path)


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith((outer + ".", outer + "["))


# What the queries must look like


Shape = tuple[Any, ...]
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def shape(node: Any) -> Shape:
    """A parsed query as nested tuples; anything slo-guard never sends shows up as its bare type name."""
    if isinstance(node, promql_parser.VectorSelector):
        assert node.offset is None
        assert node.at is None
        assert node.matchers.or_matchers == []
        matchers = tuple((m.name, _OPS[str(m.op)], m.value) for m in node.matchers.matchers)
        return ("selector", node.name, matchers)
    if isinstance(node, promql_parser.MatrixSelector):
        return ("range", shape(node.vector_selector), node.range.total_seconds())
    if isinstance(node, promql_parser.Call):
        return ("call", node.func.name, tuple(shape(arg) for arg in node.args))
    if isinstance(node, promql_parser.AggregateExpr):
        assert node.modifier is None
        assert node.param is None
        return ("aggregate", str(node.op), shape(node.expr))
    if isinstance(node, promql_parser.BinaryExpr):
        assert node.modifier is None
        return ("binary", str(node.op), shape(node.lhs), shape(node.rhs))
    if isinstance(node, promql_parser.ParenExpr):
        return shape(node.expr)
    return (type(node).__name__,)


def selector_shape(selector: Selector, *, suffix: str = "", extra: Sequence[tuple[str, str, str]] = ()) -> Shape:
    matchers = tuple((m.name, m.op.value, m.value) for m in selector.matchers)
    return ("selector", selector.metric + suffix, (*matchers, *extra))


def sum_rate(selector: Shape, window: int) -> Shape:
    return ("aggregate", "sum", ("call", "rate", (("range", selector, float(window)),)))


def plain_selector(text: str) -> Selector | None:
    """What promql_parser reads `text` as, when that is one plain series selector."""
    try:
        node = promql_parser.parse(text)
    except ValueError:
        return None
    if not isinstance(node, promql_parser.VectorSelector) or node.name is None:
        return None
    if node.offset is not None or node.at is not None or node.matchers.or_matchers:
        return None
    ops = {symbol: op for op in MatchOp for symbol in [op.value]}
    matchers = tuple(LabelMatcher(m.name, ops[_OPS[str(m.op)]], m.value) for m in node.matchers.matchers)
    return Selector(node.name, matchers)


def meaning(generated: Generated, path: str) -> Selector:
    known = generated.meanings[path]
    if known is not None:
        return known
    node: Any = generated.resource
    for part in re.findall(r"\w+", path):
        node = node[part]
    read = plain_selector(node)
    assert read is not None, f"accepted {node!r}, which promql_parser does not read as one plain selector"
    return read


def read_selectors(objective: Objective) -> dict[str, Selector]:
    """The selectors slo-guard read from the spec, by field."""
    indicator = objective.indicator
    if isinstance(indicator, LatencyIndicator):
        return {"spec.indicator.latency.histogram": indicator.histogram}
    return {"spec.indicator.ratio.errors": indicator.errors, "spec.indicator.ratio.total": indicator.total}


def tenant_matcher(objective: Objective) -> LabelMatcher:
    return LabelMatcher(TENANT_LABEL, MatchOp.EQUAL, objective.namespace)


def expected_queries(objective: Objective, generated: Generated) -> list[tuple[str, Shape]]:
    """Every query the operator builds for `objective`, with the shape it must parse to."""
    tenant = tenant_matcher(objective)
    forced = [(tenant.name, "=", tenant.value)]
    indicator = objective.indicator
    if isinstance(indicator, LatencyIndicator):
        histogram = meaning(generated, "spec.indicator.latency.histogram")
        total_selector = selector_shape(histogram, suffix="_count", extra=forced)
        bucket = ("le", "=~", promql.bucket_bound_pattern(indicator.threshold))
        good_selector = selector_shape(histogram, suffix="_bucket", extra=[*forced, bucket])

        def errors(window: int) -> Shape:
            return ("binary", "-", sum_rate(total_selector, window), sum_rate(good_selector, window))

    else:
        total_selector = selector_shape(meaning(generated, "spec.indicator.ratio.total"), extra=forced)
        errors_selector = selector_shape(meaning(generated, "spec.indicator.ratio.errors"), extra=forced)

        def errors(window: int) -> Shape:
            return sum_rate(errors_selector, window)

    freshness = ("aggregate", "max", ("call", "timestamp", (total_selector,)))
    plan = measurement_queries(objective, extra=[tenant])
    expected: list[tuple[str, Shape]] = [(plan.freshness, freshness)]
    for window in plan.windows:
        span = window.window
        expected += [
            (window.errors, errors(span)),
            (window.total, sum_rate(total_selector, span)),
            (
                promql.error_ratio_query(indicator, span, extra=[tenant]),
                ("binary", "/", errors(span), sum_rate(total_selector, span)),
            ),
        ]
    return expected


# The properties


def runtime(resource: dict[str, Any]) -> Objective | SpecError:
    try:
        return objective_from_resource(resource, min_step=MIN_STEP)
    except SpecError as error:
        return error


@FUZZ
@given(resources(hostile=True))
def test_every_object_is_accepted_or_rejected_naming_a_field_it_got_wrong(generated: Generated) -> None:
    outcome = runtime(generated.resource)
    event("rejected" if isinstance(outcome, SpecError) else "accepted")
    refusals = [error.message for error in VALIDATOR.iter_errors(generated.resource)]
    if isinstance(outcome, SpecError):
        assert generated.suspects, f"a valid object was rejected: {outcome}"
        assert names_a_suspect(outcome.field, generated.suspects), f"{outcome}; suspects: {generated.suspects}"
        return
    assert not generated.invalid, "an object with an invalid part was accepted"
    assert read_selectors(outcome) == {path: meaning(generated, path) for path in generated.meanings}
    # The runtime model is the second line of defence: it never accepts what admission refuses.
    assert refusals == []


@FUZZ
@given(resources(hostile=False))
def test_accepted_objects_query_what_they_mean_and_prometheus_parses_it(
    prometheus: PrometheusServer, generated: Generated
) -> None:
    objective = runtime(generated.resource)
    if isinstance(objective, SpecError):
        event("rejected")
        return
    event("accepted")
    if None in generated.meanings.values():
        event("accepted a raw hostile selector")
    for query, expected in expected_queries(objective, generated):
        assert shape(promql_parser.parse(query)) == expected, query
        prometheus.query(query)
    for group in managed_rule_groups(objective, extra=[tenant_matcher(objective)]):
        for rule in group["rules"]:
            prometheus.query(rule["expr"])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path_factory.mktemp("fuzz-prometheus")) as server:
        yield server


def ratio_resource(errors: str) -> dict[str, Any]:
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"objective": 99.9, "window": "30d", "indicator": {"ratio": {"errors": errors, "total": "m"}}},
    }


@pytest.mark.parametrize("regex", PYTHON_ONLY_REGEXES)
def test_prometheus_refuses_regexes_that_python_compiles(prometheus: PrometheusServer, regex: str) -> None:
    re.compile(regex)
    with pytest.raises(PrometheusQueryFailed, match="bad_data"):
        prometheus.query(f"m{{a=~{json.dumps(regex)}}}")


@pytest.mark.parametrize("regex", PYTHON_ONLY_REGEXES)
def test_a_regex_prometheus_refuses_is_rejected_naming_its_field(regex: str) -> None:
    """Accepted, such an SLO would fail every query with bad_data and its status would blame Prometheus."""
    outcome = runtime(ratio_resource(f"m{{a=~{json.dumps(regex)}}}"))
    assert isinstance(outcome, SpecError)
    assert outcome.field == "spec.indicator.ratio.errors"
