"""The load-test engine: uploads the way a user does and learns completion from the SNS topic.

Per image: presign through the API with a bearer token, presigned POST to S3, then the notification on a
queue subscribed to the topic for this run (filtered by the run's user) - no DynamoDB polling. Once the
notification says DONE, the image's record is read through the API (`GET /images/{id}`), as the user's app
does to show the thumbnails: the read path is exercised (and its latency measured) like the write path.

Three ways to pace the uploads:

- closed (the default): `concurrency` uploads in flight, the next starts when one finishes. A slow system slows
  the load down; there is no "intended" start, so latencies are measured from the actual start only.
- open (`rate`, or a `schedule` of ramping stages, loadtest/stages.py): each upload has an intended start time
  and is started then, whatever the uploads before it are doing - up to `concurrency` in flight. When no slot is
  free the start waits; one that begins more than LATE_AFTER_SECONDS after its intended time counts as *late*, and
  one that could not begin within `max_lag_seconds` is *dropped* (never sent, status DROPPED; k6's
  dropped_iterations) rather than sent later and silently lowering the offered rate. Latencies are measured from
  the intended start as well as from the actual one (loadtest/summary.py).

A run can be stopped early: `should_stop` (thresholds with --abort-on-fail) is asked every CHECK_EVERY_SECONDS;
what had not started then ends NOT_STARTED, what was in flight ABORTED (neither counts as a failure).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from loadtest.corpus import CorpusImage
from loadtest.stages import LATE_AFTER_SECONDS, Schedule
from loadtest.targets import LoadTarget

READ_TIMEOUT_SECONDS = 10.0
# How long a finished run still waits for its last result reads.
READ_GRACE_SECONDS = 10.0
# How often `should_stop` is asked, and the progress callback called, while a run goes on.
CHECK_EVERY_SECONDS = 1.0
TICK_SECONDS = 0.2
# Statuses still waiting for something; a run that ends leaves none of them.
OPEN_STATUSES = frozenset({"PENDING", "UPLOADED"})


@dataclass
class ImageRecord:
    index: int
    kind: str
    content_type: str
    bytes_in: int
    image_id: str = ""
    # PENDING → UPLOADED → DONE | FAILED | UPLOAD_ERROR | OUTSTANDING (the timeout); SENT with wait_for_results off;
    # DROPPED (open model: no slot within the max lag), NOT_STARTED / ABORTED (the run was stopped early).
    status: str = "PENDING"
    reason: str = ""
    presign_ms: float | None = None
    upload_ms: float | None = None
    queue_wait_ms: float | None = None
    processing_ms: float | None = None
    end_to_end_ms: float | None = None
    bytes_out: int | None = None
    started_at: float | None = None  # epoch seconds
    uploaded_at: float | None = None
    completed_at: float | None = None
    result_ms: float | None = None  # GET /images/{id} after the DONE notification
    result_status: int | None = None  # its HTTP status (None: not read, or no answer)
    intended_at: float | None = None  # epoch seconds the schedule meant it to start (closed model: started_at)
    start_lag_ms: float | None = None  # started_at - intended_at
    late: bool = False  # started more than LATE_AFTER_SECONDS after intended_at
    worker: str = ""  # the load generator that sent it (a Locust worker's id; "" for `imgops loadtest run`)


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 16
    rate: float | None = None  # uploads/s, open loop (one constant stage); None = closed loop
    timeout_seconds: float = 600.0
    wait_for_results: bool = True  # False: measure the harness and the upload path only
    read_results: bool = True  # GET /images/{id} once an image is DONE, as the user's app does
    schedule: Schedule | None = None  # ramping stages (open loop); wins over `rate`
    max_lag_seconds: float = 1.0  # open loop: a start that cannot begin this late is dropped

    def effective_schedule(self, images: int) -> Schedule | None:
        if self.schedule is not None:
            return self.schedule
        return Schedule.constant(self.rate, images) if self.rate else None


@dataclass
class RunState:
    records: list[ImageRecord]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    aborted: str | None = None  # why the run was stopped early

    def counts(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for record in self.records:
                counts[record.status] = counts.get(record.status, 0) + 1
            return counts


class CompletionListener:
    """A queue subscribed to the topic for this run only (filter: the run's user), drained in a thread."""

    def __init__(self, target: LoadTarget, user_sub: str, on_message: Callable[[dict[str, Any], float], None]) -> None:
        self._target = target
        self._sqs = target.client("sqs")
        self._sns = target.client("sns")
        self._on_message = on_message
        self._stop = threading.Event()
        name = f"imgops-loadtest-{uuid.uuid4().hex[:12]}"
        self.queue_url: str = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": target.topic_arn}},
                }
            ],
        }
        self._sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)})
        self._subscription: str = self._sns.subscribe(
            TopicArn=target.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"userId": [user_sub]})},
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        self._thread = threading.Thread(target=self._drain, name="completion-listener", daemon=True)

    def start(self) -> CompletionListener:
        self._thread.start()
        return self

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:  # noqa: BLE001 - keep listening through a hiccup; the timeout bounds the run
                self._stop.wait(0.5)
                continue
            messages = batch.get("Messages", [])
            received_at = time.time()
            for message in messages:
                try:
                    self._on_message(json.loads(message["Body"]), received_at)
                except (ValueError, KeyError):
                    continue
            if messages:
                self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # Best effort: a leftover subscription or queue is harmless and easy to spot by its name.
        with contextlib.suppress(Exception):
            self._sns.unsubscribe(SubscriptionArn=self._subscription)
        with contextlib.suppress(Exception):
            self._sqs.delete_queue(QueueUrl=self.queue_url)


