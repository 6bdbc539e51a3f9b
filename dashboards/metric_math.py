"""CloudWatch metric math, evaluated locally over the series GetMetricData returned (moto evaluates none).

A small tokenizer and a precedence-climbing parser turn an expression into a tree; the tree is evaluated over
time series keyed by timestamp. Nothing is handed to Python's `eval`.

Semantics, as CloudWatch documents or is observed to behave:

- Arithmetic (`+ - * / ^`) between a time series and a number applies to every datapoint. Between two time series
  the result has a datapoint wherever either has one, and a value missing on one side counts as 0 (what CloudWatch
  does: `used / (used + free)` with `free` missing is `used / used`). Results that are not finite (division by 0)
  are dropped, as CloudWatch returns no datapoint for them.
- Comparisons (`< <= > >= == !=`) and logic (`AND`/`&&`, `OR`/`||`, `NOT`/`!`) give 1 or 0.
- `PERIOD(m)` is the period of `m` in seconds (a number). `FILL(m, value | REPEAT | LINEAR)` fills the timestamps
  of the query's range where `m` has no datapoint; a series without any datapoint in the range stays empty
  (nothing to fill from). `IF(condition, a[, b])` picks per timestamp; without `b`, false gives no datapoint.
- `SUM`, `AVG`, `MIN`, `MAX`, `STDDEV` of one time series are a number; of an array (`[m1, m2]`, `METRICS()`)
  a time series, per timestamp over the members that have a datapoint there.
- `ABS`, `CEIL`, `FLOOR`, `SQRT`, `LOG`, `LOG10`, `EXP` per datapoint; `DIFF` and `RATE` between consecutive
  datapoints (RATE per second); `DATAPOINT_COUNT` and `FIRST`/`LAST` as CloudWatch defines them.

Anything else (SEARCH inside math, ANOMALY_DETECTION_BAND, INSIGHT_RULE_METRIC, ...) raises `Unsupported`, so the
caller can say that the expression was not evaluated rather than draw something wrong.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias


class MathError(ValueError):
    """The expression cannot be evaluated: bad syntax, an unknown id, wrong arguments."""


class Unsupported(MathError):
    """A function CloudWatch has and this evaluator does not."""


@dataclass(frozen=True)
class TimeSeries:
    """Datapoints by timestamp (in ascending order) and the period they aggregate."""

    points: Mapping[datetime, float]
    period: int

    @classmethod
    def of(cls, points: Mapping[datetime, float], period: int) -> TimeSeries:
        return cls({t: points[t] for t in sorted(points) if math.isfinite(points[t])}, period)

    @property
    def timestamps(self) -> list[datetime]:
        return list(self.points)

    @property
    def values(self) -> list[float]:
        return list(self.points.values())


@dataclass(frozen=True)
class Array:
    """Several time series, as `[m1, m2]` or `METRICS()` give; `labels` name the members."""

    members: tuple[TimeSeries, ...]
    labels: tuple[str, ...]


Value: TypeAlias = float | TimeSeries | Array
Lookup: TypeAlias = Callable[[str], TimeSeries]
Grid: TypeAlias = Callable[[int], Sequence[datetime]]


# --- Tokens ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<operator><=|>=|==|!=|&&|\|\||[-+*/^()<>,\[\]!])
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = {"AND": "&&", "OR": "||", "NOT": "!"}


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, string, operator, end
    text: str
    position: int


def tokenize(expression: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    stripped = expression.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise MathError(f"cannot read {stripped[position:]!r} (at {position})")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "name" and text.upper() in _KEYWORDS:
            kind, text = "operator", _KEYWORDS[text.upper()]
        tokens.append(Token(kind, text, match.start(kind)))
        position = match.end()
    tokens.append(Token("end", "", len(stripped)))
    return tokens


# --- Syntax tree -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Call:
    function: str
    arguments: tuple[Node, ...]


@dataclass(frozen=True)
class ArrayOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Unary:
    operator: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Node
    right: Node


Node: TypeAlias = Number | Text | Name | Call | ArrayOf | Unary | Binary

# Lowest to highest; `^` and the unary operators are handled below these.
_LEVELS: Final = (("||",), ("&&",), ("<", "<=", ">", ">=", "==", "!="), ("+", "-"), ("*", "/"))


class _Parser:
    def __init__(self, expression: str) -> None:
        self._tokens = tokenize(expression)
        self._index = 0

    def parse(self) -> Node:
        node = self._level(0)
        if self._peek().kind != "end":
            token = self._peek()
            raise MathError(f"unexpected {token.text!r} at {token.position}")
        return node

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _take(self, text: str | None = None) -> Token:
        token = self._peek()
        if text is not None and (token.kind != "operator" or token.text != text):
            found = token.text or "the end"
            raise MathError(f"expected {text!r} at {token.position}, found {found!r}")
        self._index += 1
        return token

    def _level(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self._unary()
        node = self._level(level + 1)
        while self._peek().kind == "operator" and self._peek().text in _LEVELS[level]:
            operator = self._take().text
            node = Binary(operator, node, self._level(level + 1))
        return node

    def _unary(self) -> Node:
        token = self._peek()
        if token.kind == "operator" and token.text in ("-", "+", "!"):
            self._take()
            operand = self._unary() if token.text != "!" else self._level(2)  # NOT binds looser than comparisons
            return Unary(token.text, operand)
        return self._power()

    def _power(self) -> Node:
        base = self._primary()
        if self._peek().kind == "operator" and self._peek().text == "^":
            self._take()
            return Binary("^", base, self._unary())  # right-associative: 2^3^2 = 2^9
        return base

    def _primary(self) -> Node:
        token = self._take()
        if token.kind == "number":
            return Number(float(token.text))
        if token.kind == "string":
            return Text(token.text[1:-1])
        if token.kind == "name":
            if self._peek().kind == "operator" and self._peek().text == "(":
                self._take("(")
                return Call(token.text.upper(), self._items(")"))
            return Name(token.text)
        if token.kind == "operator" and token.text == "(":
            node = self._level(0)
            self._take(")")
            return node
        if token.kind == "operator" and token.text == "[":
            return ArrayOf(self._items("]"))
        raise MathError(f"unexpected {token.text or 'end of expression'!r} at {token.position}")

    def _items(self, closing: str) -> tuple[Node, ...]:
        items: list[Node] = []
        if self._peek().kind == "operator" and self._peek().text == closing:
            self._take(closing)
            return ()
        while True:
            items.append(self._level(0))
            if self._peek().kind == "operator" and self._peek().text == ",":
                self._take(",")
                continue
            self._take(closing)
            return tuple(items)


def parse(expression: str) -> Node:
    """The syntax tree of a metric math expression; MathError if it is not one."""
    return _Parser(expression).parse()


def references(node: Node) -> set[str]:
    """The ids an expression reads (METRICS() reads every metric: not listed here)."""
    if isinstance(node, Name):
        return {node.id}
    if isinstance(node, Call):
        return set().union(*(references(argument) for argument in node.arguments))
    if isinstance(node, ArrayOf):
        return set().union(*(references(item) for item in node.items))
    if isinstance(node, Unary):
        return references(node.operand)
    if isinstance(node, Binary):
        return references(node.left) | references(node.right)
    return set()


# --- Evaluation --------------------------------------------------------------------------------------------


def _apply(operator: str, left: float, right: float) -> float:
    try:
        if operator == "+":
            return left + right
        if operator == "-":
            return left - right
        if operator == "*":
            return left * right
        if operator == "/":
            return left / right if right != 0 else math.nan
        if operator == "^":
            result = left**right
            return float(result) if isinstance(result, int | float) else math.nan  # a complex root
    except (OverflowError, ZeroDivisionError, ValueError):
        return math.nan
    comparisons: dict[str, Callable[[float, float], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "&&": lambda a, b: bool(a) and bool(b),
        "||": lambda a, b: bool(a) or bool(b),
    }
    return 1.0 if comparisons[operator](left, right) else 0.0


def _combine(operator: str, left: Value, right: Value) -> Value:
    if isinstance(left, Array) or isinstance(right, Array):
        if isinstance(left, Array) and isinstance(right, Array):
            if len(left.members) != len(right.members):
                raise MathError(f"arrays of {len(left.members)} and {len(right.members)} series cannot be combined")
            pairs = list(zip(left.members, right.members, strict=True))
            members = tuple(_series_op(operator, a, b) for a, b in pairs)
            return Array(members, left.labels)
        if isinstance(left, Array):
            return Array(tuple(_as_series(_combine(operator, m, right)) for m in left.members), left.labels)
        assert isinstance(right, Array)
        return Array(tuple(_as_series(_combine(operator, left, m)) for m in right.members), right.labels)
    if isinstance(left, TimeSeries) and isinstance(right, TimeSeries):
        return _series_op(operator, left, right)
    if isinstance(left, TimeSeries):
        assert isinstance(right, float)
        return TimeSeries.of({t: _apply(operator, v, right) for t, v in left.points.items()}, left.period)
    if isinstance(right, TimeSeries):
        return TimeSeries.of({t: _apply(operator, left, v) for t, v in right.points.items()}, right.period)
    return _apply(operator, left, right)


def _series_op(operator: str, left: TimeSeries, right: TimeSeries) -> TimeSeries:
    """Wherever either has a datapoint; a side without one counts as 0."""
    timestamps = set(left.points) | set(right.points)
    return TimeSeries.of(
        {t: _apply(operator, left.points.get(t, 0.0), right.points.get(t, 0.0)) for t in timestamps},
        max(left.period, right.period),
    )


def _as_series(value: Value) -> TimeSeries:
    if not isinstance(value, TimeSeries):
        raise MathError("expected a time series")
    return value


_ELEMENTWISE: Final[dict[str, Callable[[float], float]]] = {
    "ABS": abs,
    "CEIL": lambda v: float(math.ceil(v)),
    "FLOOR": lambda v: float(math.floor(v)),
    "SQRT": lambda v: math.sqrt(v) if v >= 0 else math.nan,
    "LOG": lambda v: math.log(v) if v > 0 else math.nan,
    "LOG10": lambda v: math.log10(v) if v > 0 else math.nan,
    "EXP": lambda v: math.exp(v) if v < 700 else math.nan,
}
_REDUCERS: Final[dict[str, Callable[[list[float]], float]]] = {
    "SUM": math.fsum,
    "AVG": statistics.fmean,
    "MIN": min,
    "MAX": max,
    "STDDEV": lambda values: statistics.pstdev(values) if len(values) > 1 else 0.0,
}
SUPPORTED_FUNCTIONS: Final = frozenset(
    {*_ELEMENTWISE, *_REDUCERS, "FILL", "PERIOD", "IF", "DIFF", "RATE", "DATAPOINT_COUNT", "FIRST", "LAST", "METRICS"}
)


class Evaluator:
    """Evaluates parsed expressions: `lookup` gives the series of an id, `grid` the range's timestamps per period,
    `metrics` the ids METRICS() returns (every metric of the widget, in order)."""

    def __init__(self, lookup: Lookup, grid: Grid, metrics: Sequence[str] = ()) -> None:
        self._lookup = lookup
        self._grid = grid
        self._metrics = tuple(metrics)

    def evaluate(self, node: Node) -> Value:
        if isinstance(node, Number):
            return node.value
        if isinstance(node, Name):
            return self._lookup(node.id)
        if isinstance(node, Text):
            raise MathError(f"a string ({node.value!r}) is not a value here")
        if isinstance(node, ArrayOf):
            members = [self.evaluate(item) for item in node.items]
            series = [member for member in members if isinstance(member, TimeSeries)]
            if len(series) != len(members):
                raise MathError("an array holds time series only")
            labels = tuple(item.id if isinstance(item, Name) else "" for item in node.items)
            return Array(tuple(series), labels)
        if isinstance(node, Unary):
            operand = self.evaluate(node.operand)
            if node.operator == "!":
                return _combine("==", operand, 0.0)
            return _combine("*", operand, -1.0) if node.operator == "-" else operand
        if isinstance(node, Binary):
            return _combine(node.operator, self.evaluate(node.left), self.evaluate(node.right))
        return self._call(node)

    def _call(self, node: Call) -> Value:
        name, arguments = node.function, node.arguments
        if name not in SUPPORTED_FUNCTIONS:
            raise Unsupported(f"{name}() is not evaluated locally")
        if name == "METRICS":
            return self._metrics_array(arguments)
        if name == "FILL":
            return self._fill(arguments)
        if name == "IF":
            return self._if(arguments)
        self._arity(name, arguments, 1)
        value = self.evaluate(arguments[0])
        if name == "PERIOD":
            if isinstance(value, Array):
                raise MathError("PERIOD() takes one time series")
            return float(value.period) if isinstance(value, TimeSeries) else math.nan
        if isinstance(value, Array):
            return self._over_array(name, value)
        if isinstance(value, float):
            return _ELEMENTWISE[name](value) if name in _ELEMENTWISE else value
        return self._over_series(name, value)

    @staticmethod
    def _arity(name: str, arguments: Sequence[Node], count: int) -> None:
        if len(arguments) != count:
            raise MathError(f"{name}() takes {count} argument{'s' if count > 1 else ''}, got {len(arguments)}")

    def _metrics_array(self, arguments: Sequence[Node]) -> Array:
        if len(arguments) > 1 or (arguments and not isinstance(arguments[0], Text)):
            raise MathError("METRICS() takes nothing or one string")
        contains = arguments[0].value if arguments and isinstance(arguments[0], Text) else ""
        ids = [metric for metric in self._metrics if contains in metric]
        return Array(tuple(self._lookup(metric) for metric in ids), tuple(ids))

    def _over_series(self, name: str, series: TimeSeries) -> Value:
        if name in _ELEMENTWISE:
            return TimeSeries.of({t: _ELEMENTWISE[name](v) for t, v in series.points.items()}, series.period)
        values = series.values
        if name in _REDUCERS:
            return _REDUCERS[name](values) if values else math.nan
        if name == "DATAPOINT_COUNT":
            return float(len(values))
        if name in ("FIRST", "LAST"):
            return (values[0] if name == "FIRST" else values[-1]) if values else math.nan
        # DIFF, RATE: between consecutive datapoints, at the later one.
        timestamps = series.timestamps
        changes: dict[datetime, float] = {}
        for before, after in itertools.pairwise(timestamps):
            change = series.points[after] - series.points[before]
            seconds = (after - before).total_seconds()
            changes[after] = change if name == "DIFF" else change / seconds
        return TimeSeries.of(changes, series.period)

    def _over_array(self, name: str, array: Array) -> Value:
        if name in _ELEMENTWISE:
            return Array(tuple(_as_series(self._over_series(name, member)) for member in array.members), array.labels)
        if name not in _REDUCERS:
            raise MathError(f"{name}() takes one time series, not an array")
        if not array.members:
            return TimeSeries({}, 0)
        timestamps = sorted(set().union(*(member.points for member in array.members)))
        combined = {
            t: _REDUCERS[name]([member.points[t] for member in array.members if t in member.points]) for t in timestamps
        }
        return TimeSeries.of(combined, max(member.period for member in array.members))

    def _fill(self, arguments: Sequence[Node]) -> Value:
        self._arity("FILL", arguments, 2)
        target = self.evaluate(arguments[0])
        how = arguments[1]
        mode = how.id.upper() if isinstance(how, Name) and how.id.upper() in ("REPEAT", "LINEAR") else None
        if isinstance(target, Array):
            return Array(tuple(self._fill_series(m, how, mode) for m in target.members), target.labels)
        if not isinstance(target, TimeSeries):
            raise MathError("FILL() fills a time series")
        return self._fill_series(target, how, mode)

    def _fill_series(self, series: TimeSeries, how: Node, mode: str | None) -> TimeSeries:
        if not series.points:
            return series  # nothing to fill from: CloudWatch returns no datapoints either
        grid = [t for t in self._grid(series.period) if t not in series.points]
        if mode is None:
            value = self.evaluate(how)
            if isinstance(value, Array):
                raise MathError("FILL() fills with a number or a time series")
            filled = dict(series.points)
            for t in grid:
                fill = value if isinstance(value, float) else value.points.get(t)
                if fill is not None:
                    filled[t] = fill
            return TimeSeries.of(filled, series.period)
        known = series.timestamps
        filled = dict(series.points)
        for t in grid:
            before = [k for k in known if k < t]
            after = [k for k in known if k > t]
            if mode == "REPEAT" or not before or not after:
                source = before[-1] if before else after[0]
                filled[t] = series.points[source]
            else:
                left, right = before[-1], after[0]
                share = (t - left).total_seconds() / (right - left).total_seconds()
                filled[t] = series.points[left] + share * (series.points[right] - series.points[left])
        return TimeSeries.of(filled, series.period)

    def _if(self, arguments: Sequence[Node]) -> Value:
        if len(arguments) not in (2, 3):
            raise MathError(f"IF() takes 2 or 3 arguments, got {len(arguments)}")
        condition, when_true = self.evaluate(arguments[0]), self.evaluate(arguments[1])
        when_false: Value | None = self.evaluate(arguments[2]) if len(arguments) == 3 else None
        if isinstance(condition, Array) or any(isinstance(v, Array) for v in (when_true, when_false)):
            raise Unsupported("IF() over arrays is not evaluated locally")
        if isinstance(condition, float):
            chosen = when_true if condition else when_false
            return chosen if chosen is not None else TimeSeries({}, 0)

        def at(value: Value | None, t: datetime) -> float | None:
            if value is None or isinstance(value, float):
                return value
            assert isinstance(value, TimeSeries)
            return value.points.get(t)

        picked: dict[datetime, float] = {}
        for t, flag in condition.points.items():
            value = at(when_true if flag else when_false, t)
            if value is not None:
                picked[t] = value
        return TimeSeries.of(picked, condition.period)


def evaluate(
    expression: str | Node, lookup: Lookup | Mapping[str, TimeSeries], grid: Grid, metrics: Sequence[str] = ()
) -> Value:
    """Parse (if needed) and evaluate one expression."""
    node = parse(expression) if isinstance(expression, str) else expression
    if isinstance(lookup, Mapping):
        known = lookup

        def find(identifier: str) -> TimeSeries:
            if identifier not in known:
                raise MathError(f"no metric or expression with id {identifier!r}")
            return known[identifier]

        return Evaluator(find, grid, metrics).evaluate(node)
    return Evaluator(lookup, grid, metrics).evaluate(node)
