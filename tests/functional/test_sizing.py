"""Sizing against a real (moto) stack: its own temporary resources, the pipeline's untouched, a probe failure in
the probe's own words, the worst-case floor under real memory caps, and the CFS calibration."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dashboards.template import stack_template
from loadtest.corpus import CorpusImage
from localaws.cgroups import cpu_writable, memory_writable
from monitoring.target import StackInfo, for_local
from sizing.memory import (
    CALIBRATION_QUOTAS,
    ProbeItem,
    Prober,
    SizingError,
    WorkerSpec,
    calibrate,
    scratch_resources,
    worker_spec,
    worst_case_floor,
)
from tests.conftest import jpeg_bytes

capped = pytest.mark.skipif(not memory_writable(), reason="cgroup v1 memory controller not writable here")
# Generated worst-case inputs, kept between runs (as tests/e2e/test_loadtest.py keeps them).
SIZING_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgops" / "test-sizing-corpus"


@pytest.fixture
def spec(stack: StackInfo) -> WorkerSpec:
    return worker_spec(stack_template(stack.prefix))


@pytest.fixture
def photo(tmp_path: Path) -> CorpusImage:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(1920, 1080))
    return CorpusImage(path, "jpeg1080", "image/jpeg", 1920, 1080, path.stat().st_size, 1)


def pipeline_contents(stack: StackInfo, s3: Any, dynamodb: Any) -> tuple[list[str], list[str], list[str]]:
    def keys(bucket: str) -> list[str]:
        return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    items = sorted(item["imageId"]["S"] for item in dynamodb.scan(TableName=stack.images_table)["Items"])
    return keys(stack.upload_bucket), keys(stack.processed_bucket), items


def test_sizing_writes_only_into_its_own_temporary_resources(
    stack: StackInfo, spec: WorkerSpec, photo: CorpusImage, s3: Any
) -> None:
    target = for_local(stack)
    dynamodb = target.client("dynamodb")
    s3.put_object(Bucket=stack.processed_bucket, Key="processed/existing/256.jpg", Body=b"thumb")
    dynamodb.put_item(TableName=stack.images_table, Item={"imageId": {"S": "existing"}, "status": {"S": "DONE"}})
    before = pipeline_contents(stack, s3, dynamodb)
    buckets_before = {b["Name"] for b in s3.list_buckets()["Buckets"]}

    with scratch_resources(target, spec) as scratch:
        run = Prober(scratch, spec).run([ProbeItem(photo, warmup=True), ProbeItem(photo)])
        assert run.completed
        written = s3.list_objects_v2(Bucket=scratch.bucket, Prefix="processed/")["KeyCount"]
        assert written == 2 * 3  # two images, three thumbnails each, in the scratch bucket
        assert len(dynamodb.scan(TableName=scratch.table)["Items"]) == 2

    assert pipeline_contents(stack, s3, dynamodb) == before
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == buckets_before  # the scratch bucket is gone
    assert scratch.table not in dynamodb.list_tables()["TableNames"]
    topics = [t["TopicArn"] for t in target.client("sns").list_topics()["Topics"]]
    assert scratch.topic_arn not in topics


def test_a_probe_failure_shows_the_probes_own_error(stack: StackInfo, spec: WorkerSpec, photo: CorpusImage) -> None:
    target = for_local(stack)
    with scratch_resources(target, spec) as scratch:
        broken = replace(scratch, table=f"{scratch.table}-missing")  # the worker's claim cannot be written
        with pytest.raises(SizingError) as failure:
            Prober(broken, spec).run([ProbeItem(photo)])
    message = str(failure.value)
    assert message.startswith("the worker probe failed (exit code ")
    assert "upload will be retried: ResourceNotFoundException: claim (PutItem)" in message
    assert "ResourceNotFoundException" in message
    assert "\n" not in message


@pytest.mark.slow
@capped
def test_the_worst_case_floor_is_measured_under_real_caps(
    stack: StackInfo, spec: WorkerSpec, photo: CorpusImage
) -> None:
    small = replace(spec, max_pixels=2_000_000)  # a small cap keeps the test quick; the method is the same
    steps: list[str] = []
    with scratch_resources(for_local(stack), small) as scratch:
        floor = worst_case_floor(
            Prober(scratch, small), small, (100, 512), ProbeItem(photo, warmup=True), SIZING_CACHE, steps.append
        )
    assert len(steps) == 1 + 3 + 2 * 2
    assert floor.kind.startswith("webp-")  # WebP decodes through an extra full-size buffer: the hungriest here
    assert {c["kind"] for c in floor.candidates} >= {"png-rgba", "webp-rgba", "jpeg-cmyk"}
    assert floor.pixels <= 2_000_000
    assert floor.fit.mb_per_megapixel > 8  # at least the decoded RGBA plus its premultiplied copy
    assert floor.by_size[100]["outcome"] in {"OOM", "OOM (RSS)"}
    assert floor.by_size[512]["outcome"] == "survives"
    assert floor.floor_mb == 512
    assert 0 <= floor.by_size[100]["max_pixels"] < 2_000_000  # what would fit a 100 MB worker


@pytest.mark.skipif(not (memory_writable() and cpu_writable()), reason="cgroup v1 cpu controller not writable")
def test_calibration_compares_cfs_throttling_with_the_linear_share() -> None:
    points = {point.quota_pct: point for point in calibrate(iterations=1_500_000)}
    assert set(points) == set(CALIBRATION_QUOTAS)
    assert points[25].linear == 4
    assert points[25].ratio > points[100].ratio  # throttled: the same CPU work takes longer on the wall
    assert points[25].ratio > 2  # at least half of what the linear share predicts, even on a busy machine
