"""The synthesized stack's resources and the properties the pipeline depends on.

Names and numbers come from pipeline.resources, like the stack's; references between resources are
compared through `stack.resolve(...)` so no test knows a hashed logical id.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from dashboards import config
from dashboards.app import build_app, cdk_json_context
from dashboards.constructs.storage import ABORT_INCOMPLETE_UPLOADS_AFTER, Storage
from dashboards.constructs.worker import QUEUE_POLLER_ACTIONS, TABLE_ACTIONS
from dashboards.lambda_bundle import API_REQUIREMENTS, WORKER_REQUIREMENTS
from pipeline.resources import (
    DLQ_RETENTION_SECONDS,
    PRESIGN_EXPIRY_SECONDS,
    PROCESSED_PREFIX,
    QUEUE_MAX_RECEIVE_COUNT,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    UPLOAD_PREFIX,
    WORKER_MEMORY_MB,
    WORKER_TIMEOUT_SECONDS,
    Env,
    ResourceNames,
)
from tests.infrastructure.conftest import TEST_CONTEXT, Synthesized

NAMES = ResourceNames("imgops")


def resolve(synthesized: Synthesized, value: Any) -> Any:
    return synthesized.stack.resolve(value)


def statements_of(synthesized: Synthesized, role: Any) -> list[dict[str, Any]]:
    """Every IAM statement attached to `role` by inline AWS::IAM::Policy resources."""
    role_ref = resolve(synthesized, role.role_name)
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if role_ref in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.mark.parametrize("name", [NAMES.upload_bucket, NAMES.processed_bucket])
def test_buckets_are_private_encrypted_and_logged(synthesized: Synthesized, name: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": name,
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LoggingConfiguration": {"LogFilePrefix": f"{name}/"},
        },
    )


@pytest.mark.parametrize("bucket", ["upload_bucket", "processed_bucket"])
def test_buckets_refuse_plain_http(synthesized: Synthesized, bucket: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": resolve(synthesized, getattr(synthesized.stack.storage, bucket).bucket_name),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_access_logs_are_delivered_by_bucket_policy_not_acls(synthesized: Synthesized) -> None:
    """cdk.json's serverAccessLogsUseBucketPolicy flag: ACL grants would clash with BucketOwnerEnforced."""
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": resolve(synthesized, synthesized.stack.storage.access_logs_bucket.bucket_name),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "s3:PutObject",
                                "Principal": {"Service": "logging.s3.amazonaws.com"},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_upload_bucket_tiers_originals_after_30_days(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": NAMES.upload_bucket,
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Status": "Enabled",
                                "Transitions": [{"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 30}],
                            }
                        )
                    ]
                )
            },
        },
    )


@pytest.mark.parametrize("name", [NAMES.upload_bucket, NAMES.processed_bucket])
def test_buckets_abort_incomplete_multipart_uploads(synthesized: Synthesized, name: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": name,
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Status": "Enabled",
                                "AbortIncompleteMultipartUpload": {
                                    "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_AFTER.to_days()
                                },
                            }
                        )
                    ]
                )
            },
        },
    )


def test_thumbnails_are_kept_by_default(synthesized: Synthesized) -> None:
    assert synthesized.stack.config.processed_expiry_days == 0
    [processed] = [
        bucket
        for bucket in synthesized.resources("AWS::S3::Bucket").values()
        if bucket["Properties"].get("BucketName") == NAMES.processed_bucket
    ]
    rules = processed["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [rule["Id"] for rule in rules] == ["abort-incomplete-uploads"]
    assert not any("ExpirationInDays" in rule for rule in rules)


def test_processed_expiry_days_reaches_the_storage() -> None:
    """`-c imgops:processed-expiry-days=N` → AppConfig → ImgopsStack → Storage (built, not synthesized: seconds)."""
    _, stack = build_app({**TEST_CONTEXT, config.PROCESSED_EXPIRY_DAYS: "30"}, nag=False)
    assert stack.storage.processed_expiry_days == 30


def test_processed_expiry_days_expires_only_thumbnails() -> None:
    stack = cdk.Stack(cdk.App(context=cdk_json_context()), "StorageOnly")
    Storage(stack, "Storage", names=NAMES, processed_expiry_days=30)
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": NAMES.processed_bucket,
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        {
                            "Id": "expire-thumbnails",
                            "Status": "Enabled",
                            "Prefix": PROCESSED_PREFIX,
                            "ExpirationInDays": 30,
                        }
                    ]
                )
            },
        },
    )
    [uploads] = [
        bucket
        for bucket in template.find_resources("AWS::S3::Bucket").values()
        if bucket["Properties"].get("BucketName") == NAMES.upload_bucket
    ]
    assert not any("ExpirationInDays" in rule for rule in uploads["Properties"]["LifecycleConfiguration"]["Rules"])