class Completions:
    """Which of this process's uploads a notification completes; notifications for images it did not send (another
    run's, another Locust worker's) are ignored, and one that beats its upload's answer is kept until then."""

    def __init__(self, state: RunState, *, wait_for_results: bool = True) -> None:
        self.state = state
        self.wait_for_results = wait_for_results
        self._by_image_id: dict[str, ImageRecord] = {}
        self._early: dict[str, tuple[dict[str, Any], float]] = {}
        self.closed = False  # the run is over: late answers no longer change its records

    def presigned(self, record: ImageRecord, image_id: str) -> None:
        with self.state.lock:
            record.image_id = image_id
            self._by_image_id[image_id] = record

    def started(self, record: ImageRecord) -> bool:
        """Marks `record` started now; False if the run is already over."""
        with self.state.lock:
            if self.closed or record.status != "PENDING":
                return False
            record.started_at = time.time()
            if record.intended_at is None:  # closed model: it starts when it is meant to
                record.intended_at = record.started_at
            lag = record.started_at - record.intended_at
            record.start_lag_ms = max(0.0, lag * 1000)
            record.late = lag > LATE_AFTER_SECONDS
            return True

    def failed_upload(self, record: ImageRecord, reason: str) -> None:
        with self.state.lock:
            if not self.closed:
                record.status, record.reason = "UPLOAD_ERROR", reason[:300]

    def uploaded(self, record: ImageRecord, presign_ms: float, upload_ms: float) -> ImageRecord | None:
        """Records the stored upload; returns the record if a notification for it had already arrived and now
        completed it."""
        with self.state.lock:
            if self.closed:
                return None
            record.presign_ms = presign_ms
            record.upload_ms = upload_ms
            record.uploaded_at = time.time()
            record.status = "UPLOADED" if self.wait_for_results else "SENT"
            early = self._early.pop(record.image_id, None)
        return self.complete(*early) if early is not None else None

    def complete(self, message: dict[str, Any], received_at: float) -> ImageRecord | None:
        """The record this notification completes (None: another run's, early, or a duplicate)."""
        with self.state.lock:
            record = self._by_image_id.get(str(message.get("imageId")))
            if record is None or self.closed:
                return None  # another run's image, or ours before its id is known (handled below)
            if record.uploaded_at is None:
                self._early[record.image_id] = (message, received_at)
                return None
            if record.status != "UPLOADED":
                return None  # a duplicate notification
            record.status = str(message.get("status", "FAILED"))
            record.reason = str(message.get("reason") or "")
            record.completed_at = received_at
            record.end_to_end_ms = max(0.0, (received_at - record.uploaded_at) * 1000)
            processing = message.get("processing_ms")
            if isinstance(processing, int | float):
                record.processing_ms = float(processing)
                record.queue_wait_ms = max(0.0, record.end_to_end_ms - record.processing_ms)
            if isinstance(message.get("processed_bytes"), int):
                record.bytes_out = int(message["processed_bytes"])
            return record

    def pending(self) -> bool:
        with self.state.lock:
            return any(record.status in OPEN_STATUSES for record in self.state.records if record.started_at)

    def close(self, *, aborted: bool = False) -> None:
        """Ends the run's records: unsent ones NOT_STARTED (aborted) or OUTSTANDING (the timeout), in-flight ones
        ABORTED or OUTSTANDING."""
        with self.state.lock:
            self.closed = True
            for record in self.state.records:
                if record.status not in OPEN_STATUSES:
                    continue
                if aborted:
                    record.status = "ABORTED" if record.started_at else "NOT_STARTED"
                else:
                    record.status = "OUTSTANDING"


