"""The load test's user flow as a Locust user, to scale past one machine: `locust --master` plus N `--worker`s.

    imgops loadtest locust --workers 4 --users 32 --run-time 5m      # launches master and workers here
    imgops loadtest locust --workers 4 --print                       # prints the commands, for several machines

Each simulated user does what `imgops loadtest run` does: presign through the API (Locust request "presign"),
presigned POST to S3 ("upload"), then learns the outcome from the SNS topic. Completion tracking across workers:
every worker process subscribes *its own* queue to the topic with a filter on the test user (the notification's
`userId` attribute) and keeps only the notifications for image ids it uploaded itself - no shared state, no
polling, and a worker's clock measures both ends of each latency. The cost is that each notification reaches
every worker's queue (N SQS messages per image for N workers, on the load generators' side only); past a few
dozen workers, give each worker its own Cognito user. Completions show in Locust's statistics as request type
SNS: "notify" (upload stored → notification) and "e2e" (intended start → notification).

At the end (run time reached, or every worker done with `--imgops-max-images`), the master tells the workers to
stop uploading ("imgops_drain"); each waits for its outstanding notifications (at most --imgops-drain-timeout),
then sends its rows and HDR histograms (encoded) to the master ("imgops_results"). The master merges the
histograms, reads the worker's REPORT lines and writes the same run folder as `imgops loadtest run`
(images.parquet, summary.json, report.html, …; loadtest/runner.py `write_run`).

Pacing: `--imgops-pacing S` starts one upload per user every S seconds on a fixed timetable (Locust's
constant_pacing, with the intended start kept so latencies are also measured from it); 0 starts the next upload
as soon as the previous one is stored (closed loop).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, events, task
from locust.env import Environment
from locust.runners import STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from loadtest.corpus import DEFAULT_MIX, CorpusImage, build_corpus, parse_mix, upload_plan
from loadtest.corpus import default_cache_dir as corpus_cache_dir
from loadtest.harness import CompletionListener, Completions, ImageRecord, RunState, UploadError, records_as_rows
from loadtest.runner import read_reports, report_log_offset, write_run
from loadtest.summary import decode_histograms, encode_histograms, histograms_from_frame, merge_histograms
from loadtest.targets import LoadTarget, aws_load_target
from loadtest.thresholds import ThresholdSet, load_file
from monitoring.target import for_local, running_stack

log = logging.getLogger("imgops.locust")
DRAIN_MESSAGE = "imgops_drain"
RESULTS_MESSAGE = "imgops_results"
# Images planned per worker when the run is bounded by time only (the plan is cycled).
OPEN_ENDED_PLAN = 1000


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("imgops", "The imgops load test (loadtest/locustfile.py)")
    add = group.add_argument
    add("--imgops-target", choices=["local", "aws"], default="local", help="The running local stack, or AWS.")
    add("--imgops-stack-name", default="imgops-pipeline", help="CloudFormation stack, with --imgops-target aws.")
    add("--imgops-region", default=os.environ.get("AWS_REGION", "us-east-1"), help="AWS region (prices, stack).")
    add("--imgops-mix", default=DEFAULT_MIX, help="Share of each image kind.")
    add("--imgops-seed", type=int, default=7, help="Corpus seed (each worker adds its index to the plan's).")
    add("--imgops-corpus-size", type=int, default=24, help="Distinct files generated.")
    add("--imgops-cache-dir", default="", help="Corpus cache [default: ~/.cache/imgops/corpus].")
    add("--imgops-max-images", type=int, default=0, help="Uploads in all (split across workers); 0: no limit.")
    add("--imgops-pacing", type=float, default=0.0, help="Seconds between one user's upload starts (0: closed).")
    add("--imgops-drain-timeout", type=float, default=120.0, help="Wait this long for outstanding results.")
    add("--imgops-out", default="runs", help="Run folders go to OUT/<run id>/.")
    add("--imgops-run-id", default="", help="The run folder's name [default: a timestamp].")
    add("--imgops-thresholds-file", default="", help="Thresholds (TOML or JSON) evaluated on the summary.")
    add("--imgops-junit", default="", help="Write the thresholds as JUnit XML here.")


# --- One load generator (a worker process, or a standalone Locust) ------------------------------------------


class Book:
    """This process's uploads: the plan, the records, and the queue that tells it which of them finished."""

    def __init__(self, environment: Environment, *, worker: str, index: int, workers: int) -> None:
        options = _options(environment)
        self.environment = environment
        self.worker = worker
        self.target = resolve_target(options)
        self.options = options
        total = int(getattr(options, "imgops_max_images", 0) or 0)
        self.quota = total // workers + (1 if index < total % workers else 0) if total else 0
        weights = parse_mix(options.imgops_mix)
        cache = Path(options.imgops_cache_dir) if options.imgops_cache_dir else corpus_cache_dir()
        files = build_corpus(mix=weights, count=options.imgops_corpus_size, seed=options.imgops_seed, cache_dir=cache)
        self.plan = upload_plan(files, weights, self.quota or OPEN_ENDED_PLAN, options.imgops_seed + index)
        self.payloads = {image.path: image.path.read_bytes() for image in set(self.plan)}
        self.pacing = float(options.imgops_pacing or 0.0)
        self.state = RunState([])
        self.completions = Completions(self.state)
        self.draining = False
        self.sent_results = False
        self.target.access_token()
        self.listener = CompletionListener(self.target, self.target.user_sub(), self._notified).start()
        self.state.started = time.time()

    def claim(self) -> tuple[ImageRecord, CorpusImage] | None:
        """The next upload to send (None: draining, or this worker's share is sent)."""
        with self.state.lock:
            count = len(self.state.records)
            if self.draining or (self.quota and count >= self.quota):
                return None
            image = self.plan[count % len(self.plan)]
            record = ImageRecord(count, image.kind, image.content_type, image.size_bytes, worker=self.worker)
            self.state.records.append(record)
            return record, image

    def exhausted(self) -> bool:
        with self.state.lock:
            return bool(self.quota) and len(self.state.records) >= self.quota

    def _notified(self, message: dict[str, Any], received_at: float) -> None:
        record = self.completions.complete(message, received_at)
        if record is not None:
            self.report_completion(record)

    def report_completion(self, record: ImageRecord) -> None:
        """Completions in Locust's own statistics (request type SNS), so its report shows them too."""
        failed = None if record.status == "DONE" else Exception(f"{record.status}: {record.reason or 'no reason'}")
        request = self.environment.events.request
        common = {"request_type": "SNS", "response_length": record.bytes_out or 0, "context": {}, "exception": failed}
        request.fire(name="notify", response_time=record.end_to_end_ms or 0.0, **common)
        if record.completed_at is not None and record.intended_at is not None:
            request.fire(name="e2e", response_time=(record.completed_at - record.intended_at) * 1000, **common)

    def drain(self, timeout: float) -> None:
        """Stop uploading; wait (at most `timeout`) for the notifications of what was uploaded."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.in_flight() or self.completions.pending()):
            gevent.sleep(0.2)

    def in_flight(self) -> bool:
        with self.state.lock:
            return any(record.status == "PENDING" and record.started_at for record in self.state.records)

    def results(self) -> dict[str, Any]:
        self.listener.close()
        with self.state.lock:  # claimed, then the run ended before its slot in the timetable: never part of it
            self.state.records = [r for r in self.state.records if r.started_at is not None or r.status != "PENDING"]
            self.state.records = [r for r in self.state.records if r.status != "NOT_STARTED"]
        self.completions.close()
        self.state.finished = time.time()
        rows = records_as_rows(self.state)
        import pandas as pd

        histograms = histograms_from_frame(pd.DataFrame(rows)) if rows else {}
        return {
            "worker": self.worker,
            "rows": rows,
            "histograms": encode_histograms(histograms),
            "started": self.state.started,
            "finished": self.state.finished,
        }


BOOK: Book | None = None


def _options(environment: Environment) -> Any:
    """The parsed command line (Locust's and the --imgops-* ones); a worker's is updated from the master's."""
    if environment.parsed_options is None:
        raise RuntimeError("imgops: run this locustfile through the locust command (no parsed options)")
    return environment.parsed_options


def resolve_target(options: Any) -> LoadTarget:
    if options.imgops_target == "aws":
        return aws_load_target(
            stack_name=options.imgops_stack_name,
            region=options.imgops_region,
            username=os.environ.get("IMGOPS_USERNAME", ""),
            password=os.environ.get("IMGOPS_PASSWORD", ""),
        )
    info = running_stack()
    return LoadTarget(for_local(info), info.demo_username, info.demo_password)


class ImgopsUploader(HttpUser):
    """Presign → presigned POST → (the worker's queue learns the outcome from the SNS topic)."""

    host = "http://127.0.0.1"  # every request uses an absolute URL: the API's, then the presigned one

    def on_start(self) -> None:
        self.next_start: float | None = None

    @task
    def upload(self) -> None:
        book = BOOK
        claim = book.claim() if book is not None else None
        if book is None or claim is None:
            gevent.sleep(0.5)  # draining, or this worker's share is sent
            return
        record, image = claim
        if book.pacing > 0:
            intended = self.next_start if self.next_start is not None else time.time()
            self.next_start = intended + book.pacing
            record.intended_at = intended
            gevent.sleep(max(0.0, intended - time.time()))
        if book.draining:  # the run ended while this user waited for its slot in the timetable
            with book.state.lock:
                record.status = "NOT_STARTED"
            return
        if not book.completions.started(record):
            return
        try:
            started = time.perf_counter()
            with self.client.post(
                f"{book.target.api_url}/uploads",
                json={"content_type": image.content_type, "method": "POST"},
                headers={"Authorization": f"Bearer {book.target.access_token()}"},
                name="presign",
                timeout=30,
                catch_response=True,
            ) as response:
                if response.status_code != 201:
                    response.failure(f"presign answered {response.status_code}")
                    raise UploadError(f"presign answered {response.status_code}: {response.text[:200]}")
                grant = response.json()
            presigned = time.perf_counter()
            book.completions.presigned(record, grant["image_id"])
            with self.client.post(
                grant["upload_url"],
                data=grant["fields"],
                files={"file": (image.path.name, book.payloads[image.path], image.content_type)},
                name="upload",
                timeout=120,
                catch_response=True,
            ) as upload:
                if upload.status_code not in (200, 201, 204):
                    upload.failure(f"upload answered {upload.status_code}")
                    raise UploadError(f"upload answered {upload.status_code}: {upload.text[:200]}")
            uploaded = time.perf_counter()
        except (UploadError, ValueError, KeyError, OSError) as exc:
            book.completions.failed_upload(record, str(exc))
            return
        completed = book.completions.uploaded(record, (presigned - started) * 1000, (uploaded - presigned) * 1000)
        if completed is not None:
            book.report_completion(completed)


# --- Worker side ---------------------------------------------------------------------------------------------


def _worker_count(environment: Environment) -> int:
    return max(1, int(getattr(_options(environment), "expect_workers", 1) or 1))


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global BOOK
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _master_start(environment)
        return
    if BOOK is not None:
        return
    if isinstance(runner, WorkerRunner):
        BOOK = Book(
            environment, worker=runner.client_id, index=max(0, runner.worker_index), workers=_worker_count(environment)
        )
        gevent.spawn(_send_when_done, environment)
    else:  # standalone Locust: this process is master and worker at once
        _master_start(environment)
        BOOK = Book(environment, worker="local", index=0, workers=1)
        gevent.spawn(_quit_when_done, environment)


def _send_when_done(environment: Environment) -> None:
    """With a quota: once this worker's share is sent and answered, send the results without being asked."""
    while BOOK is not None and not BOOK.sent_results:
        if BOOK.exhausted() and not BOOK.in_flight() and not BOOK.completions.pending():
            _send_results(environment)
            return
        gevent.sleep(0.5)


def _send_results(environment: Environment) -> None:
    book = BOOK
    if book is None or book.sent_results or environment.runner is None:
        return
    book.sent_results = True
    book.draining = True
    environment.runner.send_message(RESULTS_MESSAGE, book.results())


def _on_drain(environment: Environment, msg: Any, **_: Any) -> None:
    if BOOK is None:  # spawned no user: nothing to report, but the master waits for every worker
        if environment.runner is not None:
            environment.runner.send_message(RESULTS_MESSAGE, {"worker": "", "rows": [], "histograms": {}})
        return
    BOOK.drain(float(_options(environment).imgops_drain_timeout))
    _send_results(environment)


# --- Master side ---------------------------------------------------------------------------------------------


class Collector:
    """The master's view: each worker's rows and histograms, then the run folder."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        options = _options(environment)
        self.target = resolve_target(options)
        self.offset = report_log_offset(self.target)
        self.started = time.time()
        self.results: dict[str, dict[str, Any]] = {}
        self.written = False
        self.folder: Path | None = None

    def expected(self) -> int:
        return _worker_count(self.environment) if isinstance(self.environment.runner, MasterRunner) else 1

    def complete(self) -> bool:
        return len(self.results) >= self.expected()

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        from loadtest.runner import new_run_id

        options = _options(self.environment)
        parts = list(self.results.values())
        rows: list[dict[str, Any]] = []
        for part in parts:
            rows += part["rows"]
        if not rows:
            log.error("imgops: no worker sent any upload; no run folder written")
            return
        for index, row in enumerate(rows):
            row["index"] = index
        histograms = merge_histograms([decode_histograms(part["histograms"]) for part in parts if part["rows"]])
        started = min((float(part["started"]) for part in parts if part["rows"]), default=self.started)
        finished = max((float(part["finished"]) for part in parts if part["rows"]), default=time.time())
        reports = read_reports(self.target, self.offset, started)
        thresholds = (
            load_file(Path(options.imgops_thresholds_file)) if options.imgops_thresholds_file else ThresholdSet()
        )
        result = write_run(
            out_dir=Path(options.imgops_out),
            run_id=options.imgops_run_id or new_run_id(),
            target_name=self.target.name,
            rows=rows,
            reports=reports,
            started=started,
            finished=finished,
            region=options.imgops_region,
            thresholds=thresholds,
            histograms=histograms,
            junit=Path(options.imgops_junit) if options.imgops_junit else None,
            extra={
                "load_generator": {
                    "tool": "locust",
                    "workers": len([part for part in parts if part["worker"]]),
                    "users": int(getattr(options, "num_users", 0) or 0),
                    "pacing_s": float(options.imgops_pacing or 0.0),
                }
            },
        )
        self.folder = result.folder
        log.info("imgops: run folder %s (%d images)", result.folder, len(rows))


COLLECTOR: Collector | None = None


def _master_start(environment: Environment) -> None:
    global COLLECTOR
    if COLLECTOR is None:
        COLLECTOR = Collector(environment)


def _on_results(environment: Environment, msg: Any, **_: Any) -> None:
    if COLLECTOR is None:
        return
    COLLECTOR.results[str(msg.node_id)] = dict(msg.data)
    runner = environment.runner
    if (
        COLLECTOR.complete()
        and isinstance(runner, MasterRunner)
        and runner.state not in (STATE_STOPPING, STATE_STOPPED)
    ):
        log.info("imgops: every worker has sent its results; stopping the test")
        gevent.spawn(runner.quit)


def _quit_when_done(environment: Environment) -> None:
    """Standalone: with a quota, quit once every upload is sent and answered."""
    while BOOK is not None and environment.runner is not None:
        if BOOK.exhausted() and not BOOK.in_flight() and not BOOK.completions.pending():
            gevent.spawn(environment.runner.quit)
            return
        gevent.sleep(0.5)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    """The run is ending: have every worker stop uploading and send its results, and wait for them."""
    runner = environment.runner
    if COLLECTOR is None or runner is None or isinstance(runner, WorkerRunner):
        return
    timeout = float(_options(environment).imgops_drain_timeout) + 30
    if isinstance(runner, MasterRunner):
        if not COLLECTOR.complete():
            runner.send_message(DRAIN_MESSAGE, None)
        deadline = time.monotonic() + timeout
        while not COLLECTOR.complete() and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if not COLLECTOR.complete():
            log.error("imgops: only %d of %d workers sent results", len(COLLECTOR.results), COLLECTOR.expected())
    elif BOOK is not None:
        BOOK.drain(float(_options(environment).imgops_drain_timeout))
        COLLECTOR.results["local"] = BOOK.results()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if COLLECTOR is not None and not isinstance(environment.runner, WorkerRunner):
        try:
            COLLECTOR.write()
        except Exception:
            log.exception("imgops: could not write the run folder")
        if COLLECTOR.folder is None:
            environment.process_exit_code = 1


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(DRAIN_MESSAGE, _on_drain, concurrent=True)
    elif isinstance(runner, MasterRunner):
        runner.register_message(RESULTS_MESSAGE, _on_results)


def expected_per_worker(total: int, workers: int) -> list[int]:
    """How `--imgops-max-images` is split: the first `total % workers` workers take one more."""
    return [total // workers + (1 if index < total % workers else 0) for index in range(workers)]
