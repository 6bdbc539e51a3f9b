"""`imgops loadtest run` and `sizing` as a user runs them, on an embedded local stack they start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e.conftest import start_local_up, stop

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS = (
    "start-rate",
    "throughput",
    "latency-over-time",
    "errors-over-time",
    "latency-cdf",
    "latency-histogram",
    "worker",
    "cost",
)


def imgops(*args: str, home: Path, columns: int = 160) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGOPS_STATE_DIR": str(home / "state"), "COLUMNS": str(columns)}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "imgops", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("loadtest")
    result = imgops(
        "loadtest", "run", "--images", "30", "--concurrency", "8", "--mix", "jpeg1080=50,png=20,webp=30",
        "--corpus-size", "6", "--workers", "2", "--timeout", "240", "--out", str(home / "runs"), home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = (home / "runs").iterdir()
    return folder


def test_every_image_is_accounted_for(small_run: Path) -> None:
    summary = json.loads((small_run / "summary.json").read_text())
    rows = pd.read_parquet(small_run / "images.parquet")
    assert summary["images"] == len(rows) == 30
    assert summary["counts"] == {"DONE": 30}
    assert rows["image_id"].nunique() == 30
    assert (rows["end_to_end_ms"] > 0).all()
    assert (rows["processing_ms"] > 0).all()
    assert (rows["bytes_out"] > 0).all()
    assert summary["worker"]["invocations"] >= 3  # at most 10 images per invocation
    assert summary["latency_ms"]["end to end"]["p50"] > 0
    assert pd.read_csv(small_run / "images.csv")["status"].eq("DONE").all()


def test_embedded_stack_output_goes_to_the_run_folder_not_the_progress_display(tmp_path: Path) -> None:
    result = imgops(
        "loadtest", "run", "--images", "6", "--mix", "jpeg1080=1", "--corpus-size", "2", "--workers", "1",
        "--timeout", "240", "--out", str(tmp_path / "runs"), home=tmp_path, columns=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = (tmp_path / "runs").iterdir()
    log = (folder / "local-stack.log").read_text(encoding="utf-8")
    assert log.count("REPORT RequestId: ") >= 1  # at most 10 images per invocation
    assert "local stack up" in log
    assert "REPORT RequestId" not in result.stdout + result.stderr
    assert "local-stack.log" in result.stdout  # the one line saying where it went
    assert f"Run {folder.name} on local: DONE 6" in result.stdout
    # The worker's REPORT lines still reach the run's figures: every invocation that processed the run's uploads is
    # counted, and nothing that is not in the log. (The s3:TestEvent invocation S3 causes when the stack sets up its
    # notification lands before or after the run's start, so it may be counted or not.)
    counted = set(pd.read_csv(folder / "worker-reports.csv")["request_id"])
    assert json.loads((folder / "summary.json").read_text())["worker"]["invocations"] == len(counted) >= 1
    reported = re.findall(r"^REPORT RequestId: (\S+)", log, re.MULTILINE)
    first_upload = log.index('"upload finished"')
    of_the_run = {rid for rid in reported if log.index(f"REPORT RequestId: {rid}") > first_upload}
    assert of_the_run <= counted <= set(reported), log


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test installs it)")
def test_report_renders_in_headless_chromium(small_run: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    dom = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom", (small_run / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    for plot in PLOTS:
        assert f'id="plot-{plot}"' in dom
    assert f'data-plots-loaded="{len(PLOTS)}"' in dom  # every plot decoded as an image in the browser
    assert 'id="thresholds-none"' in dom  # no thresholds given: the report says so


# --- Sizing (one `imgops local up` of its own; no AWS credentials in the environment) --------------------------

# The worst-case inputs (50 MP WebP and friends) take ~40 s to generate: kept between runs like the template cache.
SIZING_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgops" / "test-sizing-corpus"
NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="module")
def sizing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """A fresh local stack, and the environment of a shell with no AWS credentials at all."""
    state = tmp_path_factory.mktemp("sizing") / "state"
    process, info, env = start_local_up(state, "--workers", "1", "--prefix", "sizestack")
    bare = {name: value for name, value in env.items() if name not in NO_CREDENTIALS}
    bare.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent", COLUMNS="80")
    try:
        yield info, bare
    finally:
        stop(process)


def sizing_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgops", "loadtest", "sizing", "--cache-dir", str(SIZING_CACHE), *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def pipeline_contents(info: Any) -> dict[str, list[str]]:
    """Everything in the pipeline's buckets and table, listed with the local stack's own credentials."""
    from monitoring.target import for_local

    target = for_local(info)
    s3, dynamodb = target.client("s3"), target.client("dynamodb")

    def keys(bucket: str) -> list[str]:
        return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                      for o in page.get("Contents", []))  # fmt: skip

    items = sorted(json.dumps(i, sort_keys=True) for i in dynamodb.scan(TableName=info.images_table)["Items"])
    return {"uploads": keys(info.upload_bucket), "processed": keys(info.processed_bucket), "items": items}


def seed_pipeline(info: Any) -> None:
    """An image the pipeline processed before: sizing must leave it, and add nothing beside it."""
    from monitoring.target import for_local

    target = for_local(info)
    target.client("s3").put_object(Bucket=info.processed_bucket, Key="processed/seen/256.jpg", Body=b"thumb")
    target.client("dynamodb").put_item(
        TableName=info.images_table, Item={"imageId": {"S": "seen"}, "status": {"S": "DONE"}}
    )


def test_sizing_on_a_fresh_local_stack(sizing_stack: tuple[Any, dict[str, str]], tmp_path: Path) -> None:
    info, env = sizing_stack
    seed_pipeline(info)
    before = pipeline_contents(info)

    result = sizing_cli(env, "--memory", "256,1024", "--sample", "8", "--out", str(tmp_path / "runs"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert pipeline_contents(info) == before  # its own bucket, table and topic: gone again
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert "Sample: 8 images: jpeg12mp 2, jpeg1080 2, png 2, webp 2" in result.stdout
    assert "measured" in result.stdout
    assert "modeled" in result.stdout
    assert "Worker sizing (arm64)" in result.stdout  # the template's architecture, named
    [folder] = (tmp_path / "runs").iterdir()
    sizing = json.loads((folder / "sizing.json").read_text())
    table = {row["memory_mb"]: row for row in sizing["table"]}
    floor = sizing["floor"]
    # The worst accepted input at the template's pixel cap kills 256 MB under a real cap; 1024 MB holds it.
    assert floor["pixels"] <= 50_000_000 < floor["pixels"] * 1.001
    assert table[256]["worst_case"] in {"OOM", "OOM (RSS)"}
    assert table[1024]["worst_case"] == "survives"
    assert floor["floor_mb"] == 1024
    assert 0 < floor["by_size"]["256"]["max_pixels"] < 50_000_000  # what a 256 MB worker could take instead
    assert set(sizing["recommendations_mb"].values()) == {1024}  # no strategy picks a size that dies
    # Measured under the CPU share beside the model, with the model's error; cold starts apart.
    assert table[1024]["measured_mean_ms"] > 0
    assert table[1024]["modeled_mean_ms"] > 0
    assert table[1024]["model_error_pct"] is not None
    assert table[1024]["init_ms"] > 0
    assert table[1024]["cpu_quota_pct"] == pytest.approx(57.9, abs=0.1)
    assert [c["quota_pct"] for c in sizing["calibration"]] == [100, 50, 25]
    assert {s["kind"]: s["count"] for s in sizing["sample"]} == {"jpeg12mp": 2, "jpeg1080": 2, "png": 2, "webp": 2}
    assert sizing["architecture"] == "arm64"
    assert sizing["power_tuning"]["power"] == 1024
    assert "id='plot-sizing'" in (folder / "report.html").read_text()


def test_apply_sets_the_deployed_function_and_cdk_json(
    sizing_stack: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    """`--target aws` through the Lambda API of the local stack (AWS_ENDPOINT_URL, as for a LocalStack user)."""
    from dashboards.template import stack_template

    info, env = sizing_stack
    before = pipeline_contents(info)
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text((Path(__file__).parents[2] / "cdk.json").read_text())
    aws_env = {**env, "AWS_ENDPOINT_URL": info.endpoint_url, "IMGOPS_USERNAME": info.demo_username,
               "IMGOPS_PASSWORD": info.demo_password}  # fmt: skip

    result = sizing_cli(
        aws_env, "--target", "aws", "--stack-name", "sizestack-pipeline", "--memory", "512,1536", "--sample", "2",
        "--mix", "jpeg1080=1", "--arch", "both", "--apply", "--yes", "--cdk-json", str(cdk_json), "--json",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)  # Power Tuning's shape
    assert payload["power"] == 1536  # 512 MB is cheaper but dies on the worst case
    assert payload["architecture"] == "arm64"
    assert set(payload["byArchitecture"]) == {"arm64", "x86_64"}
    assert [s["value"] for s in payload["stats"]] == [512, 1536]
    from monitoring.target import for_local

    lambda_ = for_local(info).client("lambda")
    assert lambda_.get_function_configuration(FunctionName="sizestack-worker")["MemorySize"] == 1536
    context = json.loads(cdk_json.read_text())["context"]
    assert context["imgops:worker-memory-mb"] == 1536
    template = stack_template("sizestack", context={"imgops:worker-memory-mb": context["imgops:worker-memory-mb"]})
    [worker] = [r for r in template["Resources"].values() if r["Properties"].get("FunctionName") == "sizestack-worker"]
    assert worker["Properties"]["MemorySize"] == 1536  # what `imgops dashboards synth` would deploy
    assert worker["Properties"]["Environment"]["Variables"]["IMGOPS_MAX_PIXELS"] == "50000000"
    assert pipeline_contents(info) == before  # the batches' items, thumbnails and originals were removed


def test_bad_arguments_get_one_line_errors(tmp_path: Path) -> None:
    bad_mix = imgops("loadtest", "run", "--mix", "gif=10", home=tmp_path)
    bad_memory = imgops("loadtest", "sizing", "--memory", "64", home=tmp_path)
    assert bad_mix.returncode == 1
    assert "expected KIND=WEIGHT" in bad_mix.stderr
    assert "Traceback" not in bad_mix.stderr
    assert bad_memory.returncode == 2
    assert "128 to 10,240 MB" in bad_memory.stderr


def test_selfcheck_exercises_the_upload_path(tmp_path: Path) -> None:
    result = imgops(
        "loadtest", "selfcheck", "--images", "40", "--mix", "webp=1", "--corpus-size", "2", home=tmp_path
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "40 of 40 uploads" in result.stdout


def test_bench_thumbnails_runs_every_approach(tmp_path: Path) -> None:
    result = imgops("bench", "thumbnails", "--images", "1", "--repeat", "1", "--markdown", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| imgops |" in result.stdout
    assert "| tutorial" in result.stdout


# --- Release gates: thresholds, open-model stages, abort, compare (one `imgops local up` for all) ------------

GATE_IMAGES = ("--mix", "jpeg1080=1", "--corpus-size", "3", "--timeout", "180")
LOOSE = """
thresholds = [
    "e2e_p99 < 2m",
    "upload_p95 < 30s",
    "failed_rate < 1%",
    "dropped_rate < 1%",
    "throughput > 0.05/s",
    "cost_per_1000 < 1",
]
"""


def chromium_dom(report: Path, profile: Path) -> str:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--dump-dom", report.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip


def assert_valid_summary(summary: dict[str, Any]) -> None:
    """summary.json against its documented schema (loadtest/summary.schema.json)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[2] / "loadtest" / "summary.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(summary)