def test_uploads_notify_the_work_queue_only_for_the_upload_prefix(synthesized: Synthesized) -> None:
    queue_arn = resolve(synthesized, synthesized.stack.work_queue.queue.queue_arn)
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": NAMES.upload_bucket,
            "NotificationConfiguration": {
                "QueueConfigurations": [
                    {
                        "Event": "s3:ObjectCreated:*",
                        "Queue": queue_arn,
                        "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}},
                    }
                ]
            },
        },
    )
    # S3 checks it may deliver when the configuration is set: the queue policy must exist first.
    synthesized.template.has_resource(
        "AWS::S3::Bucket",
        {"Properties": {"BucketName": NAMES.upload_bucket}, "DependsOn": Match.any_value()},
    )
    synthesized.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "s3.amazonaws.com"},
                                "Action": "sqs:SendMessage",
                                "Condition": Match.object_like({"ArnEquals": {"aws:SourceArn": Match.any_value()}}),
                            }
                        )
                    ]
                )
            }
        },
    )


def test_work_queue_redrives_to_the_dlq_after_three_receives(synthesized: Synthesized) -> None:
    dlq_arn = resolve(synthesized, synthesized.stack.work_queue.dead_letter_queue.queue_arn)
    synthesized.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": NAMES.work_queue,
            "VisibilityTimeout": QUEUE_VISIBILITY_TIMEOUT_SECONDS,
            "RedrivePolicy": {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": QUEUE_MAX_RECEIVE_COUNT},
            "SqsManagedSseEnabled": True,
        },
    )
    assert QUEUE_MAX_RECEIVE_COUNT == 3
    synthesized.template.has_resource_properties(
        "AWS::SQS::Queue",
        {"QueueName": NAMES.dead_letter_queue, "MessageRetentionPeriod": DLQ_RETENTION_SECONDS},
    )


def test_visibility_timeout_is_at_least_six_worker_timeouts(synthesized: Synthesized) -> None:
    """AWS's rule for SQS-triggered functions, checked on the synthesized values, not the constants."""
    [queue] = [
        q["Properties"]
        for q in synthesized.resources("AWS::SQS::Queue").values()
        if q["Properties"].get("QueueName") == NAMES.work_queue
    ]
    [worker] = [
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == NAMES.worker_function
    ]
    assert worker["Timeout"] == WORKER_TIMEOUT_SECONDS
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]


