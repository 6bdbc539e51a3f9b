"""A drill whose cause does not fire its alarm fails: DRILL FAILED naming the alarm and its last state, exit 1,
no traceback. Runs the framework's waits against alarms that stay OK (no stack: milliseconds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards.alarms import AlarmDefinition, Evaluation
from drills import framework
from drills.framework import Drill, DrillFailed, DrillOptions, DrillResult, Session
from imgops.cli import app
from localaws.faults import FaultInjector, FaultSpecError, parse_rules, write_rules

DEFINITION = AlarmDefinition(
    name="drill-dlq-not-empty",
    description="",
    namespace="AWS/SQS",
    metric_name="ApproximateNumberOfMessagesVisible",
    dimensions=(),
    stat="Maximum",
    period=300,
    evaluation_periods=1,
    datapoints_to_alarm=1,
    threshold=0.0,
    comparison="GreaterThanThreshold",
    treat_missing_data="notBreaching",
)


class QuietStack(Session):
    """A session whose alarms stay OK whatever the drill does, and whose ops topic stays silent."""

    def __init__(self) -> None:  # no stack behind it
        self.last = {}
        self.notices = []
        self._mark = 0
        self._step = 0
        self.say = lambda line: None

    def states(self) -> dict[str, str]:
        reason = "0 of the last 1 datapoints breaching"
        self.last = {"dlq-not-empty": Evaluation(DEFINITION, "OK", [0.0], reason)}
        return {"dlq-not-empty": "OK"}

    def drain(self) -> list[dict[str, Any]]:
        return []


def cause_nothing(session: Session) -> str:
    session.step("A cause that changes nothing")
    session.expect_alarm("dlq-not-empty", timeout=1.0)
    return "unreachable"


def test_a_cause_that_fires_nothing_fails_the_drill_with_the_alarms_last_state() -> None:
    with pytest.raises(DrillFailed, match=r"dlq-not-empty did not become ALARM within 1 s \(last: OK, 0 of"):
        cause_nothing(QuietStack())


def test_the_cli_says_drill_failed_and_exits_1_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_drills(
        drills: Sequence[Drill], options: DrillOptions, say: Callable[[str], None], **_: Any
    ) -> list[DrillResult]:
        assert [drill.alarm for drill in drills] == ["dlq-not-empty"]
        cause_nothing(QuietStack())
        return []

    monkeypatch.setattr(framework, "run_drills", run_drills)
    result = CliRunner().invoke(app, ["drill", "dlq"], env={"COLUMNS": "80"})
    assert result.exit_code == 1
    assert "DRILL FAILED: dlq-not-empty did not become ALARM within 1 s" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_delay_fault_slows_the_call_and_lets_it_through(tmp_path: Path) -> None:
    """The duration drill's slow dependency: `DELAY<seconds>` waits, then the real call goes ahead."""
    rules = tmp_path / "faults.json"
    write_rules(rules, parse_rules("s3:GetObject=1:DELAY0.05"))
    injector = FaultInjector(rules)
    started = time.monotonic()
    assert injector("before-send.s3.GetObject") is None
    assert time.monotonic() - started >= 0.05
    assert injector("before-send.s3.PutObject") is None
    with pytest.raises(FaultSpecError, match="DELAY<seconds>"):
        parse_rules("s3:GetObject=1:DELAYsoon")
