"""The local stack is the synthesized template: every resource the local AWS supports, read back through its own
API, has the template's configuration (issue: "one stack, two places")."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from dashboards.template import Resolver, stack_template
from localaws.provision import NOT_CREATED, local_policy, physical_ids_for, provision, register_stack
from monitoring.target import StackInfo, deployed_target
from pipeline.resources import ResourceNames, StackOutputs


@pytest.fixture(scope="module")
def built(moto_endpoint: str) -> tuple[dict[str, Any], StackInfo, Resolver]:
    import uuid

    prefix = f"p{uuid.uuid4().hex[:10]}"
    template = stack_template(prefix)
    info = provision(ResourceNames(prefix), endpoint_url=moto_endpoint, template=template)
    info = StackInfo(**{**info.__dict__, "api_url": "http://127.0.0.1:1/local-api"})
    register_stack(info, template)
    return template, info, Resolver(template, physical_ids_for(info))


def resources_of(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = [r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == kind]
    assert found, f"the template has no {kind}"
    return found


def test_every_resource_type_is_created_or_listed_as_emulated(
    built: tuple[dict[str, Any], StackInfo, Resolver],
) -> None:
    template, _, _ = built
    from localaws.provision import _Builder

    created = set(_Builder._ORDER)
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert kinds <= created | set(NOT_CREATED), kinds - created - set(NOT_CREATED)


def test_buckets(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, resolver = built
    s3 = boto3.client("s3")
    names = set()
    for p in resources_of(template, "AWS::S3::Bucket"):
        if "BucketName" not in p:
            continue  # the access-log bucket: named by CloudFormation, found through its uploads' logging target
        name = resolver.resolve(p["BucketName"])
        names.add(name)
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert block == p["PublicAccessBlockConfiguration"]
        [rule] = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        [expected] = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ApplyServerSideEncryptionByDefault"] == expected["ServerSideEncryptionByDefault"]
        if "LifecycleConfiguration" in p:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
            assert {r["ID"] for r in rules} == {r["Id"] for r in p["LifecycleConfiguration"]["Rules"]}
        logging = s3.get_bucket_logging(Bucket=name)["LoggingEnabled"]
        assert logging["TargetPrefix"] == p["LoggingConfiguration"]["LogFilePrefix"]
        log_bucket = logging["TargetBucket"]
        assert s3.get_public_access_block(Bucket=log_bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    assert names == {info.upload_bucket, info.processed_bucket, ResourceNames(info.prefix).inventory_bucket}
    [queue] = s3.get_bucket_notification_configuration(Bucket=info.upload_bucket)["QueueConfigurations"]
    assert queue["QueueArn"] == info.queue_arn
    assert queue["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "user-uploads/"}]
    policy = json.loads(s3.get_bucket_policy(Bucket=info.processed_bucket)["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"Service": "cloudfront.amazonaws.com"}]


def test_queues_table_and_topics(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, resolver = built
    sqs = boto3.client("sqs")
    for p in resources_of(template, "AWS::SQS::Queue"):
        url = sqs.get_queue_url(QueueName=resolver.resolve(p["QueueName"]))["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in p:
                assert attributes[key] == str(p[key])
        if "RedrivePolicy" in p:
            redrive = json.loads(attributes["RedrivePolicy"])
            assert int(redrive["maxReceiveCount"]) == p["RedrivePolicy"]["maxReceiveCount"]
            assert redrive["deadLetterTargetArn"] == resolver.resolve(p["RedrivePolicy"]["deadLetterTargetArn"])
        assert attributes["SqsManagedSseEnabled"] == "true"
    [table] = [t for t in resources_of(template, "AWS::DynamoDB::Table") if t["TableName"] == info.images_table]
    described = boto3.client("dynamodb").describe_table(TableName=info.images_table)["Table"]
    assert described["KeySchema"] == table["KeySchema"]
    assert described["BillingModeSummary"]["BillingMode"] == table["BillingMode"]
    backups = boto3.client("dynamodb").describe_continuous_backups(TableName=info.images_table)
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == (
        "ENABLED"
    )
    sns = boto3.client("sns")
    for p in resources_of(template, "AWS::SNS::Topic"):
        arn = resolver.resolve({"Fn::Sub": f"arn:aws:sns:${{AWS::Region}}:${{AWS::AccountId}}:{p['TopicName']}"})
        topic = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        assert topic["DisplayName"] == p["DisplayName"]
        if "KmsMasterKeyId" in p:
            assert topic["KmsMasterKeyId"].startswith("arn:aws:kms:")


def test_cognito_and_log_groups(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, _ = built
    [client] = resources_of(template, "AWS::Cognito::UserPoolClient")
    cognito = boto3.client("cognito-idp")
    described = cognito.describe_user_pool_client(UserPoolId=info.user_pool_id, ClientId=info.user_pool_client_id)
    assert set(described["UserPoolClient"]["ExplicitAuthFlows"]) == set(client["ExplicitAuthFlows"])
    [pool] = resources_of(template, "AWS::Cognito::UserPool")
    assert cognito.describe_user_pool(UserPoolId=info.user_pool_id)["UserPool"]["Name"] == pool["UserPoolName"]
    logs = boto3.client("logs")
    for p in resources_of(template, "AWS::Logs::LogGroup"):
        if "LogGroupName" not in p:
            continue
        [group] = logs.describe_log_groups(logGroupNamePrefix=p["LogGroupName"])["logGroups"]
        assert group.get("retentionInDays") == p.get("RetentionInDays")


def test_functions_event_source_mapping_and_schedule(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, resolver = built
    lambda_ = boto3.client("lambda")
    for p in resources_of(template, "AWS::Lambda::Function"):
        configuration = lambda_.get_function_configuration(FunctionName=p["FunctionName"])
        assert configuration["MemorySize"] == p["MemorySize"]
        assert configuration["Timeout"] == p["Timeout"]
        assert configuration["Architectures"] == p["Architectures"]
        assert configuration["Handler"] == p["Handler"]
        assert configuration["Runtime"] == p["Runtime"]
        assert configuration["Environment"]["Variables"] == resolver.resolve(p["Environment"]["Variables"])
        if "ReservedConcurrentExecutions" in p:
            concurrency = lambda_.get_function_concurrency(FunctionName=p["FunctionName"])
            assert concurrency["ReservedConcurrentExecutions"] == p["ReservedConcurrentExecutions"]
    worker = ResourceNames(info.prefix).worker_function
    [expected] = [
        m
        for m in resources_of(template, "AWS::Lambda::EventSourceMapping")
        if resolver.resolve(m["FunctionName"]) == worker
    ]
    [mapping] = lambda_.list_event_source_mappings(FunctionName=ResourceNames(info.prefix).worker_function)[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == info.queue_arn
    assert mapping["BatchSize"] == int(resolver.resolve(expected["BatchSize"]))
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == int(
        resolver.resolve(expected["ScalingConfig"]["MaximumConcurrency"])
    )
    assert mapping["State"] == "Disabled"  # the local runtime polls the queue (moto would need Docker)
    events = boto3.client("events")
    schedules = {
        resolver.resolve(rule["Targets"][0]["Arn"]).rsplit(":", 1)[-1]: rule["ScheduleExpression"]
        for rule in resources_of(template, "AWS::Events::Rule")
        if "ScheduleExpression" in rule
    }
    found = {}
    for rule in events.list_rules(NamePrefix=info.prefix)["Rules"]:
        if rule.get("ScheduleExpression"):
            [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            found[target["Arn"].rsplit(":", 1)[-1]] = rule["ScheduleExpression"]
    names = ResourceNames(info.prefix)
    assert found == schedules
    assert set(found) == {f"{info.prefix}-s3-metrics", names.capacity_publisher_function}


def test_roles_alarms_and_dashboards(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, resolver = built
    iam = boto3.client("iam")
    lambda_ = boto3.client("lambda")
    role_of = {  # role logical id → the role name its function runs with
        p["Role"]["Fn::GetAtt"][0]: lambda_.get_function_configuration(FunctionName=p["FunctionName"])["Role"].rsplit(
            "/", 1
        )[-1]
        for p in resources_of(template, "AWS::Lambda::Function")
    }
    for policy in resources_of(template, "AWS::IAM::Policy"):
        expected = [
            statement
            for statement in resolver.resolve(policy["PolicyDocument"])["Statement"]
            if "<" not in json.dumps(statement)  # ids only the builder knew (e.g. a KMS key's) are not compared
        ]
        for role in policy["Roles"]:
            document = iam.get_role_policy(RoleName=role_of[role["Ref"]], PolicyName=policy["PolicyName"])
            actual = document["PolicyDocument"]["Statement"]
            assert all(statement in actual for statement in expected), (policy["PolicyName"], expected, actual)
            assert len(actual) == len(policy["PolicyDocument"]["Statement"])
    cloudwatch = boto3.client("cloudwatch")
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    stored = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{info.prefix}-")["MetricAlarms"]}
    assert set(stored) == {a["AlarmName"] for a in alarms}
    for p in alarms:
        alarm = stored[p["AlarmName"]]
        assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["EvaluationPeriods"]) == (
            float(p["Threshold"]),
            p["ComparisonOperator"],
            p["EvaluationPeriods"],
        )
        assert alarm["AlarmActions"] == resolver.resolve(p["AlarmActions"])
        assert alarm["StateValue"] == "INSUFFICIENT_DATA"  # where CloudWatch starts every alarm
    for p in resources_of(template, "AWS::CloudWatch::Dashboard"):
        body = json.loads(cloudwatch.get_dashboard(DashboardName=p["DashboardName"])["DashboardBody"])
        expected_body = json.loads(resolver.resolve(p["DashboardBody"]))
        for found, wanted in zip(body["widgets"], expected_body["widgets"], strict=True):
            assert found == wanted, (json.dumps(found)[:600], json.dumps(wanted)[:600])


def test_resource_policies_are_the_templates_less_the_plain_http_denial(
    built: tuple[dict[str, Any], StackInfo, Resolver],
) -> None:
    template, info, resolver = built
    [work_queue_policy] = [
        p for p in resources_of(template, "AWS::SQS::QueuePolicy") if "AllowUploadNotifications" in json.dumps(p)
    ]
    policy = json.loads(
        boto3.client("sqs").get_queue_attributes(QueueUrl=info.queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    assert policy == local_policy(resolver.resolve(work_queue_policy["PolicyDocument"]))
    assert any("SecureTransport" in json.dumps(s) for s in work_queue_policy["PolicyDocument"]["Statement"])


def test_the_stack_answers_to_its_deployed_name(built: tuple[dict[str, Any], StackInfo, Resolver]) -> None:
    template, info, _ = built
    stack = boto3.client("cloudformation").describe_stacks(StackName=f"{info.prefix}-pipeline")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert set(outputs) == set(template["Outputs"])
    assert outputs[StackOutputs.API_URL] == info.api_url
    assert outputs[StackOutputs.WORK_QUEUE_URL] == info.queue_url
    assert outputs[StackOutputs.USER_POOL_CLIENT_ID] == info.user_pool_client_id

    target = deployed_target(f"{info.prefix}-pipeline")  # the path a deployed stack takes

    assert (target.dlq_url, target.images_table, target.topic_arn) == (info.dlq_url, info.images_table, info.topic_arn)
    assert (target.local, target.worker_function) == (False, f"{info.prefix}-worker")
