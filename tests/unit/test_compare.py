"""`imgops loadtest compare`: direction-aware regressions, floors against noise, Markdown."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.compare import CompareError, compare_summaries, load_summary, markdown, parse_percent, regressions


def _percentiles(p50: float, p99: float) -> dict[str, float]:
    return {"p50": p50, "p90": p99, "p95": p99, "p99": p99, "p999": p99, "max": p99, "mean": p50, "count": 100.0}


def _summary(run_id: str = "base") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "target": "local",
        "images": 100,
        "counts": {"DONE": 100},
        "throughput_images_per_s": 10.0,
        "rates": {"failed_rate": 0.0, "dropped_rate": 0.0, "late_rate": 0.0},
        "stages_ms": {
            "presign": {"intended": _percentiles(0.4, 0.9), "actual": _percentiles(0.4, 0.9)},
            "upload": {"intended": _percentiles(100, 300), "actual": _percentiles(100, 300)},
            "e2e": {"intended": _percentiles(2000, 5000), "actual": _percentiles(2000, 5000)},
        },
        "latency_ms": {"queue wait": _percentiles(1000, 3000), "processing": _percentiles(300, 900)},
        "worker": {"invocations": 10, "billed_ms_total": 30000.0, "billed_ms_per_image": 300.0},
        "cost_per_1000_images_usd": 0.07,
    }


def _verdicts(base: dict[str, Any], new: dict[str, Any], bound: float = 0.10) -> dict[str, str]:
    return {row.label: row.verdict for row in compare_summaries(base, new, bound)}


def test_identical_runs_do_not_regress() -> None:
    verdicts = _verdicts(_summary(), _summary("new"))
    assert set(verdicts.values()) == {"ok"}
    assert "throughput (images/s)" in verdicts
    assert {"e2e p50", "e2e p99", "upload p99", "queue wait p99", "cost per 1,000 images"} <= set(verdicts)


def test_direction_matters() -> None:
    new = _summary("new")
    new["throughput_images_per_s"] = 8.0  # 20% lower: worse
    new["stages_ms"]["e2e"]["intended"]["p99"] = 4000  # 20% lower latency: better
    new["cost_per_1000_images_usd"] = 0.09  # 29% dearer: worse
    new["worker"]["billed_ms_per_image"] = 200.0  # cheaper: better
    verdicts = _verdicts(_summary(), new)
    assert verdicts["throughput (images/s)"] == "regression"
    assert verdicts["e2e p99"] == "better"
    assert verdicts["cost per 1,000 images"] == "regression"
    assert verdicts["worker billed ms/image"] == "better"
    faster = _summary("new")
    faster["throughput_images_per_s"] = 12.0
    assert _verdicts(_summary(), faster)["throughput (images/s)"] == "better"


def test_bound_and_noise_floors() -> None:
    new = _summary("new")
    new["stages_ms"]["e2e"]["intended"]["p50"] = 2150  # +7.5%: within 10%
    new["stages_ms"]["presign"]["intended"]["p99"] = 1.8  # +100%, but under 1 ms: noise
    new["rates"]["failed_rate"] = 0.0005  # from 0, but under 0.1 percentage point
    verdicts = _verdicts(_summary(), new)
    assert verdicts["e2e p50"] == "ok"
    assert verdicts["presign p99"] == "ok"
    assert verdicts["error rate"] == "ok"
    assert _verdicts(_summary(), new, bound=0.05)["e2e p50"] == "regression"
    new["rates"]["failed_rate"] = 0.02  # 0 → 2%: a regression however large the bound
    assert _verdicts(_summary(), new, bound=10)["error rate"] == "regression"


def test_missing_figures_are_not_regressions() -> None:
    old = _summary()
    del old["stages_ms"]
    del old["rates"]  # an older summary.json: the error rate comes from the counts
    rows = {row.label: row for row in compare_summaries(old, _summary("new"), 0.1)}
    assert rows["e2e p99"].verdict == "n/a"
    assert rows["error rate"].verdict == "ok"
    assert rows["error rate"].base == 0.0


def test_markdown_for_a_pull_request() -> None:
    new = _summary("new")
    new["stages_ms"]["e2e"]["intended"]["p99"] = 9000
    rows = compare_summaries(_summary(), new, 0.1)
    text = markdown(rows, _summary(), new, 0.1)
    assert text.startswith("**Load test:** base base (local, 100 images) vs new new (local, 100 images)")
    assert "**1 regression** beyond 10%" in text
    assert "| e2e p99 | 5.00 s | 9.00 s | +80.0% | **regression** |" in text
    assert [row.label for row in regressions(rows)] == ["e2e p99"]


def test_percent_and_loading(tmp_path: Path) -> None:
    assert parse_percent("10%") == pytest.approx(0.1)
    assert parse_percent("2.5") == pytest.approx(0.025)
    with pytest.raises(CompareError):
        parse_percent("ten")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(_summary()))
    assert load_summary(folder) == load_summary(folder / "summary.json")
    with pytest.raises(CompareError, match=r"no summary\.json"):
        load_summary(tmp_path / "nowhere")
    (folder / "summary.json").write_text(json.dumps({"not": "a summary"}))
    with pytest.raises(CompareError, match="not a load-test summary"):
        load_summary(folder)
    assert copy.deepcopy(_summary()) == _summary()
