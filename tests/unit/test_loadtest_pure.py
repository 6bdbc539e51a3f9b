"""The load-test harness's pure parts, checked against hand-computed figures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loadtest.corpus import CorpusError, CorpusImage, allocate, parse_mix, upload_plan
from loadtest.cost import Workload, compare, cost_breakdown, load_prices
from loadtest.reports import parse_report
from loadtest.summary import (
    decode_histograms,
    encode_histograms,
    histogram_of,
    latency_table,
    merge_histograms,
    percentiles,
)
from sizing.memory import Measurement, SizingError, invocation_cost, modeled_duration_ms, recommend, sizing_table

PRICES = load_prices("us-east-1")


def test_parse_mix_normalises_and_refuses_nonsense() -> None:
    assert parse_mix("jpeg12mp=60,png=20, webp=20") == {"jpeg12mp": 0.6, "png": 0.2, "webp": 0.2}
    cases = [("gif=1", "KIND=WEIGHT"), ("png=x", "not a number"), ("png=0", "positive"), ("png=-1", "negative")]
    for bad, message in cases:
        with pytest.raises(CorpusError, match=message):
            parse_mix(bad)


def test_allocate_gives_every_kind_a_file_and_sums_to_count() -> None:
    counts = allocate({"jpeg12mp": 0.6, "jpeg1080": 0.25, "png": 0.1, "webp": 0.05}, 24)
    assert counts == {"jpeg12mp": 14, "jpeg1080": 6, "png": 3, "webp": 1}  # 14.4, 6, 2.4, 1.2 → largest remainders
    assert sum(counts.values()) == 24


def test_upload_plan_is_deterministic_and_follows_the_mix(tmp_path: object) -> None:
    from pathlib import Path

    corpus = [CorpusImage(Path(f"{k}{i}"), k, "image/jpeg", 1, 1, 1, 1) for k in ("a", "b") for i in range(3)]
    mix = {"a": 0.8, "b": 0.2}
    plan = upload_plan(corpus, mix, 1000, seed=1)
    assert plan == upload_plan(corpus, mix, 1000, seed=1)
    assert plan != upload_plan(corpus, mix, 1000, seed=2)
    share_a = sum(image.kind == "a" for image in plan) / 1000
    assert 0.75 < share_a < 0.85


def test_report_line_parsing() -> None:
    line = (
        "REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 18 MB\tInit Duration: 120.34 ms"
    )
    report = parse_report(line)
    assert report is not None
    assert (report.duration_ms, report.billed_duration_ms, report.memory_size_mb, report.max_memory_used_mb) == (
        12.34,
        13.0,
        128,
        18,
    )
    assert report.init_duration_ms == 120.34
    assert parse_report("START RequestId: x Version: $LATEST") is None
    assert parse_report("REPORT RequestId: x\tDuration: 1 ms") is None  # truncated


def test_latency_percentiles() -> None:
    """HDR percentiles (3 significant digits): the recorded value at each rank, within 0.1%."""
    frame = pd.DataFrame({"presign_ms": [float(v) for v in range(1, 101)]})
    for column in ("upload_ms", "queue_wait_ms", "processing_ms", "end_to_end_ms"):
        frame[column] = None
    table = latency_table(frame)
    row = table["presign"]
    for name, exact in {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 100, "max": 100, "mean": 50.5}.items():
        assert row[name] == pytest.approx(exact, rel=1e-3), name
    assert row["count"] == 100.0
    assert table["upload"]["p50"] is None
    assert table["upload"]["count"] == 0.0


def test_histograms_merge_across_workers_like_one() -> None:
    """Two load generators' histograms, encoded, decoded and added, give the percentiles of all values together."""
    rng = np.random.default_rng(3)
    left, right = rng.lognormal(6, 1, 500), rng.lognormal(8, 0.5, 300)
    merged = merge_histograms(
        [decode_histograms(encode_histograms({"e2e": histogram_of(part)})) for part in (left, right)]
    )
    together = histogram_of(np.concatenate([left, right]))
    assert percentiles(merged["e2e"]) == percentiles(together)
    exact = np.percentile(np.concatenate([left, right]), 99, method="inverted_cdf")
    assert percentiles(merged["e2e"])["p99"] == pytest.approx(exact, rel=1e-3)


