"""The upload and processed buckets (plus their access-log and inventory buckets) and the upload → queue notification.

Both buckets send their object events to EventBridge too (the capacity counters, dashboards.constructs.capacity)
and an S3 Inventory report daily (Parquet, to the inventory bucket: the reconciler's snapshot at scale).

Lifecycle: originals move to Intelligent-Tiering after 30 days; thumbnails stay unless the deployment sets
`imgops:processed-expiry-days` (see dashboards.config.AppConfig.processed_expiry_days for why keeping them is the
default); both buckets abort incomplete multipart uploads after ABORT_INCOMPLETE_UPLOADS_AFTER.
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pipeline.resources import (
    INVENTORY_FIELDS,
    INVENTORY_ID,
    INVENTORY_PREFIX,
    PROCESSED_PREFIX,
    UPLOAD_PREFIX,
    ResourceNames,
)

# Originals are read once by the worker, then rarely: let S3 move cold ones to cheaper tiers.
UPLOAD_TIERING_AFTER = cdk.Duration.days(30)
# Access logs are for investigating recent incidents, not an archive.
ACCESS_LOG_RETENTION = cdk.Duration.days(90)
# Nothing here uploads in parts (presigned PUT/POST and the worker's put_object are single requests, and the
# URLs expire in minutes), so a multipart upload a few days old is abandoned; its parts bill as storage until
# aborted and never show in a listing.
ABORT_INCOMPLETE_UPLOADS_AFTER = cdk.Duration.days(3)
# The reconciler reads the newest report; a week of them is enough to look back on a drift.
INVENTORY_RETENTION = cdk.Duration.days(7)


class Storage(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, names: ResourceNames, processed_expiry_days: int = 0
    ) -> None:
        """`processed_expiry_days`: delete thumbnails that many days after they were written; 0 keeps them."""
        super().__init__(scope, construct_id)
        if processed_expiry_days < 0:
            raise ValueError(f"processed_expiry_days must be 0 (keep) or positive, not {processed_expiry_days}")
        self.processed_expiry_days = processed_expiry_days
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=ACCESS_LOG_RETENTION)],
        )
        self.inventory_bucket = s3.Bucket(
            self,
            "Inventory",
            bucket_name=names.inventory_bucket,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-reports", expiration=INVENTORY_RETENTION)],
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=f"{names.inventory_bucket}/",
        )
        self._upload_bucket_name = names.upload_bucket
        self.upload_bucket = self._bucket(
            "Uploads",
            names.upload_bucket,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tier-originals",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=UPLOAD_TIERING_AFTER,
                        )
                    ],
                ),
                _abort_incomplete_uploads(),
            ],
        )
        processed_rules = [_abort_incomplete_uploads()]
        if processed_expiry_days:
            processed_rules.append(
                s3.LifecycleRule(
                    id="expire-thumbnails",
                    prefix=PROCESSED_PREFIX,
                    expiration=cdk.Duration.days(processed_expiry_days),
                )
            )
        self.processed_bucket = self._bucket("Processed", names.processed_bucket, lifecycle_rules=processed_rules)

    def _bucket(self, construct_id: str, name: str, *, lifecycle_rules: list[s3.LifecycleRule]) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            construct_id,
            bucket_name=name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=lifecycle_rules,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=f"{name}/",
            inventories=[
                s3.Inventory(
                    inventory_id=INVENTORY_ID,
                    destination=s3.InventoryDestination(bucket=self.inventory_bucket, prefix=INVENTORY_PREFIX),
                    frequency=s3.InventoryFrequency.DAILY,
                    format=s3.InventoryFormat.PARQUET,
                    include_object_versions=s3.InventoryObjectVersion.CURRENT,
                    optional_fields=list(INVENTORY_FIELDS),
                )
            ],
        )
        # Every object event to EventBridge as well (the capacity counters' rule picks its own), set on the
        # CloudFormation resource: the L2's event_bridge_enabled would add CDK's notifications custom resource.
        cast("s3.CfnBucket", bucket.node.default_child).notification_configuration = _notifications()
        return bucket

    def notify_uploads(self, queue: sqs.Queue) -> None:
        """S3 → SQS for `user-uploads/` without CDK's notifications custom resource (a Lambda of its own).

        The queue policy names the bucket by its fixed ARN instead of referencing it, so the bucket can depend
        on the policy (S3 checks it can deliver when the configuration is set) without a cycle.
        """
        bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{self._upload_bucket_name}"
        added = queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowUploadNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[queue.queue_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": bucket_arn},
                    "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
                },
            )
        )
        cfn_bucket = cast("s3.CfnBucket", self.upload_bucket.node.default_child)
        cfn_bucket.notification_configuration = _notifications(
            [
                s3.CfnBucket.QueueConfigurationProperty(
                    event="s3:ObjectCreated:*",
                    queue=queue.queue_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            rules=[s3.CfnBucket.FilterRuleProperty(name="prefix", value=UPLOAD_PREFIX)]
                        )
                    ),
                )
            ]
        )
        if added.policy_dependable is not None:
            cfn_bucket.node.add_dependency(added.policy_dependable)


def _notifications(
    queues: list[s3.CfnBucket.QueueConfigurationProperty] | None = None,
) -> s3.CfnBucket.NotificationConfigurationProperty:
    return s3.CfnBucket.NotificationConfigurationProperty(
        event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True),
        queue_configurations=queues,
    )


def _abort_incomplete_uploads() -> s3.LifecycleRule:
    return s3.LifecycleRule(
        id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER
    )
