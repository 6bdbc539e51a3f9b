"""Every alarm the CDK app defines has a drill (a new alarm without one fails here), and the CLI offers each."""

from __future__ import annotations

from typer.testing import CliRunner

from drills.catalogue import DRILLS
from drills.framework import ALARM_PERIOD_SECONDS, TIME_THRESHOLDS, alarm_slugs, compressed_thresholds
from drills.names import ALIASES, CAUSES
from imgops.cli import app
from tests.infrastructure.conftest import Synthesized


def test_every_alarm_of_the_template_has_a_drill(synthesized: Synthesized) -> None:
    alarms = alarm_slugs(synthesized.json, "imgops")
    assert alarms, "the template defines no alarms"
    assert sorted(drill.alarm for drill in DRILLS) == alarms
    assert sorted(CAUSES) == alarms


def test_the_cli_offers_every_drill_all_and_the_dlq_alias() -> None:
    result = CliRunner().invoke(app, ["drill", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in [*CAUSES, "all", *ALIASES]:
        assert f"  {name} " in result.output or f"  {name}\n" in result.output, name


def test_time_thresholds_are_compressed_like_the_periods(synthesized: Synthesized) -> None:
    """The drill stack's 6 s stand for 5 minutes: the capacity queue's 15 minutes become 18 s, like the others a
    few compressed periods."""
    compressed = compressed_thresholds(synthesized.json, "imgops")

    assert compressed["capacity-event-lag"] == 15 * 60 * ALARM_PERIOD_SECONDS / 300
    assert compressed["queue-oldest-message-age"] == 6  # 3 receives x 2 s
    assert set(compressed) == set(TIME_THRESHOLDS)
