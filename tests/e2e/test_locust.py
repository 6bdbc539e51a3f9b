"""`imgops loadtest locust`: a headless Locust master and 2 workers on loopback drive the same user flow against
the local stack; every upload is accounted for, and the run folder is written from Locust's results."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loadtest.summary import histograms_from_frame, percentiles
from tests.e2e.conftest import start_local_up, stop

# Never import locust here: it monkey-patches the process (gevent) it is imported into. Locust runs in the
# subprocesses `imgops loadtest locust` starts.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason="the Locust scale-out is an extra: pip install 'imgops[locust]' (scripts/test installs it)",
    ),
]

UPLOADS = 16


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("locust")
    process, _, _ = start_local_up(home / "state", "--workers", "2")
    yield home
    stop(process)


def test_master_and_two_workers_account_for_every_upload(home: Path) -> None:
    env = {**os.environ, "IMGOPS_STATE_DIR": str(home / "state"), "COLUMNS": "80"}
    env.pop("AWS_ENDPOINT_URL", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "imgops", "loadtest", "locust", "--workers", "2", "--users", "4",
            "--max-images", str(UPLOADS), "--run-time", "150s", "--master-host", "127.0.0.1",
            "--mix", "jpeg1080=1", "--corpus-size", "3", "--threshold", "failed_rate<1%",
            "--out", str(home / "runs"),
        ],
        env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = (home / "runs").iterdir()

    # Every upload, from both workers, ended DONE - seen by the worker that sent it.
    rows = pd.read_parquet(folder / "images.parquet")
    assert len(rows) == UPLOADS
    assert rows["status"].eq("DONE").all(), rows[["status", "reason"]]
    assert rows["image_id"].nunique() == UPLOADS
    assert sorted(rows["worker"].value_counts().tolist()) == [UPLOADS // 2, UPLOADS // 2]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"] == {"DONE": UPLOADS}
    assert summary["load_generator"] == {"tool": "locust", "workers": 2, "users": 4, "pacing_s": 0.0}
    assert summary["worker"]["invocations"] >= 2
    assert summary["thresholds_ok"] is True

    # Locust's own statistics count the same uploads and completions.
    stats = pd.read_csv(folder / "locust_stats.csv").set_index("Name")
    for name in ("presign", "upload", "notify", "e2e"):
        assert stats.loc[name, "Request Count"] == UPLOADS, name
        assert stats.loc[name, "Failure Count"] == 0, name

    # The master merged the workers' encoded HDR histograms: the same percentiles as all rows recorded at once.
    merged = histograms_from_frame(rows)
    for stage in ("presign", "upload", "e2e"):
        for view in ("intended", "actual"):
            assert summary["stages_ms"][stage][view] == percentiles(merged[f"{stage}.{view}"]), (stage, view)

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[2] / "loadtest" / "summary.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(summary)
    for name in ("report.html", "locust.html", "histograms.json", "timeline.csv", "worker-reports.csv"):
        assert (folder / name).is_file(), name
    assert f"Run {folder.name} on local: DONE {UPLOADS}" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_print_shows_the_master_and_worker_commands(home: Path) -> None:
    env = {**os.environ, "IMGOPS_STATE_DIR": str(home / "state"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "imgops", "loadtest", "locust", "--workers", "3", "--print", "--master-port", "5599"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--master --headless --expect-workers=3" in result.stdout
    assert "--worker --master-host=127.0.0.1 --master-port=5599" in result.stdout
    assert "locustfile.py" in result.stdout
