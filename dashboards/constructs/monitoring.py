"""Dashboards and alarms (cdk-monitoring-constructs): operations and capacity views, alarms to the ops topic.

Every alarm has an exact name `<prefix>-<slug>` and a runbook `runbooks/<slug>.md`; `ALARMS` is the catalogue
that names, runbooks and tests share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    CustomMetricWithAlarm,
    CustomThreshold,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    ErrorRateThreshold,
    LatencyThreshold,
    MaxMessageAgeThreshold,
    MaxMessageCountThreshold,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

from dashboards.config import AppConfig
from dashboards.constructs.capacity import CapacityCounters
from monitoring.capacity_handlers import COUNTER_TIMEOUT_SECONDS
from monitoring.reconcile import DRIFT_BYTES, DRIFT_OBJECTS, DRIFT_OWNERS
from monitoring.s3_metrics import (
    BUCKET_DIMENSION,
    BUCKET_SIZE_BYTES,
    NAMESPACE,
    NUMBER_OF_OBJECTS,
    PREFIX_DIMENSION,
    SCAN_INCOMPLETE,
)
from pipeline.resources import (
    CAPACITY_PUBLISH_MINUTES,
    QUEUE_MAX_RECEIVE_COUNT,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    WORKER_TIMEOUT_SECONDS,
)

# --- Thresholds, each with the reason it is where it is ---------------------------------------------------
# Any parked message is an upload that will never get thumbnails unless someone redrives it.
DLQ_MAX_MESSAGES = 0
# A message failing every attempt is at most maxReceiveCount x visibility timeout old before the DLQ takes it
# (18 min); older than that means the queue is not being drained, not that one message is unlucky.
OLDEST_MESSAGE_MAX_AGE_SECONDS = QUEUE_MAX_RECEIVE_COUNT * QUEUE_VISIBILITY_TIMEOUT_SECONDS
# A FRACTION, not a percentage: 0.05 = 5 % of invocations crash, time out or fail every record of their batch.
WORKER_MAX_FAULT_RATE = 0.05
# The event source's max concurrency should keep the worker under its limits; throttles for 15 minutes
# straight mean the account's concurrency is exhausted and the backlog is growing.
WORKER_MAX_THROTTLES = 0
# At 80 % of the timeout the next slower image times out, and a timed-out batch is retried as a whole.
WORKER_P99_MAX_SECONDS = 0.8 * WORKER_TIMEOUT_SECONDS
# 1 request in 20 failing server-side for 15 minutes: past transient blips, before users call it an outage.
API_MAX_5XX_RATE = 0.05
# ~$12/month of originals at S3 Standard: far above the expected volume, so crossing it means runaway
# uploads or missing clean-up, and a budget conversation.
UPLOAD_BUCKET_MAX_BYTES = 500 * 2**30
# Consecutive minutes without a CustomS3 publication before "not reporting": the publisher runs every minute
# (CAPACITY_PUBLISH_MINUTES); one missed minute can be a late schedule or a cold start, three is a trend, and the
# capacity graphs are then 3 minutes stale, near the 2 minutes they are meant to lag at most.
MISSED_PUBLICATIONS_TO_ALARM = 3
# The capacity queue's oldest event, in seconds (AWS/SQS ApproximateAgeOfOldestMessage, Maximum per minute). The
# counter drains it within seconds (a 1 s batching window), so the graphs lag a change by a minute or two. An event
# whose batch failed waits the queue's visibility timeout (6 x the counter's 60 s timeout = 6 min) per retry, and the
# DLQ takes it after 5 receives (30 min). SQS documents that this metric stops counting a message once it has been
# received 3 times (12 min old here); it has been observed to reset the age instead, after every 3 receives, so one
# poison event can read 12 min, then 18 min just before the DLQ takes it: above 15 min for 3 minutes at most.
# Above 15 min for 5 minutes in a row is therefore never one unlucky event but a counter that is not draining
# (trigger disabled, every batch failing): every capacity graph and alarm is then 20 minutes stale. 10 min would
# fire on a single poison event; longer leaves the graphs stale for more than a working-day (medium) response needs.
CAPACITY_LAG_MAX_SECONDS = 900
CAPACITY_LAG_MINUTES_TO_ALARM = 5
# An event whose batch failed waits the capacity queue's visibility timeout before its next receive (the construct
# sets 6 x the counter's timeout); after COUNTER_MAX_RECEIVE_COUNT receives the capacity DLQ takes it.
CAPACITY_RETRY_SECONDS = 6 * COUNTER_TIMEOUT_SECONDS
# Drift (monitoring.reconcile): the counters at a snapshot minus the truth, per bucket, every reconciliation. A
# snapshot is not instantaneous (a listing takes time, events wait seconds in the queue), so one reconciliation can
# see drift that the next does not: events in flight. Drift in 2 reconciliations in a row (2 of 2 periods of the
# reconciler's rate, one run each) is events that did not arrive: not 2 of 3, which fires on in-flight drift seen
# every other run (`imgops alarms test`, scenario in-flight-drift). The alarm watches DriftOwners > 0: how many
# owners' counters differ, both ways (lost creates put the counters below the bucket, lost deletes above it) and
# without netting out across owners; DriftObjects and DriftBytes (signed) say which way on the dashboard.
DRIFT_PERIODS_TO_ALARM = 2
# Standard CloudWatch resolution for the operational alarms: 3 of 3 five-minute periods.
DATAPOINTS_TO_ALARM = 3
# A worker failing every attempt runs once per visibility timeout (6 min): its errors land in 2 of any
# 3 five-minute periods, never 3 (`imgops alarms test`, scenario worker-failing). 2 of 3 fires within 15 min,
# and a quiet night (no invocations, no datapoints) still never breaches.
WORKER_FAULT_PERIODS_TO_ALARM = 2


Severity = Literal["high", "medium", "low"]
# One scale for alarms and runbooks (runbooks/README.md): high = users are affected now, page (through the
# composite `pipeline-unhealthy`); medium = users will be if it goes on, or monitoring is blind: working day;
# low = a cost or capacity trend: a ticket.
SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low")


@dataclass(frozen=True)
class AlarmSpec:
    """An alarm as on-call meets it: its name, severity and the notification's text."""

    slug: str
    title: str
    severity: Severity
    summary: str  # what is wrong, in one sentence
    causes: str  # the likely causes, most likely first
    first_command: str  # the first command to run (the running local stack, or IMGOPS_STACK_NAME's stack)

    def description(self, prefix: str) -> str:
        """The alarm's description; the library appends `Runbook: <absolute URL>`."""
        return (
            f"[{self.severity}] {self.summary} Likely: {self.causes}. First: `{self.first_command}` "
            f"(on AWS with IMGOPS_STACK_NAME={prefix}-pipeline)."
        )


