"""Create the pipeline's resources on an AWS endpoint (the embedded moto server, LocalStack, ...).

The names and numbers come from `pipeline.resources`, the same module the CDK app reads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from monitoring.target import StackInfo, client_config, local_session
from pipeline.resources import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    DLQ_RETENTION_SECONDS,
    QUEUE_MAX_RECEIVE_COUNT,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    UPLOAD_PREFIX,
    ResourceNames,
)

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient


def provision(
    names: ResourceNames,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    visibility_timeout: int = QUEUE_VISIBILITY_TIMEOUT_SECONDS,
) -> StackInfo:
    session = local_session(region)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, config=client_config())  # type: ignore[call-overload]

    s3, sqs, sns, dynamodb, cognito = (client(s) for s in ("s3", "sqs", "sns", "dynamodb", "cognito-idp"))

    for bucket in (names.upload_bucket, names.processed_bucket):
        s3.create_bucket(Bucket=bucket)

    dlq_url = sqs.create_queue(
        QueueName=names.dead_letter_queue, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=names.work_queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(QUEUE_MAX_RECEIVE_COUNT)}
            ),
        },
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    s3.put_bucket_notification_configuration(
        Bucket=names.upload_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}},
                }
            ]
        },
    )

    dynamodb.create_table(
        TableName=names.images_table,
        AttributeDefinitions=[{"AttributeName": "imageId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "imageId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic_arn = sns.create_topic(Name=names.notifications_topic)["TopicArn"]

    pool_id = cognito.create_user_pool(PoolName=names.user_pool)["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=names.user_pool_client,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    demo_sub = create_user(cognito, pool_id, DEMO_USERNAME, DEMO_PASSWORD)

    return StackInfo(
        endpoint_url=endpoint_url,
        region=region,
        prefix=names.prefix,
        upload_bucket=names.upload_bucket,
        processed_bucket=names.processed_bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        images_table=names.images_table,
        topic_arn=topic_arn,
        user_pool_id=pool_id,
        user_pool_client_id=client_id,
        issuer=f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        jwks_url=f"{endpoint_url}/{pool_id}/.well-known/jwks.json",
        demo_username=DEMO_USERNAME,
        demo_password=DEMO_PASSWORD,
        demo_sub=demo_sub,
    )


def create_user(cognito: CognitoIdentityProviderClient, pool_id: str, username: str, password: str) -> str:
    """A confirmed user with a permanent password; returns its sub."""
    cognito.admin_create_user(
        UserPoolId=pool_id, Username=username, TemporaryPassword=password, MessageAction="SUPPRESS"
    )
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    attributes = cognito.admin_get_user(UserPoolId=pool_id, Username=username)["UserAttributes"]
    return next(attr["Value"] for attr in attributes if attr["Name"] == "sub")


def _queue_arn(sqs: Any, queue_url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
