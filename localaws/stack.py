"""`imgops local up`: the embedded AWS, the pipeline's resources, the local API and the worker runtime.

It also stands in for what AWS runs around the code: CloudWatch metrics the services publish (worker, API,
queues; see localaws/metrics.py), the EventBridge schedules of the capacity publisher and reconciler (the
bucket-metrics Lambda), and S3's object events to EventBridge with the capacity counter's SQS poller
(localaws/capacity.py).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.wrappers import Request, Response

from dashboards.template import LOCAL_API_ID, stack_template
from localaws import service_models
from localaws.api import ApiServer, LocalHttpApi, Route, default_routes
from localaws.capacity import CounterPoller, routes_for
from localaws.cloudformation import DescribedStack
from localaws.context import LocalLambdaContext
from localaws.environment import become_subreaper
from localaws.faults import FAULTS_FILE_ENV
from localaws.jwt_auth import CognitoJwtVerifier
from localaws.metrics import (
    API_NAMESPACE,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_SAMPLE_SECONDS,
    MetricBuffer,
    Periodic,
    QueueRef,
    QueueSampler,
    api_request_datums,
    metered,
    metrics_client_config,
)
from localaws.moto_process import MotoProcess
from localaws.object_events import Mischief
from localaws.provision import local_outputs, provision
from localaws.runtime import RuntimeConfig, WorkerPool, left, stop_signals_blocked
from localaws.web import PageServer, allow_page_origin, page_origins, page_url
from monitoring.target import (
    LOCAL_CREDENTIALS,
    StackInfo,
    clear_state,
    faults_file,
    for_local,
    report_log,
    write_state,
)
from pipeline import aws
from pipeline.resources import (
    CAPACITY_PUBLISH_MINUTES,
    QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    WORKER_TIMEOUT_SECONDS,
    Env,
    ResourceNames,
)

# The HTTP API's stage as the local API reports it (api.http_api_event's requestContext); its id is LOCAL_API_ID.
LOCAL_API_STAGE = "$default"
# The deployed schedule's default (dashboards.config.AppConfig.metrics_rate_minutes).
DEFAULT_BUCKET_METRICS_SECONDS = 5 * 60
# Locally the scan may run more often than AWS allows; it still needs time for a page and the publish.
MIN_BUCKET_METRICS_TIMEOUT_SECONDS = 30
# The HTTP API integration timeout.
API_HANDLER_TIMEOUT_SECONDS = 29
# stop() returns within this long, whatever the stack was doing: every wait in it ends by one deadline, and what has
# not stopped shortly before it is killed. `imgops local up`'s watchdog (imgops/local.py, FORCED_STOP_SECONDS) allows
# it 3 s more, for the signal to reach the main thread and the interpreter to exit; the tests allow 10 s in all.
STOP_SECONDS = 5.0
# Of which the embedded AWS's share is the last 40 % (2 s): the workers' last logs and metrics go to it before it
# stops. The workers' share ends with their kill (localaws.runtime.KILL_SECONDS).
MOTO_STOP_SHARE = 0.4


def cgroup_label(pid: int | None = None) -> str:
    """The label in the cgroup names of the execution environments of the stack running in process `pid` (default:
    this one); see localaws.environment.cgroup_name."""
    return f"up{pid or os.getpid()}"


@dataclass(frozen=True)
class LocalStackOptions:
    port: int = 0
    api_port: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    prefix: str = "imgops"
    region: str = "us-east-1"
    worker_timeout_seconds: int = WORKER_TIMEOUT_SECONDS
    visibility_timeout_seconds: int = QUEUE_VISIBILITY_TIMEOUT_SECONDS
    log_level: str = "WARNING"
    # CloudWatch metrics like AWS publishes them; off: no sampler, no schedule, no PutMetricData from anyone.
    metrics: bool = True
    # None: the template's schedule rule (rate(5 minutes) as deployed); a number compresses time locally.
    bucket_metrics_every_seconds: int | None = None
    sample_every_seconds: float = DEFAULT_SAMPLE_SECONDS
    metrics_flush_seconds: float = DEFAULT_FLUSH_SECONDS
    # Where the stack's output goes instead of the console, appended: the worker processes' stdout and stderr
    # (REPORT lines, logs, warnings) and every announcement. `imgops loadtest run` keeps it in the run folder.
    log_file: Path | None = None
    # Also give each execution environment Lambda's CPU share of its memory (memory / 1,769 MB of one vCPU).
    cpu_share: bool = False
    # How S3's object events reach the capacity counter: duplicated, held back, lost (localaws.object_events).
    object_events: Mischief = field(default_factory=Mischief)
    # None: the capacity publisher's schedule rule (rate(1 minute) as deployed); a number compresses time locally.
    capacity_publish_every_seconds: float | None = None


class MeteredHttpApi(LocalHttpApi):
    """The local API publishing AWS/ApiGateway per request, as an HTTP API stage does."""

    def __init__(
        self,
        routes: list[Route],
        verifier: CognitoJwtVerifier,
        buffer: MetricBuffer,
        *,
        api_id: str = LOCAL_API_ID,
        stage: str = LOCAL_API_STAGE,
    ) -> None:
        self._buffer = buffer
        self._api_id = api_id
        self._stage = stage
        self._integration = threading.local()
        super().__init__([self._metered(route) for route in routes], verifier)

    def _metered(self, route: Route) -> Route:
        def record(duration_ms: float) -> None:
            self._integration.latency_ms = duration_ms

        handler = metered(
            route.function_name,
            route.handler,
            self._buffer,
            timeout_seconds=API_HANDLER_TIMEOUT_SECONDS,
            on_duration=record,
        )
        return replace(route, handler=handler)

    def respond(self, request: Request) -> Response:
        self._integration.latency_ms = None
        started = time.perf_counter()
        response = super().respond(request)
        latency_ms = (time.perf_counter() - started) * 1000
        self._buffer.add(
            API_NAMESPACE,
            api_request_datums(
                self._api_id,
                self._stage,
                status=response.status_code,
                latency_ms=latency_ms,
                integration_latency_ms=getattr(self._integration, "latency_ms", None),
                timestamp=datetime.now(UTC),
            ),
        )
        return response


def scheduled_event(region: str, rule_name: str) -> dict[str, Any]:
    """The event EventBridge hands a scheduled target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{rule_name}"],
        "detail": {},
    }


