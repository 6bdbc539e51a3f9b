"""The customer-managed KMS key both SNS topics (image events, ops alarms) are encrypted with.

Why not SNS's AWS-managed key (alias/aws/sns): its key policy cannot be edited, and CloudWatch alarms cannot use
it, so an alarm publishing to a topic encrypted with it fails. Publishing to an encrypted topic needs
`kms:GenerateDataKey` and `kms:Decrypt` on the key besides `sns:Publish` (SNS calls KMS on the publisher's
behalf). Two publishers exist:

* CloudWatch alarms, a service principal: allowed here in the key policy. It carries no condition because
  CloudWatch can only use the key by publishing to a topic encrypted with it, and the ops topic's policy already
  admits only this account's alarms (`dashboards.constructs.alerts`).
* The worker's role: the key policy delegates to IAM (CDK's default account-root statement), and
  `allow_publishing` gives the role exactly those two actions on this key, only through SNS (`kms:ViaService`).

Subscribers need nothing: SNS decrypts before delivering (an SSE-KMS queue subscribed later would need its own
key to admit sns.amazonaws.com; the pipeline's queues use SQS-managed encryption).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

# What SNS asks KMS for when a principal publishes to an encrypted topic.
PUBLISH_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
# As AWS documents it for CloudWatch alarm actions on encrypted topics.
CLOUDWATCH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")


class TopicKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="Encrypts the imgops SNS topics (image events, ops alarms)",
            enable_key_rotation=True,
            # SNS keeps no messages at rest once delivered: a deleted stack's key has nothing left to decrypt.
            # The 30-day deletion window is the undo.
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(30),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=list(CLOUDWATCH_KEY_ACTIONS),
                resources=["*"],  # in a key policy, "*" is this key
            )
        )

    def allow_publishing(self, role: iam.IRole) -> None:
        """What `role` needs of the key to publish to a topic encrypted with it, and nothing it could use directly."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(PUBLISH_KEY_ACTIONS),
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{cdk.Aws.REGION}.amazonaws.com"}},
            )
        )
