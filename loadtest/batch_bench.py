"""What a batch costs: the real worker handler on one SQS batch of 12 MP JPEGs, one record at a time vs overlapped.

Lambda bills an invocation's duration, rounded up to 1 ms, whatever the function does meanwhile: waiting for S3 is
billed like decoding. Overlapping the batch's I/O with its decoding (pipeline.worker.process_batch) should bring
the billed time per image down towards its CPU time at >= 1 vCPU. This measures both on the same code, switched by
IMGOPS_WORKER_OVERLAP:

- an embedded AWS (moto's server, in a process of its own, over HTTP) holds a bucket, a table and a topic;
- the handler runs in a local Lambda execution environment (localaws.environment) configured as the function
  at `memory_mb` (default 1,769 MB = 1 vCPU): a cgroup memory cap and a CFS quota of its CPU share; one environment
  per mode, warmed up first (init and the first invocation are Lambda's cold start, not measured);
- each run uploads `images` fresh copies of the corpus's 12 MP JPEGs and invokes the function once with a batch of
  their S3 events; modes alternate run by run, so background load lands on both alike;
- per invocation: the duration as the runtime measures it (Lambda's Duration), billed = ceil(duration), the
  environment process's CPU time (all its threads, from /proc: 10 ms ticks), how long its main thread waited for a
  CPU (schedstat run_delay: other load on this machine, or the quota), and Max Memory Used;
- `latencies`: each request the handler makes first waits as the spec says (localaws.faults' latency hook:
  `30` for every request, `s3=30,dynamodb=8,sns=20` per service). With none the embedded AWS answers in a
  millisecond or two, far faster than AWS; the default second setting is closer to AWS's in-region first-byte
  times. Neither models S3's transfer time for the 3 MB GET (moto on loopback streams it in a few ms).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localaws.cgroups import cpu_writable, memory_writable
from localaws.context import sqs_upload_record
from localaws.environment import ExecutionEnvironment, FunctionConfig, Outcome
from localaws.faults import LATENCY_ENV, parse_latency
from monitoring.target import LOCAL_CREDENTIALS, local_session
from pipeline.keys import upload_key
from pipeline.resources import WORKER_BATCH_SIZE, WORKER_TIMEOUT_SECONDS, Env

ONE_VCPU_MB = 1769
MODES = ("sequential", "overlapped")  # IMGOPS_WORKER_OVERLAP=0 and =1
# The embedded AWS as it answers, and request latencies more like AWS's in-region ones (first byte, per request).
AWS_LIKE_LATENCY = "s3=30,dynamodb=8,sns=20"
DEFAULT_LATENCIES = ("0", AWS_LIKE_LATENCY)
REGION = "us-east-1"
OWNER = "imgops-bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BatchBenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class BatchBenchOptions:
    images: int = WORKER_BATCH_SIZE
    runs: int = 5
    memory_mb: int = ONE_VCPU_MB
    latencies: tuple[str, ...] = DEFAULT_LATENCIES  # localaws.faults.parse_latency specs

    def __post_init__(self) -> None:
        for latency in self.latencies:
            parse_latency(latency)  # FaultSpecError when malformed


@dataclass
class ModeResult:
    mode: str
    latency: str
    images: int
    durations_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    wait_ms: list[float] = field(default_factory=list)  # the handler's thread runnable but not running
    max_memory_mb: list[int] = field(default_factory=list)

    @property
    def billed_ms_per_image(self) -> float:
        return statistics.median(math.ceil(d) for d in self.durations_ms) / self.images

    @property
    def cpu_ms_per_image(self) -> float:
        return statistics.median(self.cpu_ms) / self.images

    @property
    def wait_ms_per_image(self) -> float:
        return statistics.median(self.wait_ms) / self.images

    @property
    def billed_per_cpu(self) -> float:
        return self.billed_ms_per_image / self.cpu_ms_per_image if self.cpu_ms_per_image else float("nan")


@dataclass(frozen=True)
class BatchBenchResult:
    options: BatchBenchOptions
    results: list[ModeResult]
    capped: bool  # memory cap and CPU share really applied (cgroups writable)

    def row(self, mode: str, latency: str) -> ModeResult:
        return next(r for r in self.results if r.mode == mode and r.latency == latency)


def bench_table(result: BatchBenchResult) -> list[dict[str, str]]:
    rows = []
    for latency in result.options.latencies:
        before = result.row("sequential", latency)
        for mode in MODES:
            row = result.row(mode, latency)
            rows.append(
                {
                    "latency": describe_latency(latency),
                    "worker": mode,
                    "billed ms": f"{row.billed_ms_per_image:.0f}",
                    "CPU ms": f"{row.cpu_ms_per_image:.0f}",
                    "billed/CPU": f"{row.billed_per_cpu:.2f}",
                    "wait ms": f"{row.wait_ms_per_image:.0f}",
                    "vs seq.": f"{row.billed_ms_per_image / before.billed_ms_per_image:.2f}×",
                    "max MB": str(max(row.max_memory_mb)),
                }
            )
    return rows


def describe_latency(latency: str) -> str:
    latencies = parse_latency(latency)
    if not any(latencies.values()):
        return "none"
    return " ".join(f"{'all' if k == '*' else k}+{v:g}" for k, v in latencies.items())


# --- The run ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_aws() -> Iterator[str]:
    from localaws.moto_process import MotoProcess

    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    try:
        yield endpoint
    finally:
        moto.stop()


@dataclass(frozen=True)
class _Resources:
    endpoint: str
    bucket: str
    table: str
    topic_arn: str

    def session(self) -> Any:
        return local_session(REGION)

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint)


def _create(endpoint: str) -> _Resources:
    name = f"imgops-bench-{uuid.uuid4().hex[:8]}"
    session = local_session(REGION)
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "imageId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "imageId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic_arn = str(session.client("sns", endpoint_url=endpoint).create_topic(Name=name)["TopicArn"])
    return _Resources(endpoint, name, name, topic_arn)


def _environment(resources: _Resources) -> dict[str, str]:
    """The process environment every execution environment starts from: no shell AWS settings, the embedded AWS."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGOPS_", "POWERTOOLS_"))}
    return {
        **inherited,
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL": resources.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def _function(resources: _Resources, mode: str, latency: str, memory_mb: int) -> FunctionConfig:
    environment = {
        Env.UPLOAD_BUCKET: resources.bucket,
        Env.PROCESSED_BUCKET: resources.bucket,
        Env.IMAGES_TABLE: resources.table,
        Env.TOPIC_ARN: resources.topic_arn,
        Env.WORKER_OVERLAP: "1" if mode == "overlapped" else "0",
        "POWERTOOLS_LOG_LEVEL": "INFO",  # as the CDK app sets it: the worker logs a line per image
    }
    if any(parse_latency(latency).values()):
        environment[LATENCY_ENV] = latency
    return FunctionConfig(
        name=f"imgops-bench-{mode}",
        handler="pipeline.worker.handler",
        memory_mb=memory_mb,
        timeout_seconds=WORKER_TIMEOUT_SECONDS,
        environment=environment,
    )


class _Uploader:
    """Fresh copies of the sources for each batch: the worker claims each object version once."""

    def __init__(self, resources: _Resources, files: Sequence[Path]) -> None:
        self._resources = resources
        self._s3 = resources.client("s3")
        self._sources = []
        for index, path in enumerate(files):
            key = f"bench-sources/{index}-{path.name}"
            self._s3.put_object(Bucket=resources.bucket, Key=key, Body=path.read_bytes(), ContentType="image/jpeg")
            self._sources.append(key)

    def batch(self, count: int) -> dict[str, Any]:
        records = []
        for index in range(count):
            key = upload_key(OWNER, str(uuid.uuid4()), "jpg")
            source = self._sources[index % len(self._sources)]
            copied = self._s3.copy_object(
                Bucket=self._resources.bucket, Key=key, CopySource={"Bucket": self._resources.bucket, "Key": source}
            )
            etag = str(copied["CopyObjectResult"]["ETag"]).strip('"')
            records.append(sqs_upload_record(self._resources.bucket, key, etag, region=REGION))
        return {"Records": records}


def process_cpu_ms(pid: int) -> float:
    """utime + stime of a process, every thread it ever had included (/proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


def run_delay_ms(pid: int) -> float:
    """How long the process's main thread (the handler's: it decodes) was runnable but waited for a CPU, by the
    kernel's schedstat: other load on this machine, or the CFS quota."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e6


