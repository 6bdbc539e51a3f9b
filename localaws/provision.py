"""Build the local stack from the synthesized CloudFormation template: the CDK app is the only definition.

moto's CloudFormation cannot create this template (no API Gateway v2, CloudFront, Cognito, bucket/queue/topic
policies or EventInvokeConfig; ../shared/FACTS.md), but its service APIs take everything the template
describes. So each resource the local AWS supports is created through its own API, with the template's
properties, tokens resolved as CloudFormation would (`dashboards.template.Resolver`); then a CloudFormation
stack of the deployed name holds the template's outputs, so `--stack-name <prefix>-pipeline` finds the local
stack exactly as it finds a deployed one.

Emulated instead (see README › Local stack): the HTTP API and its JWT authorizer (the local API), CloudFront
(the processed bucket's own S3 endpoint), Lambda permissions (nothing invokes through them locally).
The Lambda functions are registered with their configuration; the local runtime runs them (moto would need
Docker), so the SQS event source mapping is registered disabled: the local runtime is the poller.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dashboards.template import PhysicalIds, Resolver, stack_template
from dashboards.web import LOCAL_PATH as WEB_PAGE_PATH
from dashboards.web import OUTPUT_KEY as WEB_PAGE_OUTPUT
from monitoring.target import StackInfo, client_config, local_session
from pipeline.resources import DEMO_PASSWORD, DEMO_USERNAME, ResourceNames, StackOutputs

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

# Output values that name emulated resources, and what stands in for them locally.
EMULATED_OUTPUTS = (StackOutputs.API_URL, "ThumbnailCdnDomain", WEB_PAGE_OUTPUT)
# Resource types the local AWS does not create, with the reason (README › Local stack lists them).
NOT_CREATED = {
    "AWS::ApiGatewayV2::Api": "emulated by the local HTTP API",
    "AWS::ApiGatewayV2::Authorizer": "emulated: the local API verifies the JWT against the pool's JWKS",
    "AWS::ApiGatewayV2::Integration": "emulated by the local HTTP API",
    "AWS::ApiGatewayV2::Route": "emulated by the local HTTP API",
    "AWS::ApiGatewayV2::Stage": "emulated by the local HTTP API",
    "AWS::CloudFront::Distribution": "emulated: thumbnails are served by the processed bucket's S3 endpoint",
    "AWS::CloudFront::OriginAccessControl": "emulated with CloudFront",
    "AWS::Lambda::Permission": "nothing invokes a function through a resource policy locally",
    "AWS::CloudWatch::CompositeAlarm": "moto has no composite alarms: `imgops alarms check` derives its state",
    "AWS::CDK::Metadata": "CDK bookkeeping",
    "AWS::CloudFront::ResponseHeadersPolicy": "emulated: the local API sends the upload page's security headers",
    "Custom::CDKBucketDeployment": "emulated: the local API serves the upload page and its config.json",
    "AWS::Lambda::LayerVersion": "the page deployment function's AWS CLI layer; nothing runs that function locally",
    "AWS::Glue::Database": "the reconciler reads inventory reports with DuckDB locally (Athena's catalog on AWS)",
    "AWS::Glue::Table": "the reconciler reads inventory reports with DuckDB locally (Athena's catalog on AWS)",
    "AWS::Athena::WorkGroup": "the reconciler reads inventory reports with DuckDB locally (Athena on AWS)",
}
_PLACEHOLDER_CODE: bytes | None = None


def provision(
    names: ResourceNames,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    visibility_timeout: int | None = None,
    worker_timeout: int | None = None,
    template: Mapping[str, Any] | None = None,
) -> StackInfo:
    """Every resource of the template the local AWS supports; `visibility_timeout` and `worker_timeout` change
    the deployed values afterwards, as an operator would (time-compressed drills and tests)."""
    body = template if template is not None else stack_template(names.prefix)
    builder = _Builder(body, endpoint_url=endpoint_url, region=region, prefix=names.prefix)
    builder.build()
    queue_url = builder.queue_url(names.work_queue)
    sqs, lambda_ = builder.client("sqs"), builder.client("lambda")
    if visibility_timeout is not None:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(visibility_timeout)})
    if worker_timeout is not None:
        lambda_.update_function_configuration(FunctionName=names.worker_function, Timeout=worker_timeout)
    cognito = builder.client("cognito-idp")
    pool_id, client_id = builder.ids.user_pool_id, builder.ids.user_pool_client_id
    demo_sub = create_user(cognito, pool_id, DEMO_USERNAME, DEMO_PASSWORD)
    dlq_url = builder.queue_url(names.dead_letter_queue)
    return StackInfo(
        endpoint_url=endpoint_url,
        region=region,
        prefix=names.prefix,
        upload_bucket=names.upload_bucket,
        processed_bucket=names.processed_bucket,
        queue_url=queue_url,
        queue_arn=_queue_arn(sqs, queue_url),
        dlq_url=dlq_url,
        dlq_arn=_queue_arn(sqs, dlq_url),
        images_table=names.images_table,
        topic_arn=builder.ids.topic_arns[names.notifications_topic],
        user_pool_id=pool_id,
        user_pool_client_id=client_id,
        issuer=f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        jwks_url=f"{endpoint_url}/{pool_id}/.well-known/jwks.json",
        demo_username=DEMO_USERNAME,
        demo_password=DEMO_PASSWORD,
        demo_sub=demo_sub,
    )


def register_stack(info: StackInfo, template: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A CloudFormation stack `<prefix>-pipeline` whose outputs are the template's, resolved locally: the API
    URL is the local API's, the CDN domain the processed bucket's endpoint. Returns the outputs."""
    body = template if template is not None else stack_template(info.prefix)
    outputs = local_outputs(body, info)
    marker = {
        "Type": "AWS::SSM::Parameter",  # CloudFormation needs one resource; moto creates this one
        "Properties": {"Name": f"/{info.prefix}/local-stack", "Type": "String", "Value": info.endpoint_url},
    }
    cloudformation = local_session(info.region).client(
        "cloudformation", endpoint_url=info.endpoint_url, config=client_config()
    )
    cloudformation.create_stack(
        StackName=f"{info.prefix}-pipeline",
        TemplateBody=json.dumps(
            {
                "Description": body.get("Description", ""),
                "Resources": {"LocalStackMarker": marker},
                "Outputs": {name: {"Value": value} for name, value in outputs.items()},
            }
        ),
    )
    return outputs