class LoadTest:
    def __init__(self, target: LoadTarget, plan: list[CorpusImage], options: RunOptions) -> None:
        self.target = target
        self.options = options
        self._plan = plan
        self._payloads = {image.path: image.path.read_bytes() for image in set(plan)}
        self.state = RunState(
            [ImageRecord(i, image.kind, image.content_type, image.size_bytes) for i, image in enumerate(plan)]
        )
        self.schedule = options.effective_schedule(len(plan))
        self.completions = Completions(self.state, wait_for_results=options.wait_for_results)
        self._local = threading.local()
        self._reads: ThreadPoolExecutor | None = None
        self._read_futures: list[Future[None]] = []
        self._stop = threading.Event()
        self._on_tick: Callable[[RunState], None] | None = None
        self._should_stop: Callable[[RunState], str | None] | None = None

    def run(
        self,
        on_tick: Callable[[RunState], None] | None = None,
        should_stop: Callable[[RunState], str | None] | None = None,
    ) -> RunState:
        """Send the plan and wait for its results. `on_tick` is called about every TICK_SECONDS, `should_stop`
        every CHECK_EVERY_SECONDS (both from a monitor thread): a reason it returns stops the run (recorded as
        `state.aborted`)."""
        options = self.options
        self._on_tick, self._should_stop = on_tick, should_stop
        listener = None
        if options.wait_for_results:
            if options.read_results:
                self._reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-result")
            listener = CompletionListener(self.target, self.target.user_sub(), self._completed).start()
        self.target.access_token()  # fail fast on bad credentials, before any upload
        deadline = time.monotonic() + options.timeout_seconds
        executor = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="upload")
        slots = threading.BoundedSemaphore(options.concurrency)
        futures: list[Future[None]] = []
        done = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(done,), name="run-monitor", daemon=True)
        try:
            self.state.started = time.time()
            monitor.start()
            self._dispatch(executor, slots, futures, deadline)
            while time.monotonic() < deadline and not self._stop.is_set() and not self._finished(futures):
                time.sleep(TICK_SECONDS)
        finally:
            done.set()
            monitor.join(timeout=30)
            executor.shutdown(wait=False, cancel_futures=True)
            if listener is not None:
                listener.close()
            if self._reads is not None:  # the last reads, briefly: a dead API must not hold the run
                wait(list(self._read_futures), timeout=READ_GRACE_SECONDS)
                self._reads.shutdown(wait=False, cancel_futures=True)
            self.state.finished = time.time()
            self.completions.close(aborted=self.state.aborted is not None)
        if on_tick:
            on_tick(self.state)
        return self.state

    def _dispatch(
        self,
        executor: ThreadPoolExecutor,
        slots: threading.BoundedSemaphore,
        futures: list[Future[None]],
        deadline: float,
    ) -> None:
        """Starts each upload: when a slot frees (closed model) or at its intended time (open model)."""
        offsets = self.schedule.offsets(len(self._plan)) if self.schedule is not None else None
        for index, image in enumerate(self._plan):
            record = self.state.records[index]
            if offsets is not None:
                if index >= len(offsets):
                    break  # the schedule asks for fewer starts than planned
                intended = self.state.started + offsets[index]
                with self.state.lock:
                    record.intended_at = intended
                if not self._wait_until(intended, deadline):
                    return
                latest = intended + self.options.max_lag_seconds
                acquired = self._acquire(slots, deadline, latest)
                if acquired and time.time() > latest:  # a slot, but too late to use it
                    slots.release()
                    acquired = False
                if not acquired:
                    if self._stop.is_set() or time.monotonic() >= deadline:
                        return
                    with self.state.lock:
                        record.status = "DROPPED"
                        record.reason = f"no upload slot free within {self.options.max_lag_seconds:g} s"
                    continue
            elif not self._acquire(slots, deadline, None):
                return
            futures.append(executor.submit(self._upload_in_slot, record, image, slots))

    def _wait_until(self, moment: float, deadline: float) -> bool:
        """Sleeps until `moment` (epoch seconds); False if the run is stopped or times out first."""
        while (delay := moment - time.time()) > 0:
            if self._stop.is_set() or time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, TICK_SECONDS))
        return not self._stop.is_set() and time.monotonic() < deadline

    def _acquire(self, slots: threading.BoundedSemaphore, deadline: float, latest: float | None) -> bool:
        """A free upload slot, waiting at most until `latest` (epoch seconds; None: as long as the run goes on)."""
        while not self._stop.is_set() and time.monotonic() < deadline:
            wait_for = TICK_SECONDS if latest is None else min(TICK_SECONDS, latest - time.time())
            if wait_for <= 0:
                return slots.acquire(blocking=False)
            if slots.acquire(timeout=wait_for):
                return True
        return False

    def _monitor(self, done: threading.Event) -> None:
        """Progress and the abort check, off the dispatching thread: a slow check must not make starts late."""
        last_check = time.monotonic()
        while not done.wait(TICK_SECONDS):
            if self._on_tick is not None:
                self._on_tick(self.state)
            if self._should_stop is not None and time.monotonic() - last_check >= CHECK_EVERY_SECONDS:
                last_check = time.monotonic()
                reason = self._should_stop(self.state)
                if reason:
                    self.state.aborted = reason
                    self._stop.set()
                    return

    def _finished(self, futures: list[Future[None]]) -> bool:
        if not all(future.done() for future in futures):
            return False
        if not self.options.wait_for_results:
            return True
        with self.state.lock:
            return all(record.status not in OPEN_STATUSES for record in self.state.records)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _upload_in_slot(self, record: ImageRecord, image: CorpusImage, slots: threading.BoundedSemaphore) -> None:
        try:
            self._upload(record, image)
        finally:
            slots.release()

    def _upload(self, record: ImageRecord, image: CorpusImage) -> None:
        if not self.completions.started(record):
            return
        session = self._session()
        try:
            started = time.perf_counter()
            response = session.post(
                f"{self.target.api_url}/uploads",
                json={"content_type": image.content_type, "method": "POST"},
                headers={"Authorization": f"Bearer {self.target.access_token()}"},
                timeout=30,
            )
            if response.status_code != 201:
                raise UploadError(f"presign answered {response.status_code}: {response.text[:200]}")
            grant = response.json()
            presigned = time.perf_counter()
            self.completions.presigned(record, grant["image_id"])
            upload = session.post(
                grant["upload_url"],
                data=grant["fields"],
                files={"file": (image.path.name, self._payloads[image.path], image.content_type)},
                timeout=120,
            )
            if upload.status_code not in (200, 201, 204):
                raise UploadError(f"upload answered {upload.status_code}: {upload.text[:200]}")
            uploaded = time.perf_counter()
        except (requests.RequestException, UploadError, ValueError, KeyError) as exc:
            self.completions.failed_upload(record, str(exc))
            return
        completed = self.completions.uploaded(record, (presigned - started) * 1000, (uploaded - presigned) * 1000)
        if completed is not None:
            self._after_completion(completed)

    def _read_result(self, record: ImageRecord) -> None:
        """GET /images/{id} with the user's token: the read API, as the app calls it after the notification."""
        started = time.perf_counter()
        try:
            response = self._session().get(
                f"{self.target.api_url}/images/{record.image_id}",
                headers={"Authorization": f"Bearer {self.target.access_token()}"},
                timeout=READ_TIMEOUT_SECONDS,
            )
        except requests.RequestException:
            return
        with self.state.lock:
            record.result_status = response.status_code
            record.result_ms = (time.perf_counter() - started) * 1000

    def _completed(self, message: dict[str, Any], received_at: float) -> None:
        record = self.completions.complete(message, received_at)
        if record is not None:
            self._after_completion(record)

    def _after_completion(self, record: ImageRecord) -> None:
        if record.status == "DONE" and self._reads is not None:
            with contextlib.suppress(RuntimeError):  # the run is over: no new reads
                self._read_futures.append(self._reads.submit(self._read_result, record))


class UploadError(RuntimeError):
    pass


def records_as_rows(state: RunState) -> list[dict[str, Any]]:
    with state.lock:
        return [asdict(record) for record in state.records]
