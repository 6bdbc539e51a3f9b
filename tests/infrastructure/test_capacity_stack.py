"""The capacity counters as the CDK app deploys them (dashboards/constructs/capacity.py): S3's events through
EventBridge to a queue with a dead-letter queue, the counter on it, and a publisher that can read the counters and
put CustomS3 metrics, nothing else (the per-minute path never lists a bucket)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from dashboards.constructs.capacity import COUNTER_TABLE_ACTIONS, OBJECT_EVENTS
from dashboards.constructs.worker import QUEUE_POLLER_ACTIONS
from monitoring.capacity import PARTITION_KEY, SORT_KEY, TOMBSTONE_SECONDS, TTL_ATTRIBUTE
from monitoring.capacity_handlers import COUNTER_BATCH_SIZE, COUNTER_MAX_RECEIVE_COUNT, COUNTER_TIMEOUT_SECONDS
from monitoring.inventory import athena_table_name
from monitoring.s3_metrics import function_name
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, Env, ResourceNames
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_stack import actions, resolve, statements_of

NAMES = ResourceNames("imgops")


def test_the_table_keeps_key_records_and_counters_on_demand_with_ttl(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": NAMES.capacity_table,
            "KeySchema": [
                {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_both_buckets_send_their_events_to_eventbridge_and_a_daily_parquet_inventory(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    for name in (NAMES.upload_bucket, NAMES.processed_bucket):
        synthesized.template.has_resource_properties(
            "AWS::S3::Bucket",
            {
                "BucketName": name,
                "NotificationConfiguration": Match.object_like(
                    {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
                ),
                "InventoryConfigurations": [
                    Match.object_like(
                        {
                            "Id": INVENTORY_ID,
                            "Enabled": True,
                            "ScheduleFrequency": "Daily",
                            "IncludedObjectVersions": "Current",
                            "OptionalFields": Match.array_with(["Size"]),
                            "Destination": Match.object_like(
                                {
                                    "BucketArn": resolve(synthesized, stack.storage.inventory_bucket.bucket_arn),
                                    "Prefix": INVENTORY_PREFIX,
                                    "Format": "Parquet",
                                }
                            ),
                        }
                    )
                ],
            },
        )
    # No notifications custom resource (a Lambda of CDK's own) does it.
    assert not synthesized.resources("Custom::S3BucketNotifications")


def test_the_rule_takes_creations_and_deletions_of_both_buckets_to_the_queue(synthesized: Synthesized) -> None:
    capacity = synthesized.stack.capacity
    [rule] = [
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == list(OBJECT_EVENTS)
    assert sorted(map(json.dumps, pattern["detail"]["bucket"]["name"])) == sorted(
        json.dumps(resolve(synthesized, b.bucket_name))
        for b in (synthesized.stack.storage.upload_bucket, synthesized.stack.storage.processed_bucket)
    )
    [target] = rule["Targets"]
    assert target["Arn"] == resolve(synthesized, capacity.queue.queue_arn)
    assert target["DeadLetterConfig"]["Arn"] == resolve(synthesized, capacity.dead_letter_queue.queue_arn)


def test_the_queue_outlives_no_tombstone_and_redrives_unreadable_events(synthesized: Synthesized) -> None:
    capacity = synthesized.stack.capacity
    synthesized.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": NAMES.capacity_queue,
            "MessageRetentionPeriod": TOMBSTONE_SECONDS,
            "VisibilityTimeout": 6 * COUNTER_TIMEOUT_SECONDS,
            "RedrivePolicy": {
                "deadLetterTargetArn": resolve(synthesized, capacity.dead_letter_queue.queue_arn),
                "maxReceiveCount": COUNTER_MAX_RECEIVE_COUNT,
            },
        },
    )


def test_the_counter_reports_failed_items_and_holds_only_what_it_calls(synthesized: Synthesized) -> None:
    capacity = synthesized.stack.capacity
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": resolve(synthesized, capacity.queue.queue_arn),
            "FunctionName": resolve(synthesized, capacity.counter.function_name),
            "BatchSize": COUNTER_BATCH_SIZE,
            "MaximumBatchingWindowInSeconds": Match.any_value(),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    statements = statements_of(synthesized, capacity.counter.role)
    granted = {action: statement["Resource"] for statement in statements for action in actions(statement)}
    for action in COUNTER_TABLE_ACTIONS:
        assert granted[action] == resolve(synthesized, capacity.table.table_arn)
    for action in QUEUE_POLLER_ACTIONS:
        assert granted[action] == resolve(synthesized, capacity.queue.queue_arn)
    assert not [action for action in granted if action.startswith("s3:")]


def test_the_publisher_runs_every_minute_and_may_not_list_a_bucket(synthesized: Synthesized) -> None:
    capacity = synthesized.stack.capacity
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": resolve(synthesized, capacity.publisher.function_arn)})],
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": NAMES.capacity_publisher_function,
            "Handler": "monitoring.capacity_publisher.handler",
            "Environment": {
                "Variables": Match.object_like({Env.CAPACITY_TABLE: resolve(synthesized, capacity.table.table_name)})
            },
        },
    )
    statements = statements_of(synthesized, capacity.publisher.role)
    granted: dict[str, Any] = {action: statement for statement in statements for action in actions(statement)}
    logs = {action for action in granted if action.startswith("logs:")}
    assert set(granted) - logs == {"dynamodb:Query", "cloudwatch:PutMetricData"}
    assert granted["dynamodb:Query"]["Resource"] == resolve(synthesized, capacity.table.table_arn)
    assert granted["cloudwatch:PutMetricData"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "CustomS3"}}


def test_athena_reads_each_buckets_inventory_through_one_table_and_a_capped_workgroup(
    synthesized: Synthesized,
) -> None:
    for bucket in (NAMES.upload_bucket, NAMES.processed_bucket):
        synthesized.template.has_resource_properties(
            "AWS::Glue::Table",
            {
                "DatabaseName": NAMES.glue_database,
                "TableInput": Match.object_like(
                    {
                        "Name": athena_table_name(bucket),
                        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
                        "Parameters": {"projection.enabled": "true", "projection.dt.type": "injected"},
                        "StorageDescriptor": Match.object_like(
                            {
                                "InputFormat": "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat",
                                "Location": Match.any_value(),
                            }
                        ),
                    }
                ),
            },
        )
    synthesized.template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": NAMES.athena_workgroup,
            "WorkGroupConfiguration": Match.object_like(
                {"EnforceWorkGroupConfiguration": True, "BytesScannedCutoffPerQuery": Match.any_value()}
            ),
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": function_name(NAMES.prefix),  # the reconciler
            "Environment": {
                "Variables": Match.object_like(
                    {Env.ATHENA_WORKGROUP: NAMES.athena_workgroup, Env.ATHENA_DATABASE: NAMES.glue_database}
                )
            },
        },
    )
