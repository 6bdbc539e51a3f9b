"""CloudWatch's alarm rules as `imgops alarms check` applies them (M of N, missing-data treatments)."""

from __future__ import annotations

import pytest

from dashboards.alarms import AlarmDefinition, alarms_from_template, decide


def alarm(**overrides: object) -> AlarmDefinition:
    fields: dict[str, object] = {
        "name": "a", "description": "", "namespace": "AWS/SQS", "metric_name": "M", "dimensions": (),
        "stat": "Maximum", "period": 300, "evaluation_periods": 3, "datapoints_to_alarm": 2, "threshold": 10.0,
        "comparison": "GreaterThanThreshold", "treat_missing_data": "missing",
    }  # fmt: skip
    fields.update(overrides)
    return AlarmDefinition(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "treat", "state"),
    [
        ([11, 12, 1], "missing", "ALARM"),  # 2 of 3 breaching
        ([11, 1, 1], "missing", "OK"),
        ([10, 10, 10], "missing", "OK"),  # the threshold itself does not breach ">"
        ([None, None, None], "missing", "INSUFFICIENT_DATA"),
        ([None, None, None], "notBreaching", "OK"),
        ([None, None, None], "breaching", "ALARM"),
        ([11, None, None], "breaching", "ALARM"),
        ([11, None, None], "notBreaching", "OK"),
        ([11, None, 12], "ignore", "ALARM"),
    ],
)
def test_m_of_n_with_missing_data(values: list[float | None], treat: str, state: str) -> None:
    evaluation = decide(alarm(treat_missing_data=treat), values)
    assert evaluation.state == state
    if state != "INSUFFICIENT_DATA":
        assert f"needs 2): [{', '.join('missing' if v is None else f'{v:g}' for v in values)}]" in evaluation.reason


def test_less_than_for_not_reporting() -> None:
    not_reporting = alarm(
        comparison="LessThanThreshold", threshold=1.0, datapoints_to_alarm=3, treat_missing_data="breaching"
    )
    assert decide(not_reporting, [1, 1, 1]).state == "OK"
    assert decide(not_reporting, [None, None, None]).state == "ALARM"
    assert decide(not_reporting, [1, None, None]).state == "OK"


def test_template_alarms_resolve_names() -> None:
    template = {
        "Resources": {
            "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "p-work-dlq"}},
            "Ops": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "p-ops-alarms"}},
            "Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmName": "p-dlq-not-empty",
                    "AlarmDescription": "Runbook: runbooks/dlq-not-empty.md",
                    "AlarmActions": [{"Ref": "Ops"}],
                    "EvaluationPeriods": 1,
                    "Threshold": 0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                    "Metrics": [
                        {
                            "Id": "m1",
                            "ReturnData": True,
                            "MetricStat": {
                                "Metric": {
                                    "Namespace": "AWS/SQS",
                                    "MetricName": "ApproximateNumberOfMessagesVisible",
                                    "Dimensions": [
                                        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["Dlq", "QueueName"]}},
                                        {"Name": "ApiId", "Value": {"Ref": "Nowhere"}},
                                    ],
                                },
                                "Period": 300,
                                "Stat": "Maximum",
                            },
                        }
                    ],
                },
            },
        }
    }
    [definition] = alarms_from_template(template)
    assert definition.name == "p-dlq-not-empty"
    assert definition.dimensions[0] == ("QueueName", "p-work-dlq")
    assert definition.unresolved == ("ApiId",)
    assert definition.action_topics == ("p-ops-alarms",)
    assert (definition.period, definition.evaluation_periods, definition.datapoints_to_alarm) == (300, 1, 1)