DLQ_NOT_EMPTY = AlarmSpec(
    "dlq-not-empty",
    "Dead-letter queue has messages",
    "high",
    "Uploads failed every retry and wait in the dead-letter queue: their users get no thumbnails.",
    "a DynamoDB/S3/SNS outage or throttling during the retries, a worker bug, a file the worker cannot classify",
    "imgops dlq inspect --by-error",
)
QUEUE_BACKLOG_OLD = AlarmSpec(
    "queue-oldest-message-age",
    "Oldest work-queue message too old",
    "high",
    "The work queue is not drained: uploads wait longer than all their retries would take.",
    "the worker not polling (mapping disabled, concurrency 0), every invocation timing out, a large backlog",
    "imgops alarms check",
)
WORKER_FAULT_RATE = AlarmSpec(
    "worker-fault-rate",
    "Worker fault rate above 5 %",
    "high",
    "Worker invocations fail: crashes, timeouts, out-of-memory kills, or every record of a batch failing.",
    "a downstream outage or throttling, a bad deploy, memory too small for the inputs",
    "imgops dlq inspect --by-error",
)
WORKER_THROTTLES = AlarmSpec(
    "worker-throttles",
    "Worker throttled",
    "medium",
    "Lambda refuses worker invocations: the backlog grows while it lasts.",
    "the account's concurrency used up by other functions, a reserved concurrency set too low",
    "imgops alarms check",
)
WORKER_DURATION = AlarmSpec(
    "worker-duration-near-timeout",
    "Worker p99 duration near its timeout",
    "medium",
    "Worker p99 duration is near its timeout: the next slower batch times out and is retried whole.",
    "a slow dependency, larger inputs, too little memory (and so CPU)",
    "imgops loadtest sizing",
)
API_5XX_RATE = AlarmSpec(
    "api-5xx-rate",
    "API 5xx rate above 5 %",
    "high",
    "The HTTP API answers 5xx: users cannot get upload URLs or image status.",
    "a bad presign or read-API deploy, DynamoDB or S3 errors, Lambda throttling",
    "imgops alarms check",
)
UPLOAD_BUCKET_SIZE = AlarmSpec(
    "upload-bucket-size",
    "Upload bucket larger than expected",
    "low",
    "The upload bucket is far larger than expected: a cost to explain.",
    "runaway uploads (a client retry loop, abuse), lifecycle rules missing",
    "imgops capacity top",
)
CAPACITY_EVENT_LAG = AlarmSpec(
    "capacity-event-lag",
    "Capacity counters behind",
    "medium",
    "The capacity queue's oldest event waits over 15 min: the counters are behind, every capacity graph is stale.",
    "the counter's SQS trigger disabled, every counter batch failing (DynamoDB, permissions, a bad deploy), a burst",
    "imgops alarms check",
)
CAPACITY_DRIFT_UPLOADS = AlarmSpec(
    "capacity-drift-uploads",
    "Capacity counters differ from the upload bucket's contents",
    "low",
    "Two reconciliations in a row found the upload bucket's counters off its contents: object events were lost.",
    "events in the capacity DLQ, a purged capacity queue, events past the queue's retention, a stopped counter",
    "imgops alarms check",
)
CAPACITY_DRIFT_PROCESSED = AlarmSpec(
    "capacity-drift-processed",
    "Capacity counters differ from the processed bucket's contents",
    "low",
    "Two reconciliations in a row found the processed bucket's counters off its contents: object events were lost.",
    "events in the capacity DLQ, a purged capacity queue, events past the queue's retention, a stopped counter",
    "imgops alarms check",
)
UPLOADS_NOT_REPORTING = AlarmSpec(
    "s3-metrics-not-reporting-uploads",
    "No capacity metrics for the upload bucket",
    "medium",
    "No CustomS3 count of the upload bucket for 3 minutes: the capacity publisher (or its schedule) stopped; the "
    "capacity graphs and upload-bucket-size are blind.",
    "the publisher's schedule rule disabled, the publisher failing (permissions, the capacity table, a bad deploy)",
    "imgops capacity top",
)
PROCESSED_NOT_REPORTING = AlarmSpec(
    "s3-metrics-not-reporting-processed",
    "No capacity metrics for the processed bucket",
    "medium",
    "No CustomS3 count of the processed bucket for 3 minutes: the capacity publisher (or its schedule) stopped; the "
    "capacity graphs are blind.",
    "the publisher's schedule rule disabled, the publisher failing (permissions, the capacity table, a bad deploy)",
    "imgops capacity top --bucket processed",
)
# Pages once for any high-severity alarm: on-call subscribes the pager to it, the others inform.
PIPELINE_UNHEALTHY = AlarmSpec(
    "pipeline-unhealthy",
    "imgops pipeline unhealthy",
    "high",
    "At least one high-severity imgops alarm is in ALARM (the notification names it): users are affected now.",
    "see the alarm that triggered it; its runbook is the next page",
    "imgops alarms check",
)
ALARMS: tuple[AlarmSpec, ...] = (
    DLQ_NOT_EMPTY,
    QUEUE_BACKLOG_OLD,
    WORKER_FAULT_RATE,
    WORKER_THROTTLES,
    WORKER_DURATION,
    API_5XX_RATE,
    UPLOAD_BUCKET_SIZE,
    CAPACITY_EVENT_LAG,
    CAPACITY_DRIFT_UPLOADS,
    CAPACITY_DRIFT_PROCESSED,
    UPLOADS_NOT_REPORTING,
    PROCESSED_NOT_REPORTING,
)