@pytest.fixture(scope="module")
def gate_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("gate")
    process, _, _ = start_local_up(home / "state", "--workers", "2")
    yield home
    stop(process)


@pytest.fixture(scope="module")
def staged_run(gate_home: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A ramp to 4/s, a hold and a ramp down (18 uploads), with loose thresholds from a file: passes."""
    gate = gate_home / "loose.toml"
    gate.write_text(LOOSE)
    result = imgops(
        "loadtest", "run", "--stages", "2s:4/s,3s:4/s,1s:0/s", "--thresholds-file", str(gate),
        "--junit", str(gate_home / "loose.xml"), *GATE_IMAGES, "--out", str(gate_home / "staged"), home=gate_home,
        columns=80,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = (gate_home / "staged").iterdir()
    return folder, result


def test_a_breached_threshold_exits_99_and_names_it(gate_home: Path) -> None:
    junit = gate_home / "breach.xml"
    result = imgops(
        "loadtest", "run", "--images", "8", "--threshold", "e2e_p99<1ms", "--threshold", "failed_rate<1%",
        "--junit", str(junit), *GATE_IMAGES, "--out", str(gate_home / "breach"), home=gate_home, columns=80,
    )  # fmt: skip
    assert result.returncode == 99, result.stdout + result.stderr
    assert "threshold breached: e2e_p99<1ms: observed " in result.stderr
    assert "failed_rate" not in result.stderr
    assert "✓ failed_rate<1%: observed 0.00%" in result.stdout
    assert "✗ e2e_p99<1ms: observed" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    [folder] = (gate_home / "breach").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert_valid_summary(summary)
    assert summary["thresholds_ok"] is False
    verdicts = [(v["threshold"], v["ok"]) for v in summary["thresholds"]]
    assert verdicts == [("e2e_p99<1ms", False), ("failed_rate<1%", True)]
    xml = junit.read_text()
    assert 'tests="2" failures="1"' in xml
    assert 'name="e2e_p99&lt;1ms"' in xml


def test_a_staged_run_reports_target_and_achieved_rate_per_second(staged_run: tuple[Path, Any]) -> None:
    folder, result = staged_run
    summary = json.loads((folder / "summary.json").read_text())
    assert_valid_summary(summary)
    assert summary["model"] == "open"
    assert summary["images"] == 18  # ∫ rate: 4 + 12 + 2
    assert summary["counts"] == {"DONE": 18}
    assert summary["thresholds_ok"] is True
    timeline = summary["timeline"]
    targets = [row["target_per_s"] for row in timeline[:6]]
    assert targets == pytest.approx([1, 3, 4, 4, 4, 2])
    assert sum(row["started"] for row in timeline) == 18
    for row in timeline[:6]:  # the harness keeps to the schedule (a start may fall either side of a second)
        assert abs(row["started"] - row["target_per_s"]) <= 1.5, timeline
    assert summary["starts"]["dropped"] == 0
    for stage in ("presign", "upload", "e2e"):
        intended, actual = summary["stages_ms"][stage]["intended"], summary["stages_ms"][stage]["actual"]
        assert intended["p50"] >= actual["p50"] > 0  # from the intended start: never shorter
    assert "Starts per second" in result.stdout
    assert "achieved" in result.stdout
    assert "starts: target 3.0/s" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert 'failures="0"' in (folder.parent.parent / "loose.xml").read_text()
    assert pd.read_csv(folder / "timeline.csv")["target_per_s"].notna().sum() == 6


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test installs it)")
def test_staged_report_shows_rates_latency_over_time_and_thresholds(
    staged_run: tuple[Path, Any], tmp_path: Path
) -> None:
    folder, _ = staged_run
    dom = chromium_dom(folder / "report.html", tmp_path / "profile")
    for plot in PLOTS:
        assert f'id="plot-{plot}"' in dom
    assert f'data-plots-loaded="{len(PLOTS)}"' in dom
    assert 'id="thresholds"' in dom
    assert dom.count("<td>PASS</td>") == len(LOOSE.strip().splitlines()) - 2
    assert "<td>FAIL</td>" not in dom
    assert 'id="timeline"' in dom
    text = re.sub(r"data:image/png;base64,[^'\"]+", "", dom)  # the plots' bytes can spell anything
    assert re.search(r"\d\.\d+e[+-]\d", text) is None  # numbers for people, never 2.168e+04


def test_abort_on_fail_stops_the_run_early(gate_home: Path) -> None:
    result = imgops(
        "loadtest", "run", "--rate", "4", "--images", "40", "--threshold", "e2e_p99<1ms", "--abort-on-fail",
        *GATE_IMAGES, "--out", str(gate_home / "abort"), "--json", home=gate_home,
    )  # fmt: skip
    assert result.returncode == 99, result.stdout + result.stderr
    summary = json.loads(result.stdout)  # --json: the summary alone on stdout
    assert summary["aborted"].startswith("aborted after ")
    assert "e2e_p99<1ms" in summary["aborted"]
    assert summary["counts"].get("NOT_STARTED", 0) >= 10  # 10 s of uploads were still to come
    assert "threshold breached: e2e_p99<1ms" in result.stderr


def test_compare_prints_the_table_and_fails_on_an_injected_regression(
    staged_run: tuple[Path, Any], tmp_path: Path
) -> None:
    folder, _ = staged_run
    same = imgops("loadtest", "compare", str(folder), str(folder), home=tmp_path, columns=80)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regression beyond 10%" in same.stdout
    for figure in ("throughput (images/s)", "e2e p99", "upload p50", "error rate", "cost per 1,000 images"):
        assert figure in same.stdout
    assert max(len(line) for line in same.stdout.splitlines()) <= 80

    summary = json.loads((folder / "summary.json").read_text())
    summary["run_id"] = "slower"
    summary["stages_ms"]["e2e"]["intended"]["p99"] *= 1.5
    summary["throughput_images_per_s"] /= 2
    slower = tmp_path / "slower"
    slower.mkdir()
    (slower / "summary.json").write_text(json.dumps(summary))
    worse = imgops("loadtest", "compare", str(folder), str(slower), "--max-regression", "10%", home=tmp_path)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "2 regression(s) beyond 10%" in worse.stdout
    markdown = imgops("loadtest", "compare", str(folder), str(slower), "--markdown", home=tmp_path)
    assert markdown.returncode == 1
    assert "| e2e p99 |" in markdown.stdout
    assert "+50.0% | **regression** |" in markdown.stdout
