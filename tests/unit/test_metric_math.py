"""The local metric math evaluator (dashboards/metric_math.py): syntax, CloudWatch's semantics, and refusals."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from dashboards.metric_math import (
    Array,
    Binary,
    Call,
    MathError,
    Name,
    Number,
    TimeSeries,
    Unary,
    Unsupported,
    evaluate,
    parse,
    references,
)

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
PERIOD = 60


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def series(values: dict[int, float], period: int = PERIOD) -> TimeSeries:
    """Datapoints by minute after T0."""
    return TimeSeries.of({at(minute): value for minute, value in values.items()}, period)


def grid(period: int) -> list[datetime]:
    """A query range of ten minutes."""
    return [T0 + timedelta(seconds=period * n) for n in range(600 // period)]


def by_minute(value: object) -> dict[int, float]:
    assert isinstance(value, TimeSeries)
    return {int((t - T0).total_seconds() // 60): v for t, v in value.points.items()}


def run(expression: str, **inputs: TimeSeries) -> object:
    return evaluate(expression, inputs, grid, metrics=list(inputs))


# --- Syntax ----------------------------------------------------------------------------------------------------


def test_precedence_is_arithmetic_then_comparison_then_logic() -> None:
    assert parse("1 + 2 * 3") == Binary("+", Number(1), Binary("*", Number(2), Number(3)))
    assert parse("(1 + 2) * 3") == Binary("*", Binary("+", Number(1), Number(2)), Number(3))
    assert parse("a > 1 AND b < 2 || c") == Binary(
        "||", Binary("&&", Binary(">", Name("a"), Number(1)), Binary("<", Name("b"), Number(2))), Name("c")
    )
    assert parse("-2 ^ 2") == Unary("-", Binary("^", Number(2), Number(2)))
    assert parse("2 ^ 3 ^ 2") == Binary("^", Number(2), Binary("^", Number(3), Number(2)))


def test_function_names_are_case_insensitive_and_ids_are_not() -> None:
    assert parse("fill(Requests, 0)") == Call("FILL", (Name("Requests"), Number(0)))
    assert references(parse("FILL(requests,0) / PERIOD(requests) + m_2")) == {"requests", "m_2"}


@pytest.mark.parametrize("expression", ["m1 +", "(m1", "m1 m2", "FILL(m1,", "m1 $ 2", "", "[m1, ]"])
def test_malformed_expressions_are_refused(expression: str) -> None:
    with pytest.raises(MathError):
        parse(expression)


# --- Semantics -------------------------------------------------------------------------------------------------


def test_rate_per_second_from_a_sum_and_its_period() -> None:
    requests = series({0: 120, 1: 30})

    assert by_minute(run("requests / PERIOD(requests)", requests=requests)) == {0: 2.0, 1: 0.5}
    assert run("PERIOD(requests)", requests=requests) == 60.0


def test_arithmetic_between_series_counts_a_missing_side_as_zero() -> None:
    errors, invocations = series({0: 1, 2: 3}), series({0: 4, 1: 5, 2: 6})

    assert by_minute(run("100 * (errors / invocations)", errors=errors, invocations=invocations)) == {
        0: 25.0,
        1: 0.0,
        2: 50.0,
    }
    assert by_minute(run("a + b + c", a=series({0: 1}), b=series({1: 2}), c=series({}))) == {0: 1.0, 1: 2.0}


def test_division_by_zero_gives_no_datapoint() -> None:
    visible, deleted, sent = series({0: 10, 1: 10}), series({0: 5, 1: 7}), series({0: 5, 1: 2})

    drain = run("(visible / (deleted - sent)) * (PERIOD(deleted))", visible=visible, deleted=deleted, sent=sent)

    assert by_minute(drain) == {1: 120.0}


def test_fill_fills_the_range_with_a_value_repeat_or_linear() -> None:
    sparse = series({2: 4.0, 6: 8.0})

    assert by_minute(run("FILL(m, 0)", m=sparse)) == {n: {2: 4.0, 6: 8.0}.get(n, 0.0) for n in range(10)}
    assert by_minute(run("FILL(m, REPEAT)", m=sparse)) == {n: 4.0 if n < 6 else 8.0 for n in range(10)}
    assert by_minute(run("FILL(m, LINEAR)", m=sparse)) == {
        **dict.fromkeys(range(3), 4.0),
        3: 5.0,
        4: 6.0,
        5: 7.0,
        **dict.fromkeys(range(6, 10), 8.0),
    }
    assert by_minute(run("FILL(m, 0) / PERIOD(m)", m=series({1: 30}))) == {n: 0.5 if n == 1 else 0.0 for n in range(10)}


def test_fill_has_nothing_to_fill_from_in_a_series_without_data() -> None:
    assert by_minute(run("FILL(m, 0)", m=series({}))) == {}


def test_if_picks_per_timestamp_and_drops_false_without_an_else() -> None:
    errors, invocations = series({0: 1, 1: 0, 2: 5}), series({0: 10, 1: 20, 2: 50})

    assert by_minute(run("IF(invocations > 15, errors / invocations, 0)", errors=errors, invocations=invocations)) == {
        0: 0.0,
        1: 0.0,
        2: 0.1,
    }
    assert by_minute(run("IF(errors, errors)", errors=errors)) == {0: 1.0, 2: 5.0}
    assert by_minute(run("IF(NOT errors, 1)", errors=errors)) == {1: 1.0}


def test_reductions_of_one_series_are_numbers_and_of_an_array_are_series() -> None:
    a, b = series({0: 1, 1: 3}), series({1: 5, 2: 7})

    assert run("SUM(a)", a=a) == 4.0
    assert run("AVG(a) + MAX(b)", a=a, b=b) == 9.0
    assert by_minute(run("SUM([a, b])", a=a, b=b)) == {0: 1.0, 1: 8.0, 2: 7.0}
    assert by_minute(run("MAX(METRICS())", a=a, b=b)) == {0: 1.0, 1: 5.0, 2: 7.0}
    everything = run("METRICS()", a=a, b=b)
    assert isinstance(everything, Array)
    assert everything.labels == ("a", "b")
    doubled = run("[a, b] * 2", a=a, b=b)
    assert isinstance(doubled, Array)
    assert [by_minute(member) for member in doubled.members] == [{0: 2.0, 1: 6.0}, {1: 10.0, 2: 14.0}]


def test_rate_and_diff_between_consecutive_datapoints() -> None:
    counter = series({0: 0, 1: 60, 3: 180})

    assert by_minute(run("RATE(m)", m=counter)) == {1: 1.0, 3: 1.0}
    assert by_minute(run("DIFF(m)", m=counter)) == {1: 60.0, 3: 120.0}
    assert by_minute(run("ABS(-1 * m)", m=counter)) == {0: 0.0, 1: 60.0, 3: 180.0}


def test_non_finite_results_are_dropped() -> None:
    assert by_minute(run("LOG(m)", m=series({0: 0, 1: math.e}))) == {1: 1.0}
    assert by_minute(run("m ^ 0.5", m=series({0: -4, 1: 9}))) == {1: 3.0}


def test_unknown_functions_and_ids_are_reported_not_guessed() -> None:
    with pytest.raises(Unsupported, match=r"ANOMALY_DETECTION_BAND\(\) is not evaluated locally"):
        run("ANOMALY_DETECTION_BAND(m, 2)", m=series({0: 1}))
    with pytest.raises(MathError, match="no metric or expression with id 'nope'"):
        run("nope + 1", m=series({0: 1}))
    with pytest.raises(MathError, match=r"FILL\(\) takes 2 arguments"):
        run("FILL(m)", m=series({0: 1}))
