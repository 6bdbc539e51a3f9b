"""One drill per alarm: the real condition on the local stack, then its runbook's recovery.

Each drill causes what the alarm's runbook names as a likely cause, with real traffic and the stack's own
controls (faults on AWS calls, the worker's configuration, its reserved concurrency, its trigger, the capacity
counter's trigger), waits for ALARM and the ops topic's message, walks the runbook's fix and checks OK and that nothing
was lost. Steps are numbered after the framework's first one (the alarm OK before anything is broken).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import requests

from drills.framework import (
    ALARM_PERIOD_SECONDS,
    ALARM_WAIT_SECONDS,
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
from monitoring.capacity_handlers import COUNTER_BATCHING_WINDOW_SECONDS
from pipeline.resources import Env

DYNAMODB_THROTTLE = "dynamodb:PutItem=1:ProvisionedThroughputExceededException"
# An IAM change that denies reads: not retried by the SDK, so the API answers at once.
READS_DENIED = "dynamodb:GetItem=1:AccessDeniedException"
DYNAMODB_DENIED = "dynamodb:*=1:AccessDeniedException"
# How long a cause must last for a 3-of-3 alarm: three compressed periods and some.
SUSTAIN_SECONDS = 3 * ALARM_PERIOD_SECONDS + 4
# A poller's long-poll wait (localaws.runtime.RuntimeConfig.poll_wait_seconds) and some.
POLL_SECONDS = 1.5
# The capacity counter's poll under way when its trigger is disabled: a 1 s long poll, then its batching window.
CAPACITY_POLL_SECONDS = 1 + COUNTER_BATCHING_WINDOW_SECONDS + 0.5


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


# --- capacity: upload-bucket-size, capacity-event-lag, capacity-drift-* --------------------------------------


def _bytes_by_owner(session: Session) -> dict[str, int]:
    """`imgops capacity top --limit 1000`: every owner of the upload bucket and their bytes, from the counters."""
    top = session.capacity_top("uploads", limit=1000)
    return {owner.owner: owner.totals.size_bytes for owner in top.owners}


def _counters_match(session: Session, bucket: str) -> bool:
    """The counters' total for `bucket` (uploads or processed) is what a listing finds."""
    name = session.info.upload_bucket if bucket == "uploads" else session.info.processed_bucket
    listed = session.listed(name)
    total = session.capacity_top(bucket, limit=1).total
    return (total.objects, total.size_bytes) == (len(listed), sum(size for _, size in listed))


def _wait_counters_match(session: Session, timeout: float = 30) -> None:
    """Both buckets' counters equal to what a listing finds (the counter has caught up)."""
    wait_for(
        "the counters to equal the buckets",
        lambda: _counters_match(session, "uploads") and _counters_match(session, "processed"),
        timeout,
    )


