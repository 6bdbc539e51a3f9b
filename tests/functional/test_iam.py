"""IAM proven by running the handlers: every AWS call each one makes (against moto, in-process) is one its role in
the synthesized template allows, and every permission a role holds is used by its handler, or by Lambda itself
on the handler's behalf with a reason written below.

tests/iam.py records and evaluates; the autouse `iam_enforced` fixture (conftest.py) applies the same check to every
functional test. This module drives each handler through the paths that need distinct permissions, so the
"granted but unused" comparison is complete and does not depend on which other tests ran.

Not covered: the local runtime's worker processes (tests/e2e) run the same handler code in other processes, where
this recorder is not installed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from localaws.context import LocalLambdaContext
from localaws.inventory import write_inventory_report
from localaws.object_events import Sequencers, message_body, object_created
from localaws.runtime import sqs_event
from monitoring import capacity_counter, capacity_publisher, reconcile
from monitoring.target import StackInfo
from pipeline import presign, read_api, worker
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, ResourceNames
from tests.conftest import jpeg_bytes
from tests.functional.conftest import capacity_queues_caught_up, receive_uploads, role_policies
from tests.iam import Call, CallRecorder, Decision, FunctionRole, RolePolicies, Statement, iam_match

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SUB = "5f0c6a9e-1111-4c3b-9d1e-00000000beef"
CLAIMS = {"sub": SUB, "token_use": "access"}

# Granted, never called by a handler, and needed anyway: Lambda uses the function's role for these itself.
LAMBDA_LOGS = "Lambda's runtime writes the function's log group (PipelineFunction grants only that group)"
LAMBDA_SQS_POLLER = "Lambda's SQS poller (the event source mapping) uses the function's role; the handler gets records"
# The reconciler's Athena engine runs on AWS only (locally the same reports are read with DuckDB, which these tests
# drive; tests/unit/test_inventory_athena.py drives the Athena calls against a stub).
ATHENA_ONLY = "the Athena engine runs on AWS only; locally the reconciler reads the reports with DuckDB"
ATHENA_AS_CALLER = "Athena reads the inventory table's catalog and writes the query's results with the caller's role"
SQS_POLLED = ("pipeline.worker", "monitoring.capacity_counter")
JUSTIFIED_UNUSED: dict[str, dict[str, str]] = {
    module: {"logs:CreateLogStream": LAMBDA_LOGS, "logs:PutLogEvents": LAMBDA_LOGS}
    for module in (
        "pipeline.worker",
        "pipeline.presign",
        "pipeline.read_api",
        "monitoring.capacity_counter",
        "monitoring.capacity_publisher",
        "monitoring.reconcile",
    )
}
for polled in SQS_POLLED:
    JUSTIFIED_UNUSED[polled].update(
        {
            "sqs:ReceiveMessage": LAMBDA_SQS_POLLER,
            "sqs:DeleteMessage": LAMBDA_SQS_POLLER,
            "sqs:GetQueueAttributes": LAMBDA_SQS_POLLER,
        }
    )
JUSTIFIED_UNUSED["monitoring.reconcile"].update(
    {
        **{
            f"athena:{action}": ATHENA_ONLY
            for action in ("StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution")
        },
        **{
            f"glue:{action}": ATHENA_AS_CALLER
            for action in ("GetDatabase", "GetTable", "GetPartition", "GetPartitions")
        },
        "s3:PutObject": ATHENA_AS_CALLER,
        "s3:GetBucketLocation": ATHENA_AS_CALLER,
    }
)


def lambda_context(name: str, timeout_seconds: float = 60) -> LambdaContext:
    return cast("LambdaContext", LocalLambdaContext.create(name, timeout_seconds=timeout_seconds))


def api_event(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event after the JWT authorizer accepted an access token for SUB."""
    route = "/images/{image_id}" if path.startswith("/images/") else path
    return {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path},
            "requestId": "iam",
            "stage": "$default",
            "authorizer": {"jwt": {"claims": CLAIMS, "scopes": None}},
        },
        "pathParameters": {"image_id": path.rsplit("/", 1)[-1]} if route != path else None,
        "body": body,
        "isBase64Encoded": False,
    }


