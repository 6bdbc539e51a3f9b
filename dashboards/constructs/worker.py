"""The thumbnail worker: a Lambda fed by the work queue, retrying only the messages that failed.

Its role holds what the handler calls (tests/functional/test_iam.py records every call the functional tests make
and checks it against this role) plus what Lambda itself does with the role: write the log group, poll the queue.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dashboards.config import Architecture
from dashboards.constructs.function import PipelineFunction, pipeline_environment
from dashboards.constructs.topic_key import TopicKey
from dashboards.nag import acknowledge, objects_finding
from pipeline.resources import (
    DEFAULT_LABELS_MIN_CONFIDENCE,
    PROCESSED_PREFIX,
    UPLOAD_PREFIX,
    WORKER_MAX_PIXELS,
    WORKER_TIMEOUT_SECONDS,
    Env,
    ResourceNames,
)

# pipeline.store: conditional put (claim), consistent get, conditional update (finish, release, notified).
TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
# What Lambda's SQS poller does with the function's role (the AWSLambdaSQSQueueExecutionRole set); CDK's
# SqsEventSource would also grant sqs:GetQueueUrl and sqs:ChangeMessageVisibility, which nothing here calls.
# The labels stage's one call (pipeline.labels), granted only with `-c imgops:labels=rekognition`.
LABELS_ACTION = "rekognition:DetectLabels"
QUEUE_POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


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
        topic_key: TopicKey,
        batch_size: int | float,
        max_concurrency: int | float,
        memory_mb: int,
        labels: str = "none",
        labels_min_confidence: float = DEFAULT_LABELS_MIN_CONFIDENCE,
    ) -> None:
        """`batch_size` and `max_concurrency` may be CloudFormation parameter tokens; `memory_mb` is the app's
        configuration (`imgops:worker-memory-mb`, else pipeline.resources.WORKER_MEMORY_MB); `labels` too
        (`imgops:labels`): `rekognition` turns the labels stage on, with its environment and its one grant."""
        super().__init__(scope, construct_id)
        self.timeout = cdk.Duration.seconds(WORKER_TIMEOUT_SECONDS)
        self.memory_mb = memory_mb
        handler = PipelineFunction(
            self,
            "Handler",
            function_name=names.worker_function,
            handler="pipeline.worker.handler",
            code=code,
            architecture=architecture,
            memory_mb=memory_mb,
            timeout=self.timeout,
            environment={
                **pipeline_environment(
                    upload_bucket=upload_bucket.bucket_name,
                    processed_bucket=processed_bucket.bucket_name,
                    images_table=table.table_name,
                    topic_arn=topic.topic_arn,
                ),
                # Set outright, beside the memory size that must hold an image this large (pipeline.resources).
                Env.MAX_PIXELS: str(WORKER_MAX_PIXELS),
                **(
                    {Env.LABELS: labels, Env.LABELS_MIN_CONFIDENCE: f"{labels_min_confidence:g}"}
                    if labels != "none"
                    else {}
                ),
            },
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
        # Explicit items actions: grant_read_write_data adds Scan, Query, DeleteItem, BatchWriteItem, ... unused.
        handler.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=[table.table_arn])
        )
        # grant_publish would add kms:GenerateDataKey* usable outside SNS; topic_key grants exactly SNS's needs.
        handler.role.add_to_principal_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]))
        topic_key.allow_publishing(handler.role)
        if labels == "rekognition":
            # DetectLabels has no resource-level permissions: "*" is the only resource IAM accepts for it. With an
            # S3Object (originals over 5 MB) Rekognition reads the object as the worker, with its s3:GetObject above.
            handler.role.add_to_principal_policy(iam.PolicyStatement(actions=[LABELS_ACTION], resources=["*"]))
            acknowledge(
                handler.role,
                "AwsSolutions-IAM5[Resource::*]",
                "rekognition:DetectLabels supports no resource-level permissions; the only resource is *.",
            )
        polling = handler.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(QUEUE_POLLER_ACTIONS), resources=[queue.queue_arn])
        )
        # The id SqsEventSource gave it: the same logical id, so a deployed stack updates the mapping in place
        # (a replacement would be created before the old one is gone, and Lambda allows one per queue and function).
        self.event_source = self.function.add_event_source_mapping(
            f"SqsEventSource:{cdk.Names.node_unique_id(queue.node)}",
            event_source_arn=queue.queue_arn,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            report_batch_item_failures=True,
        )
        # Lambda checks at creation that the role may poll the queue.
        if polling.policy_dependable is not None:
            self.event_source.node.add_dependency(polling.policy_dependable)
