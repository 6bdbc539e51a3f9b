"""Evaluate the synthesized template's alarms against a target's metrics, as CloudWatch would.

moto stores alarms but never evaluates them nor notifies; on the local stack this module does both, so a
drill sees the same ALARM → OK cycle and the same SNS message on-call would get from AWS.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboards.template import PhysicalIds, Resolver, TemplateError, physical_ids
from monitoring.target import Target

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_SYMBOL = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


@dataclass(frozen=True)
class AlarmDefinition:
    name: str
    description: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str
    action_topics: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()  # dimensions whose value has no local counterpart


@dataclass(frozen=True)
class CompositeDefinition:
    """A composite alarm of the form CDK writes for `AlarmRule.any_of`: ALARM while any child is in ALARM."""

    name: str
    description: str
    rule: str
    children: tuple[str, ...]
    action_topics: tuple[str, ...] = ()

    def decide(self, states: Mapping[str, str]) -> Evaluation:
        firing = [child for child in self.children if states.get(child) == "ALARM"]
        if firing:
            return Evaluation(self, "ALARM", reason=f"in ALARM: {', '.join(firing)}")
        return Evaluation(self, "OK", reason=f"none of {len(self.children)} children in ALARM")


@dataclass
class Evaluation:
    alarm: AlarmDefinition | CompositeDefinition
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    values: list[float | None] = field(default_factory=list)  # oldest first, one per evaluated period
    reason: str = ""


def _resolve(resolver: Resolver, value: Any) -> str | None:
    """A token's value on the target, or None where the target has nothing for it."""
    try:
        resolved = resolver.resolve(value)
    except TemplateError:
        return None
    if not isinstance(resolved, str) or resolved.startswith("<"):
        return None
    return resolved


def alarms_from_template(template: Mapping[str, Any], ids: PhysicalIds | None = None) -> list[AlarmDefinition]:
    """Every AWS::CloudWatch::Alarm with a single metric (what the CDK app defines), its tokens resolved
    against one deployment's `ids`."""
    resolver = Resolver(template, ids or PhysicalIds(region="us-east-1"))
    alarms = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        p = resource["Properties"]
        if "Metrics" in p:
            [query] = [q for q in p["Metrics"] if q.get("ReturnData", True)]
            stat_block = query["MetricStat"]
            metric, period, stat = stat_block["Metric"], int(stat_block["Period"]), str(stat_block["Stat"])
        else:
            metric = {"Namespace": p["Namespace"], "MetricName": p["MetricName"], "Dimensions": p.get("Dimensions", [])}
            period, stat = int(p["Period"]), str(p.get("Statistic") or p.get("ExtendedStatistic"))
        dimensions, unresolved = [], []
        for dimension in metric.get("Dimensions", []):
            value = _resolve(resolver, dimension["Value"])
            if value is None:
                unresolved.append(dimension["Name"])
                value = f"unresolved:{dimension['Name']}"
            dimensions.append((dimension["Name"], value))
        # Actions are topic ARNs; locally the topic is found (or made) by its name.
        arns = (_resolve(resolver, action) for action in p.get("AlarmActions", []))
        topics = tuple(arn.rsplit(":", 1)[-1] for arn in arns if arn)
        alarms.append(
            AlarmDefinition(
                name=_resolve(resolver, p.get("AlarmName")) or "unnamed",
                description=str(p.get("AlarmDescription", "")),
                namespace=metric["Namespace"],
                metric_name=metric["MetricName"],
                dimensions=tuple(dimensions),
                stat=stat,
                period=period,
                evaluation_periods=int(p["EvaluationPeriods"]),
                datapoints_to_alarm=int(p.get("DatapointsToAlarm", p["EvaluationPeriods"])),
                threshold=float(p["Threshold"]),
                comparison=str(p["ComparisonOperator"]),
                treat_missing_data=str(p.get("TreatMissingData", "missing")),
                action_topics=topics,
                unresolved=tuple(unresolved),
            )
        )
    return sorted(alarms, key=lambda alarm: alarm.name)


_ALARM_TERM = re.compile(r'ALARM\("([^"]+)"\)')