def _invoke(environment: ExecutionEnvironment, event: dict[str, Any]) -> tuple[Outcome, float, float]:
    if not environment.alive:
        environment.start()
    pid = environment.pid
    assert pid is not None
    cpu, waited = process_cpu_ms(pid), run_delay_ms(pid)
    outcome = environment.invoke(event, str(uuid.uuid4()))
    if outcome.status != "success":
        raise BatchBenchError(f"the worker's invocation ended with {outcome.status}: {outcome.error_message}")
    failures = (outcome.result or {}).get("batchItemFailures", [])
    if failures:
        raise BatchBenchError(f"the worker reported {len(failures)} failed record(s); see its log above")
    return outcome, process_cpu_ms(pid) - cpu, run_delay_ms(pid) - waited


def run_batch_bench(
    files: Sequence[Path],
    options: BatchBenchOptions | None = None,
    *,
    on_step: Callable[[str], object] = lambda _step: None,
    on_output: Callable[[str], None] = lambda _line: None,
) -> BatchBenchResult:
    options = options or BatchBenchOptions()
    results = [ModeResult(mode, latency, options.images) for latency in options.latencies for mode in MODES]
    with embedded_aws() as endpoint:
        resources = _create(endpoint)
        uploader = _Uploader(resources, files)
        base = _environment(resources)
        for latency in options.latencies:
            environments = {
                mode: ExecutionEnvironment(
                    _function(resources, mode, latency, options.memory_mb),
                    base_environment=base,
                    on_output=on_output,
                    cpu_share=True,
                )
                for mode in MODES
            }
            try:
                for mode, environment in environments.items():
                    on_step(f"Warming up the {mode} worker ({describe_latency(latency)})…")
                    _invoke(environment, uploader.batch(2))  # cold start: init, first-call costs
                for run in range(options.runs):
                    order = MODES if run % 2 == 0 else MODES[::-1]
                    for mode in order:
                        on_step(f"Run {run + 1}/{options.runs}: {mode}, {describe_latency(latency)}…")
                        outcome, cpu_ms, wait_ms = _invoke(environments[mode], uploader.batch(options.images))
                        row = next(r for r in results if r.mode == mode and r.latency == latency)
                        row.durations_ms.append(outcome.duration_ms)
                        row.cpu_ms.append(cpu_ms)
                        row.wait_ms.append(wait_ms)
                        row.max_memory_mb.append(outcome.max_memory_mb)
            finally:
                for environment in environments.values():
                    environment.stop()
    return BatchBenchResult(options, results, capped=memory_writable() and cpu_writable())


def as_json(result: BatchBenchResult) -> dict[str, Any]:
    return {
        "load_average": os.getloadavg(),
        "options": {**result.options.__dict__, "latencies": list(result.options.latencies)},
        "capped": result.capped,
        "results": [
            {
                "mode": r.mode,
                "latency": r.latency,
                "images": r.images,
                "durations_ms": r.durations_ms,
                "billed_ms": [math.ceil(d) for d in r.durations_ms],
                "cpu_ms": r.cpu_ms,
                "wait_ms": r.wait_ms,
                "max_memory_mb": r.max_memory_mb,
                "billed_ms_per_image": r.billed_ms_per_image,
                "cpu_ms_per_image": r.cpu_ms_per_image,
            }
            for r in result.results
        ],
    }