class _Naming(TypedDict):
    alarm_name_override: str
    runbook_link: str
    alarm_description_override: str


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        alarm_topic: sns.ITopic,
        worker: lambda_.IFunction,
        presign: lambda_.IFunction,
        read_api: lambda_.IFunction,
        metrics_function: lambda_.IFunction,
        capacity: CapacityCounters,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        table: dynamodb.ITable,
        image_events: sns.ITopic,
        http_api: apigwv2.IHttpApi,
        api_stage: str,
        upload_bucket_name: str,
        processed_bucket_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        defaults = AlarmFactoryDefaults(
            alarm_name_prefix=config.prefix,
            actions_enabled=True,
            action=SnsAlarmActionStrategy(on_alarm_topic=alarm_topic, on_ok_topic=alarm_topic),
            datapoints_to_alarm=DATAPOINTS_TO_ALARM,
        )
        self.operations = MonitoringFacade(
            self,
            "Operations",
            alarm_factory_defaults=defaults,
            dashboard_factory=self._dashboards("OperationsDashboard", f"{config.prefix}-operations"),
        )
        self.capacity = MonitoringFacade(
            self,
            "Capacity",
            alarm_factory_defaults=defaults,
            dashboard_factory=self._dashboards("CapacityDashboard", f"{config.prefix}-capacity"),
        )
        self._operations(
            worker=worker,
            presign=presign,
            read_api=read_api,
            queue=queue,
            dead_letter_queue=dead_letter_queue,
            table=table,
            image_events=image_events,
            http_api=http_api,
            api_stage=api_stage,
        )
        self._capacity(
            metrics_function=metrics_function,
            capacity=capacity,
            upload_bucket_name=upload_bucket_name,
            processed_bucket_name=processed_bucket_name,
        )
        self.pipeline_unhealthy = self._composite(alarm_topic)

    def _composite(self, alarm_topic: sns.ITopic) -> cloudwatch.CompositeAlarm:
        """ALARM while any high-severity alarm is: one page per incident, whatever the number of alarms it trips."""
        created = {a.alarm_name: a.alarm for a in [*self.operations.created_alarms(), *self.capacity.created_alarms()]}
        children = [created[f"{self._config.prefix}-{spec.slug}"] for spec in ALARMS if spec.severity == "high"]
        composite = cloudwatch.CompositeAlarm(
            self,
            "PipelineUnhealthy",
            composite_alarm_name=f"{self._config.prefix}-{PIPELINE_UNHEALTHY.slug}",
            alarm_description=PIPELINE_UNHEALTHY.description(self._config.prefix)
            + f" \r\nRunbook: {self._config.runbook_link(PIPELINE_UNHEALTHY.slug)}",
            alarm_rule=cloudwatch.AlarmRule.any_of(
                *[cloudwatch.AlarmRule.from_alarm(child, cloudwatch.AlarmState.ALARM) for child in children]
            ),
            actions_enabled=True,
        )
        composite.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
        composite.add_ok_action(cloudwatch_actions.SnsAction(alarm_topic))
        return composite

    def _dashboards(self, construct_id: str, name: str) -> DefaultDashboardFactory:
        return DefaultDashboardFactory(
            self,
            construct_id,
            dashboard_name_prefix=name,
            create_dashboard=True,
            create_summary_dashboard=False,
            create_alarm_dashboard=False,
        )

    def _name(self, alarm: AlarmSpec) -> _Naming:
        return {
            "alarm_name_override": f"{self._config.prefix}-{alarm.slug}",
            "runbook_link": self._config.runbook_link(alarm.slug),
            "alarm_description_override": alarm.description(self._config.prefix),
        }

    def _operations(
        self,
        *,
        worker: lambda_.IFunction,
        presign: lambda_.IFunction,
        read_api: lambda_.IFunction,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        table: dynamodb.ITable,
        image_events: sns.ITopic,
        http_api: apigwv2.IHttpApi,
        api_stage: str,
    ) -> None:
        facade = self.operations
        facade.add_large_header("imgops operations: uploads in, thumbnails out")
        facade.monitor_api_gateway_v2_http_api(
            api=http_api,
            api_stage=api_stage,
            human_readable_name="HTTP API (POST /uploads, GET /images/{image_id})",
            alarm_friendly_name="api",
            add5xx_rate_alarm={
                "Critical": ErrorRateThreshold(max_error_rate=API_MAX_5XX_RATE, **self._name(API_5XX_RATE))
            },
        )
        facade.monitor_sqs_queue_with_dlq(
            queue=queue,
            dead_letter_queue=dead_letter_queue,
            human_readable_name="Work queue",
            alarm_friendly_name="queue",
            add_queue_max_message_age_alarm={
                "Critical": MaxMessageAgeThreshold(
                    max_age_in_seconds=OLDEST_MESSAGE_MAX_AGE_SECONDS, **self._name(QUEUE_BACKLOG_OLD)
                )
            },
            add_dead_letter_queue_max_size_alarm={
                "Critical": MaxMessageCountThreshold(
                    max_message_count=DLQ_MAX_MESSAGES,
                    datapoints_to_alarm=1,
                    evaluation_periods=1,
                    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                    **self._name(DLQ_NOT_EMPTY),
                )
            },
        )
        facade.monitor_lambda_function(
            lambda_function=worker,
            human_readable_name="Worker (thumbnails)",
            alarm_friendly_name="worker",
            add_fault_rate_alarm={
                "Critical": ErrorRateThreshold(
                    max_error_rate=WORKER_MAX_FAULT_RATE,
                    datapoints_to_alarm=WORKER_FAULT_PERIODS_TO_ALARM,
                    evaluation_periods=DATAPOINTS_TO_ALARM,
                    **self._name(WORKER_FAULT_RATE),
                )
            },
            add_throttles_count_alarm={
                "Warning": ErrorCountThreshold(max_error_count=WORKER_MAX_THROTTLES, **self._name(WORKER_THROTTLES))
            },
            add_latency_p99_alarm={
                "Warning": LatencyThreshold(
                    max_latency=cdk.Duration.seconds(WORKER_P99_MAX_SECONDS), **self._name(WORKER_DURATION)
                )
            },
        )
        facade.monitor_dynamo_table(table=table, human_readable_name="Images table", alarm_friendly_name="table")
        facade.monitor_sns_topic(topic=image_events, human_readable_name="Image events", alarm_friendly_name="events")
        facade.monitor_lambda_function(
            lambda_function=presign,
            human_readable_name="Presign (POST /uploads)",
            alarm_friendly_name="presign",
        )
        facade.monitor_lambda_function(
            lambda_function=read_api, human_readable_name="Read API (GET /images)", alarm_friendly_name="read"
        )

    def _capacity(
        self,
        *,
        metrics_function: lambda_.IFunction,
        capacity: CapacityCounters,
        upload_bucket_name: str,
        processed_bucket_name: str,
    ) -> None:
        """Sizes and counts as the publisher puts them every minute; the counters' lag (the capacity queue) and
        drift (the reconciler, every metrics_rate_minutes); the three functions behind them."""
        rate = self._config.metrics_rate_minutes
        published = cdk.Duration.minutes(CAPACITY_PUBLISH_MINUTES)  # the publisher's schedule
        reconciled = cdk.Duration.minutes(rate)  # the reconciler's schedule

        def metric(name: str, bucket: str, statistic: str, label: str, period: cdk.Duration) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name=name,
                dimensions_map={BUCKET_DIMENSION: bucket},
                statistic=statistic,
                period=period,
                label=label,
            )

        def by_prefix(name: str, bucket: str) -> cloudwatch.MathExpression:
            # Hand-written: CustomMetricSearch would add `"Prefix"="*"`, which SEARCH takes literally.
            schema = f"{{{NAMESPACE},{BUCKET_DIMENSION},{PREFIX_DIMENSION}}}"
            return cloudwatch.MathExpression(
                expression=f'SEARCH(\'{schema} {BUCKET_DIMENSION}="{bucket}" MetricName="{name}"\', '
                f"'Maximum', {published.to_seconds()})",
                using_metrics={},
                label="${PROP('Dim." + PREFIX_DIMENSION + "')}",
                period=published,
            )

        def not_reporting(bucket: str, role: str, alarm: AlarmSpec) -> CustomMetricWithAlarm:
            # Missing data is the point (nothing published): breaching.
            return CustomMetricWithAlarm(
                metric=metric(NUMBER_OF_OBJECTS, bucket, "SampleCount", f"{role} publications", published),
                alarm_friendly_name=alarm.slug,
                add_alarm={
                    "Critical": CustomThreshold(
                        comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                        threshold=1,
                        datapoints_to_alarm=MISSED_PUBLICATIONS_TO_ALARM,
                        evaluation_periods=MISSED_PUBLICATIONS_TO_ALARM,
                        treat_missing_data_override=cloudwatch.TreatMissingData.BREACHING,
                        **self._name(alarm),
                    )
                },
            )

        def drift(bucket: str, role: str, alarm: AlarmSpec) -> CustomMetricWithAlarm:
            # Missing data (no reconciliation, or no snapshot yet: no inventory report) is not drift: not
            # breaching. A reconciler that stops shows on its Lambda's widgets and in `ScanIncomplete`.
            return CustomMetricWithAlarm(
                metric=metric(DRIFT_OWNERS, bucket, "Maximum", f"{role} owners drifting", reconciled),
                alarm_friendly_name=alarm.slug,
                add_alarm={
                    "Warning": CustomThreshold(
                        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                        threshold=0,
                        datapoints_to_alarm=DRIFT_PERIODS_TO_ALARM,
                        evaluation_periods=DRIFT_PERIODS_TO_ALARM,
                        treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                        **self._name(alarm),
                    )
                },
            )

        facade = self.capacity
        facade.add_large_header(
            f"imgops capacity: {NAMESPACE} from the capacity counters every {CAPACITY_PUBLISH_MINUTES} min, "
            f"reconciled every {rate} min"
        )
        facade.monitor_custom(
            human_readable_name="Buckets",
            alarm_friendly_name="buckets",
            metric_groups=[
                CustomMetricGroup(
                    title="Bucket size (bytes)",
                    metrics=[
                        CustomMetricWithAlarm(
                            metric=metric(BUCKET_SIZE_BYTES, upload_bucket_name, "Maximum", "uploads", published),
                            alarm_friendly_name=UPLOAD_BUCKET_SIZE.slug,
                            add_alarm={
                                "Warning": CustomThreshold(
                                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                                    threshold=UPLOAD_BUCKET_MAX_BYTES,
                                    datapoints_to_alarm=1,
                                    evaluation_periods=1,
                                    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                                    **self._name(UPLOAD_BUCKET_SIZE),
                                )
                            },
                        ),
                        metric(BUCKET_SIZE_BYTES, processed_bucket_name, "Maximum", "processed", published),
                    ],
                ),
                CustomMetricGroup(
                    title="Number of objects",
                    metrics=[
                        metric(NUMBER_OF_OBJECTS, upload_bucket_name, "Maximum", "uploads", published),
                        metric(NUMBER_OF_OBJECTS, processed_bucket_name, "Maximum", "processed", published),
                    ],
                ),
                CustomMetricGroup(
                    title="Upload bucket by prefix (bytes)",
                    metrics=[by_prefix(BUCKET_SIZE_BYTES, upload_bucket_name)],
                ),
                CustomMetricGroup(
                    title="Processed bucket by prefix (bytes)",
                    metrics=[by_prefix(BUCKET_SIZE_BYTES, processed_bucket_name)],
                ),
                CustomMetricGroup(
                    title="Upload bucket by prefix (objects)",
                    metrics=[by_prefix(NUMBER_OF_OBJECTS, upload_bucket_name)],
                ),
                CustomMetricGroup(
                    title="Processed bucket by prefix (objects)",
                    metrics=[by_prefix(NUMBER_OF_OBJECTS, processed_bucket_name)],
                ),
                CustomMetricGroup(
                    title="Publications per minute (the capacity publisher)",
                    metrics=[
                        not_reporting(upload_bucket_name, "uploads", UPLOADS_NOT_REPORTING),
                        not_reporting(processed_bucket_name, "processed", PROCESSED_NOT_REPORTING),
                    ],
                ),
                CustomMetricGroup(
                    title="Drift: owners drifting, and counters minus the truth (objects; < 0: creates lost)",
                    metrics=[
                        drift(upload_bucket_name, "uploads", CAPACITY_DRIFT_UPLOADS),
                        drift(processed_bucket_name, "processed", CAPACITY_DRIFT_PROCESSED),
                        metric(DRIFT_OBJECTS, upload_bucket_name, "Minimum", "uploads (lowest)", reconciled),
                        metric(DRIFT_OBJECTS, processed_bucket_name, "Minimum", "processed (lowest)", reconciled),
                        metric(DRIFT_OBJECTS, upload_bucket_name, "Maximum", "uploads (highest)", reconciled),
                        metric(DRIFT_OBJECTS, processed_bucket_name, "Maximum", "processed (highest)", reconciled),
                    ],
                ),
                CustomMetricGroup(
                    title="Drift (bytes)",
                    metrics=[
                        metric(DRIFT_BYTES, upload_bucket_name, "Minimum", "uploads (lowest)", reconciled),
                        metric(DRIFT_BYTES, processed_bucket_name, "Minimum", "processed (lowest)", reconciled),
                        metric(DRIFT_BYTES, upload_bucket_name, "Maximum", "uploads (highest)", reconciled),
                        metric(DRIFT_BYTES, processed_bucket_name, "Maximum", "processed (highest)", reconciled),
                    ],
                ),
                CustomMetricGroup(
                    title="Reconciliations without a snapshot (1 = bucket not checked)",
                    metrics=[
                        metric(SCAN_INCOMPLETE, upload_bucket_name, "Maximum", "uploads", reconciled),
                        metric(SCAN_INCOMPLETE, processed_bucket_name, "Maximum", "processed", reconciled),
                    ],
                ),
            ],
        )
        # The counters' lag: the oldest object event waiting. Missing data is not breaching: SQS stops publishing
        # for a queue inactive for hours (a quiet night), and a stuck queue holds messages, so it publishes.
        facade.monitor_sqs_queue_with_dlq(
            queue=capacity.queue,
            dead_letter_queue=capacity.dead_letter_queue,
            human_readable_name="Capacity events (S3 → counter)",
            alarm_friendly_name="capacity-events",
            add_queue_max_message_age_alarm={
                "Warning": MaxMessageAgeThreshold(
                    max_age_in_seconds=CAPACITY_LAG_MAX_SECONDS,
                    period=cdk.Duration.minutes(1),
                    datapoints_to_alarm=CAPACITY_LAG_MINUTES_TO_ALARM,
                    evaluation_periods=CAPACITY_LAG_MINUTES_TO_ALARM,
                    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                    **self._name(CAPACITY_EVENT_LAG),
                )
            },
        )
        facade.monitor_lambda_function(
            lambda_function=capacity.counter,
            human_readable_name="Capacity counter (object events → DynamoDB)",
            alarm_friendly_name="capacity-counter",
        )
        facade.monitor_lambda_function(
            lambda_function=capacity.publisher,
            human_readable_name=f"Capacity publisher (CustomS3 every {CAPACITY_PUBLISH_MINUTES} min)",
            alarm_friendly_name="capacity-publisher",
        )
        facade.monitor_lambda_function(
            lambda_function=metrics_function,
            human_readable_name=f"Capacity reconciler (listing or S3 Inventory, every {rate} min)",
            alarm_friendly_name="s3-metrics",
        )
