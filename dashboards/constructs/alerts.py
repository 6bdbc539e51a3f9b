"""The ops topic every alarm notifies (encrypted with the topic key), with an e-mail subscription only when an
address is given."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


class OpsAlerts(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, topic_name: str, email: str, master_key: kms.IKey
    ) -> None:
        """`email` is usually a parameter token; an empty value creates no subscription. `master_key`'s policy must
        let cloudwatch.amazonaws.com use it (dashboards.constructs.topic_key), or alarms cannot publish."""
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=topic_name,
            display_name="imgops alarms",
            enforce_ssl=True,
            master_key=master_key,
        )
        # enforce_ssl writes a topic policy, which replaces SNS's default one: without this statement CloudWatch
        # alarms would go to ALARM and their notifications would be refused ("no resource-based policy allows").
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{cdk.Aws.PARTITION}:cloudwatch:{cdk.Aws.REGION}:"
                        f"{cdk.Aws.ACCOUNT_ID}:alarm:*"
                    },
                    "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
                },
            )
        )
        self.has_email = cdk.CfnCondition(
            self, "HasEmail", expression=cdk.Fn.condition_not(cdk.Fn.condition_equals(email, ""))
        )
        subscription = sns.CfnSubscription(
            self, "Email", topic_arn=self.topic.topic_arn, protocol="email", endpoint=email
        )
        subscription.cfn_options.condition = self.has_email