def test_images_table_is_on_demand_with_point_in_time_recovery(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": NAMES.images_table,
            "KeySchema": [{"AttributeName": "imageId", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "imageId", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_topics_exist_and_refuse_plain_http(synthesized: Synthesized) -> None:
    for name in (NAMES.notifications_topic, f"{NAMES.prefix}-ops-alarms"):
        synthesized.template.has_resource_properties("AWS::SNS::Topic", {"TopicName": name})
    synthesized.template.resource_properties_count_is(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
        2,
    )


def test_user_pool_client_allows_only_password_sign_in_and_refresh(synthesized: Synthesized) -> None:
    """The CLI, the load-test harness and the local stack sign in with USER_PASSWORD_AUTH and refresh; nothing uses
    SRP, a hosted UI or an OAuth redirect, so the client offers none of them (no implicit grant, no callback)."""
    synthesized.template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "UserPoolName": NAMES.user_pool,
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "Policies": {"PasswordPolicy": Match.object_like({"MinimumLength": 12})},
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "ClientName": NAMES.user_pool_client,
            "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            "GenerateSecret": False,
            "AllowedOAuthFlowsUserPoolClient": False,
            "AllowedOAuthFlows": Match.absent(),
            "AllowedOAuthScopes": Match.absent(),
            "CallbackURLs": Match.absent(),
            "LogoutURLs": Match.absent(),
        },
    )
    [client] = synthesized.resources("AWS::Cognito::UserPoolClient").values()
    assert "example.com" not in json.dumps(client)


def test_api_routes_require_a_cognito_access_token(synthesized: Synthesized) -> None:
    auth = synthesized.stack.auth
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "IdentitySource": ["$request.header.Authorization"],
            "JwtConfiguration": {
                # Access tokens carry `client_id`; API Gateway matches it against the audience.
                "Audience": [resolve(synthesized, auth.client.user_pool_client_id)],
                "Issuer": resolve(synthesized, auth.user_pool.user_pool_provider_url),
            },
        },
    )
    for route in ("POST /uploads", "GET /images/{image_id}"):
        synthesized.template.has_resource_properties(
            "AWS::ApiGatewayV2::Route",
            {"RouteKey": route, "AuthorizationType": "JWT", "AuthorizerId": Match.any_value()},
        )
    synthesized.template.resource_count_is("AWS::ApiGatewayV2::Route", 2)


def test_api_stage_throttles_from_parameters_and_logs_access(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
                "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
            },
            "AccessLogSettings": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.requestId"),
            },
        },
    )
    for parameter in ("ApiThrottleRateLimit", "ApiThrottleBurstLimit"):
        synthesized.template.has_parameter(parameter, {"Type": "Number"})


@pytest.mark.parametrize(
    ("name", "handler", "memory", "timeout"),
    [
        (NAMES.worker_function, "pipeline.worker.handler", WORKER_MEMORY_MB, WORKER_TIMEOUT_SECONDS),
        (NAMES.presign_function, "pipeline.presign.handler", 256, 10),
        (NAMES.read_api_function, "pipeline.read_api.handler", 256, 10),
    ],
)
def test_handler_functions(synthesized: Synthesized, name: str, handler: str, memory: int, timeout: int) -> None:
    storage, images, events = synthesized.stack.storage, synthesized.stack.images, synthesized.stack.image_events
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": name,
            "Handler": handler,
            "Runtime": "python3.12",
            "Architectures": ["arm64"],
            "MemorySize": memory,
            "Timeout": timeout,
            "LoggingConfig": {"LogGroup": Match.any_value()},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        Env.UPLOAD_BUCKET: resolve(synthesized, storage.upload_bucket.bucket_name),
                        Env.PROCESSED_BUCKET: resolve(synthesized, storage.processed_bucket.bucket_name),
                        Env.IMAGES_TABLE: resolve(synthesized, images.table.table_name),
                        Env.TOPIC_ARN: resolve(synthesized, events.topic.topic_arn),
                        Env.URL_EXPIRY_SECONDS: str(PRESIGN_EXPIRY_SECONDS),
                    }
                )
            },
        },
    )


def test_worker_is_fed_by_the_queue_with_partial_batch_failures(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": resolve(synthesized, synthesized.stack.work_queue.queue.queue_arn),
            "FunctionName": resolve(synthesized, synthesized.stack.worker.function.function_name),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": {"Ref": "WorkerBatchSize"},
            "ScalingConfig": {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}},
        },
    )
    synthesized.template.has_parameter("WorkerBatchSize", {"Type": "Number", "Default": 10, "MaxValue": 10})
    synthesized.template.has_parameter("WorkerMaxConcurrency", {"Type": "Number", "MinValue": 2})


