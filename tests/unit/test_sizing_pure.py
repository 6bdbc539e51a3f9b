"""Sizing's pure parts: the stratified sample, trimmed mix-weighted statistics, the strategies, the peak-memory
fit, the worker read from a template, the Power Tuning-shaped output and the cdk.json edit."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dashboards import config
from dashboards.config import AppConfig
from loadtest.corpus import DEFAULT_MIX, parse_mix, square_side, stratified_counts
from pipeline.resources import WORKER_MAX_PIXELS, WORKER_MEMORY_MB
from sizing.memory import (
    Observation,
    SizingError,
    SizingOptions,
    SizingResult,
    apply_to_cdk_json,
    duration_stats,
    fit_peak,
    power_tuning_json,
    recommend,
    round_pixels,
    trim_by_kind,
    weighted_mean,
    weighted_quantile,
    with_basis,
    worker_spec,
)
from sizing.probe import probe_error


def test_the_sample_has_every_kind_in_proportion_with_a_minimum() -> None:
    mix = parse_mix(DEFAULT_MIX)  # jpeg12mp 60, jpeg1080 25, png 10, webp 5
    assert stratified_counts(mix, 12) == {"jpeg12mp": 5, "jpeg1080": 3, "png": 2, "webp": 2}
    assert stratified_counts(mix, 24) == {"jpeg12mp": 14, "jpeg1080": 6, "png": 2, "webp": 2}
    # The issue's --sample 6 (5 x jpeg12mp + 1 x jpeg1080 before): raised to 2 of each kind.
    assert stratified_counts(mix, 6) == {"jpeg12mp": 2, "jpeg1080": 2, "png": 2, "webp": 2}
    for count in range(8, 60):
        counts = stratified_counts(mix, count)
        assert sum(counts.values()) == count
        assert min(counts.values()) >= 2
        assert counts["jpeg12mp"] >= counts["jpeg1080"] >= counts["png"] >= counts["webp"]


def test_trimming_is_per_kind_and_keeps_the_mix() -> None:
    jpeg = [Observation("jpeg", 0.6 / 5, value) for value in (10, 11, 12, 13, 100)]  # 100: a cold outlier
    png = [Observation("png", 0.4 / 2, value) for value in (50, 60)]
    kept = trim_by_kind([*jpeg, *png], 0.2)
    assert sorted(o.value for o in kept if o.kind == "jpeg") == [11, 12, 13]  # floor(5 x 0.2) = 1 each end
    assert sorted(o.value for o in kept if o.kind == "png") == [50, 60]  # floor(2 x 0.2) = 0: nothing dropped
    assert math.isclose(sum(o.weight for o in kept), 1.0)
    assert math.isclose(weighted_mean(kept), 0.6 * 12 + 0.4 * 55)
    assert weighted_quantile(kept, 0.5) == 13  # jpeg holds 60 % of the weight
    assert weighted_quantile(kept, 0.95) == 60


def test_duration_stats_bill_each_invocation_rounded_up() -> None:
    observations = [Observation("a", 0.5, 100.2), Observation("a", 0.5, 199.9)]
    stats = duration_stats(observations, 1024, {"arm64": 1.0}, per_request=0.0, trim=0.0)
    assert stats["billed_mean"] == pytest.approx((101 + 200) / 2)
    assert stats["cost_arm64"] == pytest.approx((0.101 + 0.2) / 2)  # 1 GB x seconds x $1


def table(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame(columns, index=pd.Index([512, 1024, 2048], name="memory_mb"))


def test_balanced_weight_moves_between_cost_and_speed() -> None:
    frame = table(
        duration_mean_ms=[400.0, 210.0, 200.0], cost_per_1000_images_usd=[1.0, 1.1, 2.0], oom=["no", "no", "no"]
    )
    assert recommend(frame, balanced_weight=1.0)["balanced"] == 512  # all cost
    assert recommend(frame, balanced_weight=0.0)["balanced"] == 2048  # all speed
    assert recommend(frame)["balanced"] == 1024
    dead = frame.assign(oom=["yes", "no", "no"])
    assert recommend(dead)["cost"] == 1024  # 512 dies on the worst case: never recommended
    with pytest.raises(SizingError):
        recommend(frame.assign(oom="yes"))


def test_sizes_without_a_measurement_take_the_model() -> None:
    frame = table(
        measured_p50_ms=[math.nan, 200.0, 190.0],
        measured_p95_ms=[math.nan, 300.0, 280.0],
        measured_mean_ms=[math.nan, 220.0, 210.0],
        measured_billed_ms_mean=[math.nan, 221.0, 211.0],
        measured_cost_arm64=[math.nan, 3e-6, 5e-6],
        modeled_p50_ms=[400.0, 210.0, 200.0],
        modeled_p95_ms=[600.0, 310.0, 300.0],
        modeled_mean_ms=[450.0, 230.0, 220.0],
        modeled_billed_ms_mean=[451.0, 231.0, 221.0],
        modeled_cost_arm64=[2e-6, 3.1e-6, 5.2e-6],
    )
    based = with_basis(frame, "measured", ["arm64"])
    assert based["duration_source"].tolist() == ["modeled", "measured", "measured"]
    assert based["duration_mean_ms"].tolist() == [450.0, 220.0, 210.0]
    assert based["cost_per_1000_images_usd"].tolist() == pytest.approx([2e-3, 3e-3, 5e-3])


def test_peak_fit_gives_the_pixel_cap_a_size_holds() -> None:
    fit = fit_peak([(12_500_000, 90 + 12.5 * 16), (25_000_000, 90 + 25 * 16), (50_000_000, 90 + 50 * 16)])
    assert fit.intercept_mb == pytest.approx(90)
    assert fit.mb_per_megapixel == pytest.approx(16)
    assert fit.max_residual_mb == pytest.approx(0, abs=1e-9)
    assert fit.max_pixels(512, headroom=0.0) == pytest.approx((512 - 90) / 16 * 1e6, rel=1e-6)
    assert fit.max_pixels(512) < fit.max_pixels(512, headroom=0.0)  # 5 % of the size kept free
    assert fit.max_pixels(64) == 0  # the runtime alone does not fit
    assert round_pixels(26_379_999) == 26_300_000
    assert square_side(50_000_000) == 7071  # 7071² = 49,999,041: just under the cap
    assert square_side(7071 * 7071) == 7071


def template(**variables: Any) -> dict[str, Any]:
    return {
        "Resources": {
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                },
            },
            "Worker": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "x-worker",
                    "Handler": "pipeline.worker.handler",
                    "MemorySize": 1536,
                    "Timeout": 60,
                    "Architectures": ["arm64"],
                    "Environment": {"Variables": {"IMGOPS_IMAGES_TABLE": {"Ref": "Table"}, **variables}},
                },
            },
        }
    }


def test_the_worker_is_read_from_the_template_not_from_constants() -> None:
    spec = worker_spec(template(IMGOPS_MAX_PIXELS="30000000"))
    assert (spec.memory_mb, spec.max_pixels, spec.architecture, spec.timeout_seconds) == (1536, 30_000_000, "arm64", 60)
    assert spec.table_key_schema == ({"AttributeName": "pk", "KeyType": "HASH"},)
    assert "IMGOPS_IMAGES_TABLE" not in spec.environment  # a token, not a value
    with pytest.raises(SizingError, match="IMGOPS_MAX_PIXELS"):
        worker_spec(template())


def result_for(frame: pd.DataFrame) -> SizingResult:
    options = SizingOptions(sizes=(512, 1024, 2048), architectures=("arm64", "x86_64"))
    return SizingResult(
        spec=worker_spec(template(IMGOPS_MAX_PIXELS="50000000")),
        options=options,
        table=frame,
        recommendations={"arm64": recommend(frame, cost_column="cost_per_1000_images_usd_arm64")}
        | {"x86_64": recommend(frame, cost_column="cost_per_1000_images_usd_x86_64")},
        sample=[{"kind": "png", "count": 2, "mix_share": 1.0}],
        calibration=[],
        floor=None,
        baseline=[],
        invocations=[],
        notes=[],
        basis="measured",
    )


def test_json_output_is_shaped_like_power_tunings() -> None:
    frame = table(
        duration_mean_ms=[400.0, 210.0, 200.0],
        cost_per_invocation_usd_arm64=[1e-6, 1.1e-6, 2e-6],
        cost_per_invocation_usd_x86_64=[1.25e-6, 1.4e-6, 2.5e-6],
        oom=["yes", "no", "no"],
    )
    frame["cost_per_1000_images_usd_arm64"] = frame["cost_per_invocation_usd_arm64"] * 1000
    frame["cost_per_1000_images_usd_x86_64"] = frame["cost_per_invocation_usd_x86_64"] * 1000
    payload = power_tuning_json(result_for(frame), "cost")
    assert (payload["power"], payload["cost"], payload["duration"]) == (1024, 1.1e-6, 210.0)
    assert payload["stats"][0] == {"value": 512, "averagePrice": 1e-6, "averageDuration": 400.0}
    assert payload["architecture"] == "arm64"
    assert payload["byArchitecture"]["x86_64"]["cost"] == 1.4e-6
    json.dumps(payload)  # plain JSON, no NaN or numpy types


def cdk_json_context(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8"))["context"])  # as dashboards.app reads it


def test_apply_writes_the_context_key_and_the_app_reads_it(tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    original = (Path(__file__).resolve().parents[2] / "cdk.json").read_text(encoding="utf-8")
    cdk_json.write_text(original, encoding="utf-8")
    apply_to_cdk_json(cdk_json, 1536)
    written = cdk_json.read_text(encoding="utf-8")
    assert AppConfig.from_context(cdk_json_context(cdk_json).get).worker_memory_mb == 1536
    # Only the one line is new: the rest of the file is as it was.
    assert [line for line in written.splitlines() if line not in original.splitlines()] == [
        '    "imgops:worker-memory-mb": 1536,'
    ]
    apply_to_cdk_json(cdk_json, 2048)  # again: updated in place, not added twice
    assert cdk_json.read_text(encoding="utf-8").count(config.WORKER_MEMORY) == 1
    assert AppConfig.from_context(cdk_json_context(cdk_json).get).worker_memory_mb == 2048
    with pytest.raises(SizingError, match="not found"):
        apply_to_cdk_json(tmp_path / "missing.json", 1024)


def test_the_worker_size_and_pixel_cap_default_from_one_place() -> None:
    assert AppConfig().worker_memory_mb == WORKER_MEMORY_MB
    from pipeline.settings import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == WORKER_MAX_PIXELS


def test_a_probe_failure_is_one_line_in_the_probes_own_words() -> None:
    logged = json.dumps(
        {"level": "ERROR", "message": "upload will be retried", "error": "NoCredentialsError: claim: Unable to locate"}
    )
    stderr = f'{{"level":"INFO","message":"x"}}\n{logged}\nTraceback (most recent call last):\n  ...\n'
    assert probe_error(stderr, 3) == "upload will be retried: NoCredentialsError: claim: Unable to locate"
    traceback = "Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'PIL'\n"
    assert probe_error(traceback, 1) == "ModuleNotFoundError: No module named 'PIL'"
    assert probe_error("", -6) == "exit code -6, nothing on stderr"
    assert "\n" not in probe_error("a\nb\nc\nd\n", 1)