def composites_from_template(template: Mapping[str, Any], ids: PhysicalIds | None = None) -> list[CompositeDefinition]:
    """Every AWS::CloudWatch::CompositeAlarm whose rule is an OR of ALARM(child) terms; anything else is refused,
    since this module could not evaluate it faithfully."""
    resolver = Resolver(template, ids or PhysicalIds(region="us-east-1"))
    composites = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::CloudWatch::CompositeAlarm":
            continue
        p = resource["Properties"]
        rule = str(resolver.resolve(p["AlarmRule"]))
        terms = _ALARM_TERM.findall(rule)
        if _ALARM_TERM.sub("", rule).replace("(", "").replace(")", "").replace("OR", "").strip():
            raise TemplateError(f"composite alarm rule {rule!r}: only ALARM(...) OR ALARM(...) is evaluated here")
        arns = (_resolve(resolver, action) for action in p.get("AlarmActions", []))
        composites.append(
            CompositeDefinition(
                name=_resolve(resolver, p.get("AlarmName")) or "unnamed",
                description=str(p.get("AlarmDescription", "")),
                rule=rule,
                children=tuple(term.rsplit(":alarm:", 1)[-1] for term in terms),
                action_topics=tuple(arn.rsplit(":", 1)[-1] for arn in arns if arn),
            )
        )
    return sorted(composites, key=lambda composite: composite.name)


def decide(alarm: AlarmDefinition, values: list[float | None]) -> Evaluation:
    """CloudWatch's M-out-of-N rule over the last N periods, with its missing-data treatments."""
    compare = _COMPARE[alarm.comparison]
    breaching = sum(1 for v in values if v is not None and compare(v, alarm.threshold))
    present = sum(1 for v in values if v is not None)
    missing = len(values) - present
    treat = alarm.treat_missing_data
    if treat == "breaching":
        breaching += missing
    if present == 0 and treat in {"missing", "ignore"}:
        return Evaluation(alarm, "INSUFFICIENT_DATA", values, "no datapoints in the evaluation window")
    state = "ALARM" if breaching >= alarm.datapoints_to_alarm else "OK"
    shown = ", ".join("missing" if v is None else f"{v:g}" for v in values)
    reason = (
        f"{breaching} of the last {len(values)} datapoints breaching "
        f"({alarm.stat} {_SYMBOL[alarm.comparison]} {alarm.threshold:g}; needs {alarm.datapoints_to_alarm}): [{shown}]"
    )
    return Evaluation(alarm, state, values, reason)


def fetch_values(
    cloudwatch: Any, alarm: AlarmDefinition, *, now: datetime | None = None, period: int | None = None
) -> list[float | None]:
    """One value per evaluation period, oldest first (None where no datapoint); `period` compresses time
    for drills on the local stack."""
    period = period or alarm.period
    end = (now or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(seconds=period * alarm.evaluation_periods)
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m1",
                "MetricStat": {
                    "Metric": {
                        "Namespace": alarm.namespace,
                        "MetricName": alarm.metric_name,
                        "Dimensions": [{"Name": n, "Value": v} for n, v in alarm.dimensions],
                    },
                    "Period": period,
                    "Stat": alarm.stat,
                },
                "ReturnData": True,
            }
        ],
        StartTime=start,
        EndTime=end + timedelta(seconds=1),
    )
    result = response["MetricDataResults"][0]
    slots: list[float | None] = [None] * alarm.evaluation_periods
    for timestamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
        index = int((timestamp - start).total_seconds() // period)
        index = min(max(index, 0), alarm.evaluation_periods - 1)
        slots[index] = value if slots[index] is None else _merge(alarm.stat, slots[index], value)
    return slots


def _merge(stat: str, first: float | None, second: float) -> float:
    if first is None:
        return second
    if stat in {"Sum", "SampleCount"}:
        return first + second
    if stat == "Minimum":
        return min(first, second)
    return max(first, second)


def notification(evaluation: Evaluation, previous: str, region: str, account: str = "123456789012") -> str:
    """The JSON CloudWatch publishes to an alarm's SNS topic: a metric alarm's trigger, or a composite alarm's
    rule and the children that triggered it."""
    alarm = evaluation.alarm
    message: dict[str, Any] = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account,
        "NewStateValue": evaluation.state,
        "NewStateReason": evaluation.reason,
        "StateChangeTime": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "Region": region,
        "AlarmArn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm.name}",
        "OldStateValue": previous,
    }
    if isinstance(alarm, CompositeDefinition):
        firing = evaluation.reason.removeprefix("in ALARM: ").split(", ") if evaluation.state == "ALARM" else []
        message["AlarmRule"] = alarm.rule
        message["TriggeringChildren"] = [
            {"Arn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{child}", "State": {"Value": "ALARM"}}
            for child in firing
        ]
        return json.dumps(message)
    message["Trigger"] = {
        "MetricName": alarm.metric_name,
        "Namespace": alarm.namespace,
        "Statistic": alarm.stat,
        "Dimensions": [{"name": n, "value": v} for n, v in alarm.dimensions],
        "Period": alarm.period,
        "EvaluationPeriods": alarm.evaluation_periods,
        "DatapointsToAlarm": alarm.datapoints_to_alarm,
        "ComparisonOperator": alarm.comparison,
        "Threshold": alarm.threshold,
        "TreatMissingData": alarm.treat_missing_data,
    }
    return json.dumps(message)


