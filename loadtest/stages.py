"""Open-model load: when each upload is *meant* to start, from k6-style ramping-arrival-rate stages.

`30s:2/s,60s:20/s,30s:0/s` ramps the start rate linearly from the previous target (0 at the beginning) to
2/s over 30 s, then to 20/s over 60 s, then down to 0 over 30 s. A stage of `0s:5/s` jumps to 5/s at once
(a constant stage is `0s:5/s,60s:5/s`). `--rate R` is one constant stage at R.

The i-th upload (i = 0, 1, …) is intended to start when the cumulative number of arrivals N(t) = ∫ rate
reaches i - the first at t = 0, as `--rate` always did (`i / rate`). The harness starts each upload at its
intended time whatever happened to the ones before (an open model: the load does not slow down when the
system does); what it could not start in time it counts as late or dropped (loadtest/harness.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.errors import ImgopsError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?$")
_PER_SECOND = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A start this far behind its intended time is "late" (it still runs; one past --max-lag is dropped).
LATE_AFTER_SECONDS = 0.05
# Guards against a typo such as `30s:20000/s` asking for an absurd plan.
MAX_ARRIVALS = 10_000_000


class StagesError(ImgopsError, ValueError):
    pass


def parse_duration(text: str) -> float:
    """`90s`, `1m30s`, `500ms`, `2h`, `1.5m` → seconds (a bare number is seconds)."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise StagesError("empty duration")
    try:
        seconds = float(cleaned)
    except ValueError:
        pass
    else:
        if seconds < 0 or not math.isfinite(seconds):
            raise StagesError(f"{text!r}: a duration is zero or more")
        return seconds
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise StagesError(f"{text!r} is not a duration: expected e.g. 30s, 1m30s, 500ms, 2h")
    return total


def parse_rate(text: str) -> float:
    """`20/s`, `20`, `600/m`, `0/s` → starts per second."""
    match = _RATE.match(text.strip().lower())
    if match is None:
        raise StagesError(f"{text!r} is not a rate: expected e.g. 20/s, 600/m or 0/s")
    return float(match.group(1)) / _PER_SECOND[match.group(2) or "s"]


@dataclass(frozen=True)
class Stage:
    duration_s: float
    target_rate: float  # starts per second reached at the end of the stage

    def __str__(self) -> str:
        return f"{_seconds_text(self.duration_s)}:{self.target_rate:g}/s"


@dataclass(frozen=True)
class Schedule:
    """Piecewise-linear start rate. `start_rate` is the rate at t = 0 (k6's `startRate`)."""

    stages: tuple[Stage, ...]
    start_rate: float = 0.0

    @classmethod
    def constant(cls, rate: float, images: int) -> Schedule:
        """`--rate`: `images` starts at `rate` per second (the last at (images - 1) / rate)."""
        if rate <= 0:
            raise StagesError("--rate must be above 0")
        return cls((Stage(images / rate, rate),), start_rate=rate)

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)

    def _segments(self) -> Iterator[tuple[float, float, float, float]]:
        """(start time, duration, rate at start, rate at end) per stage."""
        at, rate = 0.0, self.start_rate
        for stage in self.stages:
            yield at, stage.duration_s, rate, stage.target_rate
            at, rate = at + stage.duration_s, stage.target_rate

    def rate_at(self, t: float) -> float:
        """The target start rate at `t` seconds (0 outside the schedule)."""
        for start, duration, r0, r1 in self._segments():
            if start <= t < start + duration:
                return r0 + (r1 - r0) * (t - start) / duration
        return 0.0

    def arrivals_until(self, t: float) -> float:
        """N(t): the starts the schedule asks for in [0, t]."""
        total = 0.0
        for start, duration, r0, r1 in self._segments():
            if t <= start:
                break
            span = min(t - start, duration)
            total += r0 * span + (r1 - r0) * span * span / (2 * duration) if duration > 0 else 0.0
        return total

    @property
    def total_arrivals(self) -> float:
        return self.arrivals_until(self.duration_s)

    def count(self) -> int:
        """How many uploads the schedule starts: every i with N(t_i) = i inside the schedule."""
        total = self.total_arrivals
        if total > MAX_ARRIVALS:
            raise StagesError(f"the stages ask for {total:,.0f} uploads; at most {MAX_ARRIVALS:,} per run")
        # N(T) = 3.0 exactly for `--rate 1 --images 3` means starts at 0, 1, 2: a start at T itself is not run.
        whole = math.floor(total + 1e-9)
        return whole if abs(total - whole) < 1e-9 else whole + 1

    def offsets(self, limit: int | None = None) -> list[float]:
        """Intended start of each upload, in seconds after the run starts (ascending)."""
        wanted = self.count() if limit is None else min(limit, self.count())
        result: list[float] = []
        done = 0.0  # N at the start of the segment
        for start, duration, r0, r1 in self._segments():
            if len(result) >= wanted:
                break
            if duration <= 0:
                continue
            in_segment = r0 * duration + (r1 - r0) * duration / 2
            while len(result) < wanted and len(result) - done < in_segment - 1e-9:
                result.append(start + _solve(len(result) - done, duration, r0, r1))
            done += in_segment
        return result

    def expected_per_second(self) -> list[float]:
        """Starts the schedule asks for in each whole second [s, s + 1): the 'target' column of the timeline."""
        seconds = math.ceil(self.duration_s - 1e-9)
        return [self.arrivals_until(s + 1) - self.arrivals_until(s) for s in range(seconds)]

    def describe(self) -> str:
        head = f"from {self.start_rate:g}/s: " if self.start_rate else ""
        return head + ", ".join(str(stage) for stage in self.stages)

    def as_dict(self) -> dict[str, object]:
        return {
            "start_rate": self.start_rate,
            "stages": [{"duration_s": s.duration_s, "target_rate": s.target_rate} for s in self.stages],
            "duration_s": self.duration_s,
            "arrivals": round(self.total_arrivals, 3),
        }


def _solve(n: float, duration: float, r0: float, r1: float) -> float:
    """The t in [0, duration] where r0·t + (r1 - r0)·t²/(2·duration) = n."""
    slope = (r1 - r0) / duration
    if abs(slope) < 1e-12:
        return n / r0
    # slope/2 · t² + r0 · t - n = 0; the root that is ≥ 0 and reached first.
    discriminant = max(0.0, r0 * r0 + 2 * slope * n)
    root = math.sqrt(discriminant)
    # Written to avoid cancellation when r0 is large and n small.
    t = 2 * n / (r0 + root) if r0 + root > 0 else (-r0 + root) / slope
    return min(max(t, 0.0), duration)


def parse_stages(text: str) -> Schedule:
    """`30s:2/s,60s:20/s,30s:0/s` → a Schedule starting at 0/s."""
    stages: list[Stage] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        duration_text, separator, rate_text = part.partition(":")
        if not separator:
            raise StagesError(f"{part!r}: expected DURATION:RATE, e.g. 30s:20/s")
        stages.append(Stage(parse_duration(duration_text), parse_rate(rate_text)))
    if not stages:
        raise StagesError("no stages: expected e.g. 30s:2/s,60s:20/s,30s:0/s")
    schedule = Schedule(tuple(stages))
    if schedule.duration_s <= 0:
        raise StagesError(f"{text!r}: the stages last 0 seconds")
    if schedule.total_arrivals < 1 - 1e-9:
        raise StagesError(f"{text!r} starts no upload (fewer than 1 arrival in {schedule.duration_s:g} s)")
    schedule.count()  # refuses absurd plans early
    return schedule


def _seconds_text(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
