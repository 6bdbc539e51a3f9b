"""The sizing probe runs the real handler in a child process; a cgroup cap really kills it when too small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest.local.cgroups import memory_writable
from loadtest.sizing import measure, runs_out_of_memory
from monitoring.target import StackInfo
from tests.conftest import jpeg_bytes


@pytest.fixture
def probe_job(stack: StackInfo, s3: Any, tmp_path: Path) -> tuple[list[dict[str, str]], str, dict[str, str]]:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(4032, 3024))
    bucket = f"{stack.prefix}-sizing"
    s3.create_bucket(Bucket=bucket)
    environment = {**stack.handler_environment(), "POWERTOOLS_LOG_LEVEL": "ERROR"}
    return [{"path": str(photo), "content_type": "image/jpeg"}] * 2, bucket, environment


def test_probe_measures_each_invocation(probe_job: tuple[list[dict[str, str]], str, dict[str, str]]) -> None:
    images, bucket, environment = probe_job
    measurements, returncode = measure(images, bucket=bucket, environment=environment)
    assert returncode == 0
    assert len(measurements) == 2  # the warm-up call is dropped
    for measurement in measurements:
        assert 0 < measurement.cpu_ms <= measurement.wall_ms * 1.05 + 5
        assert 30 < measurement.peak_rss_mb < 1024


@pytest.mark.skipif(not memory_writable(), reason="cgroup v1 memory controller not writable here")
def test_memory_cap_is_real(probe_job: tuple[list[dict[str, str]], str, dict[str, str]]) -> None:
    images, bucket, environment = probe_job
    assert runs_out_of_memory(images, bucket=bucket, environment=environment, memory_mb=40) is True
    assert runs_out_of_memory(images, bucket=bucket, environment=environment, memory_mb=1024) is False
