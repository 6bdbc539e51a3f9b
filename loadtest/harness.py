"""The load-test engine: uploads the way a user does and learns completion from the SNS topic.

Per image: presign through the API with a bearer token, presigned POST to S3, then the notification on a
queue subscribed to the topic for this run (filtered by the run's user) - no DynamoDB polling. Once the
notification says DONE, the image's record is read through the API (`GET /images/{id}`), as the user's app
does to show the thumbnails: the read path is exercised (and its latency measured) like the write path.
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
from loadtest.targets import LoadTarget

READ_TIMEOUT_SECONDS = 10.0
# How long a finished run still waits for its last result reads.
READ_GRACE_SECONDS = 10.0


@dataclass
class ImageRecord:
    index: int
    kind: str
    content_type: str
    bytes_in: int
    image_id: str = ""
    status: str = "PENDING"  # PENDING → UPLOADED → DONE | FAILED | UPLOAD_ERROR | OUTSTANDING
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


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 16
    rate: float | None = None  # uploads/s, open loop; None = as fast as `concurrency` allows
    timeout_seconds: float = 600.0
    wait_for_results: bool = True  # False: measure the harness and the upload path only
    read_results: bool = True  # GET /images/{id} once an image is DONE, as the user's app does


@dataclass
class RunState:
    records: list[ImageRecord]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

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


class LoadTest:
    def __init__(self, target: LoadTarget, plan: list[CorpusImage], options: RunOptions) -> None:
        self.target = target
        self.options = options
        self._plan = plan
        self._payloads = {image.path: image.path.read_bytes() for image in set(plan)}
        self.state = RunState(
            [ImageRecord(i, image.kind, image.content_type, image.size_bytes) for i, image in enumerate(plan)]
        )
        self._by_image_id: dict[str, ImageRecord] = {}
        self._early: dict[str, tuple[dict[str, Any], float]] = {}  # notifications that beat the upload's return
        self._local = threading.local()
        self._reads: ThreadPoolExecutor | None = None
        self._read_futures: list[Future[None]] = []

    def run(self, on_tick: Callable[[RunState], None] | None = None) -> RunState:
        options = self.options
        listener = None
        if options.wait_for_results:
            if options.read_results:
                self._reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-result")
            listener = CompletionListener(self.target, self.target.user_sub(), self._completed).start()
        self.target.access_token()  # fail fast on bad credentials, before any upload
        deadline = time.monotonic() + options.timeout_seconds
        executor = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="upload")
        futures: list[Future[None]] = []
        try:
            self.state.started = time.time()
            for index, image in enumerate(self._plan):
                if options.rate:
                    self._sleep_until(self.state.started + index / options.rate, deadline, on_tick)
                if time.monotonic() >= deadline:
                    break
                futures.append(executor.submit(self._upload, self.state.records[index], image))
            while time.monotonic() < deadline and not self._finished(futures):
                if on_tick:
                    on_tick(self.state)
                time.sleep(0.2)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            if listener is not None:
                listener.close()
            if self._reads is not None:  # the last reads, briefly: a dead API must not hold the run
                wait(list(self._read_futures), timeout=READ_GRACE_SECONDS)
                self._reads.shutdown(wait=False, cancel_futures=True)
            self.state.finished = time.time()
            with self.state.lock:
                for record in self.state.records:
                    if record.status in {"PENDING", "UPLOADED"}:
                        record.status = "OUTSTANDING"
        if on_tick:
            on_tick(self.state)
        return self.state

    def _finished(self, futures: list[Future[None]]) -> bool:
        if len(futures) < len(self._plan) or not all(future.done() for future in futures):
            return False
        if not self.options.wait_for_results:
            return True
        with self.state.lock:
            return all(record.status not in {"PENDING", "UPLOADED"} for record in self.state.records)

    def _sleep_until(self, moment: float, deadline: float, on_tick: Callable[[RunState], None] | None) -> None:
        while (delay := moment - time.time()) > 0 and time.monotonic() < deadline:
            time.sleep(min(delay, 0.2))
            if on_tick:
                on_tick(self.state)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _upload(self, record: ImageRecord, image: CorpusImage) -> None:
        session = self._session()
        record.started_at = time.time()
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
            with self.state.lock:
                record.image_id = grant["image_id"]
                self._by_image_id[record.image_id] = record
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
            with self.state.lock:
                record.status, record.reason = "UPLOAD_ERROR", str(exc)[:300]
            return
        with self.state.lock:
            record.presign_ms = (presigned - started) * 1000
            record.upload_ms = (uploaded - presigned) * 1000
            record.uploaded_at = time.time()
            record.status = "UPLOADED" if self.options.wait_for_results else "SENT"
            early = self._early.pop(record.image_id, None)
        if early is not None:
            self._completed(*early)

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
        record = self._record_completion(message, received_at)
        if record is not None and record.status == "DONE" and self._reads is not None:
            with contextlib.suppress(RuntimeError):  # the run is over: no new reads
                self._read_futures.append(self._reads.submit(self._read_result, record))

    def _record_completion(self, message: dict[str, Any], received_at: float) -> ImageRecord | None:
        """The record this notification completes (None: another run's, early, or a duplicate)."""
        with self.state.lock:
            record = self._by_image_id.get(str(message.get("imageId")))
            if record is None:
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


class UploadError(RuntimeError):
    pass


def records_as_rows(state: RunState) -> list[dict[str, Any]]:
    with state.lock:
        return [asdict(record) for record in state.records]