def test_worker_role_is_least_privilege(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    statements = statements_of(synthesized, stack.worker.function.role)
    granted = {action for statement in statements for action in actions(statement)}
    assert "s3:GetObject" in granted
    assert "s3:PutObject" in granted
    assert "sns:Publish" in granted
    assert not any(action.endswith("*") and action.startswith("s3:") for action in granted), granted
    upload_objects = resolve(synthesized, stack.storage.upload_bucket.arn_for_objects(f"{UPLOAD_PREFIX}*"))
    processed_objects = resolve(synthesized, stack.storage.processed_bucket.arn_for_objects(f"{PROCESSED_PREFIX}*"))
    by_action = {action: statement["Resource"] for statement in statements for action in actions(statement)}
    assert by_action["s3:GetObject"] == upload_objects
    assert by_action["s3:PutObject"] == processed_objects
    # What pipeline.store calls, and what Lambda's SQS poller needs; no Scan, Query, DeleteItem, Batch*.
    table_arn = resolve(synthesized, stack.images.table.table_arn)
    assert {action: arn for action, arn in by_action.items() if action.startswith("dynamodb:")} == dict.fromkeys(
        TABLE_ACTIONS, table_arn
    )
    queue_arn = resolve(synthesized, stack.work_queue.queue.queue_arn)
    assert {action: arn for action, arn in by_action.items() if action.startswith("sqs:")} == dict.fromkeys(
        QUEUE_POLLER_ACTIONS, queue_arn
    )


def test_presign_may_only_put_uploads_and_read_may_only_get_thumbnails(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    presign = statements_of(synthesized, stack.api.presign_function.role)
    read = statements_of(synthesized, stack.api.read_function.role)
    s3_presign = [s for s in presign if any(a.startswith("s3:") for a in actions(s))]
    s3_read = [s for s in read if any(a.startswith("s3:") for a in actions(s))]
    assert [(actions(s), s["Resource"]) for s in s3_presign] == [
        (["s3:PutObject"], resolve(synthesized, stack.storage.upload_bucket.arn_for_objects(f"{UPLOAD_PREFIX}*")))
    ]
    assert [(actions(s), s["Resource"]) for s in s3_read] == [
        (["s3:GetObject"], resolve(synthesized, stack.storage.processed_bucket.arn_for_objects(f"{PROCESSED_PREFIX}*")))
    ]
    # One GetItem per request: no Query, Scan or BatchGetItem (grant_read_data's set).
    assert [(actions(s), s["Resource"]) for s in read if any(a.startswith("dynamodb:") for a in actions(s))] == [
        (["dynamodb:GetItem"], resolve(synthesized, stack.images.table.table_arn))
    ]
    assert not [s for s in presign if any(a.startswith(("dynamodb:", "sns:", "kms:")) for a in actions(s))]


def test_the_reconciler_runs_on_a_schedule_and_may_list_read_reports_and_correct(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    function = stack.bucket_metrics.function
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": f"{NAMES.prefix}-s3-metrics",
            "Handler": "monitoring.reconcile.handler",
            "Runtime": "python3.12",
            "Timeout": 900,  # hourly: Lambda's longest
            "Environment": {
                "Variables": Match.object_like(
                    {
                        Env.UPLOAD_BUCKET: resolve(synthesized, stack.storage.upload_bucket.bucket_name),
                        Env.PROCESSED_BUCKET: resolve(synthesized, stack.storage.processed_bucket.bucket_name),
                        Env.CAPACITY_TABLE: resolve(synthesized, stack.capacity.table.table_name),
                        Env.CAPACITY_QUEUE: resolve(synthesized, stack.capacity.queue.queue_name),
                        Env.INVENTORY_BUCKET: resolve(synthesized, stack.storage.inventory_bucket.bucket_name),
                    }
                )
            },
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 hour)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": resolve(synthesized, function.function_arn)})],
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": resolve(synthesized, function.function_name),
            "MaximumRetryAttempts": 0,
            "MaximumEventAgeInSeconds": 3600,
        },
    )
    statements = statements_of(synthesized, function.role)
    by_action = {action: statement for statement in statements for action in actions(statement)}
    listed = [
        resource
        for statement in statements
        if "s3:ListBucket" in actions(statement)
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
    ]
    assert {json.dumps(r) for r in listed} == {
        json.dumps(resolve(synthesized, bucket.bucket_arn))
        for bucket in (stack.storage.upload_bucket, stack.storage.processed_bucket, stack.storage.inventory_bucket)
    }
    assert by_action["cloudwatch:PutMetricData"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "CustomS3"}}
    # It reads inventory reports only: never an upload or a thumbnail.
    assert by_action["s3:GetObject"]["Resource"] == resolve(
        synthesized, stack.storage.inventory_bucket.arn_for_objects("*")
    )
    assert {"dynamodb:Query", "dynamodb:UpdateItem"} <= set(by_action)
    assert by_action["dynamodb:UpdateItem"]["Resource"] == resolve(synthesized, stack.capacity.table.table_arn)