def upload(s3: Any, stack: StackInfo, data: bytes) -> tuple[str, str]:
    image_id = str(uuid.uuid4())
    key = f"user-uploads/{SUB}/{image_id}.jpg"
    s3.put_object(Bucket=stack.upload_bucket, Key=key, Body=data, ContentType="image/jpeg")
    return image_id, key


def run_worker(stack: StackInfo, messages: list[dict[str, Any]]) -> dict[str, Any]:
    event = sqs_event(messages, queue_arn=stack.queue_arn, region=stack.region)
    return dict(worker.handler(event, lambda_context("worker")))


def exercise_worker(stack: StackInfo, s3: Any, sqs: Any) -> str:
    """A thumbnailed upload, its redelivery, and an upload deleted before the worker got to it."""
    image_id, _ = upload(s3, stack, jpeg_bytes(640, 480))
    [message] = receive_uploads(sqs, stack, 1)
    assert run_worker(stack, [message]) == {"batchItemFailures": []}
    assert run_worker(stack, [message]) == {"batchItemFailures": []}  # redelivered: read back, a no-op

    _, deleted_key = upload(s3, stack, jpeg_bytes(64, 48))
    [gone] = receive_uploads(sqs, stack, 1)
    s3.delete_object(Bucket=stack.upload_bucket, Key=deleted_key)
    assert run_worker(stack, [gone]) == {"batchItemFailures": []}  # FAILED, not retried: needs a 404
    return image_id


def exercise_api(image_id: str) -> None:
    for method in ("PUT", "POST"):
        body = json.dumps({"content_type": "image/jpeg", "method": method})
        response = presign.handler(api_event("POST", "/uploads", body), lambda_context("presign", 10))
        assert response["statusCode"] == 201, response
    response = read_api.handler(api_event("GET", f"/images/{image_id}"), lambda_context("read-api", 10))
    assert response["statusCode"] == 200, response
    assert set(json.loads(response["body"])["thumbnails"]) == {"1024", "512", "256"}


def buckets_reported(report: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(bucket["source"], bucket["drift_objects"], bucket["corrected"]) for bucket in report["buckets"]]


def exercise_capacity(stack: StackInfo, s3: Any) -> None:
    """The capacity functions through their entry points: the counter applies every object's event but one (lost on
    the way), the publisher publishes; the reconciler lists, sees the drift, corrects it when a second run confirms
    it, then reads an inventory report (DuckDB here) for a bucket it has no time to list."""
    names = ResourceNames(stack.prefix)
    sequencers, when = Sequencers(), datetime.now(UTC) - timedelta(minutes=5)
    uploads, processed = (
        [
            object_created(bucket, o["Key"], o["Size"], o["ETag"], sequencers.next(), when)
            for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        ]
        for bucket in (stack.upload_bucket, stack.processed_bucket)
    )
    messages = [
        {"MessageId": str(uuid.uuid4()), "ReceiptHandle": str(uuid.uuid4()), "Body": message_body(event)}
        for event in uploads[1:] + processed  # the first upload's event never arrives
    ]
    queue_arn = f"arn:aws:sqs:{stack.region}:123456789012:{names.capacity_queue}"
    event = sqs_event(messages, queue_arn=queue_arn, region=stack.region)
    assert capacity_counter.handler(event, lambda_context("capacity-counter")) == {"batchItemFailures": []}

    published = capacity_publisher.handler({}, lambda_context("capacity-publisher", 50))
    assert [bucket["objects_listed"] for bucket in published["buckets"]] == [len(uploads) - 1, len(processed)]

    assert buckets_reported(reconcile.handler({}, lambda_context("s3-metrics"))) == [
        ("listing", -1, 0),
        ("listing", 0, 0),
    ]
    capacity_queues_caught_up(stack)  # no event waits: the next snapshot may correct
    confirmed = reconcile.handler({}, lambda_context("s3-metrics"))
    assert buckets_reported(confirmed) == [("listing", -1, 2), ("listing", 0, 0)]  # the bucket's total and the owner's

    write_inventory_report(
        s3, stack.upload_bucket, names.inventory_bucket, prefix=INVENTORY_PREFIX, config_id=INVENTORY_ID
    )
    no_time_to_list = lambda_context("s3-metrics", 5)  # under the safety margin: no bucket is listable
    assert buckets_reported(reconcile.handler({}, no_time_to_list)) == [
        ("inventory", 0, 0),
        ("too large to list, and no inventory report yet", 0, 0),
    ]