def upload_bucket_size(session: Session) -> str:
    alarm = "upload-bucket-size"
    session.step("imgops capacity top: the upload bucket's size now, from the counters")
    before = session.capacity_top("uploads").total
    owners_before = _bytes_by_owner(session)
    threshold = before.size_bytes + 2 * session.largest_upload_bytes
    session.note(
        f"{before.objects} objects, {before.size_bytes:,} bytes; threshold compressed: "
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
        session.step("Runbook: imgops capacity top, again: the user whose bytes jumped is the runaway")
        grown = {owner: size - owners_before.get(owner, 0) for owner, size in _bytes_by_owner(session).items()}
        jumped = max(grown, key=lambda owner: grown[owner])
        expect(jumped == f"user-uploads/{sub}/", f"growth by owner: {grown}")
        session.note(f"{jumped} grew {grown[jumped]:,} bytes")
        session.step("Disable the user, remove their prefix; expect the size back under the threshold")
        session.target.client("cognito-idp").admin_disable_user(
            UserPoolId=session.info.user_pool_id, Username="runaway"
        )
        for key, _ in session.listed(session.info.upload_bucket, f"user-uploads/{sub}/"):
            session.s3.delete_object(Bucket=session.info.upload_bucket, Key=key)
        wait_for(
            "the counters to count the removal",
            lambda: session.capacity_top("uploads").total.size_bytes <= threshold,
            session.options.timeout_seconds,
        )
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        images = session.nothing_lost()  # processed before their originals went: DONE
    finally:
        session.set_threshold(alarm, None)
    return f"{images} runaway uploads processed, then removed; the bucket back under."


def capacity_event_lag(session: Session) -> str:
    alarm = "capacity-event-lag"
    threshold = session.threshold(alarm)
    session.step("Disable the capacity counter's SQS trigger and upload 3 images")
    session.note(f"their object events wait; threshold compressed: 15 min -> {threshold:g} s")
    session.stack.pause_capacity_counter()
    time.sleep(CAPACITY_POLL_SECONDS)  # a batch already under way ends first
    try:
        session.wait_done(session.upload(3))
        waiting = session.visible(session.capacity_queue_url)
        expect(waiting > 0, "no object events wait in the capacity queue")
        session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
        session.expect_alarm(alarm, timeout=ALARM_WAIT_SECONDS + threshold)
        session.step("Runbook: the capacity DLQ is empty; events wait: the trigger is the cause")
        expect(session.visible(session.capacity_dlq_url) == 0, "the capacity DLQ holds events")
        waiting = session.visible(session.capacity_queue_url)
        expect(waiting > 0, "the capacity queue is empty")
        drifting = [a for a, state in session.states().items() if a.startswith("capacity-drift") and state == "ALARM"]
        session.note(f"{waiting} events waiting; drift alarms in ALARM too (the same cause): {len(drifting)}")
    finally:
        session.step("Enable the trigger again: expect the queue drained, the counters equal to the buckets")
        session.stack.resume_capacity_counter()
    wait_for(
        "the capacity queue to drain",
        lambda: session.visible(session.capacity_queue_url) == 0,
        session.options.timeout_seconds,
    )
    _wait_counters_match(session)
    session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
    session.expect_ok(alarm)
    images = session.nothing_lost()
    return f"{waiting} events of {images} images waited; counted with the trigger back."


def _fail_every_receive(session: Session) -> int:
    """What a counter failing every batch does to its queue: each event received, never deleted, received again
    once its visibility timeout (compressed) is over, until SQS's redrive policy (5 receives) moves it to the
    capacity DLQ. Returns how many reached the DLQ."""
    before = session.visible(session.capacity_dlq_url)
    deadline = time.monotonic() + session.options.timeout_seconds
    while session.visible(session.capacity_queue_url) > 0:
        expect(time.monotonic() < deadline, "the capacity queue's events did not reach its DLQ")
        session.sqs.receive_message(
            QueueUrl=session.capacity_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
        )
        time.sleep(VISIBILITY_SECONDS + 0.2)
    return session.visible(session.capacity_dlq_url) - before


def _drift(bucket: str) -> Callable[[Session], str]:
    alarm = f"capacity-drift-{bucket}"

    def drill(session: Session) -> str:
        session.step("A counter that fails every batch: 2 uploads; each of their events is received and not deleted")
        session.note(
            f"retried every {VISIBILITY_SECONDS} s (6 min compressed); after 5 receives SQS's redrive policy "
            "moves it to the capacity DLQ"
        )
        session.stack.pause_capacity_counter()
        time.sleep(CAPACITY_POLL_SECONDS)  # a batch already under way ends first
        try:
            session.wait_done(session.upload(2))
            parked = _fail_every_receive(session)
            expect(parked > 0, "no event reached the capacity DLQ")
        finally:
            session.stack.resume_capacity_counter()
        session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
        session.expect_alarm(alarm)
        session.step("Runbook: capacity-event-lag OK; the capacity DLQ holds the uploads' events")
        expect(session.states()["capacity-event-lag"] == "OK", "capacity-event-lag fires: the counter is stuck")
        keys = _dead_letter_keys(session)
        expect(len(keys) == parked, f"the capacity DLQ holds {len(keys)} events, {parked} were parked")
        session.note(f"{parked} events, e.g. {sorted(keys)[0]}")
        session.step("Redrive the capacity DLQ: the counter counts each event once")
        moved = dlq.redrive(
            session.sqs,
            dlq_url=session.capacity_dlq_url,
            queue_url=session.capacity_queue_url,
            prefer_move_task=False,
        )
        expect(moved.error == "" and len(moved.moved) == parked, f"redrive: {moved.error or len(moved.moved)}")
        _wait_counters_match(session)
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        images = session.nothing_lost()
        return f"{parked} events parked, redriven, counted once; {images} images DONE."

    return drill


def _dead_letter_keys(session: Session) -> list[str]:
    """The object keys of the events in the capacity DLQ (read, left there: a receive with no visibility)."""
    keys: list[str] = []
    for message in session.sqs.receive_message(
        QueueUrl=session.capacity_dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
    ).get("Messages", []):
        detail = json.loads(message["Body"]).get("detail", {})
        keys.append(str(detail.get("object", {}).get("key", "?")))
    return keys


# --- s3-metrics-not-reporting-* ---------------------------------------------------------------------------

# An IAM change that denies the publisher's role PutMetricData (the reconciler's shares the fault here).
METRICS_DENIED = "cloudwatch:PutMetricData=1:AccessDeniedException"


def _not_reporting(bucket: str) -> Callable[[Session], str]:
    alarm = f"s3-metrics-not-reporting-{bucket}"

    def drill(session: Session) -> str:
        session.step(f"An IAM change denies the capacity publisher {METRICS_DENIED.split('=')[0]}")
        session.note(f"3 compressed periods of {ALARM_PERIOD_SECONDS} s without a publication fire the alarm")
        with session.fault(METRICS_DENIED):
            session.step(f"imgops alarms check: expect {alarm} ALARM and its message")
            session.expect_alarm(alarm)
            session.step("Runbook: the publisher's error (its log, or a Test run): AccessDenied")
            error = _publish_by_hand(session)
            expect("AccessDenied" in error, f"the publisher answered {error!r}")
            session.note(error[:120])
            session.step("imgops capacity top: the counters are there, only publishing fails")
            expect(_counters_match(session, bucket), "the counters do not match the bucket")
        session.step("Fix IAM (imgops faults clear); run the publisher by hand")
        error = _publish_by_hand(session)
        expect(error == "", f"the publisher still fails: {error}")
        session.step(f"imgops alarms check: expect {alarm} OK and its OK message")
        session.expect_ok(alarm)
        return "publications stopped while denied, resumed with the fix."

    return drill


def _publish_by_hand(session: Session) -> str:
    """One publisher invocation now, as the console's Test button runs it; returns its error ("" if none)."""
    from botocore.exceptions import ClientError

    from localaws.context import LocalLambdaContext
    from monitoring import capacity_publisher

    function = f"{session.info.prefix}-capacity-publisher"
    try:
        capacity_publisher.handler({}, LocalLambdaContext.create(function, timeout_seconds=30, memory_mb=256))
    except ClientError as exc:
        return f"{exc.response.get('Error', {}).get('Code', '')}: {exc}"
    return ""


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
    "capacity-event-lag": capacity_event_lag,
    "capacity-drift-uploads": _drift("uploads"),
    "capacity-drift-processed": _drift("processed"),
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
