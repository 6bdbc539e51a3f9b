"""Threshold expressions: parsing with units, evaluation (final and live), files, JUnit XML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from loadtest.thresholds import (
    METRICS,
    ThresholdError,
    evaluate,
    format_ms,
    junit_xml,
    load_file,
    parse_threshold,
    threshold_set,
)


def _summary(**overrides: Any) -> dict[str, Any]:
    row = {"p50": 400.0, "p90": 900.0, "p95": 1200.0, "p99": 4200.0, "p999": 5000.0, "max": 5100.0, "mean": 600.0}
    summary: dict[str, Any] = {
        "stages_ms": {
            "presign": {"intended": row | {"p95": 30.0}, "actual": row | {"p95": 20.0}},
            "upload": {"intended": row | {"p95": 750.0}, "actual": row | {"p95": 700.0}},
            "e2e": {"intended": row, "actual": row | {"p99": 4000.0}},
        },
        "latency_ms": {"queue wait": row, "processing": row, "end to end": row, "upload": row, "presign": row},
        "starts": {"lag_ms": row, "dropped": 0, "late": 2, "achieved_rate_per_s": 9.5},
        "rates": {"failed_rate": 0.004, "dropped_rate": 0.0, "late_rate": 0.01},
        "counts": {"DONE": 996, "FAILED": 3, "UPLOAD_ERROR": 1},
        "throughput_images_per_s": 8.4,
        "upload_images_per_s": 9.1,
        "cost_per_1000_images_usd": 0.0742,
        "worker": {"billed_ms_per_image": 250.0},
    }
    summary.update(overrides)
    return summary


def test_parse_with_units() -> None:
    cases = {
        "e2e_p99<5s": ("e2e_p99", "<", 5000.0),
        "upload_p95 < 800ms": ("upload_p95", "<", 800.0),
        "presign_p50<=250": ("presign_p50", "<=", 250.0),  # bare: ms
        "e2e_max<2m": ("e2e_max", "<", 120_000.0),
        "start_lag_p99<500us": ("start_lag_p99", "<", 0.5),
        "failed_rate<0.01": ("failed_rate", "<", 0.01),
        "failed_rate<1%": ("failed_rate", "<", 0.01),
        "throughput>8/s": ("throughput", ">", 8.0),
        "throughput>=480/m": ("throughput", ">=", 8.0),
        "cost_per_1000<0.10": ("cost_per_1000", "<", 0.1),
        "cost_per_1000<$0.10": ("cost_per_1000", "<", 0.1),
        "dropped==0": ("dropped", "==", 0.0),
    }
    for text, (metric, op, value) in cases.items():
        threshold = parse_threshold(text)
        assert (threshold.metric, threshold.op) == (metric, op), text
        assert threshold.value == pytest.approx(value), text
    assert parse_threshold("upload_p95 < 800ms").expression == "upload_p95<800ms"


def test_parse_refuses_with_a_hint() -> None:
    with pytest.raises(ThresholdError, match="did you mean e2e_p99"):
        parse_threshold("e2e_p98<5s")
    with pytest.raises(ThresholdError, match="METRIC OP VALUE"):
        parse_threshold("e2e_p99 is small")
    with pytest.raises(ThresholdError, match="not a duration"):
        parse_threshold("e2e_p99<5 parsecs")
    with pytest.raises(ThresholdError, match="not a fraction"):
        parse_threshold("failed_rate<1s")
    with pytest.raises(ThresholdError, match="not a rate"):
        parse_threshold("throughput>8ms")


def test_evaluate_names_what_was_observed() -> None:
    thresholds = [parse_threshold(t) for t in ("e2e_p99<5s", "e2e_p99<1ms", "failed_rate<1%", "throughput>8/s")]
    thresholds += [parse_threshold(t) for t in ("cost_per_1000<0.05", "e2e_actual_p99<4001", "failed<5")]
    verdicts = {v.threshold.expression: v for v in evaluate(thresholds, _summary())}
    assert {k for k, v in verdicts.items() if not v.ok} == {"e2e_p99<1ms", "cost_per_1000<0.05"}
    assert verdicts["e2e_p99<1ms"].message == "e2e_p99<1ms: observed 4.20 s - BREACHED"
    assert verdicts["failed_rate<1%"].observed_text == "0.40%"
    assert verdicts["throughput>8/s"].observed_text == "8.40/s"
    assert verdicts["cost_per_1000<0.05"].observed_text == "$0.0742"
    assert verdicts["failed<5"].observed == 4  # FAILED + UPLOAD_ERROR (+ OUTSTANDING)


def test_no_data_breaches_when_final_but_not_while_running() -> None:
    summary = _summary(throughput_images_per_s=None)
    summary["stages_ms"]["e2e"]["intended"]["p99"] = None
    thresholds = [parse_threshold("e2e_p99<5s"), parse_threshold("throughput>1/s"), parse_threshold("failed_rate<0.1%")]
    final = evaluate(thresholds, summary)
    assert [(v.ok, v.observed_text) for v in final] == [(False, "no data"), (False, "no data"), (False, "0.40%")]
    live = evaluate(thresholds, summary, live=True)  # throughput is never judged live; no data is not a breach yet
    assert [v.threshold.metric for v in live] == ["failed_rate"]


def test_every_metric_reads_a_full_summary() -> None:
    summary = _summary()
    missing = [name for name, metric in METRICS.items() if metric.read(summary) is None]
    assert missing == []


def test_thresholds_file_toml_and_json(tmp_path: Path) -> None:
    example = load_file(Path(__file__).parents[2] / "loadtest" / "thresholds.example.toml")
    assert len(example.thresholds) >= 5
    assert [t.metric for t in example.aborting()] == ["failed_rate"]
    assert example.abort_delay_s == 20
    as_json = tmp_path / "gate.json"
    as_json.write_text(json.dumps({"thresholds": ["e2e_p99<5s"], "abort_on_fail": True}))
    gate = threshold_set(["throughput>8/s"], file=as_json)
    assert [t.expression for t in gate.thresholds] == ["e2e_p99<5s", "throughput>8/s"]
    assert gate.abort_on_fail
    assert len(gate.aborting()) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('thresholds = ["e2e_p99<5s"]\nabort_on_fial = true\n')
    with pytest.raises(ThresholdError, match="unknown keys abort_on_fial"):
        load_file(bad)
    bad.write_text("thresholds = [")
    with pytest.raises(ThresholdError, match=r"bad\.toml"):
        load_file(bad)


def test_junit_xml_one_case_per_threshold() -> None:
    thresholds = [parse_threshold("e2e_p99<5s"), parse_threshold("e2e_p99<1ms")]
    xml = junit_xml(evaluate(thresholds, _summary()), run_id="20261130T000000Z", duration_s=12.5)
    root = ElementTree.fromstring(xml)  # noqa: S314 - XML this code just wrote
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["e2e_p99<5s", "e2e_p99<1ms"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "observed 4.20 s"


def test_milliseconds_for_people() -> None:
    assert format_ms(0.42) == "0.42 ms"
    assert format_ms(812.4) == "812 ms"
    assert format_ms(21_680.4) == "21.68 s"
    assert format_ms(125_000) == "2 min 5 s"