def _schedule_rules(info: StackInfo, function_name: str | None = None) -> list[dict[str, Any]]:
    """The EventBridge rules that invoke a function (default: the bucket-metrics one) as the template made them,
    described."""
    from monitoring import s3_metrics

    target = for_local(info)
    function_arn = target.client("lambda").get_function_configuration(
        FunctionName=function_name or s3_metrics.function_name(info.prefix)
    )["FunctionArn"]
    events = target.client("events")
    names = events.list_rule_names_by_target(TargetArn=function_arn)["RuleNames"]
    return [dict(events.describe_rule(Name=name)) for name in names]


def schedule_seconds(info: StackInfo) -> int:
    """How often the bucket-metrics function runs: its EventBridge rule's `rate(…)`, as the template made it."""
    for rule in _schedule_rules(info):
        expression = str(rule.get("ScheduleExpression", ""))
        match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
        if match:
            unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
            return int(match.group(1)) * unit
    return DEFAULT_BUCKET_METRICS_SECONDS


def schedule_enabled(info: StackInfo, function_name: str | None = None) -> bool:
    """Whether a function's (default: the bucket-metrics one's) EventBridge schedule is enabled: a disabled rule
    invokes nothing."""
    rules = [rule for rule in _schedule_rules(info, function_name) if rule.get("ScheduleExpression")]
    return not rules or any(rule.get("State") == "ENABLED" for rule in rules)


def bucket_metrics_timeout_seconds(every_seconds: int) -> int:
    from monitoring.s3_metrics import timeout_seconds

    return max(timeout_seconds(every_seconds), MIN_BUCKET_METRICS_TIMEOUT_SECONDS)


