"""README › Tests states the suite's measured time: each figure there is rendered from benchmarks/suite.json (the
run's command, date, commit and machine are in the file), so the prose cannot drift from the measurement."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def minutes_seconds(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s"


def figures(data: dict[str, object]) -> list[str]:
    """The phrases README › Tests must contain, as the data says them."""
    longest = data["longest_seconds"]
    assert isinstance(longest, dict)
    user, system = float(data["cpu_user_seconds"]), float(data["cpu_system_seconds"])  # type: ignore[arg-type]
    return [
        f"at commit {data['commit']}",
        f"({data['date']}, `{data['command']}`",
        f"{int(data['passed']):,} passed, {data['skipped']} skipped",  # type: ignore[call-overload]
        f"{minutes_seconds(float(data['total_seconds']))} in all",  # type: ignore[arg-type]
        f"({minutes_seconds(float(data['pytest_seconds']))} of tests",  # type: ignore[arg-type]
        f"it was {minutes_seconds(float(data['before_total_seconds']))}",  # type: ignore[arg-type]
        f"{round((user + system) / 60)} CPU-minutes",
        f"({round(user):,} s user, {round(system)} s system)",
        *(f"{name} ({round(seconds / 60)} min" for name, seconds in longest.items()),
        *spread(data),
    ]


def spread(data: dict[str, object]) -> list[str]:
    """The range of every recorded run's total time, and how many runs it covers."""
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        return []
    totals = [float(run["total_seconds"]) for run in runs]
    fastest, slowest = minutes_seconds(min(totals)), minutes_seconds(max(totals))
    return [f"{len(runs)} such runs took {fastest} to {slowest} in all"]


def test_the_readmes_suite_time_is_the_measured_one() -> None:
    data = json.loads((ROOT / "benchmarks" / "suite.json").read_text(encoding="utf-8"))
    tests_section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Tests", 1)[1].split("\n## ", 1)[0]
    text = " ".join(tests_section.split())
    missing = [figure for figure in figures(data) if figure not in text]
    assert missing == [], f"README › Tests disagrees with benchmarks/suite.json: {missing}"
