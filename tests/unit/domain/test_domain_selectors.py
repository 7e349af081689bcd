import json
import re
from collections.abc import Callable, Sequence

import promql_parser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_guard.domain.model import LabelMatcher, MatchOp, Selector
from slo_guard.domain.selectors import (
    LABEL_NAME,
    METRIC_NAME,
    SelectorError,
    parse_selector,
    quote,
    re2_incompatibility,
    render_selector,
)

_PARSER_OPS = (
    (promql_parser.MatchOp.Equal, MatchOp.EQUAL),
    (promql_parser.MatchOp.NotEqual, MatchOp.NOT_EQUAL),
    (promql_parser.MatchOp.Re, MatchOp.REGEX),
    (promql_parser.MatchOp.NotRe, MatchOp.NOT_REGEX),
)
"""promql_parser's MatchOp is not hashable, so this is a list of pairs."""


def our_op(parser_op: object) -> MatchOp:
    return next(ours for theirs, ours in _PARSER_OPS if theirs == parser_op)


def eq(name: str, value: str) -> LabelMatcher:
    return LabelMatcher(name=name, op=MatchOp.EQUAL, value=value)


def as_seen_by_promql_parser(query: str) -> Selector:
    """What an independent PromQL parser (the Rust one) makes of a rendered selector."""
    expr = promql_parser.parse(query)
    assert isinstance(expr, promql_parser.VectorSelector), f"{query!r} parsed as {type(expr).__name__}"
    assert expr.matchers.or_matchers == []
    assert expr.offset is None
    assert expr.at is None
    assert expr.name is not None
    matchers = tuple(
        LabelMatcher(name=matcher.name, op=our_op(matcher.op), value=matcher.value)
        for matcher in expr.matchers.matchers
    )
    return Selector(metric=expr.name, matchers=matchers)


def assert_renders_safely(selector: Selector) -> None:
    rendered = render_selector(selector)
    assert parse_selector(rendered) == selector
    assert as_seen_by_promql_parser(rendered) == selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("up", Selector("up")),
        ("up{}", Selector("up")),
        ("  up  ", Selector("up")),
        ("job:errors:rate5m", Selector("job:errors:rate5m")),
        (
            'http_requests_total{code=~"5..", job="api"}',
            Selector("http_requests_total", (LabelMatcher("code", MatchOp.REGEX, "5.."), eq("job", "api"))),
        ),
        (
            "m{a!='x', b!~`y|z`,}",
            Selector("m", (LabelMatcher("a", MatchOp.NOT_EQUAL, "x"), LabelMatcher("b", MatchOp.NOT_REGEX, "y|z"))),
        ),
        ('m { a = "1" , b = "2" }', Selector("m", (eq("a", "1"), eq("b", "2")))),
        ('m\t{\na="1"\r}', Selector("m", (eq("a", "1"),))),
        ('m{a="1",a="2"}', Selector("m", (eq("a", "1"), eq("a", "2")))),
        ('m{by="x",offset="y",bool="z"}', Selector("m", (eq("by", "x"), eq("offset", "y"), eq("bool", "z")))),
        ('sum{a="b"}', Selector("sum", (eq("a", "b"),))),
    ],
)
def test_parses_plain_series_selectors(text: str, expected: Selector) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        ("'a\"b'", 'a"b'),
        ('"a\'b"', "a'b"),
        (r'"back\\slash"', "back\\slash"),
        (r'"\a\b\f\n\r\t\v"', "\a\b\f\n\r\t\v"),
        (r'"\x41\101\u00e9\U0001F600"', "AAé😀"),
        (r'"\xc3\xa9"', "é"),
        (r'"\000"', "\x00"),
        (r"`raw \n \d+ 'and' \"`", r"raw \n \d+ 'and' \""),
        ("`multi\nline`", "multi\nline"),
        ('"é漢字"', "é漢字"),
        ('""', ""),
    ],
)
def test_unescapes_values_like_prometheus(literal: str, value: str) -> None:
    assert parse_selector(f"m{{a={literal}}}") == Selector("m", (eq("a", value),))


