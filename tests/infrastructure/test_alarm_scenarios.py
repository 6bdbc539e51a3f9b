"""Every alarm of the synthesized template against the scenario suite (`imgops alarms test`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from benchmarks.figures import ROOT
from benchmarks.measure import alarm_scenarios
from dashboards import scenarios
from dashboards.template import stack_template
from imgops.cli import app


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return stack_template("imgops")


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_scenario(template: dict[str, Any], scenario: scenarios.Scenario) -> None:
    outcome = scenarios.run(scenario, template)

    assert outcome.problems() == []


def test_the_fully_failing_worker_trips_the_fault_alarm_within_15_minutes(template: dict[str, Any]) -> None:
    [failing] = [s for s in scenarios.SCENARIOS if s.name == "worker-failing"]
    minute = scenarios.run(failing, template).first_alarm["worker-fault-rate"]

    assert minute is not None
    assert minute <= 15


def test_a_3_of_3_fault_alarm_would_miss_it(template: dict[str, Any]) -> None:
    """The suite can fail: with the old definition (3 of 3 periods) the failing worker never trips the alarm."""
    import copy

    strict = copy.deepcopy(template)
    for resource in strict["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"]["AlarmName"].endswith("fault-rate"):
            resource["Properties"]["DatapointsToAlarm"] = 3
    [failing] = [s for s in scenarios.SCENARIOS if s.name == "worker-failing"]

    assert scenarios.run(failing, strict).first_alarm["worker-fault-rate"] is None


def with_alarm(template: dict[str, Any], slug: str, **properties: Any) -> dict[str, Any]:
    """`template` with alarm `imgops-<slug>`'s properties changed."""
    import copy

    changed = copy.deepcopy(template)
    [alarm] = [
        r["Properties"]
        for r in changed["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["AlarmName"] == f"imgops-{slug}"
    ]
    alarm.update(properties)
    return changed


def scenario(name: str) -> scenarios.Scenario:
    [found] = [s for s in scenarios.SCENARIOS if s.name == name]
    return found


def test_a_10_minute_lag_threshold_would_fire_on_one_poison_event(template: dict[str, Any]) -> None:
    """The suite can fail: at 10 minutes the event the counter fails every time (its age reset after 3 receives,
    in the DLQ after 5) holds the lag above the threshold for 5 minutes in a row; at 15 it does not."""
    poison = scenario("poison-capacity-event")
    assert scenarios.run(poison, template).first_alarm["capacity-event-lag"] is None
    tighter = with_alarm(template, "capacity-event-lag", Threshold=600)

    assert scenarios.run(poison, tighter).first_alarm["capacity-event-lag"] is not None


def test_drift_on_2_of_3_would_fire_on_events_in_flight(template: dict[str, Any]) -> None:
    """The suite can fail: drift in flight every other reconciliation never fires 2 of 2, and would fire 2 of 3."""
    in_flight = scenario("in-flight-drift")
    looser = with_alarm(template, "capacity-drift-processed", EvaluationPeriods=3)

    assert scenarios.run(in_flight, looser).first_alarm["capacity-drift-processed"] is not None


def test_the_cli_prints_the_table_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["alarms", "test"], env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    assert "worker-fault-rate" in result.stdout
    assert "quiet-night" in result.stdout


def test_the_runbooks_scenario_table_is_what_the_alarms_do_today() -> None:
    """runbooks/README.md renders benchmarks/alarm-scenarios.json: an alarm or scenario change that moves a minute
    fails here until `python -m benchmarks measure alarm-scenarios` records it (the outcome is deterministic)."""
    result = CliRunner().invoke(app, ["alarms", "test", "--json"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((ROOT / "benchmarks" / "alarm-scenarios.json").read_text(encoding="utf-8"))
    assert alarm_scenarios(Path(), result.stdout)["table"] == recorded["table"]
