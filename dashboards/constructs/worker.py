"""The thumbnail worker: a Lambda fed by the work queue, retrying only the messages that failed."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dashboards.config import Architecture
from dashboards.constructs.function import PipelineFunction, pipeline_environment
from dashboards.nag import acknowledge, objects_finding
from pipeline.resources import (
    PROCESSED_PREFIX,
    UPLOAD_PREFIX,
    WORKER_MEMORY_MB,
    WORKER_TIMEOUT_SECONDS,
    ResourceNames,
)


class Worker(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        code: lambda_.Code,
        architecture: Architecture,
        queue: sqs.IQueue,
        upload_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        table: dynamodb.ITable,
        topic: sns.ITopic,
        batch_size: int | float,
        max_concurrency: int | float,
    ) -> None:
        """`batch_size` and `max_concurrency` may be CloudFormation parameter tokens."""
        super().__init__(scope, construct_id)
        self.timeout = cdk.Duration.seconds(WORKER_TIMEOUT_SECONDS)
        handler = PipelineFunction(
            self,
            "Handler",
            function_name=names.worker_function,
            handler="pipeline.worker.handler",
            code=code,
            architecture=architecture,
            memory_mb=WORKER_MEMORY_MB,
            timeout=self.timeout,
            environment=pipeline_environment(
                upload_bucket=upload_bucket.bucket_name,
                processed_bucket=processed_bucket.bucket_name,
                images_table=table.table_name,
                topic_arn=topic.topic_arn,
            ),
            description="SQS → thumbnails, item and notification per upload",
        )
        self.function = handler.function
        # Explicit S3 statements: grant_read/grant_put add s3:List*, s3:GetBucket*, s3:Abort* it never uses.
        # ListBucket stays: without it S3 answers a deleted original with 403, not 404, and the worker would
        # retry a permanent failure into the DLQ instead of marking the image FAILED.
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[upload_bucket.arn_for_objects(f"{UPLOAD_PREFIX}*")]
            )
        )
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[upload_bucket.bucket_arn])
        )
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[processed_bucket.arn_for_objects(f"{PROCESSED_PREFIX}*")]
            )
        )
        acknowledge(
            handler.role,
            objects_finding(upload_bucket, UPLOAD_PREFIX),
            "Object permissions are granted on the upload prefix; keys are created per user at run time.",
        )
        acknowledge(
            handler.role,
            objects_finding(processed_bucket, PROCESSED_PREFIX),
            "The worker writes thumbnails under processed/<image_id>/, ids unknown until an upload arrives.",
        )
        table.grant_read_write_data(self.function)
        topic.grant_publish(self.function)
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=batch_size,
                max_concurrency=max_concurrency,
                report_batch_item_failures=True,
            )
        )
