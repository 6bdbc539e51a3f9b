"""The open-model stage scheduler: parsing, intended start times by hand, and the harness keeping to them
(late and dropped starts) against the loopback sink."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtest.corpus import CorpusImage
from loadtest.harness import LoadTest, RunOptions
from loadtest.sink import UploadSink
from loadtest.stages import Schedule, Stage, StagesError, parse_duration, parse_rate, parse_stages
from loadtest.targets import sink_target


def test_durations_and_rates() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2h") == 7200
    assert parse_duration("1.5m") == 90
    assert parse_duration("45") == 45
    assert parse_rate("20/s") == 20
    assert parse_rate("600/m") == 10
    assert parse_rate("7") == 7
    assert parse_rate("0/s") == 0
    for bad in ("", "30x", "s30", "-1s"):
        with pytest.raises(StagesError):
            parse_duration(bad)
    with pytest.raises(StagesError, match="not a rate"):
        parse_rate("fast")


def test_parse_stages_and_refuse_nonsense() -> None:
    schedule = parse_stages("30s:2/s, 60s:20/s,30s:0/s")
    assert schedule.stages == (Stage(30, 2), Stage(60, 20), Stage(30, 0))
    assert schedule.duration_s == 120
    # ∫ rate: ramp 0→2 over 30 s = 30, 2→20 over 60 s = 660, 20→0 over 30 s = 300.
    assert schedule.total_arrivals == pytest.approx(990)
    for bad, message in (
        ("30s", "DURATION:RATE"),
        ("", "no stages"),
        ("0s:5/s", "0 seconds"),
        ("10s:0/s", "no upload"),
    ):
        with pytest.raises(StagesError, match=message):
            parse_stages(bad)
    with pytest.raises(StagesError, match="at most"):
        parse_stages("1h:10000/s")


def test_constant_rate_matches_the_old_rate_option() -> None:
    schedule = Schedule.constant(4, 10)
    assert schedule.count() == 10
    assert schedule.offsets() == pytest.approx([i / 4 for i in range(10)])  # what --rate always did: i / rate
    assert schedule.expected_per_second() == pytest.approx([4, 4, 2])  # 10 starts over 2.5 s


def test_ramp_offsets_by_hand() -> None:
    # 0 → 2/s over 10 s: N(t) = t²/10, so the i-th start is at t = sqrt(10·i).
    schedule = parse_stages("10s:2/s")
    assert schedule.count() == 10
    assert schedule.offsets() == pytest.approx([math.sqrt(10 * i) for i in range(10)])
    assert schedule.rate_at(5) == pytest.approx(1)
    assert schedule.expected_per_second()[0] == pytest.approx(0.1)  # N(1) - N(0)
    assert sum(schedule.expected_per_second()) == pytest.approx(10)


def test_jump_hold_and_ramp_down() -> None:
    # Jump to 5/s, hold 4 s (20 starts at 0, 0.2, …), ramp down to 0 over 2 s (5 more).
    schedule = parse_stages("0s:5/s,4s:5/s,2s:0/s")
    offsets = schedule.offsets()
    assert schedule.count() == 25
    assert offsets[:20] == pytest.approx([i / 5 for i in range(20)])
    # Ramp down: N(4 + u) = 20 + 5u - 1.25u², so start 20 + k is where 5u - 1.25u² = k.
    expected = [4 + (5 - math.sqrt(25 - 5 * k)) / 2.5 for k in range(5)]
    assert offsets[20:] == pytest.approx(expected)
    assert offsets == sorted(offsets)
    assert schedule.offsets(limit=3) == pytest.approx([0, 0.2, 0.4])


def test_a_fractional_total_still_starts_the_last_whole_arrival() -> None:
    schedule = parse_stages("3s:1/s")  # N(3) = 1.5: starts at N = 0 and N = 1
    assert schedule.count() == 2
    assert schedule.offsets() == pytest.approx([0, math.sqrt(6)])


def _tiny_corpus(tmp_path: Path, count: int) -> list[CorpusImage]:
    path = tmp_path / "tiny.webp"
    path.write_bytes(b"RIFF" + bytes(2048))
    return [CorpusImage(path, "webp", "image/webp", 64, 64, path.stat().st_size, 1)] * count


def test_harness_keeps_to_the_schedule_against_the_sink(tmp_path: Path) -> None:
    """Open model, plenty of slots: every start on time (intended vs actual within a few ms), none dropped."""
    plan = _tiny_corpus(tmp_path, 20)
    with UploadSink() as sink:
        options = RunOptions(concurrency=8, schedule=parse_stages("0s:20/s,1s:20/s"), wait_for_results=False)
        state = LoadTest(sink_target(sink.url), plan, options).run()
    assert state.counts() == {"SENT": 20}
    for record in state.records:
        assert record.intended_at is not None
        assert record.started_at is not None
        assert record.intended_at == pytest.approx(state.started + record.index / 20)
        assert record.start_lag_ms is not None
        assert record.start_lag_ms < 40
    assert sum(r.late for r in state.records) <= 1


def test_harness_drops_starts_it_cannot_make_in_time(tmp_path: Path) -> None:
    """One slot, 500 starts/s asked, no lag allowed: most starts are dropped (never sent), none silently late."""
    plan = _tiny_corpus(tmp_path, 200)
    with UploadSink() as sink:
        options = RunOptions(concurrency=1, rate=500, max_lag_seconds=0.0, wait_for_results=False)
        state = LoadTest(sink_target(sink.url), plan, options).run()
    counts = state.counts()
    assert counts.get("DROPPED", 0) > 50
    assert counts.get("SENT", 0) + counts.get("DROPPED", 0) == 200
    sent = [r for r in state.records if r.status == "SENT"]
    assert all(r.started_at is not None for r in sent)
    assert all(r.started_at is None and "no upload slot" in r.reason for r in state.records if r.status == "DROPPED")


def test_an_abort_stops_the_run_and_leaves_the_rest_not_started(tmp_path: Path) -> None:
    plan = _tiny_corpus(tmp_path, 40)
    with UploadSink() as sink:
        options = RunOptions(concurrency=2, rate=10, wait_for_results=False)
        state = LoadTest(sink_target(sink.url), plan, options).run(
            should_stop=lambda s: "enough" if sum(r.status == "SENT" for r in s.records) >= 5 else None
        )
    assert state.aborted == "enough"
    counts = state.counts()
    assert counts.get("NOT_STARTED", 0) >= 20
    assert counts.get("SENT", 0) >= 5
