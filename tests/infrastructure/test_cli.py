"""`imgops dashboards synth` end to end, in-process: the other architecture and scan rate, bundling skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from imgops.dashboards import app

runner = CliRunner()


def test_synth_writes_the_template_and_counts_dashboards_and_alarms(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"

    result = runner.invoke(
        app, ["synth", "--out", str(out), "--skip-bundling", "--arch", "x86_64", "--metrics-rate", "60"]
    )

    assert result.exit_code == 0, result.output
    template_path = out / "Imgops.template.json"
    assert str(template_path) in result.stdout.splitlines()
    assert "2 dashboards, 12 alarms" in result.stdout
    assert "Bundling asset" not in result.output  # nothing is bundled: no bundling chatter
    template: dict[str, Any] = json.loads(template_path.read_text())
    resources = template["Resources"].values()
    functions = [r["Properties"] for r in resources if r["Type"] == "AWS::Lambda::Function"]
    assert {tuple(f["Architectures"]) for f in functions} == {("x86_64",)}
    schedules = {r["Properties"].get("ScheduleExpression") for r in resources if r["Type"] == "AWS::Events::Rule"}
    assert schedules == {"rate(1 hour)", "rate(1 minute)", None}  # the reconciler, the publisher, S3's events
    [metrics_function] = [f for f in functions if f["Handler"] == "monitoring.reconcile.handler"]
    assert metrics_function["Timeout"] == 900
    custom_alarms = [
        r["Properties"]
        for r in resources
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["Metrics"][0]["MetricStat"]["Metric"]["Namespace"] == "CustomS3"
    ]
    periods = {a["AlarmName"]: a["Metrics"][0]["MetricStat"]["Period"] for a in custom_alarms}
    # Drift follows the reconciler's rate; sizes and counts the publisher's minute, whatever the rate.
    assert {name: period for name, period in periods.items() if "drift" in name} == {
        "imgops-capacity-drift-uploads": 3600,
        "imgops-capacity-drift-processed": 3600,
    }
    assert {period for name, period in periods.items() if "drift" not in name} == {60}


def test_a_bad_option_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--skip-bundling", "--prefix", "Not_Valid"])

    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: imgops:prefix='Not_Valid'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
