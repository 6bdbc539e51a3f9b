"""A pipeline Lambda with the team's defaults: python3.12, its own log group and its own minimal role."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from dashboards.config import Architecture
from dashboards.nag import acknowledge
from pipeline.resources import PRESIGN_EXPIRY_SECONDS, Env

RUNTIME = lambda_.Runtime.PYTHON_3_12
# Long enough to investigate last month's incident; logs are the largest hidden cost of chatty handlers.
LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class PipelineFunction(Construct):
    """Own role that may write only its own log group (the managed basic-execution policy allows any)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        handler: str,
        code: lambda_.Code,
        architecture: Architecture,
        memory_mb: int,
        timeout: cdk.Duration,
        environment: Mapping[str, str],
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {function_name}",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64,
            handler=handler,
            code=code,
            memory_size=memory_mb,
            timeout=timeout,
            environment=dict(environment),
            log_group=self.log_group,
            role=self.role,
        )
        self.log_group.grant_write(self.role)
        acknowledge(
            self.function.node.default_child,  # the function only: not its event sources or invoke config
            "AwsSolutions-L1",
            "Pinned to python3.12: the bundle's wheels are built for cp312/manylinux_2_28 and the handlers "
            "are tested on 3.12; move runtime and wheel tags together.",
        )

    def allow_publishing_metrics(self, namespace: str, *, reading: bool = False) -> None:
        """PutMetricData into `namespace` only: it has no resource-level permissions, so the namespace condition is
        the only scope there is. `reading`: GetMetricStatistics too (read-only, likewise without resources)."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
            )
        )
        if reading:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
            )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData"
            + (" and GetMetricStatistics have" if reading else " has")
            + f" no resource-level permissions; the cloudwatch:namespace condition limits publishing to {namespace}"
            + ("; reading is read-only." if reading else "."),
        )


def pipeline_environment(
    *, upload_bucket: str, processed_bucket: str, images_table: str, topic_arn: str
) -> dict[str, str]:
    """What pipeline.settings.Settings.from_env requires of every handler, whichever parts it uses."""
    return {
        Env.UPLOAD_BUCKET: upload_bucket,
        Env.PROCESSED_BUCKET: processed_bucket,
        Env.IMAGES_TABLE: images_table,
        Env.TOPIC_ARN: topic_arn,
        Env.URL_EXPIRY_SECONDS: str(PRESIGN_EXPIRY_SECONDS),
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