class LocalStack:
    def __init__(self, options: LocalStackOptions, *, announce: Callable[[str], None] | None = None) -> None:
        """`announce` receives one line per bucket-metrics run and per metrics problem (the CLI prints them); with
        `options.log_file` they are also written there."""
        self.options = options
        self.bucket_metrics_every_seconds: int | None = None  # known once started: the rule's, or the option
        self._log_lock = threading.Lock()
        self._moto = MotoProcess(
            options.port,
            metrics=options.metrics,
            flush_every=options.metrics_flush_seconds,
            log_file=options.log_file,
        )
        self._api: ApiServer | None = None
        self._workers: WorkerPool | None = None
        self._counter: CounterPoller | None = None
        self._metrics: MetricBuffer | None = None
        self._schedules: list[Periodic] = []
        self._announce = announce
        self.info: StackInfo | None = None
        self._saved_environment: dict[str, str] | None = None
        # Set when stop() begins: no scheduled run starts after that (os.environ is restored, clients forgotten).
        self._stopping = threading.Event()
        self._quiet = False  # once stopped: a daemon thread's late line goes to the log file only, not to announce

    def start(self) -> StackInfo:
        options = self.options
        self._saved_environment = dict(os.environ)  # restored by stop(): the stack may run inside another program
        forget_handler_state()  # what that program's handlers cached points elsewhere (another endpoint, names)
        become_subreaper()  # a killed poller's execution environment is then reaped here, and its cgroup removed
        if options.log_file is not None:
            options.log_file.parent.mkdir(parents=True, exist_ok=True)
        os.environ.update(LOCAL_CREDENTIALS)
        service_models.install()  # the clients provisioning, the API and the schedules make
        with stop_signals_blocked():  # Ctrl-C reaches moto's process too: it must not die of it while starting
            endpoint = self._moto.start()
        info = provision(
            ResourceNames(options.prefix),
            endpoint_url=endpoint,
            region=options.region,
            visibility_timeout=options.visibility_timeout_seconds,
            worker_timeout=options.worker_timeout_seconds,
        )
        environment = {
            **info.handler_environment(),
            **LOCAL_CREDENTIALS,
            "POWERTOOLS_LOG_LEVEL": options.log_level,
            "AWS_REGION": options.region,
            FAULTS_FILE_ENV: str(faults_file()),
            Env.WORKER_TIMEOUT_SECONDS: str(
                options.worker_timeout_seconds
            ),  # `imgops faults set` reaches the workers through it
            **capacity_environment(info),
        }
        os.environ.update(environment)  # the API's handlers run in this process
        verifier = CognitoJwtVerifier(issuer=info.issuer, client_id=info.user_pool_client_id, jwks_url=info.jwks_url)
        names = ResourceNames(options.prefix)
        # The deployed function names, so handler contexts and AWS/Lambda metrics say what AWS would.
        physical = {"presign": names.presign_function, "read-api": names.read_api_function}
        routes = [replace(r, function_name=physical.get(r.function_name, r.function_name)) for r in default_routes()]
        if options.metrics:
            cloudwatch = for_local(info).client("cloudwatch", config=metrics_client_config())
            self._metrics = MetricBuffer(cloudwatch, flush_every=options.metrics_flush_seconds, on_error=self._say)
            self._metrics.start()
            api: LocalHttpApi = MeteredHttpApi(routes, verifier, self._metrics)
        else:
            api = LocalHttpApi(routes, verifier)
        # The upload page (CloudFront on AWS) in front of the API, and the upload bucket's CORS allowing it.
        self._api = ApiServer(PageServer(api, info), options.api_port)
        self._api.start()
        allow_page_origin(info, self._api.url)
        self._moto.allow_origins(page_origins(self._api.url))  # Cognito's CORS (sign-in) for the page alone
        info = replace(info, api_url=self._api.url)
        # `--stack-name <prefix>-pipeline` finds this stack as it finds a deployed one (localaws.cloudformation).
        template = stack_template(options.prefix)
        self._moto.publish_stack(
            DescribedStack.create(
                f"{options.prefix}-pipeline",
                info.region,
                str(template.get("Description", "")),
                local_outputs(template, info),
            )
        )
        self._workers = WorkerPool(
            RuntimeConfig(
                queue_url=info.queue_url,
                queue_arn=info.queue_arn,
                region=info.region,
                function_name=ResourceNames(options.prefix).worker_function,
                report_log=report_log(),
                timeout_seconds=options.worker_timeout_seconds,
                metrics_flush_seconds=options.metrics_flush_seconds if options.metrics else 0,
                output_log=options.log_file,
                cpu_share=options.cpu_share,
                cgroup_label=cgroup_label(),
            ),
            options.workers,
            environment,
        )
        report_log().parent.mkdir(parents=True, exist_ok=True)
        self._workers.start()
        self._start_capacity_counter(info)
        # Like Lambda starting a fresh execution environment when one dies (a SIGKILL, an OOM kill).
        supervisor = Periodic(
            "worker-supervisor", 1.0, self._unless_stopping(self._workers.replace_dead), on_error=self._say
        )
        self._schedules.append(supervisor)  # before it starts: stop() stops what it knows of
        supervisor.start()
        if self._metrics is not None:
            self._start_schedules(info, self._metrics, self._workers)
        write_state(info)
        self.info = info
        self._log(
            f"local stack up: AWS {endpoint}, API {info.api_url}, upload page {page_url(info.api_url)}, "
            f"{options.workers} worker process(es)"
        )
        return info

    def _start_capacity_counter(self, info: StackInfo) -> None:
        """S3's object events to the capacity queue (as the template's rule routes them), and the counter's poller."""
        from monitoring import capacity_counter

        for buckets, route in routes_for(info, self.options.object_events):
            self._moto.route_object_events(buckets, route)
        names = ResourceNames(info.prefix)
        self._counter = CounterPoller(
            info,
            queue_name=names.capacity_queue,
            function_name=names.capacity_counter_function,
            handler=capacity_counter.handler,
            buffer=self._metrics,
            unless_stopping=lambda: not self._stopping.is_set(),
        )
        self._counter.start()

    def expire(self, bucket: str, keys: list[str]) -> int:
        """Expire objects as a lifecycle rule does when their day comes (moto runs no lifecycle rules): they go, and
        their events say `Lifecycle Expiration`. Returns how many existed."""
        return self._moto.expire(bucket, keys)

    def pause_capacity_counter(self) -> None:
        """Disable the counter's event source mapping: object events wait in the capacity queue (its lag grows)."""
        if self._counter is not None:
            self._counter.pause()

    def resume_capacity_counter(self) -> None:
        if self._counter is not None:
            self._counter.resume()

    def _start_schedules(self, info: StackInfo, buffer: MetricBuffer, workers: WorkerPool) -> None:
        """The SQS samplers (every minute, as AWS publishes), the capacity publisher's schedule and the
        reconciler's (the bucket-metrics Lambda)."""
        names = ResourceNames(info.prefix)
        sqs = for_local(info).client("sqs", config=metrics_client_config())
        sampler = QueueSampler(
            sqs,
            buffer,
            work=QueueRef(names.work_queue, info.queue_url),
            dead_letters=QueueRef(names.dead_letter_queue, info.dlq_url),
            signals=workers.signals,
        )
        capacity_sampler = QueueSampler(
            sqs,
            buffer,
            work=QueueRef(names.capacity_queue, sqs.get_queue_url(QueueName=names.capacity_queue)["QueueUrl"]),
            dead_letters=QueueRef(
                names.capacity_dead_letter_queue,
                sqs.get_queue_url(QueueName=names.capacity_dead_letter_queue)["QueueUrl"],
            ),
            signals=self._counter.signals if self._counter is not None else None,
        )
        every = self.options.bucket_metrics_every_seconds or schedule_seconds(info)
        self.bucket_metrics_every_seconds = every
        sample = self._unless_stopping(sampler.sample)
        sample_capacity = self._unless_stopping(capacity_sampler.sample)
        scan = self._unless_stopping(self._bucket_metrics_run(info, buffer, every))
        publish_every = self.options.capacity_publish_every_seconds or CAPACITY_PUBLISH_MINUTES * 60
        publish = self._unless_stopping(self._capacity_publisher_run(info, buffer, publish_every))
        schedules = [
            Periodic("sqs-sampler", self.options.sample_every_seconds, sample, on_error=self._say),
            Periodic("capacity-sqs-sampler", self.options.sample_every_seconds, sample_capacity, on_error=self._say),
            Periodic("capacity-publisher", publish_every, publish, on_error=self._say),
            Periodic("bucket-metrics", every, scan, on_error=self._say),
        ]
        for schedule in schedules:
            # First runs here, not on the threads: a baseline sample and the scan at start (empty buckets, fast),
            # and boto3's default session creates the handler's clients on this thread only (not thread-safe).
            schedule.run_now()
            self._schedules.append(schedule)  # next to the worker supervisor: stop() ends them all
            schedule.start()

    def _unless_stopping(self, task: Callable[[], object]) -> Callable[[], None]:
        """`task`, run only if stop() has not begun: a schedule's thread may outlive stop(), and a late run would
        build its clients from the environment stop() restored (the user's real AWS, say)."""

        def run() -> None:
            if not self._stopping.is_set():
                task()

        return run

    def _capacity_publisher_run(self, info: StackInfo, buffer: MetricBuffer, every: float) -> Callable[[], None]:
        """One scheduled invocation of the capacity publisher, metered like the worker."""
        from monitoring import capacity_handlers, capacity_publisher

        function_name = ResourceNames(info.prefix).capacity_publisher_function
        timeout = min(capacity_handlers.PUBLISHER_TIMEOUT_SECONDS, max(1.0, every))
        handler = metered(function_name, capacity_publisher.handler, buffer, timeout_seconds=timeout)

        def run() -> None:
            if not schedule_enabled(info, function_name):  # `aws events disable-rule`: the schedule stops invoking
                return
            context = LocalLambdaContext.create(
                function_name, timeout_seconds=int(timeout), memory_mb=capacity_handlers.PUBLISHER_MEMORY_MB
            )
            handler(scheduled_event(info.region, f"{info.prefix}-capacity-publish"), context)

        return run

    def _bucket_metrics_run(self, info: StackInfo, buffer: MetricBuffer, every: int) -> Callable[[], None]:
        """One scheduled invocation of the reconciler (monitoring.reconcile.handler), metered like the worker."""
        from monitoring import reconcile, s3_metrics

        function_name = s3_metrics.function_name(info.prefix)
        timeout = bucket_metrics_timeout_seconds(every)
        handler = metered(function_name, reconcile.handler, buffer, timeout_seconds=timeout)

        def run() -> None:
            if not schedule_enabled(info):  # `aws events disable-rule`: the schedule stops invoking
                return
            context = LocalLambdaContext.create(function_name, timeout_seconds=timeout, memory_mb=s3_metrics.MEMORY_MB)
            started = time.perf_counter()
            try:
                report = handler(scheduled_event(info.region, f"{info.prefix}-bucket-metrics"), context)
            except s3_metrics.ScanFailed as exc:
                self._say(f"capacity reconciler: {exc}")
                return
            elapsed_ms = (time.perf_counter() - started) * 1000
            self._say(f"capacity reconciled: {describe_reconciliation(report)} ({elapsed_ms:.0f} ms)")

        return run

    def _say(self, message: str) -> None:
        self._log(message)
        if self._announce is not None and not self._quiet:
            self._announce(message)

    def _log(self, message: str) -> None:
        """One timestamped line in `options.log_file`, if any (the workers append their lines to it too)."""
        if self.options.log_file is None:
            return
        with self._log_lock, self.options.log_file.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC {message}\n")

    def pause_workers(self) -> None:
        """Stop the worker's polling, as disabling its SQS trigger does (`resume_workers` enables it again)."""
        if self._workers is not None:
            self._workers.pause()

    def resume_workers(self) -> None:
        if self._workers is not None:
            self._workers.resume()

    def supervise(self, interval: float = 1.0) -> None:
        """Block until interrupted (dead workers are replaced in the background from start on)."""
        while True:
            time.sleep(interval)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Stop whatever start() got to within `timeout` seconds, wherever it was interrupted (Ctrl-C may come at any
        moment): a worker still busy near the end of its share, or one blocked writing output nobody reads, is killed
        with its execution environment, and so is the embedded AWS near the end. Returns whether every process of
        the stack is gone (False: one killed had not exited by the deadline; the interpreter's exit waits for it)."""
        self._stopping.set()
        stopped = self._stop_services(time.monotonic() + max(0.0, timeout))
        self._quiet = True
        if self._saved_environment is not None:
            self._log("local stack stopped")
            os.environ.clear()
            os.environ.update(self._saved_environment)
            self._saved_environment = None
            forget_handler_state()  # the in-process handlers' clients and settings were this stack's
        return stopped

    def _stop_services(self, deadline: float) -> bool:
        """Every wait here ends by `deadline` (a time.monotonic()), each derived from it: none has a minimum of its
        own that could push the stop past it."""
        clear_state()  # first: other commands no longer find a stack that is going away
        # Everything is told at once, then waited for, so the waits overlap rather than add up.
        for schedule in self._schedules:
            schedule.stop(0)
        if self._workers is not None:
            self._workers.request_stop(timeout=0)  # WorkerPool.stop waits for a spawn under way
        if self._counter is not None:
            self._counter.stop(0)
        api_stopped = self._stop_api()
        workers_deadline = deadline - left(deadline) * MOTO_STOP_SHARE
        for schedule in self._schedules:
            schedule.stop(left(workers_deadline))  # a daemon thread: one still running then is left (it is quiet)
        workers_stopped = self._workers.stop(left(workers_deadline)) if self._workers is not None else True
        if self._counter is not None:
            self._counter.stop(left(workers_deadline))  # a daemon thread: one still in a batch then is left
        api_stopped.join(left(workers_deadline))  # a daemon thread too: a shutdown still waiting then is left
        if self._metrics is not None:  # before moto goes: the last datums still have somewhere to go
            self._metrics.close(left(deadline) / 2)
        return self._moto.stop(left(deadline)) and workers_stopped

    def _stop_api(self) -> threading.Thread:
        """The local API's shutdown, on a thread of its own: it waits for the serving loop to notice (and for good if
        it never started: Ctrl-C between creating the server and starting it)."""
        stopping = threading.Thread(
            target=self._api.stop if self._api is not None else lambda: None, name="local-api-stop", daemon=True
        )
        stopping.start()
        return stopping

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def forget_handler_state() -> None:
    """Drop what the handlers that run in this process (the API's, the bucket-metrics schedule's, an in-process
    worker) cached from the environment: clients with their endpoint, and settings with the resource names. A stack
    started after another one, or after a program's own use of the handlers, would otherwise talk to the old ones."""
    from monitoring import capacity_handlers, reconcile
    from pipeline import presign, read_api, worker

    aws.forget_clients()
    for cached in (
        presign._settings,
        read_api._settings,
        reconcile._s3,
        reconcile._cloudwatch,
        capacity_handlers._dynamodb,
        capacity_handlers.cloudwatch_client,
        worker._deps,
    ):
        cached.cache_clear()


def capacity_environment(info: StackInfo) -> dict[str, str]:
    """What the capacity functions' configurations set (the template's), for their handlers in this process; the
    inventory reports are read with DuckDB here (Athena on AWS)."""
    from monitoring import s3_metrics

    names = ResourceNames(info.prefix)
    lambda_ = for_local(info).client("lambda")
    environment: dict[str, str] = {}
    for function in (
        names.capacity_counter_function,
        names.capacity_publisher_function,
        s3_metrics.function_name(info.prefix),
    ):
        configuration = lambda_.get_function_configuration(FunctionName=function)
        variables = configuration.get("Environment", {}).get("Variables", {})
        wanted = {
            Env.CAPACITY_TABLE,
            Env.CAPACITY_SHARDS,
            Env.CAPACITY_QUEUE,
            Env.CAPACITY_DEAD_LETTER_QUEUE,
            Env.INVENTORY_BUCKET,
        }
        environment.update({name: value for name, value in variables.items() if name in wanted})
    environment[Env.INVENTORY_ENGINE] = "duckdb"
    return environment


def describe_reconciliation(report: dict[str, Any]) -> str:
    """`bucket: drift N objects, M bytes (source)` per bucket from monitoring.reconcile.reconcile's report."""
    parts = []
    for bucket in report.get("buckets", []):
        if bucket.get("snapshot") is None:
            parts.append(f"{bucket['bucket']} not checked ({bucket['source']})")
            continue
        corrected = f", {bucket['corrected']} owner(s) corrected" if bucket.get("corrected") else ""
        parts.append(
            f"{bucket['bucket']} drift {bucket['drift_objects']} objects, {bucket['drift_bytes']} bytes "
            f"({bucket['source']}{corrected})"
        )
    return "; ".join(parts) + f"; {report.get('datums', 0)} datums"
