"""Parse and render PromQL series selectors, so that no user string is ever spliced raw into a query.

A selector from an SLO is parsed into a `Selector` (metric name plus matchers, values unescaped), and every
query slo-guard sends is rendered from that structure with each value re-quoted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from slo_guard.domain.model import LabelMatcher, MatchOp, Selector

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_RESERVED_METRIC_NAMES = frozenset({"atan2", "on", "ignoring", "group_left", "group_right", "bool", "inf", "nan"})
"""Words PromQL never reads as a metric name, in any letter case (checked against Prometheus 2.42)."""

_OPERATORS = tuple(sorted(MatchOp, key=lambda op: -len(op.value)))
"""Longest first, so `=~` is not read as `=`."""

_SPACE = " \t\n\r"
"""What the PromQL lexer treats as whitespace."""

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_NUMERIC_ESCAPES = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}
"""Escape letter -> (digit count, base); octal escapes are three digits after the backslash."""

_DIGITS = {8: frozenset("01234567"), 16: frozenset("0123456789abcdefABCDEF")}

_RENDER_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}

_TRAILING_HINTS = (
    ("(", "function calls are not allowed"),
    ("[", "range selectors are not allowed"),
    ("@", "@ modifiers are not allowed"),
    ("#", "comments are not allowed"),
    ("offset", "offset modifiers are not allowed"),
)


class SelectorError(ValueError):
    """Text that is not exactly one plain series selector, or a selector that cannot be rendered safely."""


def parse_selector(text: str) -> Selector:
    """Parse exactly one instant-vector series selector: `metric` or `metric{label="value", ...}`."""
    return _Parser(text).selector()


def render_selector(selector: Selector, *, suffix: str = "", extra: Sequence[LabelMatcher] = ()) -> str:
    """Render `metric{l="v",...}` with every value re-quoted; `extra` matchers come after the user's."""
    metric = selector.metric + suffix
    _check_metric_name(metric)
    matchers = (*selector.matchers, *extra)
    if not matchers:
        return metric
    return metric + "{" + ",".join(_render_matcher(matcher) for matcher in matchers) + "}"


def quote(value: str) -> str:
    """A double-quoted PromQL string literal that Prometheus reads back as exactly `value`."""
    return '"' + "".join(_escape_char(char) for char in value) + '"'


def _render_matcher(matcher: LabelMatcher) -> str:
    if not LABEL_NAME.fullmatch(matcher.name) or matcher.name == "__name__":
        raise SelectorError(f"cannot render label name {matcher.name!r}: not a plain label name")
    return f"{matcher.name}{matcher.op.value}{quote(matcher.value)}"


def _check_metric_name(metric: str) -> None:
    if not METRIC_NAME.fullmatch(metric):
        raise SelectorError(f"cannot render metric name {metric!r}: not a valid metric name")
    if metric.lower() in _RESERVED_METRIC_NAMES:
        raise SelectorError(f"cannot render metric name {metric!r}: it is a PromQL keyword, not a metric name")