def test_thumbnails_cdn_reads_the_private_bucket_through_origin_access_control(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    synthesized.template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {
            "OriginAccessControlConfig": Match.object_like(
                {"OriginAccessControlOriginType": "s3", "SigningBehavior": "always", "SigningProtocol": "sigv4"}
            )
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": Match.object_like(
                {
                    "DefaultCacheBehavior": Match.object_like({"ViewerProtocolPolicy": "redirect-to-https"}),
                    "Origins": [
                        Match.object_like(
                            {
                                "DomainName": resolve(
                                    synthesized, stack.storage.processed_bucket.bucket_regional_domain_name
                                ),
                                "OriginAccessControlId": Match.any_value(),
                                "S3OriginConfig": {"OriginAccessIdentity": ""},
                            }
                        )
                    ],
                }
            )
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": resolve(synthesized, stack.storage.processed_bucket.bucket_name),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "s3:GetObject",
                                "Principal": {"Service": "cloudfront.amazonaws.com"},
                                "Condition": {"StringEquals": {"AWS:SourceArn": Match.any_value()}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_cloudwatch_alarms_may_publish_to_the_ops_topic(synthesized: Synthesized) -> None:
    """The SSL-only topic policy replaces SNS's default policy, so CloudWatch needs its own Allow."""
    synthesized.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [resolve(synthesized, synthesized.stack.alerts.topic.topic_arn)],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": "sns:Publish",
                                "Condition": Match.object_like({"ArnLike": {"aws:SourceArn": Match.any_value()}}),
                            }
                        )
                    ]
                )
            },
        },
    )


def test_alarm_email_subscription_only_when_an_address_is_given(synthesized: Synthesized) -> None:
    synthesized.template.has_parameter("AlarmEmail", {"Type": "String", "Default": ""})
    [condition] = synthesized.json["Conditions"].values()
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    synthesized.template.has_resource(
        "AWS::SNS::Subscription",
        {
            "Properties": {
                "Protocol": "email",
                "Endpoint": {"Ref": "AlarmEmail"},
                "TopicArn": resolve(synthesized, synthesized.stack.alerts.topic.topic_arn),
            },
            "Condition": Match.any_value(),
        },
    )


def test_api_handlers_share_a_bundle_without_pillow(synthesized: Synthesized) -> None:
    """Same sources as the worker's bundle, other requirements: a separate asset (pipeline.presign and read_api never
    import PIL; test_config_and_bundling.py checks that in a fresh interpreter)."""
    code = {
        function["Properties"]["FunctionName"]: json.dumps(function["Properties"]["Code"], sort_keys=True)
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if "FunctionName" in function["Properties"]
    }
    assert code[NAMES.presign_function] == code[NAMES.read_api_function]
    assert code[NAMES.presign_function] != code[NAMES.worker_function]
    assert "Pillow" in WORKER_REQUIREMENTS
    assert "Pillow" not in API_REQUIREMENTS


def test_bundles_hold_the_handler_packages_without_caches(synthesized: Synthesized) -> None:
    """Skipped bundling still runs the local bundler: sources copied, pip not run, no Docker."""
    # The pipeline's own functions' bundles: not the upload page's files nor CDK's BucketDeployment handler.
    ours = {
        str(function["Properties"]["Code"]["S3Key"]).removesuffix(".zip")
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if str(function["Properties"]["Handler"]).startswith(("pipeline.", "monitoring."))
    }
    bundles = [path for path in synthesized.outdir.glob("asset.*") if path.is_dir() and path.name[6:] in ours]
    assert len(bundles) == len(ours)
    contents = {path.name: {child.name for child in path.iterdir()} for path in bundles}
    assert {"pipeline"} in contents.values()
    assert {"monitoring", "pipeline"} in contents.values()
    for bundle in bundles:
        assert not list(bundle.rglob("__pycache__"))
        assert (bundle / "pipeline" / "resources.py").exists()
