"""`imgops loadtest run` and `sizing` as a user runs them, on an embedded local stack they start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
    # The worker's REPORT lines still reach the run's figures.
    assert json.loads((folder / "summary.json").read_text())["worker"]["invocations"] == log.count("REPORT RequestId")


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
    for plot in ("throughput", "latency-cdf", "latency-histogram", "worker", "cost"):
        assert f'id="plot-{plot}"' in dom
    assert 'data-plots-loaded="5"' in dom  # every plot decoded as an image in the browser


def test_sizing_recommends_from_measurements(tmp_path: Path) -> None:
    result = imgops(
        "loadtest", "sizing", "--sample", "3", "--memory", "128,1024,1769", "--mix", "jpeg1080=1",
        "--out", str(tmp_path / "runs"), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = (tmp_path / "runs").iterdir()
    sizing = json.loads((folder / "sizing.json").read_text())
    table = {row["memory_mb"]: row for row in sizing["table"]}
    assert set(table) == {128, 1024, 1769}
    assert table[128]["duration_mean_ms"] > table[1024]["duration_mean_ms"] >= table[1769]["duration_mean_ms"]
    assert set(sizing["recommendations_mb"]) == {"cost", "speed", "balanced"}
    assert len(sizing["measurements"]) == 3
    assert "Modeled" in result.stdout
    assert "Measured" in result.stdout


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
