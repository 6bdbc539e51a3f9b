"""The capacity reconciler (the bucket-metrics Lambda) on an EventBridge schedule (monitoring/s3_metrics.py).

It checks the capacity counters (dashboards.constructs.capacity) against the truth: a listing while a bucket is
small enough to list in one run, the bucket's newest S3 Inventory report beyond that; it publishes the drift and
corrects the counters. The per-minute `CustomS3` sizes and counts are the publisher's, not this function's.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dashboards.config import METRICS_RATES, Architecture
from dashboards.constructs.capacity import CapacityCounters
from dashboards.constructs.function import PipelineFunction
from dashboards.constructs.inventory import InventoryQueries
from dashboards.nag import acknowledge, objects_finding
from monitoring.s3_metrics import (
    MAX_TIMEOUT_SECONDS,
    MEMORY_MB,
    NAMESPACE,
    SAFETY_MARGIN_MS,
    SCHEDULE_GAP_SECONDS,
    timeout_seconds,
)
from pipeline.resources import Env

__all__ = [
    "MAX_TIMEOUT_SECONDS",
    "MEMORY_MB",
    "SCHEDULE_GAP_SECONDS",
    "BucketMetrics",
    "metrics_timeout_seconds",
    "scan_budget_seconds",
]


def metrics_timeout_seconds(rate_minutes: int) -> int:
    return timeout_seconds(rate_minutes * 60)


def scan_budget_seconds(rate_minutes: int) -> int:
    """Listing time one run has for all buckets together."""
    return metrics_timeout_seconds(rate_minutes) - SAFETY_MARGIN_MS // 1000


class BucketMetrics(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        code: lambda_.Code,
        architecture: Architecture,
        upload_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        inventory: InventoryQueries,
        capacity: CapacityCounters,
        rate_minutes: int,
    ) -> None:
        super().__init__(scope, construct_id)
        inventory_bucket = inventory.inventory_bucket
        if rate_minutes not in METRICS_RATES:
            raise ValueError(f"rate_minutes must be one of {METRICS_RATES}, not {rate_minutes}")
        self.rate = cdk.Duration.minutes(rate_minutes)
        self.timeout = cdk.Duration.seconds(metrics_timeout_seconds(rate_minutes))
        handler = PipelineFunction(
            self,
            "Handler",
            function_name=function_name,
            handler="monitoring.reconcile.handler",
            code=code,
            architecture=architecture,
            memory_mb=MEMORY_MB,
            timeout=self.timeout,
            environment={
                Env.UPLOAD_BUCKET: upload_bucket.bucket_name,
                Env.PROCESSED_BUCKET: processed_bucket.bucket_name,
                Env.CAPACITY_TABLE: capacity.table.table_name,
                Env.CAPACITY_QUEUE: capacity.queue.queue_name,
                Env.CAPACITY_DEAD_LETTER_QUEUE: capacity.dead_letter_queue.queue_name,
                # The counter's: reading fewer shards than it writes would look like drift, and be "corrected".
                Env.CAPACITY_SHARDS: str(capacity.shards),
                Env.INVENTORY_BUCKET: inventory_bucket.bucket_name,
                Env.ATHENA_WORKGROUP: inventory.workgroup_name,
                Env.ATHENA_DATABASE: inventory.database_name,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            description=f"Capacity counters checked against a listing or S3 Inventory every {rate_minutes} min",
        )
        self.function = handler.function
        # Listing only: the function never reads an object.
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[upload_bucket.bucket_arn, processed_bucket.bucket_arn]
            )
        )
        # The newest inventory report: its manifest (ListBucket on the report folder, GetObject) and data files.
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[inventory_bucket.bucket_arn])
        )
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[inventory_bucket.arn_for_objects("*")])
        )
        acknowledge(
            handler.role,
            objects_finding(inventory_bucket, ""),
            "The reconciler reads whichever inventory report is newest; S3 names the report files at delivery.",
        )
        capacity.allow_reconciling(handler.role)
        inventory.allow_querying(handler.role)
        # And reading the capacity queue's oldest message (AWS/SQS): corrections wait while older events do.
        handler.allow_publishing_metrics(NAMESPACE, reading=True)
        # The next scheduled run is the retry; a retried scan would only publish stale totals late.
        self.function.configure_async_invoke(retry_attempts=0, max_event_age=self.rate)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Run the bucket-metrics scan every {rate_minutes} min",
            schedule=events.Schedule.rate(self.rate),
            # Delivery retries only within one period: a scan that starts late is a wasted scan.
            targets=[targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=self.rate)],
        )