@pytest.mark.usefixtures("handler_env", "capacity_env")
def test_handlers_use_exactly_what_their_roles_grant(
    stack: StackInfo,
    s3: Any,
    sqs: Any,
    iam_recorder: CallRecorder,
    notifications: Callable[[], list[dict[str, Any]]],
) -> None:
    mark = iam_recorder.mark()
    image_id = exercise_worker(stack, s3, sqs)
    exercise_api(image_id)
    exercise_capacity(stack, s3)
    assert len(notifications()) == 2  # the DONE and the FAILED upload, through the (locally plain) topic

    policies = role_policies()
    decisions = policies.decide(iam_recorder.since(mark))
    print(report(policies, decisions))

    assert [d.describe() for d in decisions if not d.allowed] == []
    assert {d.function for d in decisions} == {role.function for role in policies.functions.values()}
    unused = policies.unused(decisions)
    for module, role in policies.functions.items():
        unused_actions = {action for action, _ in unused[role.function]}
        assert unused_actions == set(JUSTIFIED_UNUSED.get(module, {})), (
            f"{role.function}: granted but no handler call used (remove it, or justify it in JUSTIFIED_UNUSED): "
            f"{sorted(unused_actions - set(JUSTIFIED_UNUSED.get(module, {})))}; justified but now used: "
            f"{sorted(set(JUSTIFIED_UNUSED.get(module, {})) - unused_actions)}"
        )


def report(policies: RolePolicies, decisions: list[Decision]) -> str:
    """Function → what its handler used (how) and what stays unused, as the test output shows it."""
    lines = []
    unused = policies.unused(decisions)
    for module, role in sorted(policies.functions.items()):
        lines.append(f"{role.function} ({module}.handler)")
        for call in sorted({d.call for d in decisions if d.function == role.function}, key=Call.describe):
            lines.append(f"  used     {call.action:<24} {call.resource}  ({call.via})")
        for action, resource in unused[role.function]:
            reason = JUSTIFIED_UNUSED.get(module, {}).get(action, "NOT JUSTIFIED")
            lines.append(f"  unused   {action:<24} {resource}  ({reason})")
    return "\n".join(lines)


# --- The evaluator refuses what the roles do not grant (real roles, calls named as a test deployment's) ---------

TEST_NAMES = ResourceNames("t0123456789ab")
TABLE = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TEST_NAMES.images_table}"
CAPACITY_TABLE = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TEST_NAMES.capacity_table}"


def call(module: str, action: str, resource: str, **context: str) -> Call:
    """A call made inside `module`'s Lambda entry point."""
    return Call(action, resource, ((module, "handler"), ("tests.functional.test_iam", "test")), tuple(context.items()))