def local_outputs(template: Mapping[str, Any], info: StackInfo) -> dict[str, str]:
    resolver = Resolver(template, physical_ids_for(info))
    outputs = {}
    for name, output in template.get("Outputs", {}).items():
        outputs[name] = str(resolver.resolve(output["Value"]))
    outputs[StackOutputs.API_URL] = info.api_url
    if "ThumbnailCdnDomain" in outputs:
        outputs["ThumbnailCdnDomain"] = f"{info.endpoint_url}/{info.processed_bucket}"
    if WEB_PAGE_OUTPUT in outputs:  # the local API serves the page (localaws.web)
        outputs[WEB_PAGE_OUTPUT] = f"{info.api_url.rstrip('/')}{WEB_PAGE_PATH}"
    return outputs


def physical_ids_for(info: StackInfo) -> PhysicalIds:
    names = ResourceNames(info.prefix)
    account_url = info.queue_url.rsplit("/", 1)[0]  # the embedded SQS's URLs: <endpoint>/<account>/<name>
    queues = (names.capacity_queue, names.capacity_dead_letter_queue)
    return PhysicalIds(
        region=info.region,
        stack_name=f"{info.prefix}-pipeline",
        queue_urls={
            names.work_queue: info.queue_url,
            names.dead_letter_queue: info.dlq_url,
            **{name: f"{account_url}/{name}" for name in queues},
        },
        topic_arns={names.notifications_topic: info.topic_arn},
        user_pool_id=info.user_pool_id,
        user_pool_client_id=info.user_pool_client_id,
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


def placeholder_code() -> bytes:
    """What the local Lambda API stores as the functions' code: the local runtime runs the real handlers."""
    global _PLACEHOLDER_CODE
    if _PLACEHOLDER_CODE is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README.txt", "imgops local stack: the local runtime runs the real handler code.\n")
        _PLACEHOLDER_CODE = buffer.getvalue()
    return _PLACEHOLDER_CODE


class _Builder:
    """Creates resources in dependency order, learning physical ids (URLs, ARNs, pool ids) as it goes."""

    _ORDER = (
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::Cognito::UserPool",
        "AWS::Cognito::UserPoolClient",
        "AWS::Logs::LogGroup",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Events::Rule",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
    )

    def __init__(self, template: Mapping[str, Any], *, endpoint_url: str, region: str, prefix: str) -> None:
        self.template = template
        self.endpoint_url = endpoint_url
        self.region = region
        self.prefix = prefix
        self.ids = PhysicalIds(region=region, stack_name=f"{prefix}-pipeline")
        self._session = local_session(region)
        self._clients: dict[str, Any] = {}
        self._resources: dict[str, dict[str, str]] = {}
        self._after: dict[str, list[Callable[[], object]]] = {kind: [] for kind in self._ORDER}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(  # type: ignore[call-overload]
                service, endpoint_url=self.endpoint_url, config=client_config()
            )
        return self._clients[service]

    def resolve(self, value: Any) -> Any:
        return Resolver(self.template, replace(self.ids, resources=self._resources)).resolve(value)

    def queue_url(self, name: str) -> str:
        return self.ids.queue_urls[name]

    def build(self) -> None:
        handlers: Mapping[str, Callable[[str, Mapping[str, Any]], None]] = {
            "AWS::KMS::Key": self._kms_key,
            "AWS::KMS::Alias": self._kms_alias,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SQS::Queue": self._queue,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SNS::Topic": self._topic,
            "AWS::Cognito::UserPool": self._user_pool,
            "AWS::Cognito::UserPoolClient": self._user_pool_client,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::IAM::Role": self._role,
            "AWS::IAM::Policy": self._policy,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::SNS::TopicPolicy": self._topic_policy,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::Lambda::EventInvokeConfig": self._event_invoke_config,
            "AWS::Events::Rule": self._rule,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
        }
        resources = self.template.get("Resources", {})
        unknown = sorted({r["Type"] for r in resources.values()} - set(handlers) - set(NOT_CREATED))
        if unknown:
            # A resource type the CDK app gained: say so rather than silently running without it.
            raise NotImplementedError(f"the local stack cannot create {', '.join(unknown)} yet")
        for kind in self._ORDER:
            for logical_id, resource in resources.items():
                if resource["Type"] == kind:
                    handlers[kind](logical_id, resource.get("Properties", {}))
            for step in self._after[kind]:
                step()

    # --- one method per resource type ------------------------------------------------------------------

    def _kms_key(self, logical_id: str, p: Mapping[str, Any]) -> None:
        kms = self.client("kms")
        metadata = kms.create_key(Description=str(p.get("Description", logical_id)))["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        self._resources[logical_id] = {"Ref": metadata["KeyId"], "Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}
        if "KeyPolicy" in p:
            policy = json.dumps(self.resolve(p["KeyPolicy"]))
            kms.put_key_policy(KeyId=metadata["KeyId"], PolicyName="default", Policy=policy)

    def _kms_alias(self, logical_id: str, p: Mapping[str, Any]) -> None:
        self.client("kms").create_alias(AliasName=p["AliasName"], TargetKeyId=self.resolve(p["TargetKeyId"]))

    def _bucket(self, logical_id: str, p: Mapping[str, Any]) -> None:
        s3 = self.client("s3")
        # CDK leaves the access-log bucket unnamed: CloudFormation would generate a name; so do we.
        name = str(self.resolve(p["BucketName"])) if "BucketName" in p else f"{self.prefix}-{logical_id.lower()}"[:63]
        self._resources[logical_id] = {
            "Ref": name,
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
        }
        s3.create_bucket(Bucket=name)
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=self.resolve(p["PublicAccessBlockConfiguration"])
            )
        if "BucketEncryption" in p:
            rules = [
                {  # CloudFormation's spelling → the S3 API's
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
                }
                for rule in self.resolve(p["BucketEncryption"])["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "OwnershipControls" in p:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=self.resolve(p["OwnershipControls"]))
        if "VersioningConfiguration" in p:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
            )
        if "LifecycleConfiguration" in p:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name,
                LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in p["LifecycleConfiguration"]["Rules"]]},
            )
        if "CorsConfiguration" in p:
            rules = [_cors_rule(rule) for rule in self.resolve(p["CorsConfiguration"])["CorsRules"]]
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
        if "LoggingConfiguration" in p:  # the log bucket must allow it first: after the bucket policies
            logging = self.resolve(p["LoggingConfiguration"])
            target = {
                "TargetBucket": logging["DestinationBucketName"],
                "TargetPrefix": logging.get("LogFilePrefix", ""),
            }
            self._after["AWS::S3::BucketPolicy"].append(
                lambda: s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": target})
            )
        if "NotificationConfiguration" in p:  # the queues exist already (created first)
            configuration = self.resolve(p["NotificationConfiguration"])
            queues = [
                {
                    "QueueArn": q["Queue"],
                    "Events": [q["Event"]],
                    **({"Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}}} if "Filter" in q else {}),
                }
                for q in configuration.get("QueueConfigurations", [])
            ]
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"QueueConfigurations": queues}
            )

    def _queue(self, logical_id: str, p: Mapping[str, Any]) -> None:
        sqs = self.client("sqs")
        name = str(self.resolve(p["QueueName"]))
        attributes = {
            key: str(self.resolve(p[key]))
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "MaximumMessageSize",
                "ReceiveMessageWaitTimeSeconds",
                "KmsMasterKeyId",
            )
            if key in p
        }
        if "SqsManagedSseEnabled" in p:
            attributes["SqsManagedSseEnabled"] = str(p["SqsManagedSseEnabled"]).lower()
        if "RedrivePolicy" in p:
            attributes["RedrivePolicy"] = json.dumps(self.resolve(p["RedrivePolicy"]))
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = _queue_arn(sqs, url)
        self.ids = replace(self.ids, queue_urls={**self.ids.queue_urls, name: url})
        self._resources[logical_id] = {"Ref": url, "QueueUrl": url, "QueueName": name, "Arn": arn}

    def _table(self, logical_id: str, p: Mapping[str, Any]) -> None:
        dynamodb = self.client("dynamodb")
        name = str(self.resolve(p["TableName"]))
        arguments: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": p.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in p:
            arguments["ProvisionedThroughput"] = {k: int(v) for k, v in p["ProvisionedThroughput"].items()}
        if "SSESpecification" in p:
            arguments["SSESpecification"] = self.resolve(p["SSESpecification"])
        dynamodb.create_table(**arguments)
        if p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        if "TimeToLiveSpecification" in p:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=p["TimeToLiveSpecification"])
        arn = f"arn:aws:dynamodb:{self.region}:{self.ids.account}:table/{name}"
        self._resources[logical_id] = {"Ref": name, "Arn": arn}

    def _topic(self, logical_id: str, p: Mapping[str, Any]) -> None:
        name = str(self.resolve(p["TopicName"]))
        attributes = {key: str(self.resolve(p[key])) for key in ("DisplayName", "KmsMasterKeyId") if key in p}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        self.ids = replace(self.ids, topic_arns={**self.ids.topic_arns, name: arn})
        self._resources[logical_id] = {"Ref": arn, "TopicArn": arn, "TopicName": name}

    def _user_pool(self, logical_id: str, p: Mapping[str, Any]) -> None:
        arguments = {
            key: self.resolve(p[key])
            for key in ("Policies", "AutoVerifiedAttributes", "AliasAttributes", "AdminCreateUserConfig")
            if key in p
        }
        pool = self.client("cognito-idp").create_user_pool(PoolName=str(self.resolve(p["UserPoolName"])), **arguments)
        pool_id = pool["UserPool"]["Id"]
        self.ids = replace(self.ids, user_pool_id=pool_id)
        self._resources[logical_id] = {
            "Ref": pool_id,
            "UserPoolId": pool_id,
            "Arn": f"arn:aws:cognito-idp:{self.region}:{self.ids.account}:userpool/{pool_id}",
            "ProviderName": f"cognito-idp.{self.region}.amazonaws.com/{pool_id}",
        }

    def _user_pool_client(self, logical_id: str, p: Mapping[str, Any]) -> None:
        keys = (
            "ExplicitAuthFlows",
            "GenerateSecret",
            "AllowedOAuthFlows",
            "AllowedOAuthFlowsUserPoolClient",
            "AllowedOAuthScopes",
            "CallbackURLs",
            "LogoutURLs",
            "SupportedIdentityProviders",
            "PreventUserExistenceErrors",
            "AccessTokenValidity",
            "IdTokenValidity",
            "RefreshTokenValidity",
            "TokenValidityUnits",
        )
        arguments = {key: self.resolve(p[key]) for key in keys if key in p}
        client = self.client("cognito-idp").create_user_pool_client(
            UserPoolId=self.resolve(p["UserPoolId"]), ClientName=str(self.resolve(p["ClientName"])), **arguments
        )
        client_id = client["UserPoolClient"]["ClientId"]
        self.ids = replace(self.ids, user_pool_client_id=client_id)
        self._resources[logical_id] = {"Ref": client_id, "ClientId": client_id}

    def _log_group(self, logical_id: str, p: Mapping[str, Any]) -> None:
        logs = self.client("logs")
        name = str(self.resolve(p["LogGroupName"])) if "LogGroupName" in p else f"/{self.prefix}/{logical_id}"
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        arn = f"arn:aws:logs:{self.region}:{self.ids.account}:log-group:{name}:*"
        self._resources[logical_id] = {"Ref": name, "Arn": arn}

    def _role(self, logical_id: str, p: Mapping[str, Any]) -> None:
        iam = self.client("iam")
        name = str(self.resolve(p["RoleName"])) if "RoleName" in p else f"{self.prefix}-{logical_id}"[:64]
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(self.resolve(p["AssumeRolePolicyDocument"])),
            Description=str(p.get("Description", "")),
        )["Role"]
        for arn in self.resolve(p.get("ManagedPolicyArns", [])):
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        self._resources[logical_id] = {"Ref": name, "Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _policy(self, logical_id: str, p: Mapping[str, Any]) -> None:
        document = json.dumps(self.resolve(p["PolicyDocument"]))
        for role in self.resolve(p.get("Roles", [])):
            self.client("iam").put_role_policy(RoleName=role, PolicyName=str(p["PolicyName"]), PolicyDocument=document)

    def _bucket_policy(self, logical_id: str, p: Mapping[str, Any]) -> None:
        policy = json.dumps(local_policy(self.resolve(p["PolicyDocument"])))
        self.client("s3").put_bucket_policy(Bucket=self.resolve(p["Bucket"]), Policy=policy)

    def _queue_policy(self, logical_id: str, p: Mapping[str, Any]) -> None:
        policy = json.dumps(local_policy(self.resolve(p["PolicyDocument"])))
        for url in self.resolve(p["Queues"]):
            self.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})

    def _topic_policy(self, logical_id: str, p: Mapping[str, Any]) -> None:
        policy = json.dumps(local_policy(self.resolve(p["PolicyDocument"])))
        for arn in self.resolve(p["Topics"]):
            self.client("sns").set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=policy)

    def _subscription(self, logical_id: str, p: Mapping[str, Any]) -> None:
        endpoint = str(self.resolve(p.get("Endpoint", "")))
        if not endpoint:  # e.g. the on-call e-mail parameter left empty: CloudFormation would refuse it too
            return
        attributes = {
            key: json.dumps(self.resolve(p[key])) if isinstance(p[key], dict) else str(self.resolve(p[key]))
            for key in ("FilterPolicy", "RawMessageDelivery", "RedrivePolicy")
            if key in p
        }
        self.client("sns").subscribe(
            TopicArn=self.resolve(p["TopicArn"]), Protocol=str(p["Protocol"]), Endpoint=endpoint, Attributes=attributes
        )

    def _function(self, logical_id: str, p: Mapping[str, Any]) -> None:
        lambda_ = self.client("lambda")
        name = str(self.resolve(p["FunctionName"]))
        arguments: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": p["Runtime"],
            "Role": self.resolve(p["Role"]),
            "Handler": p["Handler"],
            "Code": {"ZipFile": placeholder_code()},
            "Description": str(p.get("Description", "")),
            "Timeout": int(p.get("Timeout", 3)),
            "MemorySize": int(p.get("MemorySize", 128)),
            "Architectures": p.get("Architectures", ["x86_64"]),
        }
        if "Environment" in p:
            arguments["Environment"] = {"Variables": self.resolve(p["Environment"]["Variables"])}
        if "LoggingConfig" in p:
            arguments["LoggingConfig"] = self.resolve(p["LoggingConfig"])
        configuration = lambda_.create_function(**arguments)
        if "ReservedConcurrentExecutions" in p:
            lambda_.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(p["ReservedConcurrentExecutions"])
            )
        self._resources[logical_id] = {"Ref": name, "Arn": configuration["FunctionArn"]}

    def _event_source_mapping(self, logical_id: str, p: Mapping[str, Any]) -> None:
        arguments: dict[str, Any] = {
            "EventSourceArn": self.resolve(p["EventSourceArn"]),
            "FunctionName": self.resolve(p["FunctionName"]),
            # Disabled: moto would invoke through Docker on every message; the local runtime polls instead.
            "Enabled": False,
        }
        if "BatchSize" in p:
            arguments["BatchSize"] = int(self.resolve(p["BatchSize"]))
        if "MaximumBatchingWindowInSeconds" in p:
            arguments["MaximumBatchingWindowInSeconds"] = int(self.resolve(p["MaximumBatchingWindowInSeconds"]))
        if "FunctionResponseTypes" in p:
            arguments["FunctionResponseTypes"] = p["FunctionResponseTypes"]
        if "ScalingConfig" in p:
            arguments["ScalingConfig"] = {k: int(self.resolve(v)) for k, v in p["ScalingConfig"].items()}
        mapping = self.client("lambda").create_event_source_mapping(**arguments)
        self._resources[logical_id] = {"Ref": mapping["UUID"]}

    def _event_invoke_config(self, logical_id: str, p: Mapping[str, Any]) -> None:
        arguments = {key: int(p[key]) for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds") if key in p}
        self.client("lambda").put_function_event_invoke_config(
            FunctionName=self.resolve(p["FunctionName"]), **arguments
        )

    def _rule(self, logical_id: str, p: Mapping[str, Any]) -> None:
        events = self.client("events")
        name = str(self.resolve(p["Name"])) if "Name" in p else f"{self.prefix}-{logical_id}"[:64]
        arguments = {key: str(p[key]) for key in ("ScheduleExpression", "State", "Description") if key in p}
        if "EventPattern" in p:
            arguments["EventPattern"] = json.dumps(self.resolve(p["EventPattern"]))
        arn = events.put_rule(Name=name, **arguments)["RuleArn"]
        targets = [{"Id": str(t["Id"]), "Arn": self.resolve(t["Arn"])} for t in p.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        self._resources[logical_id] = {"Ref": name, "Arn": arn}

    def _alarm(self, logical_id: str, p: Mapping[str, Any]) -> None:
        cloudwatch = self.client("cloudwatch")
        resolved = self.resolve(dict(p))
        keys = (
            "AlarmName",
            "AlarmDescription",
            "ActionsEnabled",
            "AlarmActions",
            "OKActions",
            "InsufficientDataActions",
            "Metrics",
            "Namespace",
            "MetricName",
            "Dimensions",
            "Statistic",
            "ExtendedStatistic",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
        )
        arguments = {key: resolved[key] for key in keys if key in resolved}
        for numeric in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if numeric in arguments:
                arguments[numeric] = int(arguments[numeric])
        if "Threshold" in arguments:
            arguments["Threshold"] = float(arguments["Threshold"])
        cloudwatch.put_metric_alarm(**arguments)
        # CloudWatch starts every alarm in INSUFFICIENT_DATA (moto would say OK).
        cloudwatch.set_alarm_state(
            AlarmName=arguments["AlarmName"], StateValue="INSUFFICIENT_DATA", StateReason="created from the template"
        )
        self._resources[logical_id] = {"Ref": arguments["AlarmName"]}

    def _dashboard(self, logical_id: str, p: Mapping[str, Any]) -> None:
        name = str(self.resolve(p["DashboardName"]))
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=str(self.resolve(p["DashboardBody"])))
        self._resources[logical_id] = {"Ref": name}


def local_policy(document: Mapping[str, Any]) -> dict[str, Any]:
    """A resource policy as applied locally: without the statements that deny plain HTTP, since the local
    endpoint is plain HTTP on loopback (moto enforces them). Everything else is kept as written."""

    def insecure_only(statement: Mapping[str, Any]) -> bool:
        condition = statement.get("Condition", {})
        return statement.get("Effect") == "Deny" and condition == {"Bool": {"aws:SecureTransport": "false"}}

    return {**document, "Statement": [s for s in document.get("Statement", []) if not insecure_only(s)]}


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule spelling → the S3 API's."""
    api: dict[str, Any] = {
        "ID": rule.get("Id", ""),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "Transitions" in rule:
        api["Transitions"] = [
            {"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]} for t in rule["Transitions"]
        ]
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return api


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    mapping = {
        "AllowedHeaders": "AllowedHeaders",
        "AllowedMethods": "AllowedMethods",
        "AllowedOrigins": "AllowedOrigins",
        "ExposedHeaders": "ExposeHeaders",
        "MaxAge": "MaxAgeSeconds",
        "Id": "ID",
    }
    return {api: rule[cfn] for cfn, api in mapping.items() if cfn in rule}
