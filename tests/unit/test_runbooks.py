"""A runbook cannot rot silently: every page has the sections on-call expects, and every `imgops` command and
option it tells them to type exists (its --help answers and lists the option)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgops.cli import app

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
PAGES = sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
SECTIONS = (
    "## What fired, what it means for users",
    "## First five minutes",
    "## Verify recovery",
    "## Escalate",
)
COMMAND = re.compile(r"`(imgops [^`]+)`")


def commands_in(page: Path) -> list[list[str]]:
    return [shlex.split(match) for match in COMMAND.findall(page.read_text(encoding="utf-8"))]


def command_path(words: list[str]) -> tuple[list[str], list[str]]:
    """(`imgops dlq redrive`, its --options) from `imgops dlq redrive --stack-name x --id <message-id>`."""
    path = []
    for word in words[1:]:
        if word.startswith(("-", "<")) or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        path.append(word)
    options = [w.split("=", 1)[0] for w in words if w.startswith("--")]
    return path, options


def test_every_alarm_page_is_indexed() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    assert len(PAGES) == 13  # twelve alarms and the composite that pages
    for page in PAGES:
        assert f"]({page.name})" in index, f"{page.name} is missing from runbooks/README.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_has_every_section(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in text, f"{page.name} lacks '{section}'"
    assert re.search(r"^## (Diagnose|Fix)", text, re.MULTILINE), f"{page.name} says neither how to diagnose nor fix"
    assert commands_in(page), f"{page.name} names no imgops command"


@pytest.mark.parametrize("page", [*PAGES, RUNBOOKS / "README.md"], ids=lambda p: p.stem)
def test_every_command_and_option_exists(page: Path) -> None:
    runner = CliRunner()
    for words in commands_in(page):
        path, options = command_path(words)
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{page.name}: `{' '.join(words)}` - `imgops {' '.join(path)}` does not exist"
        for option in options:
            assert option in result.output, f"{page.name}: `imgops {' '.join(path)}` has no option {option}"


def test_one_severity_scale_in_alarms_pages_and_index() -> None:
    """The alarm's description, its page and the index say the same severity, from one place (AlarmSpec)."""
    from dashboards.constructs.monitoring import ALARMS, PIPELINE_UNHEALTHY

    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for spec in [*ALARMS, PIPELINE_UNHEALTHY]:
        page = (RUNBOOKS / f"{spec.slug}.md").read_text(encoding="utf-8")
        assert f"**Severity:** {spec.severity} · " in page, spec.slug
        [row] = [line for line in index.splitlines() if line.startswith(f"| `{spec.slug}` |")]
        assert row.rstrip().endswith(f"| {spec.severity} |"), row
        assert spec.description("imgops").startswith(f"[{spec.severity}] ")
