"""One drill per alarm: the real condition on the local stack, then its runbook's recovery.

Each drill causes what the alarm's runbook names as a likely cause, with real traffic and the stack's own
controls (faults on AWS calls, the worker's configuration, its reserved concurrency, its trigger, the metrics
schedule), waits for ALARM and the ops topic's message, walks the runbook's fix and checks OK and that nothing
was lost. Steps are numbered after the framework's first one (the alarm OK before anything is broken).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from drills.framework import (
    ALARM_PERIOD_SECONDS,
    ALARM_WAIT_SECONDS,
    BUCKET_METRICS_EVERY_SECONDS,
    DRILL_WORKER_TIMEOUT_SECONDS,
    VISIBILITY_SECONDS,
    Drill,
    DrillFailed,
    Session,
    expect,
    wait_for,
)
from drills.names import ALIASES, CAUSES
from loadtest.targets import LoadTarget
from localaws.provision import create_user
from monitoring import dlq
from pipeline.resources import Env

DYNAMODB_THROTTLE = "dynamodb:PutItem=1:ProvisionedThroughputExceededException"
# An IAM change that denies reads: not retried by the SDK, so the API answers at once.
READS_DENIED = "dynamodb:GetItem=1:AccessDeniedException"
DYNAMODB_DENIED = "dynamodb:*=1:AccessDeniedException"
# How long a cause must last for a 3-of-3 alarm: three compressed periods and some.
SUSTAIN_SECONDS = 3 * ALARM_PERIOD_SECONDS + 4
# A poller's long-poll wait (localaws.runtime.RuntimeConfig.poll_wait_seconds) and some.
POLL_SECONDS = 1.5


def _stream_until(session: Session, alarm: str, every: float = 1.5) -> list[str]:
    """One upload every `every` seconds, steady traffic while the cause lasts, until `alarm` fires."""
    sent: list[str] = []
    end = time.monotonic() + SUSTAIN_SECONDS + ALARM_WAIT_SECONDS
    while session.states()[alarm] != "ALARM":
        expect(time.monotonic() < end, f"{alarm} did not fire: {session.last[alarm].reason}")
        started = time.monotonic()
        sent += session.upload(1)
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    return sent


def _redrive_and_finish(session: Session) -> int:
    """The runbooks' last fix step: what reached the DLQ goes back (`imgops dlq redrive`), every image DONE.
    The work queue drains first: a message still retrying could reach the DLQ after the redrive."""
    wait_for(
        "the work queue to drain",
        lambda: session.visible(session.info.queue_url) == 0,
        session.options.timeout_seconds,
    )
    parked = session.visible(session.info.dlq_url)
    moved = session.redrive() if parked else 0
    session.note(f"redriven from the DLQ: {moved}")
    return session.nothing_lost()


# --- dlq-not-empty ---------------------------------------------------------------------------------------


def dlq_not_empty(session: Session) -> str:
    options = session.options
    session.step(f"Upload {options.healthy} healthy images: expect all DONE")
    healthy = session.upload(options.healthy)
    session.wait_done(healthy)

    session.step(f"Inject a DynamoDB throttle ({DYNAMODB_THROTTLE.split('=')[0]}) and upload {options.poison} more")
    session.note("expect them in the DLQ after 3 receives")
    session.faults(DYNAMODB_THROTTLE)
    poison = session.upload(options.poison)
    wait_for(
        f"{options.poison} messages in the DLQ",
        lambda: session.visible(session.info.dlq_url) >= options.poison,
        options.timeout_seconds,
    )

    session.step("imgops alarms check: expect dlq-not-empty ALARM and its message on the ops topic")
    session.expect_alarm("dlq-not-empty")

    session.step("imgops dlq inspect: expect every poison image listed, the DLQ unchanged")
    listed = dlq.inspect(session.sqs, session.info.dlq_url, session.table)
    expect(sorted(m.image_id for m in listed) == sorted(poison), f"inspect listed {[m.image_id for m in listed]}")
    expect(session.visible(session.info.dlq_url) == options.poison, "inspect consumed DLQ messages")
    for message in listed:
        session.note(f"{message.image_id}  receives={message.receive_count}  status={message.status or '-'}")

    session.step("Clear the cause (imgops faults clear), then imgops dlq redrive: expect every message moved")
    session.faults("")
    moved = session.redrive()
    expect(moved == options.poison, f"redrive moved {moved} of {options.poison}")

    session.step("Expect every image DONE: nothing lost")
    images = session.nothing_lost()

    session.step("imgops alarms check: expect dlq-not-empty OK and its OK message")
    session.expect_ok("dlq-not-empty")
    return f"{images} of {images} images DONE, {moved} redriven from the DLQ, nothing lost."


# --- queue-oldest-message-age ----------------------------------------------------------------------------


def queue_oldest_message_age(session: Session) -> str:
    threshold = session.threshold("queue-oldest-message-age")
    session.step("Disable the worker's SQS trigger (nobody polls) and upload 3 images")
    session.note(f"threshold compressed: 3 receives x {VISIBILITY_SECONDS} s visibility = {threshold:g} s")
    session.stack.pause_workers()
    time.sleep(POLL_SECONDS)  # a long poll already under way ends first
    try:
        waiting = session.upload(3)
        session.step("imgops alarms check: expect queue-oldest-message-age ALARM and its message")
        session.expect_alarm("queue-oldest-message-age")
        expect(all(session.status(i) != "DONE" for i in waiting), "images were processed while nobody polled the queue")
        session.step("Runbook: worker-throttles and worker-fault-rate quiet: the trigger is the cause")
        states = session.states()
        expect(
            states["worker-throttles"] == "OK" and states["worker-fault-rate"] == "OK",
            f"worker alarms firing too: {states}",
        )
    finally:
        session.step("Enable the trigger again: expect the backlog drained, every image DONE")
        session.stack.resume_workers()
    images = session.nothing_lost()
    session.step("imgops alarms check: expect queue-oldest-message-age OK and its OK message")
    session.expect_ok("queue-oldest-message-age")
    return f"{images} images waited, then DONE once the trigger was back, nothing lost."


# --- worker-fault-rate -----------------------------------------------------------------------------------


def worker_fault_rate(session: Session) -> str:
    before = session.worker_configuration()
    variables = dict(before.get("Environment", {}).get("Variables", {}))
    session.step(f"A bad deploy: the worker's {Env.MAX_PIXELS}=0, and uploads go on")
    session.note("expect every invocation to fail (SettingsError)")
    session.lambda_.update_function_configuration(
        FunctionName=session.target.worker_function,
        Environment={"Variables": {**variables, Env.MAX_PIXELS: "0"}},
    )
    try:
        _stream_until(session, "worker-fault-rate")
        session.step("imgops alarms check: expect worker-fault-rate ALARM and its message")
        session.expect_alarm("worker-fault-rate")
        session.step("Runbook: the worker's log names the cause: SettingsError")
        wait_for("SettingsError in the worker's log", lambda: _logged(session, "SettingsError"), 30)
    finally:
        session.step("Roll back (the previous configuration), then imgops dlq redrive")
        session.lambda_.update_function_configuration(
            FunctionName=session.target.worker_function, Environment={"Variables": variables}
        )
    images = _redrive_and_finish(session)
    session.step("imgops alarms check: expect worker-fault-rate OK and its OK message")
    session.expect_ok("worker-fault-rate")
    return f"{images} images failed under the bad deploy, all DONE after the rollback and redrive."


def _logged(session: Session, text: str) -> bool:
    logs = session.target.client("logs")
    group = f"/aws/lambda/{session.target.worker_function}"
    events = logs.filter_log_events(logGroupName=group, startTime=int((time.time() - 120) * 1000)).get("events", [])
    return any(text in event.get("message", "") for event in events)


# --- worker-throttles ------------------------------------------------------------------------------------


def worker_throttles(session: Session) -> str:
    worker = session.target.worker_function
    session.step("Reserved concurrency 0 on the worker, and uploads go on")
    session.note("expect throttles: Lambda refuses the invocations, messages go back")
    session.lambda_.put_function_concurrency(FunctionName=worker, ReservedConcurrentExecutions=0)
    try:
        _stream_until(session, "worker-throttles")
        session.step("imgops alarms check: expect worker-throttles ALARM and its message")
        session.expect_alarm("worker-throttles")
        session.step("Runbook: a reserved concurrency of 0 is set on the worker")
        reserved = session.lambda_.get_function_concurrency(FunctionName=worker).get("ReservedConcurrentExecutions")
        expect(reserved == 0, f"reserved concurrency is {reserved}")
    finally:
        session.step("Remove it (delete-function-concurrency); redrive what the throttles parked")
        session.lambda_.delete_function_concurrency(FunctionName=worker)
    images = _redrive_and_finish(session)
    session.step("imgops alarms check: expect worker-throttles OK and its OK message")
    session.expect_ok("worker-throttles")
    return f"{images} images throttled, all DONE once the limit was gone."


# --- worker-duration-near-timeout ------------------------------------------------------------------------


def worker_duration(session: Session) -> str:
    threshold_s = session.threshold("worker-duration-near-timeout") / 1000
    delay = threshold_s + 0.3
    slow = f"s3:GetObject=1:DELAY{delay:g}"
    visibility = 6 * DRILL_WORKER_TIMEOUT_SECONDS  # AWS's advice, as deployed: 6 x the timeout
    session.step(f"A slow dependency: {slow}; an upload whenever a worker is free")
    session.note(
        f"threshold compressed: 80 % of the {DRILL_WORKER_TIMEOUT_SECONDS} s timeout = {threshold_s:g} s "
        f"(queue visibility {visibility} s meanwhile)"
    )
    session.sqs.set_queue_attributes(QueueUrl=session.info.queue_url, Attributes={"VisibilityTimeout": str(visibility)})
    reports_before = len(_reports(session))
    try:
        with session.fault(slow):
            in_flight: list[str] = []
            end = time.monotonic() + SUSTAIN_SECONDS + ALARM_WAIT_SECONDS
            while session.states()["worker-duration-near-timeout"] != "ALARM":
                expect(time.monotonic() < end, "worker-duration-near-timeout did not fire")
                in_flight = [i for i in in_flight if session.status(i) != "DONE"]
                if len(in_flight) < 2:  # one message per invocation (uploads apart): the delay, under the timeout
                    in_flight += session.upload(1)
                time.sleep(0.5)
            session.step("imgops alarms check: expect worker-duration-near-timeout ALARM, no faults")
            session.expect_alarm("worker-duration-near-timeout")
            expect(session.states()["worker-fault-rate"] == "OK", "worker-fault-rate fired: invocations timed out")
            session.step("Runbook: REPORT lines show durations near the timeout")
            reports = _reports(session)[reports_before:]
            timeouts = sum("Status: timeout" in line for line in reports)
            expect(timeouts == 0, f"{timeouts} invocations timed out")
            slowest = max((_duration(line) for line in reports), default=0.0)
            expect(threshold_s < slowest < DRILL_WORKER_TIMEOUT_SECONDS, f"slowest REPORT duration {slowest:.1f} s")
            session.note(f"slowest invocation {slowest:.1f} s of {DRILL_WORKER_TIMEOUT_SECONDS} s")
        session.step("The dependency recovers (imgops faults clear): expect fast invocations")
        session.wait_done(session.uploaded)
        fast = session.upload(2)
        session.wait_done(fast, 30)
    finally:
        session.sqs.set_queue_attributes(
            QueueUrl=session.info.queue_url, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
        )
    images = session.nothing_lost()
    session.step("imgops alarms check: expect worker-duration-near-timeout OK and its OK message")
    session.expect_ok("worker-duration-near-timeout")
    return f"{images} images DONE, slow then fast, none timed out."


def _reports(session: Session) -> list[str]:
    """The REPORT lines the local runtime wrote so far (on AWS: the worker's log group)."""
    report_log = session.target.report_log
    if report_log is None or not report_log.exists():
        return []
    return [line for line in report_log.read_text(encoding="utf-8").splitlines() if line.startswith("REPORT")]


def _duration(report: str) -> float:
    """A REPORT line's Duration, in seconds."""
    for field in report.split("\t"):
        if field.startswith("Duration: "):
            return float(field.removeprefix("Duration: ").removesuffix(" ms")) / 1000
    return 0.0


# --- api-5xx-rate ----------------------------------------------------------------------------------------


def api_5xx_rate(session: Session) -> str:
    session.step("Upload 1 image and read it back as the user's app does: expect 200")
    [image] = session.upload(1)
    session.wait_done([image])
    expect(_read(session, image) == 200, "GET /images/{id} did not answer 200")

    session.step(f"An IAM change denies the read API's GetItem ({READS_DENIED.split('=')[0]})")
    session.note("the app reads every 0.3 s: expect 500s")
    with session.fault(READS_DENIED):
        statuses: list[int] = []
        end = time.monotonic() + SUSTAIN_SECONDS + ALARM_WAIT_SECONDS
        while session.states()["api-5xx-rate"] != "ALARM" and time.monotonic() < end:
            statuses += _read_for(session, image, 1.0)
        expect(500 in statuses, f"no 5xx while reads were denied: {sorted(set(statuses))}")
        session.step("imgops alarms check: expect api-5xx-rate ALARM and its message")
        session.expect_alarm("api-5xx-rate", timeout=5)
    session.step("Fix IAM (imgops faults clear): expect 200 again, then OK")
    answers = _read_for(session, image, 2.0)
    expect(set(answers) == {200}, f"reads answer {sorted(set(answers))} after the fix")

    def ok_while_reading() -> bool:
        _read_for(session, image, 0.5)
        return session.states()["api-5xx-rate"] == "OK"

    wait_for("api-5xx-rate to be OK", ok_while_reading, 60)
    session.step("imgops alarms check: expect api-5xx-rate OK and its OK message")
    session.expect_ok("api-5xx-rate")
    session.nothing_lost()
    return f"{len(statuses)} reads answered 5xx while denied, 200 after the fix."


def _read(session: Session, image_id: str) -> int:
    response = requests.get(
        f"{session.target.api_url}/images/{image_id}",
        headers={"Authorization": f"Bearer {session.user.access_token()}"},
        timeout=10,
    )
    return response.status_code


def _read_for(session: Session, image_id: str, seconds: float) -> list[int]:
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        statuses.append(_read(session, image_id))
        time.sleep(0.3)
    return statuses


# --- capacity: upload-bucket-size, upload-object-count ---------------------------------------------------


def _scan(session: Session) -> dict[str, Any]:
    """`imgops monitoring publish`: one bucket-metrics scan now; returns the upload bucket's line."""
    from monitoring import s3_metrics

    s3_metrics.logger.setLevel("WARNING")
    report = s3_metrics.measure(
        [session.info.upload_bucket, session.info.processed_bucket],
        s3=session.s3,
        cloudwatch=session.cloudwatch,
        remaining_ms=lambda: 30_000,
    )
    return dict(report["buckets"][0])


def upload_bucket_size(session: Session) -> str:
    alarm = "upload-bucket-size"
    session.step("imgops monitoring publish: the upload bucket's size now")
    before = _scan(session)
    users_before = _bytes_by_user(session)
    threshold = before["bytes_listed"] + 2 * session.largest_upload_bytes
    session.note(
        f"{before['objects_listed']} objects, {before['bytes_listed']:,} bytes; threshold compressed: "
        f"{session.deployed_threshold(alarm) / 2**30:g} GiB -> {threshold:,} bytes"
    )
    session.set_threshold(alarm, threshold)
    try:
        session.step("A runaway client: a second user uploads 4 images")
        password = "Runaway-client-1!"  # noqa: S105 - a throwaway local user
        sub = create_user(session.target.client("cognito-idp"), session.info.user_pool_id, "runaway", password)
        runaway = LoadTarget(session.target, "runaway", password)
        theirs = session.upload(4, user=runaway)
        session.wait_done(theirs)
        session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
        session.expect_alarm(alarm)
        session.step("Runbook: a jump: the per-user prefix that grew is the runaway user's")
        grown = {user: size - users_before.get(user, 0) for user, size in _bytes_by_user(session).items()}
        expect(max(grown, key=lambda user: grown[user]) == sub, f"growth by user: {grown}")
        session.note(f"user-uploads/{sub}/ grew {grown[sub]:,} bytes")
        session.step("Disable the user, remove their prefix; expect the size back under the threshold")
        session.target.client("cognito-idp").admin_disable_user(
            UserPoolId=session.info.user_pool_id, Username="runaway"
        )
        keys = _keys(session, f"user-uploads/{sub}/")
        for key in keys:
            session.s3.delete_object(Bucket=session.info.upload_bucket, Key=key)
        after = _scan(session)
        expect(after["bytes_listed"] <= threshold, f"still {after['bytes_listed']:,} bytes")
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        images = session.nothing_lost()  # processed before their originals went: DONE
    finally:
        session.set_threshold(alarm, None)
    return f"{images} runaway uploads processed, then removed; the bucket back under."


def _keys(session: Session, prefix: str) -> list[str]:
    keys = []
    for page in session.s3.get_paginator("list_objects_v2").paginate(Bucket=session.info.upload_bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def _bytes_by_user(session: Session) -> dict[str, int]:
    sizes: dict[str, int] = {}
    pages = session.s3.get_paginator("list_objects_v2").paginate(
        Bucket=session.info.upload_bucket, Prefix="user-uploads/"
    )
    for page in pages:
        for obj in page.get("Contents", []):
            user = obj["Key"].split("/")[1]
            sizes[user] = sizes.get(user, 0) + int(obj.get("Size", 0))
    return sizes


def upload_object_count(session: Session) -> str:
    alarm = "upload-object-count"
    session.step("imgops monitoring publish: the upload bucket's object count now")
    before = _scan(session)
    threshold = before["objects_listed"] + 3
    deployed = session.deployed_threshold(alarm)
    session.note(f"{before['objects_listed']} objects; threshold compressed: {deployed:,.0f} -> {threshold}")
    session.set_threshold(alarm, threshold)
    try:
        session.step("Growth: 4 more uploads")
        session.wait_done(session.upload(4))
        session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
        session.expect_alarm(alarm)
        session.step("Runbook: imgops monitoring publish: does a scan still complete?")
        expect(bool(_scan(session)["complete"]), "the scan no longer completes")
        raised = threshold * _rate_factor()
        session.step("Lengthen the scan interval (metrics-rate-minutes=60): the threshold rises")
        session.note(f"x{_rate_factor():.1f}: {threshold} -> {raised:.0f} (deployed: {deployed * _rate_factor():,.0f})")
        session.set_threshold(alarm, raised)
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        images = session.nothing_lost()
    finally:
        session.set_threshold(alarm, None)
    return f"{images} uploads crossed the compressed count; OK after the longer interval."


def _rate_factor() -> float:
    """How much the object-count threshold grows from a 5- to a 60-minute scan: its longer listing budget
    (dashboards.constructs.s3_metrics.scan_budget_seconds, without importing the CDK)."""
    from monitoring.s3_metrics import SAFETY_MARGIN_MS, timeout_seconds

    def budget(rate_minutes: int) -> int:
        return timeout_seconds(rate_minutes * 60) - SAFETY_MARGIN_MS // 1000

    return budget(60) / budget(5)


# --- s3-metrics-not-reporting-* ---------------------------------------------------------------------------


def _not_reporting(bucket: str) -> Any:
    alarm = f"s3-metrics-not-reporting-{bucket}"

    def drill(session: Session) -> str:
        rule = _schedule_rule(session)
        session.step("Disable the bucket-metrics schedule: expect no scans")
        session.note(f"aws events disable-rule --name {rule}")
        session.note(f"3 periods of {ALARM_PERIOD_SECONDS} s without a scan fire the alarm")
        session.events.disable_rule(Name=rule)
        try:
            session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
            session.expect_alarm(alarm)
            session.step("Runbook: no invocations: the schedule rule is disabled")
            state = session.events.describe_rule(Name=rule)["State"]
            expect(state == "DISABLED", f"the rule is {state}")
        finally:
            session.step("Enable the rule; run one scan by hand (imgops monitoring publish)")
            session.events.enable_rule(Name=rule)
        expect(bool(_scan(session)["complete"]), "the scan by hand did not complete")
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        wait_for("a scheduled scan", lambda: _scans_since(session, time.time() - 10), 10 * BUCKET_METRICS_EVERY_SECONDS)
        return "scans stopped with the rule, resumed when it was enabled."

    return drill


def _schedule_rule(session: Session) -> str:
    from monitoring import s3_metrics

    arn = session.lambda_.get_function_configuration(FunctionName=s3_metrics.function_name(session.info.prefix))[
        "FunctionArn"
    ]
    [rule] = session.events.list_rule_names_by_target(TargetArn=arn)["RuleNames"]
    return str(rule)


def _scans_since(session: Session, since: float) -> bool:
    from datetime import UTC, datetime

    from monitoring import s3_metrics

    statistics = session.cloudwatch.get_metric_statistics(
        Namespace=s3_metrics.NAMESPACE,
        MetricName=s3_metrics.NUMBER_OF_OBJECTS,
        Dimensions=[{"Name": s3_metrics.BUCKET_DIMENSION, "Value": session.info.upload_bucket}],
        StartTime=datetime.fromtimestamp(since, UTC),
        EndTime=datetime.now(UTC),
        Period=60,
        Statistics=["SampleCount"],
    )
    return sum(float(point.get("SampleCount", 0)) for point in statistics.get("Datapoints", [])) >= 2


# --- pipeline-unhealthy (composite) ---------------------------------------------------------------------


def pipeline_unhealthy(session: Session) -> str:
    alarm = "pipeline-unhealthy"
    session.step("Upload 1 image (DONE), then an IAM change denies DynamoDB to everyone")
    [image] = session.upload(1)
    session.wait_done([image])
    session.note(f"{DYNAMODB_DENIED.split('=')[0]}: uploads fail, reads answer 500")
    with session.fault(DYNAMODB_DENIED):
        failing = session.upload(2)
        session.step("imgops alarms check: expect pipeline-unhealthy ALARM: one page")
        fired: set[str] = set()
        end = time.monotonic() + 90
        while len(fired) < 2 and time.monotonic() < end:  # two children: still one page
            _read_for(session, image, 1.0)
            states = session.states()
            fired |= {c for c in ("dlq-not-empty", "api-5xx-rate", "worker-fault-rate") if states[c] == "ALARM"}
        expect(len(fired) >= 2, f"only {sorted(fired)} fired")
        message = session.expect_alarm(alarm, timeout=5)
        pages = session.notified(alarm, "ALARM")
        expect(len(pages) == 1, f"{len(pages)} pages for one incident")
        prefix = f"{session.info.prefix}-"
        children = [c["Arn"].rsplit(":", 1)[-1].removeprefix(prefix) for c in message.get("TriggeringChildren", [])]
        session.note(f"one page; children in ALARM now: {', '.join(sorted(fired))}; first: {', '.join(children)}")
        session.step("Runbook: imgops dlq inspect --by-error: one class, AccessDeniedException")
        listed = dlq.inspect(session.sqs, session.info.dlq_url, session.table)
        expect(sorted(m.image_id for m in listed) == sorted(failing), f"DLQ holds {[m.image_id for m in listed]}")
    session.step("Fix IAM (imgops faults clear), imgops dlq redrive: every image DONE")
    images = _redrive_and_finish(session)

    def ok_while_reading() -> bool:
        _read_for(session, image, 0.5)
        return session.states()[alarm] == "OK"

    wait_for(f"{alarm} to be OK", ok_while_reading, 90)
    session.step(f"imgops alarms check: expect {alarm} OK and one OK message")
    session.expect_ok(alarm)
    expect(len(session.notified(alarm, "ALARM")) == 1, "paged again during recovery")
    return f"{len(fired)} children fired, one page; {images} images DONE after the fix."


_RUNS: dict[str, Callable[[Session], str]] = {
    "dlq-not-empty": dlq_not_empty,
    "queue-oldest-message-age": queue_oldest_message_age,
    "worker-fault-rate": worker_fault_rate,
    "worker-throttles": worker_throttles,
    "worker-duration-near-timeout": worker_duration,
    "api-5xx-rate": api_5xx_rate,
    "upload-bucket-size": upload_bucket_size,
    "upload-object-count": upload_object_count,
    "s3-metrics-not-reporting-uploads": _not_reporting("uploads"),
    "s3-metrics-not-reporting-processed": _not_reporting("processed"),
    "pipeline-unhealthy": pipeline_unhealthy,
}
DRILLS: tuple[Drill, ...] = tuple(Drill(alarm, CAUSES[alarm], run) for alarm, run in _RUNS.items())


def find(name: str) -> Drill:
    wanted = ALIASES.get(name, name)
    for drill in DRILLS:
        if drill.alarm == wanted:
            return drill
    known = ", ".join(d.alarm for d in DRILLS)
    raise DrillFailed(f"no drill for {name!r}; drills: {known}, or all")