def _escape_char(char: str) -> str:
    if char in _RENDER_ESCAPES:
        return _RENDER_ESCAPES[char]
    code = ord(char)
    if 0xD800 <= code < 0xE000:
        raise SelectorError(f"cannot render label value with lone surrogate {char!r}: not valid UTF-8")
    # Prometheus's lexer rejects a literal U+FFFD as "invalid UTF-8 rune", so it is escaped too.
    if char.isprintable() and char != "\ufffd":
        return char
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class _Parser:
    """Recursive-descent parser over one selector string; `offset` is the next character to read."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0

    def selector(self) -> Selector:
        self._check_encodable()
        self._skip_space()
        metric = self._metric_name()
        self._skip_space()
        matchers: tuple[LabelMatcher, ...] = ()
        if self._peek() == "{":
            matchers = self._matchers()
            self._skip_space()
        if self.offset < len(self.text):
            raise self._error(_trailing_problem(self.text[self.offset :]))
        return Selector(metric=metric, matchers=matchers)

    def _metric_name(self) -> str:
        if self._peek() == "{":
            raise self._error("missing metric name (a selector must start with one)")
        name = self._take(METRIC_NAME, "expected a metric name")
        if name.lower() in _RESERVED_METRIC_NAMES:
            raise self._error(f"{name!r} is a PromQL keyword, not a metric name", offset=self.offset - len(name))
        return name

    def _matchers(self) -> tuple[LabelMatcher, ...]:
        self.offset += 1  # the opening brace
        matchers: list[LabelMatcher] = []
        while True:
            self._skip_space()
            if self._peek() == "}":
                self.offset += 1
                return tuple(matchers)
            matchers.append(self._matcher())
            self._skip_space()
            if self._peek() == ",":
                self.offset += 1
            elif self._peek() != "}":
                raise self._error("expected ',' or '}' after a label matcher")

    def _matcher(self) -> LabelMatcher:
        start = self.offset
        name = self._take(LABEL_NAME, "expected a label name")
        if name == "__name__":
            raise self._error("__name__ matchers are not allowed (put the metric name first)", offset=start)
        self._skip_space()
        op = self._operator()
        self._skip_space()
        value_offset = self.offset
        value = self._string()
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            self._check_regex(name, value, value_offset)
        return LabelMatcher(name=name, op=op, value=value)

    def _operator(self) -> MatchOp:
        for op in _OPERATORS:
            if self.text.startswith(op.value, self.offset):
                self.offset += len(op.value)
                return op
        raise self._error("expected one of = != =~ !~")

    def _string(self) -> str:
        quote_char = self._peek()
        if quote_char not in ('"', "'", "`"):
            raise self._error("expected a quoted string (\"...\", '...' or `...`)")
        start = self.offset
        self.offset += 1
        if quote_char == "`":
            return self._raw_string(start)
        try:
            return self._quoted_bytes(quote_char, start).decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("the escaped string is not valid UTF-8", offset=start) from None

    def _raw_string(self, start: int) -> str:
        end = self.text.find("`", self.offset)
        if end < 0:
            raise self._error("unterminated string", offset=start)
        value = self.text[self.offset : end]
        self.offset = end + 1
        return value

    def _quoted_bytes(self, quote_char: str, start: int) -> bytes:
        """Read up to the closing quote; escapes produce bytes as in Go (`\\xc3\\xa9` is one é)."""
        value = bytearray()
        while True:
            char = self._peek()
            if char in ("", "\n"):
                raise self._error("unterminated string", offset=start)
            self.offset += 1
            if char == quote_char:
                return bytes(value)
            value += self._escape(quote_char) if char == "\\" else char.encode()

    def _escape(self, quote_char: str) -> bytes:
        escape_offset = self.offset - 1
        letter = self._peek()
        self.offset += 1
        if letter in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[letter].encode()
        if letter == quote_char:
            return letter.encode()
        if letter in _NUMERIC_ESCAPES:
            digits, base = _NUMERIC_ESCAPES[letter]
            return self._numeric_escape(letter=letter, digits=digits, base=base, escape_offset=escape_offset)
        if letter and letter in _DIGITS[8]:
            self.offset -= 1
            return self._numeric_escape(letter="", digits=3, base=8, escape_offset=escape_offset)
        if not letter:
            raise self._error("unterminated string (it ends in a backslash)", offset=escape_offset)
        raise self._error(f"invalid escape sequence \\{letter}", offset=escape_offset)

    def _numeric_escape(self, *, letter: str, digits: int, base: int, escape_offset: int) -> bytes:
        chunk = self.text[self.offset : self.offset + digits]
        if len(chunk) < digits or not set(chunk) <= _DIGITS[base]:
            raise self._error(f"invalid escape sequence \\{letter}{chunk}", offset=escape_offset)
        self.offset += digits
        code = int(chunk, base)
        if letter in ("u", "U"):
            if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                raise self._error(f"escape \\{letter}{chunk} is not a valid Unicode code point", offset=escape_offset)
            return chr(code).encode()
        if code > 0xFF:
            raise self._error(f"octal escape \\{chunk} is larger than one byte", offset=escape_offset)
        return bytes([code])

    def _check_regex(self, name: str, value: str, value_offset: int) -> None:
        try:
            re.compile(value)
        except re.error as error:
            raise self._error(
                f"the regular expression for label {name!r} does not compile ({error})", offset=value_offset
            ) from None
        unsupported = re2_incompatibility(value)
        if unsupported is not None:
            raise self._error(
                f"the regular expression for label {name!r} uses {unsupported}, which Prometheus (RE2) refuses",
                offset=value_offset,
            )

    def _check_encodable(self) -> None:
        for offset, char in enumerate(self.text):
            if 0xD800 <= ord(char) < 0xE000:
                raise self._error("lone surrogate, not valid UTF-8", offset=offset)

    def _take(self, pattern: re.Pattern[str], problem: str) -> str:
        match = pattern.match(self.text, self.offset)
        if match is None:
            raise self._error(problem)
        self.offset = match.end()
        return match.group()

    def _peek(self) -> str:
        return self.text[self.offset : self.offset + 1]

    def _skip_space(self) -> None:
        while self._peek() and self._peek() in _SPACE:
            self.offset += 1

    def _error(self, problem: str, *, offset: int | None = None) -> SelectorError:
        at = self.offset if offset is None else offset
        rest = self.text[at:]
        found = repr(rest[:20] + ("..." if len(rest) > 20 else "")) if rest else "end of input"
        return SelectorError(f"invalid selector {self.text!r}: {problem}; found {found} at offset {at}")


def _trailing_problem(rest: str) -> str:
    for prefix, problem in _TRAILING_HINTS:
        if rest.startswith(prefix):
            return problem
    return "expected the end of the selector (one series selector only: no operators, no second selector)"


_RE2_GROUP_FLAGS = re.compile(r"\(\?[imsU-]*[:)]")
_QUANTIFIER_COUNT = re.compile(r"\{(\d*),?(\d*)\}")
_RE2_MAX_REPEAT = 1000


def re2_incompatibility(pattern: str) -> str | None:
    """What in a regex Python's `re` accepts but Prometheus's RE2 refuses or reads differently; None if nothing.

    Lookarounds, backreferences, atomic groups, comments, conditionals, possessive quantifiers, flags other than
    i, m, s and U, `\\Z`, `\\G`, `\\N`, `{,n}` and repeat counts above 1000.
    """
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            problem = _escape_problem(pattern[index + 1 : index + 2])
            if problem is not None and not (in_class and problem == "a backreference"):
                return problem
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index = _class_body_start(pattern, index + 1)
            continue
        else:
            problem = _outside_class_problem(pattern, index)
            if problem is not None:
                return problem
        index += 1
    return None


def _class_body_start(pattern: str, index: int) -> int:
    """Skips a class's leading `^` and a `]` right after it, which are literal there."""
    if pattern.startswith("^", index):
        index += 1
    if pattern.startswith("]", index):
        index += 1
    return index