def apply_locally(cloudwatch: Any, sns: Any, evaluation: Evaluation, topic_arns: Mapping[str, str], region: str) -> str:
    """What CloudWatch does on AWS and moto does not: keep the alarm's state and notify on a change.
    Returns the previous state."""
    alarm = evaluation.alarm
    assert isinstance(alarm, AlarmDefinition)
    existing = cloudwatch.describe_alarms(AlarmNames=[alarm.name]).get("MetricAlarms", [])
    if not existing:
        cloudwatch.put_metric_alarm(
            AlarmName=alarm.name,
            AlarmDescription=alarm.description,
            Namespace=alarm.namespace,
            MetricName=alarm.metric_name,
            Dimensions=[{"Name": n, "Value": v} for n, v in alarm.dimensions],
            Statistic=alarm.stat
            if alarm.stat in {"Average", "Sum", "SampleCount", "Maximum", "Minimum"}
            else "Maximum",
            Period=alarm.period,
            EvaluationPeriods=alarm.evaluation_periods,
            DatapointsToAlarm=alarm.datapoints_to_alarm,
            Threshold=alarm.threshold,
            ComparisonOperator=alarm.comparison,
            TreatMissingData=alarm.treat_missing_data,
            AlarmActions=[topic_arns[t] for t in alarm.action_topics if t in topic_arns],
            OKActions=[topic_arns[t] for t in alarm.action_topics if t in topic_arns],
        )
        previous = "INSUFFICIENT_DATA"  # where CloudWatch starts every alarm (moto would say OK)
        cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue=previous, StateReason="created by imgops")
    else:
        previous = str(existing[0].get("StateValue", "INSUFFICIENT_DATA"))
    if previous != evaluation.state:
        cloudwatch.set_alarm_state(
            AlarmName=alarm.name, StateValue=evaluation.state, StateReason=evaluation.reason[:1000]
        )
        for topic in alarm.action_topics:
            if topic in topic_arns:
                sns.publish(
                    TopicArn=topic_arns[topic],
                    Subject=f'{evaluation.state}: "{alarm.name}" in {region}'[:100],
                    Message=notification(evaluation, previous, region),
                )
    return previous


def evaluate_target(
    *,
    template: Mapping[str, Any],
    cloudwatch: Any,
    sns: Any | None,
    region: str,
    ids: PhysicalIds | None = None,
    period: int | None = None,
    local: bool,
) -> list[Evaluation]:
    """Evaluate every alarm; locally also keep their state in CloudWatch and notify the ops topic."""
    definitions = alarms_from_template(template, ids or PhysicalIds(region=region))
    composites = composites_from_template(template, ids or PhysicalIds(region=region))
    topic_arns: dict[str, str] = {}
    if local and sns is not None:
        every: list[AlarmDefinition | CompositeDefinition] = [*definitions, *composites]
        for topic in {t for d in every for t in d.action_topics}:
            topic_arns[topic] = sns.create_topic(Name=topic)["TopicArn"]  # idempotent: the local ops topic
    evaluations = []
    before: dict[str, str] = {}
    for definition in definitions:
        queried = definition
        if local and definition.stat.startswith("p"):
            # moto has no percentiles; the maximum is the conservative stand-in (noted in the reason).
            queried = replace(definition, stat="Maximum")
        evaluation = decide(definition, fetch_values(cloudwatch, queried, period=period))
        if queried is not definition:
            evaluation.reason += " (local: Maximum stands in for the percentile)"
        if definition.unresolved:
            evaluation.reason += f" (no local {', '.join(definition.unresolved)}: no data expected)"
        if local and sns is not None:
            before[definition.name] = apply_locally(cloudwatch, sns, evaluation, topic_arns, region)
        evaluations.append(evaluation)
    now = {e.alarm.name: e.state for e in evaluations}
    for composite in composites:
        evaluation = composite.decide(now)
        previous = composite.decide(before).state if before else "INSUFFICIENT_DATA"
        if local and sns is not None and previous != evaluation.state:
            # moto has no composite alarms: the state is derived from the children's, before and after.
            for topic in composite.action_topics:
                if topic in topic_arns:
                    sns.publish(
                        TopicArn=topic_arns[topic],
                        Subject=f'{evaluation.state}: "{composite.name}" in {region}'[:100],
                        Message=notification(evaluation, previous, region),
                    )
        evaluations.append(evaluation)
    return evaluations


def check(template: Mapping[str, Any], target: Target, *, period: int | None = None) -> list[Evaluation]:
    """`imgops alarms check`: every alarm of `template` against `target`'s metrics (locally: state + notices)."""
    return evaluate_target(
        template=template,
        cloudwatch=target.client("cloudwatch"),
        sns=target.client("sns") if target.local else None,
        region=target.region,
        ids=physical_ids(target),
        period=period,
        local=target.local,
    )
