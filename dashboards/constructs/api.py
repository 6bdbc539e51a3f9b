"""The HTTP API: Cognito JWT authorizer, two routes, stage throttling and access logs, and its handlers."""

from __future__ import annotations

import json
from collections.abc import Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from dashboards.config import Architecture
from dashboards.constructs.function import LOG_RETENTION, PipelineFunction, pipeline_environment
from dashboards.nag import acknowledge, objects_finding
from pipeline.resources import PROCESSED_PREFIX, UPLOAD_PREFIX, ResourceNames

STAGE_NAME = "$default"
# The handlers answer in milliseconds; anything near API Gateway's 30 s cap is a hung dependency.
HANDLER_TIMEOUT = cdk.Duration.seconds(10)
HANDLER_MEMORY_MB = 256
# HTTP API context variables only (REST API's $context.identity.caller etc. are rejected at deploy time).
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
        "authorizerError": "$context.authorizer.error",
    }
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT)


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        code: lambda_.Code,
        architecture: Architecture,
        jwt_issuer: str,
        jwt_audience: str,
        upload_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        table: dynamodb.ITable,
        topic: sns.ITopic,
        throttle_rate_limit: int | float,
        throttle_burst_limit: int | float,
        browser_origins: Sequence[str] = (),
    ) -> None:
        """`throttle_*` may be CloudFormation parameter tokens. `code` needs no Pillow: neither handler imports it
        (bundling.API_REQUIREMENTS; tests/infrastructure/test_config_and_bundling.py checks the imports).
        `browser_origins`: web pages (the upload page) whose scripts may call the API; none: no CORS."""
        super().__init__(scope, construct_id)
        environment = pipeline_environment(
            upload_bucket=upload_bucket.bucket_name,
            processed_bucket=processed_bucket.bucket_name,
            images_table=table.table_name,
            topic_arn=topic.topic_arn,
        )
        presign = PipelineFunction(
            self,
            "Presign",
            function_name=names.presign_function,
            handler="pipeline.presign.handler",
            code=code,
            architecture=architecture,
            memory_mb=HANDLER_MEMORY_MB,
            timeout=HANDLER_TIMEOUT,
            environment=environment,
            description="POST /uploads: a presigned upload under the caller's prefix",
        )
        read = PipelineFunction(
            self,
            "Read",
            function_name=names.read_api_function,
            handler="pipeline.read_api.handler",
            code=code,
            architecture=architecture,
            memory_mb=HANDLER_MEMORY_MB,
            timeout=HANDLER_TIMEOUT,
            environment=environment,
            description="GET /images/{image_id}: status and thumbnail URLs, to the owner only",
        )
        self.presign_function = presign.function
        self.read_function = read.function
        # Presigned URLs act with the signer's permissions: exactly the operation and prefix each URL may use
        # (grant_put/grant_read would add s3:Abort*, s3:List*, s3:GetBucket* on top).
        presign.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[upload_bucket.arn_for_objects(f"{UPLOAD_PREFIX}*")]
            )
        )
        read.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[processed_bucket.arn_for_objects(f"{PROCESSED_PREFIX}*")]
            )
        )
        acknowledge(
            presign.role,
            objects_finding(upload_bucket, UPLOAD_PREFIX),
            "A presigned upload may target any key under user-uploads/; the handler picks <sub>/<uuid> per request.",
        )
        acknowledge(
            read.role,
            objects_finding(processed_bucket, PROCESSED_PREFIX),
            "Thumbnail URLs are signed for keys under processed/<image_id>/, ids known only at request time.",
        )
        # One consistent GetItem per request (pipeline.store.get); grant_read_data would add Query, Scan, BatchGetItem.
        read.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[table.table_arn])
        )

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{names.prefix}-api",
            description="imgops: presigned uploads and image status",
            create_default_stage=False,
            # API Gateway answers the preflight itself (before the authorizer) and adds the headers to answers.
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(browser_origins),
                allow_methods=[apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST],
                allow_headers=["authorization", "content-type"],
                max_age=cdk.Duration.hours(1),
            )
            if browser_origins
            else None,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.http_api,
            stage_name=STAGE_NAME,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit),
            access_log_settings=_AccessLogSettings(self.access_logs),
        )
        # Cognito access tokens carry `client_id`, not `aud`; API Gateway checks either against the audience.
        authorizer = authorizers.HttpJwtAuthorizer(
            "CognitoAccessToken",
            jwt_issuer,
            jwt_audience=[jwt_audience],
            authorizer_name="cognito-access-token",
        )
        self.http_api.add_routes(
            path="/uploads",
            methods=[apigwv2.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("PresignIntegration", self.presign_function),
            authorizer=authorizer,
        )
        self.http_api.add_routes(
            path="/images/{image_id}",
            methods=[apigwv2.HttpMethod.GET],
            integration=integrations.HttpLambdaIntegration("ReadIntegration", self.read_function),
            authorizer=authorizer,
        )

    @property
    def url(self) -> str:
        return self.stage.url
