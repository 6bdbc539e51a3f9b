"""Time-boxed fuzzing of make_thumbnails: mutated real files must come out as thumbnails or ImageRejected.

Anything else escaping (a Pillow error type the module does not map, a crash, a hang) is a bug: the worker
would retry a permanently bad upload until it reached the DLQ. IMGOPS_FUZZ_SECONDS sets the time box
(default 10 s for the hypothesis runs, a third of it for atheris when installed); a longer local run:
`IMGOPS_FUZZ_SECONDS=600 .venv/bin/pytest tests/fuzz -s`.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.imaging import ImageOptions, ImageRejected, make_thumbnails
from tests.fuzz.seeds import seed_files

FUZZ_SECONDS = float(os.environ.get("IMGOPS_FUZZ_SECONDS", "10"))
BATCH_EXAMPLES = 150
OPTIONS = ImageOptions(sizes=(64, 16))
SLOW_SECONDS = 5.0  # one input taking this long is a denial of service, not a slow test
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)

pytestmark = pytest.mark.fuzz


@dataclass(frozen=True)
class Mutation:
    """One edit; positions wrap around the file, so every mutation applies to every seed."""

    kind: str
    at: int
    size: int = 1
    payload: bytes = b""

    def apply(self, data: bytearray, donor: bytes) -> bytearray:
        at = self.at % (len(data) + 1)
        if self.kind == "set" and at < len(data):
            data[at] = self.size & 0xFF
        elif self.kind == "flip" and at < len(data):
            data[at] ^= 1 << (self.size % 8)
        elif self.kind == "insert":
            data[at:at] = self.payload
        elif self.kind == "delete":
            del data[at : at + self.size]
        elif self.kind == "duplicate":
            data[at:at] = data[at : at + self.size]
        elif self.kind == "number":  # length and size fields are where parsers go wrong
            value = INTERESTING[self.size % len(INTERESTING)]
            packed = struct.pack(">I" if self.size % 2 else "<I", value)[: 2 if self.size % 3 == 0 else 4]
            data[at : at + len(packed)] = packed
        elif self.kind == "truncate":
            del data[at:]
        elif self.kind == "splice":
            data[at:] = donor[at % (len(donor) + 1) :]
        return data


positions = st.one_of(st.integers(0, 400), st.integers(0, 1 << 20))  # headers get half the attention
mutations = st.builds(
    Mutation,
    kind=st.sampled_from(["set", "flip", "insert", "delete", "duplicate", "number", "truncate", "splice"]),
    at=positions,
    size=st.integers(1, 300),
    payload=st.binary(min_size=1, max_size=64),
)


def outcome(data: bytes) -> str:
    started = time.perf_counter()
    reason = None
    try:
        make_thumbnails(data, OPTIONS)
    except ImageRejected as exc:
        reason = exc.reason
    assert reason is None or reason, "a refusal must say why"
    elapsed = time.perf_counter() - started
    assert elapsed < SLOW_SECONDS, f"one input took {elapsed:.1f} s"
    return "processed" if reason is None else "rejected"


def test_mutated_real_files_are_processed_or_rejected() -> None:
    seeds = seed_files()
    names = sorted(seeds)
    assert {outcome(seeds[name]) for name in names} == {"processed"}, "every seed must be a valid upload"
    tally: Counter[str] = Counter()

    # Short hypothesis runs back to back until the time box is spent: each run is deterministic (so a failure
    # shrinks to a minimal input), and a fresh random seed per run keeps the search moving.
    @settings(
        max_examples=BATCH_EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=st.sampled_from(names), donor=st.sampled_from(names), edits=st.lists(mutations, min_size=1, max_size=6))
    def fuzz_one(seed: str, donor: str, edits: list[Mutation]) -> None:
        data = bytearray(seeds[seed])
        for edit in edits:
            data = edit.apply(data, seeds[donor])
        tally[outcome(bytes(data))] += 1

    started = time.monotonic()
    runs = 0
    while time.monotonic() - started < FUZZ_SECONDS:
        fuzz_one()
        runs += 1
    print(f"\nfuzz: {dict(tally)} from {runs} hypothesis runs in {time.monotonic() - started:.1f} s")
    assert tally["processed"] > 10, tally
    assert tally["rejected"] > 10, tally


ATHERIS_TARGET = "tests.fuzz.atheris_imaging"


@pytest.mark.skipif(find_spec("atheris") is None, reason="atheris is not installed (optional; see its module)")
def test_atheris_coverage_guided_run_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in seed_files().items():
        (corpus / name).write_bytes(data)
    seconds = max(1, round(FUZZ_SECONDS / 3))  # plus ~4 s to instrument Pillow on import
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            ATHERIS_TARGET,
            str(corpus),
            f"-max_total_time={seconds}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=Path(__file__).resolve().parents[2],
    )
    tail = done.stderr[-3000:]
    assert done.returncode == 0, tail
    assert "Done " in tail, tail  # libFuzzer's summary line: it ran to the time box
    assert not list(tmp_path.glob("crash-*")), tail