@pytest.mark.parametrize(
    "needed",
    [
        call("pipeline.worker", "dynamodb:Scan", TABLE),
        call("pipeline.worker", "dynamodb:DeleteItem", TABLE),
        call("pipeline.worker", "dynamodb:BatchWriteItem", TABLE),
        call("pipeline.worker", "s3:PutObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/user-uploads/u/x.jpg"),
        call("pipeline.worker", "s3:PutObject", f"arn:aws:s3:::{TEST_NAMES.processed_bucket}/elsewhere/x.jpg"),
        call("pipeline.worker", "s3:DeleteObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/user-uploads/u/x.jpg"),
        call("pipeline.worker", "sns:Publish", "arn:aws:sns:us-east-1:123456789012:imgops-ops-alarms"),
        call("pipeline.worker", "kms:Decrypt", "*"),
        call("pipeline.read_api", "dynamodb:Query", TABLE),
        call("pipeline.read_api", "dynamodb:Scan", TABLE),
        call("pipeline.read_api", "s3:GetObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/user-uploads/u/x.jpg"),
        call("pipeline.presign", "s3:PutObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/processed/x.jpg"),
        call("pipeline.presign", "s3:GetObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/user-uploads/u/x.jpg"),
        call("pipeline.presign", "dynamodb:GetItem", TABLE),
        call("monitoring.reconcile", "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "AWS/S3"}),
        call("monitoring.reconcile", "cloudwatch:PutMetricData", "*"),
        call("monitoring.reconcile", "s3:GetObject", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}/user-uploads/u/x.jpg"),
        call("monitoring.reconcile", "dynamodb:DeleteItem", CAPACITY_TABLE),
        call("monitoring.capacity_publisher", "s3:ListBucket", f"arn:aws:s3:::{TEST_NAMES.upload_bucket}"),
        call("monitoring.capacity_publisher", "dynamodb:UpdateItem", CAPACITY_TABLE),
        call("monitoring.capacity_publisher", "cloudwatch:PutMetricData", "*"),
        call("monitoring.capacity_counter", "dynamodb:Query", CAPACITY_TABLE),
        call("monitoring.capacity_counter", "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "CustomS3"}),
    ],
    ids=lambda c: f"{c.frames[0][0]}:{c.action}",
)
def test_what_a_role_does_not_grant_is_denied(needed: Call) -> None:
    decision = role_policies().decide([needed])[0]  # then what it implies (a topic's key), if anything
    assert decision.call.action == needed.action
    assert not decision.allowed, decision.describe()


def test_publishing_to_the_encrypted_topic_needs_the_key_through_sns() -> None:
    policies = role_policies()
    topic = f"arn:aws:sns:us-east-1:123456789012:{TEST_NAMES.notifications_topic}"
    decisions = policies.decide([call("pipeline.worker", "sns:Publish", topic)])
    assert [(d.call.action, d.allowed) for d in decisions] == [
        ("sns:Publish", True),
        ("kms:GenerateDataKey", True),
        ("kms:Decrypt", True),
    ]
    key = decisions[1].call.resource
    direct = policies.decide([call("pipeline.worker", "kms:GenerateDataKey", key)])  # not through SNS
    assert [d.allowed for d in direct] == [False]


def test_calls_no_handler_made_are_not_judged() -> None:
    policies = role_policies()
    assert policies.decide([call("monitoring.images", "dynamodb:Scan", TABLE)]) == []
    # The reconciler and the publisher run by `imgops monitoring reconcile|publish` (operator credentials), not
    # by the Lambdas.
    bucket = f"arn:aws:s3:::{TEST_NAMES.upload_bucket}"
    listing = (("monitoring.s3_metrics", "scan_bucket"), ("monitoring.reconcile", "take_snapshot"))
    by_cli = Call(
        "s3:ListBucket", bucket, (*listing, ("monitoring.reconcile", "reconcile"), ("imgops.monitoring", "x"))
    )
    published = (("monitoring.capacity", "counters"), ("monitoring.capacity_publisher", "publish_counters"))
    publish_by_cli = Call("dynamodb:Query", CAPACITY_TABLE, (*published, ("imgops.monitoring", "publish")))
    assert policies.decide([by_cli, publish_by_cli]) == []
    by_test = Call(
        "s3:ListBucket", bucket, (*listing, ("monitoring.reconcile", "reconcile"), ("tests.functional.x", "t"))
    )
    assert [d.function for d in policies.decide([by_test])] == [ResourceNames("imgops").prefix + "-s3-metrics"]


def test_iam_wildcards_and_explicit_deny() -> None:
    assert iam_match("arn:aws:s3:::b/user-uploads/*", "arn:aws:s3:::b/user-uploads/u/x.jpg")
    assert not iam_match("arn:aws:s3:::b/user-uploads/*", "arn:aws:s3:::b/processed/x.jpg")
    assert iam_match("kms:GenerateDataKey*", "KMS:generatedatakey", ignore_case=True)
    assert iam_match("arn:aws:s3:::b?", "arn:aws:s3:::b1")
    assert not iam_match("arn:aws:s3:::b?", "arn:aws:s3:::b")
    role = FunctionRole(
        "f",
        "m",
        (
            Statement.parse({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, "allow"),
            Statement.parse({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}, "deny"),
        ),
    )
    assert role.decide(call("m", "s3:GetObject", "arn:aws:s3:::b/k")).allowed
    assert not role.decide(call("m", "s3:DeleteObject", "arn:aws:s3:::b/k")).allowed


def test_test_deployments_are_judged_as_the_templates() -> None:
    policies = role_policies()
    assert policies.rename(TEST_NAMES.dead_letter_queue) == ResourceNames("imgops").dead_letter_queue
    assert policies.rename(TEST_NAMES.work_queue) == ResourceNames("imgops").work_queue
    assert policies.rename("someone-elses-bucket") == "someone-elses-bucket"
