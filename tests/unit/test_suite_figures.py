"""The docs state the suite's measured time: docs/testing.md › How long the suite takes in full, the README's two
commands in short. Each figure there is rendered from benchmarks/suite.json (the run's command, date, commit and
machine are in the file), so the prose cannot drift from the measurement."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def minutes_seconds(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s"


def figures(data: dict[str, object]) -> list[str]:
    """The phrases docs/testing.md › How long the suite takes must contain, as the data says them."""
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


def section(path: Path, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level, whitespace normalised."""
    level = heading.split(" ", 1)[0]
    text = path.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    ends = [text.find(f"\n{'#' * depth} ") for depth in range(1, len(level) + 1)]
    end = min((index for index in ends if index >= 0), default=len(text))
    return " ".join(text[:end].split())


def readme_figures(data: dict[str, object]) -> list[str]:
    """The phrases the README's two commands must contain: the main job's time in the suite and the suite's time."""
    longest = data["longest_seconds"]
    assert isinstance(longest, dict)
    return [
        f"the main job took {round(float(longest['main job']) / 60)} min",
        str(data["date"]),
        f"it took {minutes_seconds(float(data['total_seconds']))} on a fresh clone "  # type: ignore[arg-type]
        f"at commit {data['commit']}",
        *(figure.replace(" in all", "") for figure in spread(data)),
    ]


def load() -> dict[str, object]:
    data = json.loads((ROOT / "benchmarks" / "suite.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_testing_docs_suite_time_is_the_measured_one() -> None:
    text = section(ROOT / "docs" / "testing.md", "## How long the suite takes")
    missing = [figure for figure in figures(load()) if figure not in text]
    assert missing == [], f"docs/testing.md › How long the suite takes disagrees with benchmarks/suite.json: {missing}"


def test_the_readmes_two_commands_state_the_measured_times() -> None:
    text = section(ROOT / "README.md", "## Two commands")
    missing = [figure for figure in readme_figures(load()) if figure not in text]
    assert missing == [], f"README › Two commands disagrees with benchmarks/suite.json: {missing}"
