"""Create the pipeline's resources on an AWS endpoint (the embedded moto server, LocalStack, ...).

The names and numbers come from `pipeline.resources`, the same module the CDK app reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from pipeline.resources import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    DLQ_RETENTION_SECONDS,
    QUEUE_MAX_RECEIVE_COUNT,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    UPLOAD_PREFIX,
    Env,
    ResourceNames,
)

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient


# The embedded AWS accepts any credentials; fixed dummies guarantee real ones are never sent to it.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "imgops-local", "AWS_SECRET_ACCESS_KEY": "imgops-local"}


@dataclass(frozen=True)
class StackInfo:
    """Everything a client of a running stack needs; also the local state file's content."""

    endpoint_url: str
    region: str
    prefix: str
    upload_bucket: str
    processed_bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    images_table: str
    topic_arn: str
    user_pool_id: str
    user_pool_client_id: str
    issuer: str
    jwks_url: str
    demo_username: str
    demo_password: str
    demo_sub: str
    api_url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def handler_environment(self) -> dict[str, str]:
        """What the CDK app sets on the functions, pointed at this stack."""
        return {
            Env.UPLOAD_BUCKET: self.upload_bucket,
            Env.PROCESSED_BUCKET: self.processed_bucket,
            Env.IMAGES_TABLE: self.images_table,
            Env.TOPIC_ARN: self.topic_arn,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
        }


def local_session(region: str) -> boto3.session.Session:
    """A session for the embedded AWS: its dummy credentials, whatever the shell exports."""
    return boto3.session.Session(
        region_name=region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def client_config() -> Config:
    return Config(retries={"max_attempts": 4, "mode": "standard"})


def provision(
    names: ResourceNames,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    visibility_timeout: int = QUEUE_VISIBILITY_TIMEOUT_SECONDS,
) -> StackInfo:
    session = boto3.session.Session(region_name=region)

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


def fetch_access_token(info: StackInfo, username: str | None = None, password: str | None = None) -> str:
    cognito = boto3.client(
        "cognito-idp", region_name=info.region, endpoint_url=info.endpoint_url, config=client_config()
    )
    result = cognito.initiate_auth(
        ClientId=info.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={
            "USERNAME": username or info.demo_username,
            "PASSWORD": password or info.demo_password,
        },
    )
    return result["AuthenticationResult"]["AccessToken"]


def _queue_arn(sqs: Any, queue_url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