def test_cost_arithmetic_by_hand() -> None:
    workload = Workload(
        memory_mb=2048,
        worker_billed_ms_per_image=500,
        worker_invocations_per_image=0.1,
        api_invocations_per_image=1,
        api_billed_ms_per_invocation=0,
        bytes_in_per_image=3e6,
        bytes_out_per_image=0,
        images_per_month=1_000_000,
    )
    costs = cost_breakdown(workload, PRICES)["per_1000_images"]
    # 0.5 s x 2 GB x $0.0000166667 = $0.0000166667 per image
    assert costs["Lambda worker compute"] == pytest.approx(0.0166667)
    # (0.1 + 1) invocations x $0.20 / 1M
    assert costs["Lambda requests"] == pytest.approx(1.1 * 0.2 / 1000)
    # upload + 3 thumbnails at $0.005 per 1,000 PUTs
    assert costs["S3 PUT"] == pytest.approx(4 * 0.005)
    # 3 MB for a month at $0.023 per GB-month
    assert costs["S3 storage (first month)"] == pytest.approx(3e6 / 1e9 * 0.023 * 1000)
    # 3 write units at $0.625 per million
    assert costs["DynamoDB writes"] == pytest.approx(3 * 0.625 / 1000)
    # SQS: one send + (receive + delete) per invocation of 10
    assert costs["SQS requests"] == pytest.approx(1.2 * 0.4 / 1000)
    # 2 dashboards at $3 a month spread over a million images
    assert costs["CloudWatch dashboards"] == pytest.approx(6 / 1000)
    assert costs["Total"] == pytest.approx(costs.drop("Total").sum())


def test_arm64_is_cheaper_and_compare_lines_up_columns() -> None:
    x86 = Workload(label="x86")
    arm = Workload(label="arm", architecture="arm64")
    table = compare([x86, arm], PRICES)
    assert list(table.columns) == ["x86", "arm"]
    cells: dict[str, dict[str, float]] = table.to_dict(orient="index")  # type: ignore[assignment]
    assert cells["Lambda worker compute"]["arm"] < cells["Lambda worker compute"]["x86"]
    assert cells["S3 PUT"]["arm"] == cells["S3 PUT"]["x86"]


def test_modeled_duration_follows_the_cpu_share() -> None:
    work = Measurement("a", wall_ms=150, cpu_ms=100, peak_rss_mb=90)
    assert modeled_duration_ms(work, 1769) == pytest.approx(150)
    assert modeled_duration_ms(work, 3008) == pytest.approx(150)  # single-threaded: no gain above 1 vCPU
    assert modeled_duration_ms(work, 128) == pytest.approx(100 * 1769 / 128 + 50)
    assert invocation_cost(0.2, 1024, gb_second=1.0, per_request=0.0) == pytest.approx(0.001)  # billed 1 ms


def test_recommend_strategies_and_oom_exclusion() -> None:
    measurements = [Measurement("a", wall_ms=120, cpu_ms=100, peak_rss_mb=90)]
    prices = {"gb_second": 0.0000166667, "per_request": 0.2e-6}
    table = sizing_table(measurements, (128, 512, 1769, 3008), oom={128: True, 512: False}, **prices)
    rows: dict[int, dict[str, Any]] = table.to_dict(orient="index")  # type: ignore[assignment]
    assert rows[128]["oom"] == "yes"
    assert rows[1769]["oom"] == "not checked"
    picks = recommend(table)
    assert picks["cost"] == 512  # 128 is cheaper on paper but runs out of memory
    assert picks["speed"] == 1769  # ties with 3008 on speed, cheaper
    assert picks["balanced"] in {512, 1769}
    with pytest.raises(SizingError):
        recommend(table.assign(oom="yes"))
    assert math.isclose(rows[1769]["duration_mean_ms"], 120.0)
