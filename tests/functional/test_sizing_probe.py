"""The sizing probe runs the real worker handler in a child process, as one execution environment: init apart,
one measured row per invocation, and a cgroup memory cap that really kills it when too small."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.template import stack_template
from loadtest.corpus import CorpusImage
from localaws.cgroups import memory_writable
from monitoring.target import StackInfo, for_local
from sizing.memory import ProbeItem, Prober, Scratch, WorkerSpec, scratch_resources, worker_spec
from tests.conftest import jpeg_bytes


@pytest.fixture
def spec(stack: StackInfo) -> WorkerSpec:
    return worker_spec(stack_template(stack.prefix))


@pytest.fixture
def scratch(stack: StackInfo, spec: WorkerSpec) -> Iterator[Scratch]:
    with scratch_resources(for_local(stack), spec) as resources:
        yield resources


@pytest.fixture
def photo(tmp_path: Path) -> CorpusImage:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(4032, 3024))
    return CorpusImage(path, "jpeg12mp", "image/jpeg", 4032, 3024, path.stat().st_size, 1)


def test_probe_measures_each_invocation(scratch: Scratch, spec: WorkerSpec, photo: CorpusImage) -> None:
    run = Prober(scratch, spec).run([ProbeItem(photo, warmup=True), ProbeItem(photo), ProbeItem(photo)])

    assert run.completed
    assert run.init_ms is not None
    assert run.init_ms > 0  # spawn to the handler imported: Lambda's init, reported apart
    assert [row["warmup"] for row in run.rows] == [True, False, False]
    for row in run.rows:
        assert 0 < row["cpu_ms"] <= row["wall_ms"] * 1.05 + 5
        assert 0 <= row["wait_ms"] <= row["wall_ms"] + 5
        assert 30 < row["peak_rss_mb"] < 1024


@pytest.mark.skipif(not memory_writable(), reason="cgroup v1 memory controller not writable here")
def test_memory_cap_is_real(scratch: Scratch, spec: WorkerSpec, photo: CorpusImage) -> None:
    prober = Prober(scratch, spec)
    items = [ProbeItem(photo, warmup=True), ProbeItem(photo)]

    assert prober.run(items, memory_mb=40).oom_killed
    survived = prober.run(items, memory_mb=1024, cpu_share=True)
    assert survived.completed
    assert not survived.oom_killed
    assert len(survived.rows) == 2