def _escape_problem(escaped: str) -> str | None:
    if escaped in {"Z", "G", "N"}:
        return f"\\{escaped}"
    if escaped.isdigit() and escaped != "0":
        return "a backreference"
    return None


def _outside_class_problem(pattern: str, index: int) -> str | None:
    char = pattern[index]
    if char == "(" and pattern.startswith("(?", index):
        if pattern.startswith("(?P<", index) and not pattern.startswith("(?P=", index):
            return None
        if _RE2_GROUP_FLAGS.match(pattern, index):
            return None
        return f"the group syntax {pattern[index : index + 4]!r}"
    if char in "*+?}" and pattern[index + 1 : index + 2] == "+" and _is_quantifier_end(pattern, index):
        return "a possessive quantifier"
    if char == "{":
        count = _QUANTIFIER_COUNT.match(pattern, index)
        if count is not None:
            low, high = count.group(1), count.group(2)
            if not low and "," in count.group(0):
                return "`{,n}` (RE2 reads it as literal text)"
            if any(bound and int(bound) > _RE2_MAX_REPEAT for bound in (low, high)):
                return f"a repeat count above {_RE2_MAX_REPEAT}"
    return None


def _is_quantifier_end(pattern: str, index: int) -> bool:
    """Whether the `*`, `+`, `?` or `}` at `index` ends a quantifier (a `}` must close `{n}`/`{n,m}`)."""
    if pattern[index] != "}":
        return True
    opening = pattern.rfind("{", 0, index)
    return opening >= 0 and _QUANTIFIER_COUNT.fullmatch(pattern, opening, index + 1) is not None
