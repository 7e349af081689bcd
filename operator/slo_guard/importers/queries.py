"""Read the few PromQL shapes an imported SLI may have; anything else is refused, never approximated.

Accepted, with any spacing (and any case in `sum`, `by` and `without`, as PromQL's keywords; function names have
one case only):

    sum(rate(SELECTOR[RANGE]))                 (or increase; `by (...)`/`without (...)` before or after the call)
    sum(rate(A[RANGE])) - sum(rate(B[RANGE]))  (a histogram's _count minus one of its buckets)

and either wrapped in parentheses. The range is kept as written; each tool's importer decides what it may be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slo_guard.domain.model import Selector
from slo_guard.domain.selectors import LABEL_NAME, METRIC_NAME, SelectorError, parse_selector

_FUNCTIONS = ("rate", "increase")
"""rate and increase differ only by the constant factor of the range, so a ratio of either is the same."""
_GROUPING = re.compile(r"(by|without)\b", re.IGNORECASE)
_QUOTES = "\"'`"
_SPACE = " \t\n\r"


class QueryFormError(ValueError):
    """A query that is not one of the accepted shapes; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Grouping:
    """A `by (...)` or `without (...)` clause; label order does not matter."""

    keyword: str
    labels: frozenset[str]

    def __str__(self) -> str:
        return f"{self.keyword} ({', '.join(sorted(self.labels))})"


@dataclass(frozen=True, slots=True)
class SumRate:
    """`sum(FUNCTION(selector[range]))`, optionally grouped."""

    function: str
    selector: Selector
    range: str
    grouping: Grouping | None


@dataclass(frozen=True, slots=True)
class Difference:
    """`minuend - subtrahend`: the only arithmetic accepted, for a histogram's slow requests."""

    minuend: SumRate
    subtrahend: SumRate

    @property
    def terms(self) -> tuple[SumRate, SumRate]:
        return (self.minuend, self.subtrahend)


Query = SumRate | Difference


def parse_query(text: str) -> Query:
    """One accepted query; QueryFormError names the first thing that is not."""
    return _Parser(text).query()


def terms(query: Query) -> tuple[SumRate, ...]:
    return query.terms if isinstance(query, Difference) else (query,)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0

    def query(self) -> Query:
        result = self._expression()
        self._skip_space()
        if self.offset < len(self.text):
            raise self._error("expected the end of the query")
        return result

    def _expression(self) -> Query:
        left = self._operand()
        self._skip_space()
        if not self._peek("-"):
            return left
        self.offset += 1
        right = self._operand()
        if not isinstance(left, SumRate) or not isinstance(right, SumRate):
            raise self._error("only one subtraction of two sums is accepted")
        return Difference(left, right)

    def _operand(self) -> Query:
        self._skip_space()
        if self._peek("("):
            self.offset += 1
            inner = self._expression()
            self._expect(")")
            return inner
        return self._sum()

    def _sum(self) -> SumRate:
        self._keyword(("sum",), "expected sum(...)", any_case=True)
        grouping = self._grouping()
        self._expect("(")
        function = self._keyword(_FUNCTIONS, "expected rate(...) or increase(...) inside sum")
        self._expect("(")
        selector = self._selector()
        self._expect("[")
        range_text = self._range()
        self._expect(")")
        self._expect(")")
        after = self._grouping()
        if grouping is not None and after is not None:
            raise self._error("two grouping clauses on one sum")
        return SumRate(function, selector, range_text, grouping or after)

    def _grouping(self) -> Grouping | None:
        self._skip_space()
        match = _GROUPING.match(self.text, self.offset)
        if match is None:
            return None
        self.offset = match.end()
        self._expect("(")
        labels: list[str] = []
        while True:
            self._skip_space()
            if self._peek(")"):
                self.offset += 1
                return Grouping(match.group(1).lower(), frozenset(labels))
            labels.append(self._take(LABEL_NAME, "expected a label name"))
            self._skip_space()
            if self._peek(","):
                self.offset += 1
            elif not self._peek(")"):
                raise self._error("expected ',' or ')' in the grouping")

    def _keyword(self, words: tuple[str, ...], problem: str, *, any_case: bool = False) -> str:
        self._skip_space()
        match = METRIC_NAME.match(self.text, self.offset)
        word = "" if match is None else match.group().lower() if any_case else match.group()
        if match is None or word not in words:
            raise self._error(problem)
        self.offset = match.end()
        return word

    def _selector(self) -> Selector:
        self._skip_space()
        start = self.offset
        self._take(METRIC_NAME, "expected a metric name")
        self._skip_space()
        if self._peek("{"):
            self._skip_braces()
        try:
            return parse_selector(self.text[start : self.offset])
        except SelectorError as err:
            raise QueryFormError(str(err)) from None

    def _skip_braces(self) -> None:
        """Past the matcher list, honouring quotes, so a `}` or `[` inside a label value ends nothing."""
        start = self.offset
        while self.offset < len(self.text):
            char = self.text[self.offset]
            self.offset += 1
            if char == "}":
                return
            if char in _QUOTES:
                self._skip_string(char)
        raise self._error("unterminated label matchers", offset=start)

    def _skip_string(self, quote: str) -> None:
        while self.offset < len(self.text):
            char = self.text[self.offset]
            self.offset += 2 if char == "\\" and quote != "`" else 1
            if char == quote:
                return

    def _range(self) -> str:
        end = self.text.find("]", self.offset)
        if end < 0:
            raise self._error("unterminated range")
        text = self.text[self.offset : end].strip()
        self.offset = end + 1
        return text

    def _expect(self, token: str) -> None:
        self._skip_space()
        if not self._peek(token):
            raise self._error(f"expected {token!r}")
        self.offset += len(token)

    def _take(self, pattern: re.Pattern[str], problem: str) -> str:
        match = pattern.match(self.text, self.offset)
        if match is None:
            raise self._error(problem)
        self.offset = match.end()
        return match.group()

    def _peek(self, token: str) -> bool:
        return self.text.startswith(token, self.offset)

    def _skip_space(self) -> None:
        while self.offset < len(self.text) and self.text[self.offset] in _SPACE:
            self.offset += 1

    def _error(self, problem: str, *, offset: int | None = None) -> QueryFormError:
        at = self.offset if offset is None else offset
        rest = self.text[at:]
        found = repr(rest[:20] + ("..." if len(rest) > 20 else "")) if rest else "the end"
        return QueryFormError(f"{problem}; found {found} at offset {at}")