@pytest.mark.parametrize(
    ("text", "problem", "offset"),
    [
        ("", "expected a metric name", 0),
        ('{a="b"}', "missing metric name", 0),
        ('  {job="x"}', "missing metric name", 2),
        ("1", "expected a metric name", 0),
        ("rate(m[5m])", "function calls are not allowed", 4),
        ('sum(m{a="b"})', "function calls are not allowed", 3),
        ("m[5m]", "range selectors are not allowed", 1),
        ("m offset 5m", "offset modifiers are not allowed", 2),
        ('m{a="b"} @ 100', "@ modifiers are not allowed", 9),
        ("m # comment", "comments are not allowed", 2),
        ('m{a="b"} or vector(1)', "one series selector only", 9),
        ("m + 1", "no operators", 2),
        ("m n", "no second selector", 2),
        ('m{a="b"}{c="d"}', "no second selector", 8),
        ('m{__name__="x"}', "__name__ matchers are not allowed", 2),
        ('m{a="b}', "unterminated string", 4),
        ("m{a='b}", "unterminated string", 4),
        ("m{a=`b}", "unterminated string", 4),
        ('m{a="b\nc"}', "unterminated string", 4),
        ('m{a="\\', "ends in a backslash", 5),
        (r'm{a="\q"}', r"invalid escape sequence \q", 5),
        (r"""m{a="\'"}""", r"invalid escape sequence \'", 5),
        (r"""m{a='\"'}""", r"invalid escape sequence \"", 5),
        (r'm{a="\x4"}', r"invalid escape sequence \x4", 5),
        (r'm{a="\u12"}', r"invalid escape sequence \u12", 5),
        (r'm{a="\ud800"}', "not a valid Unicode code point", 5),
        (r'm{a="\U00110000"}', "not a valid Unicode code point", 5),
        (r'm{a="\400"}', "larger than one byte", 5),
        (r'm{a="\xff"}', "not valid UTF-8", 4),
        ('m{a="\ud800"}', "lone surrogate", 5),
        ('m{a=~"("}', "regular expression for label 'a' does not compile", 5),
        ('m{a!~"[z-a]"}', "regular expression for label 'a' does not compile", 5),
        ("m{a=b}", "expected a quoted string", 4),
        ('m{a=="b"}', "expected a quoted string", 4),
        ("m{a}", "expected one of = != =~ !~", 3),
        ('m{a="b" c="d"}', "expected ',' or '}'", 8),
        ('m{a="b",,}', "expected a label name", 8),
        ('m{1a="b"}', "expected a label name", 2),
        ('m{a-b="c"}', "expected one of = != =~ !~", 3),
        ('m{a="b"', "expected ',' or '}'", 7),
        ("Inf", "PromQL keyword", 0),
        ('bool{a="b"}', "PromQL keyword", 0),
        ("m-x", "no operators", 1),
    ],
)
def test_rejects_anything_but_one_plain_selector(text: str, problem: str, offset: int) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    message = str(caught.value)
    assert problem in message
    assert f"at offset {offset}" in message
    assert repr(text) in message


def test_renders_bare_metric_without_braces() -> None:
    assert render_selector(Selector("up")) == "up"


def test_renders_values_double_quoted_whatever_quotes_the_user_wrote() -> None:
    selector = parse_selector('m{a=\'x"y\', b=~`\\d+`, c!="\\u00e9"}')
    assert render_selector(selector) == r'm{a="x\"y",b=~"\\d+",c!="é"}'


def test_appends_suffix_and_forced_matchers_after_the_users() -> None:
    selector = parse_selector('http_request_duration_seconds{job="api"}')
    rendered = render_selector(selector, suffix="_bucket", extra=(eq("namespace", "team-a"), eq("le", "0.3")))
    assert rendered == 'http_request_duration_seconds_bucket{job="api",namespace="team-a",le="0.3"}'


def test_forced_matcher_cannot_be_escaped_by_a_users_matcher_on_the_same_label() -> None:
    selector = parse_selector('m{namespace="victim"}')
    rendered = render_selector(selector, extra=(eq("namespace", "tenant"),))
    assert as_seen_by_promql_parser(rendered).matchers == (
        eq("namespace", "victim"),
        eq("namespace", "tenant"),
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('a"b', r'"a\"b"'),
        ("a\\b", r'"a\\b"'),
        ("line\nbreak", r'"line\nbreak"'),
        ("tab\tcr\r", r'"tab\x09cr\x0d"'),
        ("nul\x00del\x7f", r'"nul\x00del\x7f"'),
        ("rtl\u202eltr\u200f", r'"rtl\u202eltr\u200f"'),
        ("nbsp\u00a0", r'"nbsp\u00a0"'),
        ("replacement\ufffd", r'"replacement\ufffd"'),
        ("tag\U000e0041", r'"tag\U000e0041"'),
        ("émoji😀 漢字 `'", '"émoji😀 漢字 `\'"'),
    ],
)
def test_quote_escapes_everything_that_is_not_plainly_printable(value: str, quoted: str) -> None:
    assert quote(value) == quoted


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        (Selector('m{a="b"} or vector(1)'), "not a valid metric name"),
        (Selector("m", (eq('a="b"} or vector(1) #', "x"),)), "not a plain label name"),
        (Selector("m", (eq("__name__", "other"),)), "not a plain label name"),
        (Selector("m", (eq("a", "lone \ud800"),)), "lone surrogate"),
        (Selector("on"), "PromQL keyword"),
    ],
)
def test_render_refuses_what_it_cannot_quote(selector: Selector, problem: str) -> None:
    with pytest.raises(SelectorError, match=problem):
        render_selector(selector)


