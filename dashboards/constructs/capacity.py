"""The capacity counters: S3's object events (EventBridge) → a queue → the counter Lambda → a DynamoDB table, and
a publisher that turns the table into the `CustomS3` metrics every minute (monitoring/capacity.py says why).

The per-minute path never lists a bucket: the publisher's role may Query the table and put `CustomS3` metrics,
nothing else. The reconciler (the bucket-metrics function, dashboards/constructs/s3_metrics.py) checks the
counters against a listing or an S3 Inventory report far less often.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dashboards.config import Architecture
from dashboards.constructs.function import PipelineFunction
from dashboards.constructs.worker import QUEUE_POLLER_ACTIONS
from monitoring.capacity import DEFAULT_SHARDS, PARTITION_KEY, SORT_KEY, TOMBSTONE_SECONDS, TTL_ATTRIBUTE
from monitoring.capacity_handlers import (
    COUNTER_BATCH_SIZE,
    COUNTER_BATCHING_WINDOW_SECONDS,
    COUNTER_MAX_CONCURRENCY,
    COUNTER_MAX_RECEIVE_COUNT,
    COUNTER_MEMORY_MB,
    COUNTER_TIMEOUT_SECONDS,
    PUBLISHER_MEMORY_MB,
    PUBLISHER_TIMEOUT_SECONDS,
)
from monitoring.s3_metrics import NAMESPACE
from pipeline.resources import CAPACITY_PUBLISH_MINUTES, Env, ResourceNames

# S3's EventBridge detail types for what changes a bucket's contents (a lifecycle expiration is an Object Deleted
# with reason "Lifecycle Expiration").
OBJECT_EVENTS = ("Object Created", "Object Deleted")
# monitoring.capacity: the counter reads key records (BatchGetItem) and writes them with the counters in one
# TransactWriteItems, which IAM authorizes as the Put and Update it contains.
COUNTER_TABLE_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
# monitoring.reconcile: counters and journal (Query), corrections (UpdateItem), the drift to confirm (Get/PutItem).
RECONCILER_TABLE_ACTIONS = ("dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem")


class CapacityCounters(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        code: lambda_.Code,
        architecture: Architecture,
        upload_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.shards = shards
        # On demand: the writes follow the uploads (bursty); TTL removes tombstones and journal entries.
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=names.capacity_table,
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
        )
        self.counter_timeout = cdk.Duration.seconds(COUNTER_TIMEOUT_SECONDS)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=names.capacity_dead_letter_queue,
            retention_period=cdk.Duration.seconds(TOMBSTONE_SECONDS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        # An event waits at most the queue's retention: the tombstones outlive it (monitoring.capacity).
        self.queue = sqs.Queue(
            self,
            "Events",
            queue_name=names.capacity_queue,
            retention_period=cdk.Duration.seconds(TOMBSTONE_SECONDS),
            # AWS recommends a source queue's visibility timeout of at least 6x the function's timeout.
            visibility_timeout=cdk.Duration.seconds(6 * COUNTER_TIMEOUT_SECONDS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=COUNTER_MAX_RECEIVE_COUNT
            ),
        )
        # Both buckets send every object event to EventBridge (dashboards.constructs.storage); this rule takes
        # the ones that change what they hold. An event EventBridge cannot deliver goes to the dead-letter queue.
        self.rule = events.Rule(
            self,
            "ObjectEvents",
            description="The buckets' object creations and deletions, to the capacity counter",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=list(OBJECT_EVENTS),
                detail={"bucket": {"name": [upload_bucket.bucket_name, processed_bucket.bucket_name]}},
            ),
            targets=[targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letter_queue)],
        )
        environment = {
            Env.CAPACITY_TABLE: self.table.table_name,
            Env.CAPACITY_SHARDS: str(shards),
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        counter = PipelineFunction(
            self,
            "Counter",
            function_name=names.capacity_counter_function,
            handler="monitoring.capacity_counter.handler",
            code=code,
            architecture=architecture,
            memory_mb=COUNTER_MEMORY_MB,
            timeout=self.counter_timeout,
            environment=environment,
            description="S3 object events → exact per-bucket and per-owner counters",
        )
        self.counter = counter.function
        counter.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(COUNTER_TABLE_ACTIONS), resources=[self.table.table_arn])
        )
        polling = counter.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(QUEUE_POLLER_ACTIONS), resources=[self.queue.queue_arn])
        )
        self.event_source = self.counter.add_event_source_mapping(
            "Events",
            event_source_arn=self.queue.queue_arn,
            batch_size=COUNTER_BATCH_SIZE,
            max_batching_window=cdk.Duration.seconds(COUNTER_BATCHING_WINDOW_SECONDS),
            max_concurrency=COUNTER_MAX_CONCURRENCY,
            report_batch_item_failures=True,
        )
        if polling.policy_dependable is not None:
            self.event_source.node.add_dependency(polling.policy_dependable)

        self.publish_rate = cdk.Duration.minutes(CAPACITY_PUBLISH_MINUTES)
        publisher = PipelineFunction(
            self,
            "Publisher",
            function_name=names.capacity_publisher_function,
            handler="monitoring.capacity_publisher.handler",
            code=code,
            architecture=architecture,
            memory_mb=PUBLISHER_MEMORY_MB,
            timeout=cdk.Duration.seconds(PUBLISHER_TIMEOUT_SECONDS),
            environment={
                **environment,
                Env.UPLOAD_BUCKET: upload_bucket.bucket_name,
                Env.PROCESSED_BUCKET: processed_bucket.bucket_name,
            },
            description=f"CustomS3 counts and sizes from the capacity counters every {CAPACITY_PUBLISH_MINUTES} min",
        )
        self.publisher = publisher.function
        # Reads the counters only: no s3:ListBucket, so its cost cannot grow with the buckets.
        publisher.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.table.table_arn])
        )
        publisher.allow_publishing_metrics(NAMESPACE)
        # The next run is the retry: a late publication would only repeat the counters.
        self.publisher.configure_async_invoke(retry_attempts=0, max_event_age=self.publish_rate)
        self.schedule = events.Rule(
            self,
            "PublishSchedule",
            description=f"Publish the capacity counters every {CAPACITY_PUBLISH_MINUTES} min",
            schedule=events.Schedule.rate(self.publish_rate),
            targets=[targets.LambdaFunction(self.publisher, retry_attempts=2, max_event_age=self.publish_rate)],
        )

    def allow_reconciling(self, role: iam.IRole) -> None:
        """The reconciler reads the counters and the journal (Query), writes its corrections (UpdateItem) and keeps
        the drift it waits to see confirmed (GetItem, PutItem)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(RECONCILER_TABLE_ACTIONS), resources=[self.table.table_arn])
        )