def test_render_refuses_a_suffix_that_makes_an_invalid_name() -> None:
    with pytest.raises(SelectorError, match="not a valid metric name"):
        render_selector(Selector("m"), suffix="{}")


INJECTION_SELECTORS: list[tuple[str, Selector | None]] = [
    ('m{a="x"} or vector(1)', None),
    ('m{a="x"} or vector(1) #"}', None),
    ('m{a="x"}} or vector(1) #"}', None),
    ("m{a='x'} or vector(1)", None),
    ("m{a=`x`} or on() vector(1)", None),
    (r'm{a="x\\"} or vector(1) #"}', None),
    ('m{a="x\n"} or vector(1)', None),
    ('m{a="x"}\n or vector(1)', None),
    ('m{a="x"}\x00', None),
    ('m\x00{a="x"}', None),
    ('m{a\x00="x"}', None),
    ('m{a="x"};drop', None),
    ('m{a="x"}[5m]', None),
    ('m{a="x"} offset 1w', None),
    ('m{a="x", __name__="secret"}', None),
    ('{__name__="secret"}', None),
    ('m{a="x"}#', None),
    ("m{a=`x`} # `", None),
    ('m{a="\u202e"} or vector(1)', None),
    ('m{a=~".*"} unless m', None),
    ('m{a="x"} / on() group_left m', None),
    (r'm{a="x\\\"} or vector(1) #"}', Selector("m", (eq("a", r"x\"} or vector(1) #"),))),
    (r'm{a="x\"} or vector(1) #"}', Selector("m", (eq("a", 'x"} or vector(1) #'),))),
    (r'm{a="\"} or vector(1) #"}', Selector("m", (eq("a", '"} or vector(1) #'),))),
    (r"""m{a='"} or vector(1) #'}""", Selector("m", (eq("a", '"} or vector(1) #'),))),
    ('m{a=`"} or vector(1) #`}', Selector("m", (eq("a", '"} or vector(1) #'),))),
    (r'm{a=`\\"} or vector(1)`}', Selector("m", (eq("a", r'\\"} or vector(1)'),))),
    (r'm{a="\u202e} or vector(1)"}', Selector("m", (eq("a", "\u202e} or vector(1)"),))),
    ("m{a=`line\nbreak`}", Selector("m", (eq("a", "line\nbreak"),))),
    (r'm{a="nul\x00"}', Selector("m", (eq("a", "nul\x00"),))),
]
"""Whole selectors an SLO author might submit to break out of the selector: rejected (None), or read
with the attack as a literal label value."""

INJECTION_VALUES = [
    '"} or vector(1) #',
    "'} or vector(1) #",
    "`} or vector(1) #",
    '\\"} or vector(1) #',
    '\\\\"} or vector(1) #',
    "\\",
    '"',
    "{}",
    "}",
    '"}',
    "line\nbreak} or vector(1)",
    "\r\n",
    "nul\x00byte",
    "\x1b[31mred",
    "rtl\u202e} or vector(1)\u202c",
    "zero\u200bwidth",
    "bom\ufeff",
    "replacement\ufffd",
    "é漢字😀",
    "\\x41\\u0041",
    "`backticks`",
    "\\`",
    "a\\.b",
    "\t",
    "",
]
"""Label values (unescaped) that must come out of render and back through both parsers unchanged."""


@pytest.mark.parametrize(("text", "expected"), INJECTION_SELECTORS)
def test_injection_selectors_are_rejected_or_kept_literal(text: str, expected: Selector | None) -> None:
    if expected is None:
        with pytest.raises(SelectorError):
            parse_selector(text)
    else:
        assert parse_selector(text) == expected
        assert_renders_safely(expected)


@pytest.mark.parametrize("value", INJECTION_VALUES)
@pytest.mark.parametrize("op", list(MatchOp))
def test_injection_values_round_trip_exactly(value: str, op: MatchOp) -> None:
    if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
        value = re.escape(value)
    assert_renders_safely(Selector("m", (LabelMatcher("a", op, value), eq("b", value))))


@pytest.mark.parametrize("value", INJECTION_VALUES)
@pytest.mark.parametrize("quote_char", ['"', "'", "`"])
def test_user_written_injection_values_either_fail_or_stay_one_selector(value: str, quote_char: str) -> None:
    text = f"m{{a={quote_char}{value}{quote_char}}}"
    try:
        selector = parse_selector(text)
    except SelectorError:
        return
    assert_renders_safely(selector)
    assert selector.metric == "m"
    assert [matcher.name for matcher in selector.matchers] == ["a"]


metric_names = st.from_regex(METRIC_NAME, fullmatch=True).filter(
    lambda name: name.lower() not in {"atan2", "on", "ignoring", "group_left", "group_right", "bool", "inf", "nan"}
)
label_names = st.from_regex(LABEL_NAME, fullmatch=True).filter(lambda name: name != "__name__")
literal_matchers = st.builds(
    LabelMatcher, name=label_names, op=st.sampled_from([MatchOp.EQUAL, MatchOp.NOT_EQUAL]), value=st.text()
)
regex_matchers = st.builds(
    LabelMatcher,
    name=label_names,
    op=st.sampled_from([MatchOp.REGEX, MatchOp.NOT_REGEX]),
    value=st.one_of(
        # UTF-8 only: a lone surrogate is refused on purpose (see the lone-surrogate cases above).
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\\()[]{}?*+|^$.")),
        st.sampled_from([r"5..", r"\d+", r"a\.b|c\\d", r"(?i)get|post", r"[\[\]]", r"\"quoted\""]),
    ),
)
selectors = st.builds(
    Selector, metric=metric_names, matchers=st.tuples(*[st.one_of(literal_matchers, regex_matchers)] * 3)
) | st.builds(Selector, metric=metric_names, matchers=st.lists(literal_matchers, max_size=3).map(tuple))


@settings(deadline=None)
@given(selectors)
def test_render_then_parse_is_the_identity_and_promql_parser_agrees(selector: Selector) -> None:
    assert_renders_safely(selector)


@settings(deadline=None)
@given(selectors, st.text())
def test_forced_matchers_survive_any_user_value(selector: Selector, tenant: str) -> None:
    forced = eq("namespace", tenant)
    rendered = render_selector(selector, extra=(forced,))
    seen = as_seen_by_promql_parser(rendered)
    assert seen.matchers[-1] == forced
    assert seen.matchers[:-1] == selector.matchers


@pytest.mark.prometheus
def test_rendered_injection_values_parse_in_prometheus_itself(
    prometheus_parses: Callable[[Sequence[str]], None],
) -> None:
    selectors = [
        Selector("m", (eq("a", value), LabelMatcher("b", MatchOp.REGEX, re.escape(value))))
        for value in INJECTION_VALUES
    ]
    prometheus_parses([f"sum(rate({render_selector(selector)}[5m]))" for selector in selectors])


@pytest.mark.parametrize(
    ("regex", "named"),
    [
        ("(?=x)", "group syntax"),
        ("(?<!a)b", "group syntax"),
        (r"(a)\1", "backreference"),
        ("(?>a)", "group syntax"),
        ("x*+", "possessive"),
        ("x{2}+", "possessive"),
        (r"a\Z", "\\Z"),
        ("(?x)a b", "group syntax"),
        ("a{1001}", "above 1000"),
        ("(?#note)a", "group syntax"),
        ("a{,3}", "{,n}"),
    ],
)
def test_regexes_only_python_understands_are_rejected_naming_the_construct(regex: str, named: str) -> None:
    with pytest.raises(SelectorError, match="RE2") as raised:
        parse_selector(f"m{{a=~{json.dumps(regex)}}}")
    assert named in str(raised.value)


@pytest.mark.parametrize(
    "regex", ["5..", "(?i)get|post", "(?s:a.b)", "(?P<code>5)..", r"a\.b", "[^]a]+", "[(?=]", "x{2,1000}", "(a|b)*?c"]
)
def test_regexes_re2_accepts_are_kept(regex: str) -> None:
    assert re2_incompatibility(regex) is None
