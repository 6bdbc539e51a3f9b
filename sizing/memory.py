"""Lambda memory sizing you can deploy: the worker measured at each memory size, and the input that must not kill it.

Locally (`LocalSizing`), against temporary resources of its own on the local stack (a bucket, a table and a
topic, removed afterwards: the pipeline's own are never touched), the real worker handler runs in a probe process
(sizing.probe) over a sample stratified by the load-test mix:

- once with no caps: CPU time, wall time and peak RSS per image, from which the duration at each size is
  *modeled* (`modeled_duration_ms`: CPU time x max(1, 1,769 MB / memory) + the measured waiting time);
- at each memory size under a real cgroup memory cap *and* a CFS quota of that size's CPU share
  (memory / 1,769 MB of one CPU; above 1,769 MB the quota exceeds one CPU, so a single-threaded handler is not
  throttled at all), which *measures* the duration there; init and the first invocation (a cold start) are
  reported apart and never enter the statistics;
- the worst-case floor: the most memory-hungry accepted input (every format and mode the worker accepts is
  measured at a few megapixels and the hungriest is generated at the pixel cap) under each memory cap.
  Sizes it kills (or whose modeled duration on it exceeds the function's timeout) are never recommended; for
  each of them, the pixel cap that would fit is estimated from a linear fit of peak memory against pixels
  (three sizes of the hungry input, no caps) and then verified under that size's real memory cap.
  Where no memory cap can be created (neither cgroup v1 nor v2: `localaws.cgroups.detect`), nothing can be
  proven about any size, so sizing refuses at once with `NO_CAPS` and why, rather than recommend from the model.

A machine calibration runs first: a fixed CPU-bound loop at CFS quotas of 100, 50 and 25 %, whose wall-time
ratios say how this machine's throttling compares with the linear share the model assumes.

The worker's memory size, pixel cap, timeout and architecture come from the synthesized template (the worker
function's MemorySize, IMGOPS_MAX_PIXELS, Timeout and Architectures), never from Python constants.
On AWS (`aws_sizing`) the deployed function is set to each size and a batch goes through the pipeline; its
REPORT lines are the measurements, and what the batches wrote (items, thumbnails, originals) is removed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from loadtest.corpus import CorpusImage, SampleImage, hungry_candidates, hungry_image
from localaws.cgroups import Cgroup, cpu_quota_us, cpu_writable, detect, memory_writable
from monitoring.target import LOCAL_CREDENTIALS, Target
from pipeline.errors import ImgopsError
from pipeline.keys import image_id_for, upload_key
from pipeline.resources import SUPPORTED_CONTENT_TYPES, Env
from sizing.probe import ProbeRun, run_probe, run_spin

if TYPE_CHECKING:
    from loadtest.runner import RunResult
    from loadtest.targets import LoadTarget

ONE_VCPU_MB = 1769
DEFAULT_MEMORY_SIZES = (128, 256, 512, 1024, 1536, 1769, 3008)
DEFAULT_TRIM = 0.2  # Power Tuning's discardTopBottom
DEFAULT_BALANCED_WEIGHT = 0.5
CALIBRATION_QUOTAS = (100, 50, 25)  # % of one CPU
CALIBRATION_LOOP = 5_000_000  # iterations of a Python loop: ~0.25 s of CPU here
CANDIDATE_PIXELS = 4_000_000  # each accepted format and mode is measured at this size to find the hungriest
FIT_FRACTIONS = (0.25, 0.5, 1.0)  # of the pixel cap: the hungry input's peak memory is fitted over these
HEADROOM = 0.05  # of a memory size kept free when estimating the pixel cap that fits it
VERIFY_TRIES = 3
SIZING_OWNER = "imgops-sizing"  # the `user-uploads/<sub>/` the probe's uploads go under
WORKER_HANDLER = "pipeline.worker.handler"
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # pipeline.settings' default, when the template sets none
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
WORKER_MEMORY_CONTEXT = "imgops:worker-memory-mb"  # dashboards.config.WORKER_MEMORY


class SizingError(ImgopsError, RuntimeError):
    pass


# Without a memory cap the worst accepted input cannot be run under any size: no size is proven to survive it, and
# an uncapped peak RSS is no proof (a cap also charges page cache, kernel memory and tmpfs, and only it kills).
NO_CAPS = (
    "no memory cap available here (cgroup v1 or v2): no size is recommended that the worst accepted input "
    "was not proven to survive"
)


def no_caps_reason() -> str:
    """Why sizing recommends nothing here, in one line: NO_CAPS and why each cgroup hierarchy is unusable."""
    return f"{NO_CAPS} ({detect().reason})"


def require_memory_caps() -> None:
    """Refuse before any work where no memory cap can be created: every recommendation would be unproven."""
    if not memory_writable():
        raise SizingError(no_caps_reason())


# --- The worker as the template defines it ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """The worker function of the synthesized template, as far as sizing is concerned."""

    function_name: str
    memory_mb: int
    max_pixels: int
    architecture: str
    timeout_seconds: int
    max_upload_bytes: int
    environment: Mapping[str, str] = field(default_factory=dict)  # the literal variables (no tokens)
    table_key_schema: tuple[dict[str, str], ...] = ({"AttributeName": "imageId", "KeyType": "HASH"},)
    table_attributes: tuple[dict[str, str], ...] = ({"AttributeName": "imageId", "AttributeType": "S"},)


def worker_spec(template: Mapping[str, Any]) -> WorkerSpec:
    """Read the worker's MemorySize, IMGOPS_MAX_PIXELS, Timeout and Architectures (and its table's key schema)."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    functions = [
        r["Properties"]
        for r in resources.values()
        if r.get("Type") == "AWS::Lambda::Function" and r.get("Properties", {}).get("Handler") == WORKER_HANDLER
    ]
    if len(functions) != 1:
        raise SizingError(f"the template has {len(functions)} functions with handler {WORKER_HANDLER}, not one")
    worker = functions[0]
    variables: Mapping[str, Any] = worker.get("Environment", {}).get("Variables", {})
    if Env.MAX_PIXELS not in variables:
        raise SizingError(f"the template's worker sets no {Env.MAX_PIXELS}: its pixel cap must be explicit")
    literal = {name: str(value) for name, value in variables.items() if isinstance(value, str | int)}
    schema: tuple[dict[str, str], ...] = WorkerSpec.table_key_schema
    attributes: tuple[dict[str, str], ...] = WorkerSpec.table_attributes
    table_ref = variables.get(Env.IMAGES_TABLE)
    if isinstance(table_ref, dict) and isinstance(table_ref.get("Ref"), str) and table_ref["Ref"] in resources:
        table = resources[table_ref["Ref"]].get("Properties", {})
        schema = tuple(table.get("KeySchema", schema))
        attributes = tuple(table.get("AttributeDefinitions", attributes))
    return WorkerSpec(
        function_name=str(worker.get("FunctionName", "")),
        memory_mb=int(worker.get("MemorySize", 128)),
        max_pixels=int(variables[Env.MAX_PIXELS]),
        architecture=str((worker.get("Architectures") or ["x86_64"])[0]),
        timeout_seconds=int(worker.get("Timeout", 3)),
        max_upload_bytes=int(literal.get(Env.MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES)),
        environment=literal,
        table_key_schema=schema,
        table_attributes=attributes,
    )


# --- The model and the prices (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One invocation with no caps: what the model starts from (also what sizing.json keeps for `imgops cost`)."""

    image: str
    wall_ms: float
    cpu_ms: float
    peak_rss_mb: float

    @property
    def io_ms(self) -> float:
        return max(0.0, self.wall_ms - self.cpu_ms)


def cpu_stretch(memory_mb: int) -> float:
    """How much longer single-threaded CPU work takes at `memory_mb` than on one whole vCPU."""
    return max(1.0, ONE_VCPU_MB / memory_mb)


def modeled_duration_ms(measurement: Measurement, memory_mb: int) -> float:
    """CPU time stretched by the CPU share below 1 vCPU, plus the measured waiting time."""
    return measurement.cpu_ms * cpu_stretch(memory_mb) + measurement.io_ms


def invocation_cost(duration_ms: float, memory_mb: int, *, gb_second: float, per_request: float) -> float:
    """Lambda bills each invocation's duration rounded up to 1 ms, plus the request charge."""
    return math.ceil(duration_ms) / 1000 * memory_mb / 1024 * gb_second + per_request


def sizing_table(
    measurements: list[Measurement],
    memory_sizes: tuple[int, ...],
    *,
    gb_second: float,
    per_request: float,
    oom: dict[int, bool | None],
) -> pd.DataFrame:
    """The model alone, every measurement weighted equally (no sample weights, no trimming)."""
    rows = []
    for memory in memory_sizes:
        durations = pd.Series([modeled_duration_ms(m, memory) for m in measurements])
        costs = [invocation_cost(d, memory, gb_second=gb_second, per_request=per_request) for d in durations]
        rows.append(
            {
                "memory_mb": memory,
                "duration_p50_ms": round(float(durations.quantile(0.5)), 1),
                "duration_p95_ms": round(float(durations.quantile(0.95)), 1),
                "duration_mean_ms": round(float(durations.mean()), 1),
                "billed_ms_mean": round(float(sum(math.ceil(d) for d in durations) / len(durations)), 1),
                "cost_per_1000_images_usd": round(sum(costs) / len(costs) * 1000, 6),
                "oom": {True: "yes", False: "no", None: "not checked"}[oom.get(memory)],
            }
        )
    return pd.DataFrame(rows).set_index("memory_mb")


def recommend(
    table: pd.DataFrame,
    *,
    balanced_weight: float = DEFAULT_BALANCED_WEIGHT,
    cost_column: str = "cost_per_1000_images_usd",
) -> dict[str, int]:
    """Power Tuning's three strategies over the sizes that did not die (out of memory, or past the timeout):
    `cost` (cheapest, ties → fastest), `speed` (fastest, ties → cheapest) and `balanced` (lowest
    w·cost/max cost + (1−w)·duration/max duration)."""
    usable = table[(table["oom"] != "yes") & table[cost_column].notna() & table["duration_mean_ms"].notna()]
    if usable.empty:
        raise SizingError("every memory size ran out of memory (or time); try larger sizes")
    cost, speed = usable[cost_column], usable["duration_mean_ms"]
    by_cost = usable.sort_values([cost_column, "duration_mean_ms"]).index[0]
    by_speed = usable.sort_values(["duration_mean_ms", cost_column]).index[0]
    score = balanced_weight * cost / cost.max() + (1 - balanced_weight) * speed / speed.max()
    return {"cost": int(by_cost), "speed": int(by_speed), "balanced": int(score.idxmin())}


# --- Weighted, trimmed statistics (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One timed invocation: the kind of image, the share of the mix it stands for, and a value (ms)."""

    kind: str
    weight: float
    value: float


def trim_by_kind(observations: Sequence[Observation], trim: float) -> list[Observation]:
    """Power Tuning's trimmed mean, per kind of image: drop floor(n x trim) of the lowest and of the highest
    values of each kind, and give the kept ones the kind's whole weight (the mix is kept)."""
    kept: list[Observation] = []
    kinds: dict[str, list[Observation]] = {}
    for observation in observations:
        kinds.setdefault(observation.kind, []).append(observation)
    for kind, group in kinds.items():
        ordered = sorted(group, key=lambda o: o.value)
        cut = int(len(ordered) * trim)
        middle = ordered[cut : len(ordered) - cut] or ordered
        share = sum(o.weight for o in group)
        kept += [Observation(kind, share / len(middle), o.value) for o in middle]
    return kept


def weighted_mean(observations: Sequence[Observation]) -> float:
    total = sum(o.weight for o in observations)
    return sum(o.weight * o.value for o in observations) / total if total > 0 else math.nan


def weighted_quantile(observations: Sequence[Observation], q: float) -> float:
    """The smallest value whose cumulative weight reaches q of the total."""
    ordered = sorted(observations, key=lambda o: o.value)
    total = sum(o.weight for o in ordered)
    if not ordered or total <= 0:
        return math.nan
    running = 0.0
    for observation in ordered:
        running += observation.weight
        if running >= q * total - 1e-12:
            return observation.value
    return ordered[-1].value


def duration_stats(
    observations: Sequence[Observation], memory_mb: int, prices: Mapping[str, float], *, per_request: float, trim: float
) -> dict[str, float]:
    """Trimmed, mix-weighted duration figures and the cost of one invocation (one image) per architecture."""
    kept = trim_by_kind(observations, trim)
    stats = {
        "p50": weighted_quantile(kept, 0.5),
        "p95": weighted_quantile(kept, 0.95),
        "mean": weighted_mean(kept),
        "billed_mean": weighted_mean([Observation(o.kind, o.weight, math.ceil(o.value)) for o in kept]),
    }
    for arch, gb_second in prices.items():
        costs = [
            Observation(
                o.kind, o.weight, invocation_cost(o.value, memory_mb, gb_second=gb_second, per_request=per_request)
            )
            for o in kept
        ]
        stats[f"cost_{arch}"] = weighted_mean(costs)
    return stats


# --- The pixel cap a memory size holds (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class PeakFit:
    """peak MB = intercept + slope x megapixels, least squares over the measured points."""

    intercept_mb: float
    mb_per_megapixel: float
    points: tuple[tuple[int, float], ...]  # (pixels, peak MB)

    @property
    def max_residual_mb(self) -> float:
        return max((abs(peak - self.peak_mb(pixels)) for pixels, peak in self.points), default=0.0)

    def peak_mb(self, pixels: int) -> float:
        return self.intercept_mb + self.mb_per_megapixel * pixels / 1e6

    def max_pixels(self, memory_mb: int, headroom: float = HEADROOM) -> int:
        """The most pixels whose predicted peak stays `headroom` of `memory_mb` below it (0: none fit)."""
        room = memory_mb * (1 - headroom) - self.intercept_mb
        if room <= 0 or self.mb_per_megapixel <= 0:
            return 0
        return int(room / self.mb_per_megapixel * 1e6)


def fit_peak(points: Sequence[tuple[int, float]]) -> PeakFit:
    if len(points) < 2:
        raise SizingError("fitting peak memory against pixels needs at least two points")
    xs = [pixels / 1e6 for pixels, _ in points]
    ys = [peak for _, peak in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    return PeakFit(mean_y - slope * mean_x, slope, tuple((int(p), float(m)) for p, m in points))


def round_pixels(pixels: int) -> int:
    """Down to a tenth of a megapixel: what a person would set as a cap."""
    return pixels // 100_000 * 100_000


# --- Temporary resources ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    """A bucket (originals and thumbnails), a table and a topic of sizing's own, on the stack's AWS."""

    stack: Target
    bucket: str
    table: str
    topic_arn: str

    def environment(self, spec: WorkerSpec) -> dict[str, str]:
        """The worker's environment as the template sets it, pointed at the scratch resources. On a local stack
        its dummy credentials replace whatever the shell exports (none need be configured); elsewhere (LocalStack)
        the shell's AWS settings are kept."""
        keep_aws = not self.stack.local
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "IMGOPS_", "POWERTOOLS_"))
            or (keep_aws and k.startswith("AWS_"))
            or k == "AWS_CA_BUNDLE"
        }
        environment = {
            **inherited,
            **spec.environment,
            Env.UPLOAD_BUCKET: self.bucket,
            Env.PROCESSED_BUCKET: self.bucket,
            Env.IMAGES_TABLE: self.table,
            Env.TOPIC_ARN: self.topic_arn,
            Env.WORKER_TIMEOUT_SECONDS: str(spec.timeout_seconds),
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name or "sizing",
        }
        if self.stack.endpoint_url:
            environment["AWS_ENDPOINT_URL"] = self.stack.endpoint_url
        if self.stack.local:
            environment.update(LOCAL_CREDENTIALS)
        return environment


@contextlib.contextmanager
def scratch_resources(stack: Target, spec: WorkerSpec) -> Iterator[Scratch]:
    """Create the scratch resources; remove them (and everything in them) however the block ends."""
    name = f"{stack.prefix}-sizing-{uuid.uuid4().hex[:8]}"
    s3, dynamodb, sns = stack.client("s3"), stack.client("dynamodb"), stack.client("sns")
    created: list[Callable[[], object]] = []
    try:
        s3.create_bucket(Bucket=name)  # no notifications: the stack's own workers never see these uploads
        created.append(lambda: _empty_and_delete_bucket(s3, name))
        dynamodb.create_table(
            TableName=name,
            KeySchema=list(spec.table_key_schema),
            AttributeDefinitions=list(spec.table_attributes),
            BillingMode="PAY_PER_REQUEST",
        )
        created.append(lambda: dynamodb.delete_table(TableName=name))
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        topic_arn = str(sns.create_topic(Name=name)["TopicArn"])
        created.append(lambda: sns.delete_topic(TopicArn=topic_arn))
        yield Scratch(stack, name, name, topic_arn)
    finally:
        for remove in reversed(created):
            with contextlib.suppress(Exception):  # best effort: the rest is still removed
                remove()


def _empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


# --- Probing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeItem:
    image: CorpusImage
    warmup: bool = False


class Prober:
    """Uploads images once into the scratch bucket and runs probes on fresh copies of them (the worker claims
    each object once: every invocation needs an object of its own)."""

    def __init__(self, scratch: Scratch, spec: WorkerSpec) -> None:
        self.scratch = scratch
        self.spec = spec
        self.environment = scratch.environment(spec)
        self._s3 = scratch.stack.client("s3")
        self._table = scratch.stack.client("dynamodb")
        self._sources: dict[Path, str] = {}

    def _source(self, image: CorpusImage) -> str:
        if image.path not in self._sources:
            key = f"sizing-sources/{len(self._sources)}-{image.path.name}"
            self._s3.put_object(
                Bucket=self.scratch.bucket, Key=key, Body=image.path.read_bytes(), ContentType=image.content_type
            )
            self._sources[image.path] = key
        return self._sources[image.path]

    def _invocation(self, item: ProbeItem) -> dict[str, Any]:
        extension = SUPPORTED_CONTENT_TYPES.get(item.image.content_type, "bin")
        key = upload_key(SIZING_OWNER, str(uuid.uuid4()), extension)
        copied = self._s3.copy_object(
            Bucket=self.scratch.bucket,
            Key=key,
            CopySource={"Bucket": self.scratch.bucket, "Key": self._source(item.image)},
        )
        return {
            "key": key,
            "etag": str(copied["CopyObjectResult"]["ETag"]).strip('"'),
            "image": item.image.path.name,
            "kind": item.image.kind,
            "warmup": item.warmup,
        }

    def run(
        self,
        items: Sequence[ProbeItem],
        *,
        memory_mb: int | None = None,
        cpu_share: bool = False,
        trim_heap: bool = False,
        refused_ok: bool = False,
    ) -> ProbeRun:
        """One probe process over `items`; capped at `memory_mb` (and its CPU share) when given. `trim_heap`:
        return freed memory to the system before each invocation, so each peak is that input's own. An image the
        worker refuses (FAILED) is an error unless `refused_ok`; each row says its item's status either way."""
        invocations = [self._invocation(item) for item in items]
        job = {
            "bucket": self.scratch.bucket,
            "invocations": invocations,
            "timeout_seconds": self.spec.timeout_seconds,
            "memory_mb": memory_mb or self.spec.memory_mb,
            "trim_heap": trim_heap,
        }
        # A generous wall-clock bound: every invocation at the function's timeout, plus init.
        bound = 120.0 + len(items) * float(self.spec.timeout_seconds) * 2
        if memory_mb is None:
            run = run_probe(job, environment=self.environment, timeout=bound)
        else:
            group = Cgroup.create("sizing", memory_mb=memory_mb, cpu_share=cpu_share)
            if group is None:
                raise SizingError(no_caps_reason())
            procs = group.procs_files()
            try:
                run = run_probe(
                    job, environment=self.environment, cgroup_procs=procs, timeout=bound, oom_killed=group.oom_killed
                )
            finally:
                group.remove()
        if run.error:
            raise SizingError(f"the worker probe failed (exit code {run.returncode}): {run.error}")
        for row, invocation in zip(run.rows, invocations, strict=False):
            row["status"], row["reason"] = self._outcome(invocation)
            if row["status"] != "DONE" and not refused_ok:
                # An image the worker refused measured nothing of what sizing is after.
                reason = f": {row['reason']}" if row["reason"] else ""
                raise SizingError(f"the worker did not process {invocation['image']} ({row['status']}{reason})")
        return run

    def _outcome(self, invocation: Mapping[str, Any]) -> tuple[str, str]:
        """The image item's status (DONE, FAILED) and reason, as the worker left them in the scratch table."""
        image_id = image_id_for(self.scratch.bucket, invocation["key"])
        item = self._table.get_item(TableName=self.scratch.table, Key={"imageId": {"S": image_id}}).get("Item", {})
        return item.get("status", {}).get("S", "missing"), item.get("reason", {}).get("S", "")


def measurements_of(run: ProbeRun) -> list[Measurement]:
    return [_measurement(row) for row in run.rows if not row["warmup"]]


def _measurement(row: Mapping[str, Any]) -> Measurement:
    """A probe row as the model reads it: the wall time less the time spent waiting for a CPU (this machine's
    other load; the probe runs with no quota here), so what remains beside CPU time is waiting for I/O."""
    wall = float(row["wall_ms"]) - float(row.get("wait_ms", 0.0))
    return Measurement(
        str(row["image"]), max(wall, float(row["cpu_ms"])), float(row["cpu_ms"]), float(row["peak_rss_mb"])
    )


# --- Calibration ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationPoint:
    quota_pct: int
    cpu_ms: float
    wall_ms: float
    ratio: float  # wall time / CPU time
    linear: float  # what the linear share predicts: 100 / quota
    load_average: float = 0.0  # this machine's 1-minute load when it ran (other work stretches wall time too)

    @property
    def versus_linear(self) -> float:
        return self.ratio / self.linear


def calibrate(
    quotas: Sequence[int] = CALIBRATION_QUOTAS,
    iterations: int = CALIBRATION_LOOP,
    on_step: Callable[[str], object] = lambda _step: None,
    repeats: int = 2,
) -> list[CalibrationPoint]:
    """The same CPU-bound loop in a CPU cgroup at each quota (% of one CPU), `repeats` times each, keeping the
    least stretched (other load on the machine only ever adds); empty when CPU cgroups are missing."""
    if not (memory_writable() and cpu_writable()):
        return []
    timings: dict[int, tuple[float, float]] = {}
    for quota in quotas:
        on_step(f"Calibrating this machine's CPU throttling: a CPU loop at a {quota} % CFS quota…")
        for _ in range(repeats):
            group = Cgroup.create("calibrate", memory_mb=max(128, round(ONE_VCPU_MB * quota / 100)), cpu_share=True)
            if group is None or group.cpu is None:
                return []
            try:
                cpu, wall = run_spin(iterations, cgroup_procs=group.procs_files())
            finally:
                group.remove()
            if quota not in timings or wall / cpu < timings[quota][1] / timings[quota][0]:
                timings[quota] = (cpu, wall)
    load = os.getloadavg()[0]
    return [
        CalibrationPoint(quota, cpu, wall, wall / cpu, 100 / quota, round(load, 2))
        for quota, (cpu, wall) in timings.items()
    ]


# --- The worst-case floor ---------------------------------------------------------------------------------------


@dataclass
class FloorResult:
    kind: str
    pixels: int
    width: int
    height: int
    file_bytes: int
    candidates: list[dict[str, Any]]
    fit: PeakFit
    peak_mb: float  # at the cap, no memory cap
    cpu_ms: float
    io_ms: float
    by_size: dict[int, dict[str, Any]]
    floor_mb: int | None

    def modeled_ms(self, memory_mb: int) -> float:
        return self.cpu_ms * cpu_stretch(memory_mb) + self.io_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pixels": self.pixels,
            "width": self.width,
            "height": self.height,
            "file_bytes": self.file_bytes,
            "peak_mb_uncapped": round(self.peak_mb, 1),
            "cpu_ms": round(self.cpu_ms, 1),
            "io_ms": round(self.io_ms, 1),
            "floor_mb": self.floor_mb,
            "candidates": self.candidates,
            "fit": {
                "method": "least squares over the hungry input at "
                + ", ".join(f"{p / 1e6:.1f} MP" for p, _ in self.fit.points)
                + " (no caps), then each estimate verified under that size's real memory cap",
                "intercept_mb": round(self.fit.intercept_mb, 1),
                "mb_per_megapixel": round(self.fit.mb_per_megapixel, 2),
                "bytes_per_pixel": round(self.fit.mb_per_megapixel * 1024 * 1024 / 1e6, 2),
                "max_residual_mb": round(self.fit.max_residual_mb, 1),
                "points": [{"pixels": p, "peak_mb": round(m, 1)} for p, m in self.fit.points],
            },
            "by_size": {str(size): row for size, row in self.by_size.items()},
        }


# How a size dies on the worst case: killed under the cgroup cap, its peak RSS above the size, or (modeled) past
# the function's timeout at its CPU share.
OOM_KILLED, OOM_RSS, TIMEOUT = "OOM", "OOM (RSS)", "timeout"
DEATHS = (OOM_KILLED, OOM_RSS, TIMEOUT)


def memory_outcome(run: ProbeRun, memory_mb: int) -> str:
    """`survives`, or how a [warm-up, input] probe under a `memory_mb` cap died. A cgroup here is not charged for
    library pages another process loaded first; Lambda counts everything in the environment, so a size also
    needs the process's peak RSS (which counts those pages) to stay within it."""
    if not run.completed or len(run.rows) < 2:
        return OOM_KILLED
    if float(run.rows[-1]["peak_rss_mb"]) > memory_mb:
        return OOM_RSS
    return "survives"


def _peak_of(run: ProbeRun) -> tuple[float, float, float]:
    """(peak MB, CPU ms, wall ms) of the probe's last invocation."""
    last = run.rows[-1]
    return float(last["peak_rss_mb"]), float(last["cpu_ms"]), float(last["wall_ms"])


def worst_case_floor(
    prober: Prober,
    spec: WorkerSpec,
    sizes: Sequence[int],
    warmup: ProbeItem,
    cache_dir: Path,
    on_step: Callable[[str], object] = lambda _step: None,
) -> FloorResult:
    """Find the hungriest accepted input, fit its peak memory against pixels, run it at the pixel cap under each
    memory cap (ascending; sizes above the first survivor are implied), and for each size that dies find the
    pixel cap that fits it (the fit's estimate, verified under the real cap). `1 + 3 + 2 x sizes` steps.
    Refused at once where no memory cap can be created (the floor is what the caps prove)."""
    require_memory_caps()
    on_step("Worst case: measuring every accepted format and mode…")
    candidates = [
        hungry_image(name, CANDIDATE_PIXELS, cache_dir=cache_dir, max_bytes=spec.max_upload_bytes)
        for name in hungry_candidates(SUPPORTED_CONTENT_TYPES)
    ]
    run = prober.run([warmup, *(ProbeItem(c) for c in candidates)], trim_heap=True, refused_ok=True)
    measured: list[dict[str, Any]] = []
    for image, row in zip(candidates, run.rows[1:], strict=True):
        if row.get("status") != "DONE":  # a format this worker refuses cannot be its worst case
            measured.append({"kind": image.kind, "pixels": image.width * image.height, "refused": row.get("reason")})
            continue
        extra = max(0.0, row["peak_rss_mb"] - row["rss_before_mb"])
        measured.append(
            {
                "kind": image.kind,
                "pixels": image.width * image.height,
                "peak_mb": round(row["peak_rss_mb"], 1),
                "extra_mb": round(extra, 1),
                "bytes_per_pixel": round(extra * 1024 * 1024 / (image.width * image.height), 2),
            }
        )
    accepted = [c for c in measured if "extra_mb" in c]
    if not accepted:
        raise SizingError("the worker refused every candidate worst-case input")
    hungriest = str(max(accepted, key=lambda c: float(c["extra_mb"]))["kind"])
    points: list[tuple[int, float]] = []
    at_cap: tuple[float, float, float] | None = None
    cap_image: CorpusImage | None = None
    for fraction in FIT_FRACTIONS:
        pixels = round_pixels(int(spec.max_pixels * fraction)) if fraction < 1 else spec.max_pixels
        on_step(f"Worst case: {hungriest} at {pixels / 1e6:.1f} MP, no caps…")
        image = hungry_image(hungriest, pixels, cache_dir=cache_dir, max_bytes=spec.max_upload_bytes)
        peak = _peak_of(prober.run([warmup, ProbeItem(image)]))
        points.append((image.width * image.height, peak[0]))
        if fraction == 1:
            at_cap, cap_image = peak, image
    assert at_cap is not None
    assert cap_image is not None
    fit = fit_peak(points)
    floor = FloorResult(
        kind=hungriest,
        pixels=cap_image.width * cap_image.height,
        width=cap_image.width,
        height=cap_image.height,
        file_bytes=cap_image.size_bytes,
        candidates=measured,
        fit=fit,
        peak_mb=at_cap[0],
        cpu_ms=at_cap[1],
        io_ms=max(0.0, at_cap[2] - at_cap[1]),
        by_size={},
        floor_mb=None,
    )
    survivor: int | None = None
    for size in sorted(sizes):
        modeled = floor.modeled_ms(size)
        state: dict[str, Any] = {"modeled_ms": round(modeled, 1), "max_pixels": fit.max_pixels(size)}
        if survivor is None:
            on_step(f"Worst case: {floor.pixels / 1e6:.1f} MP {hungriest} under a real {size} MB cap…")
            capped = prober.run([warmup, ProbeItem(cap_image)], memory_mb=size)
            state["memory"] = memory_outcome(capped, size)
            state["peak_mb"] = round(capped.rows[-1]["peak_rss_mb"], 1) if len(capped.rows) == 2 else None
            if state["memory"] == "survives":
                survivor = size
        else:
            on_step(f"Worst case at {size} MB: implied by {survivor} MB…")
            state["memory"] = f"survives (as at {survivor} MB)"
            state["peak_mb"] = None
        timed_out = modeled > spec.timeout_seconds * 1000
        if state["memory"] in DEATHS:
            state["outcome"] = state["memory"]
        elif timed_out:
            state["outcome"] = "timeout"
        else:
            state["outcome"] = "survives"
        floor.by_size[size] = state
    survivors = [size for size, state in floor.by_size.items() if state["outcome"] == "survives"]
    # A size whose CPU share would take the worst case past the timeout: the cap that fits in time instead.
    floor.floor_mb = min(survivors) if survivors else None
    for size in sorted(sizes):
        state = floor.by_size[size]
        if state["outcome"] == "survives":
            state["max_pixels"] = spec.max_pixels  # the cap itself fits (measured)
            state["max_pixels_verified"] = True
            on_step(f"{size} MB holds the cap")
            continue
        on_step(f"Worst case: the pixel cap that fits {size} MB…")
        if state["outcome"] == "timeout":  # CPU time grows with pixels: scale the cap to the timeout, modeled
            in_time = spec.max_pixels * spec.timeout_seconds * 1000 / state["modeled_ms"] * (1 - HEADROOM)
            state["max_pixels"], state["max_pixels_verified"] = round_pixels(int(in_time)), False
            continue
        state["max_pixels"], state["max_pixels_verified"] = _verified_cap(
            prober, spec, warmup, hungriest, size, fit, cache_dir
        )
    return floor


def _verified_cap(
    prober: Prober, spec: WorkerSpec, warmup: ProbeItem, kind: str, size: int, fit: PeakFit, cache_dir: Path
) -> tuple[int, bool]:
    """The fit's estimate for `size`, tried under a real cap of `size`; lowered by 15 % per failure."""
    pixels = round_pixels(min(fit.max_pixels(size), spec.max_pixels))
    for _ in range(VERIFY_TRIES):
        if pixels < 100_000:
            return 0, True
        image = hungry_image(kind, pixels, cache_dir=cache_dir, max_bytes=spec.max_upload_bytes)
        run = prober.run([warmup, ProbeItem(image)], memory_mb=size)
        if memory_outcome(run, size) == "survives":
            return pixels, True
        pixels = round_pixels(int(pixels * 0.85))
    return pixels, False


# --- The local run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizingOptions:
    sizes: tuple[int, ...] = DEFAULT_MEMORY_SIZES
    invocations: int | None = None  # per size; None: each sampled image once
    trim: float = DEFAULT_TRIM
    balanced_weight: float = DEFAULT_BALANCED_WEIGHT
    architectures: tuple[str, ...] = ("arm64",)  # the first leads (its costs drive the recommendation)
    basis: str = "measured"  # or "modeled": which durations the strategies use
    measure_below_floor: bool = False  # also measure sizes the worst case kills (they are never recommended)


@dataclass
class SizingResult:
    spec: WorkerSpec
    options: SizingOptions
    table: pd.DataFrame
    recommendations: dict[str, dict[str, int]]  # architecture → strategy → MB
    sample: list[dict[str, Any]]  # kind, count, share of the mix
    calibration: list[CalibrationPoint]
    floor: FloorResult | None
    baseline: list[Measurement]
    invocations: list[dict[str, Any]]
    notes: list[str]
    basis: str

    @property
    def lead(self) -> str:
        return self.options.architectures[0]


def sample_summary(sample: Sequence[SampleImage]) -> list[dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for item in sample:
        entry = kinds.setdefault(item.image.kind, {"kind": item.image.kind, "count": 0, "mix_share": 0.0})
        entry["count"] += 1
        entry["mix_share"] += item.weight
    return [{**entry, "mix_share": round(entry["mix_share"], 4)} for entry in kinds.values()]


class LocalSizing:
    """The local sizing run; `steps` says how many `on_step` calls `run` makes (for a progress bar)."""

    def __init__(
        self,
        stack: Target,
        spec: WorkerSpec,
        sample: Sequence[SampleImage],
        options: SizingOptions,
        *,
        prices: Mapping[str, Any],
        cache_dir: Path,
    ) -> None:
        if not sample:
            raise SizingError("the sample is empty")
        invocations = options.invocations or len(sample)
        if invocations < len(sample):
            raise SizingError(f"--invocations {invocations} is fewer than the {len(sample)} sampled images")
        self.stack = stack
        self.spec = spec
        self.sample = list(sample)
        self.options = options
        self.invocations = invocations
        self.prices = prices
        self.cache_dir = cache_dir
        require_memory_caps()  # the recommendation is withheld, not made from the model alone
        self.capped = memory_writable()  # always, past require_memory_caps: every size below runs under a cap
        sizes = len(options.sizes)
        self.steps = len(CALIBRATION_QUOTAS) * cpu_writable() + 1
        self.steps += 1 + len(FIT_FRACTIONS) + 2 * sizes + sizes

    def _warmup(self) -> ProbeItem:
        """The first invocation of every environment (the cold one): the sample's smallest image."""
        return ProbeItem(min(self.sample, key=lambda s: s.image.width * s.image.height).image, warmup=True)

    def _items(self) -> list[ProbeItem]:
        timed = [ProbeItem(self.sample[i % len(self.sample)].image) for i in range(self.invocations)]
        return [self._warmup(), *timed]

    def _observations(self, run: ProbeRun, value: Callable[[dict[str, Any]], float]) -> list[Observation]:
        weights = {s.image.path.name: s.weight for s in self.sample}
        repeats: dict[str, int] = {}
        timed = [row for row in run.rows if not row["warmup"]]
        for row in timed:
            repeats[row["image"]] = repeats.get(row["image"], 0) + 1
        return [Observation(row["kind"], weights[row["image"]] / repeats[row["image"]], value(row)) for row in timed]

    def _modeled(self, baseline: ProbeRun, memory_mb: int) -> list[Observation]:
        return self._observations(baseline, lambda row: modeled_duration_ms(_measurement(row), memory_mb))

    def run(self, on_step: Callable[[str], object] = lambda _step: None) -> SizingResult:
        options, spec = self.options, self.spec
        gb_seconds = {arch: float(self.prices["lambda"]["gb_second"][arch]) for arch in options.architectures}
        per_request = float(self.prices["lambda"]["per_million_requests"]) / 1e6
        calibration: list[CalibrationPoint] = []
        if cpu_writable():
            calibration = calibrate(on_step=on_step)
        rows: list[dict[str, Any]] = []
        invocations: list[dict[str, Any]] = []
        with scratch_resources(self.stack, spec) as scratch:
            prober = Prober(scratch, spec)
            on_step(f"Baseline: the worker on {len(self.sample)} sampled images, no caps…")
            baseline_run = prober.run(self._items())
            baseline = measurements_of(baseline_run)
            invocations += [{**row, "memory_mb": None, "capped": False} for row in baseline_run.rows]
            modeled_by_size = {size: self._modeled(baseline_run, size) for size in options.sizes}
            floor = worst_case_floor(prober, self.spec, options.sizes, self._warmup(), self.cache_dir, on_step)
            measured: dict[int, ProbeRun | None] = {}
            for size in options.sizes:
                dies = floor.by_size[size]["outcome"] != "survives"
                if dies and not options.measure_below_floor:
                    measured[size] = None
                    on_step(f"{size} MB: below the floor, modeled only")
                    continue
                on_step(f"{size} MB: the sample under a {size} MB cap and {cpu_quota_us(size) / 1000:.0f} % CPU…")
                run = prober.run(self._items(), memory_mb=size, cpu_share=True)
                measured[size] = run
                invocations += [{**row, "memory_mb": size, "capped": True} for row in run.rows]
        for size in options.sizes:
            rows.append(self._row(size, measured[size], modeled_by_size[size], floor, gb_seconds, per_request))
        table = pd.DataFrame(rows).set_index("memory_mb")
        basis = options.basis if table["measured_mean_ms"].notna().any() else "modeled"
        table = with_basis(table, basis, options.architectures)
        recommendations = {
            arch: recommend(
                table, balanced_weight=options.balanced_weight, cost_column=f"cost_per_1000_images_usd_{arch}"
            )
            for arch in options.architectures
        }
        notes = self._notes(calibration, floor, basis)
        return SizingResult(
            spec=spec,
            options=options,
            table=table,
            recommendations=recommendations,
            sample=sample_summary(self.sample),
            calibration=calibration,
            floor=floor,
            baseline=baseline,
            invocations=invocations,
            notes=notes,
            basis=basis,
        )

    def _row(
        self,
        size: int,
        run: ProbeRun | None,
        modeled: list[Observation],
        floor: FloorResult | None,
        gb_seconds: Mapping[str, float],
        per_request: float,
    ) -> dict[str, Any]:
        trim = self.options.trim
        model = duration_stats(modeled, size, gb_seconds, per_request=per_request, trim=trim)
        row: dict[str, Any] = {
            "memory_mb": size,
            "cpu_quota_pct": round(cpu_quota_us(size) / 1000, 1),
            "modeled_p50_ms": model["p50"],
            "modeled_p95_ms": model["p95"],
            "modeled_mean_ms": model["mean"],
            "modeled_billed_ms_mean": model["billed_mean"],
            **{f"modeled_cost_{arch}": model[f"cost_{arch}"] for arch in gb_seconds},
        }
        fails: list[str] = []
        if run is None:
            row.update(
                sample_oom="not checked", init_ms=math.nan, first_invocation_ms=math.nan, sample_peak_mb=math.nan
            )
            measure = dict.fromkeys(("p50", "p95", "mean", "billed_mean"), math.nan)
            measure.update({f"cost_{arch}": math.nan for arch in gb_seconds})
        else:
            first = next((r for r in run.rows if r["warmup"]), None)
            timed = [r for r in run.rows if not r["warmup"]]
            row.update(
                sample_oom="yes" if run.oom_killed else "no",
                init_ms=run.init_ms if run.init_ms is not None else math.nan,
                first_invocation_ms=first["wall_ms"] if first else math.nan,
                sample_peak_mb=max((r["peak_rss_mb"] for r in run.rows), default=math.nan),
            )
            if run.oom_killed:
                fails.append("sample OOM")
            if any(r["wall_ms"] > self.spec.timeout_seconds * 1000 for r in timed):
                fails.append("sample timeout")
            complete = run.completed and len(timed) == self.invocations and cpu_writable()
            if complete:
                observations = self._observations(run, lambda r: float(r["wall_ms"]))
                measure = duration_stats(observations, size, gb_seconds, per_request=per_request, trim=trim)
            else:
                measure = dict.fromkeys(("p50", "p95", "mean", "billed_mean"), math.nan)
                measure.update({f"cost_{arch}": math.nan for arch in gb_seconds})
        row.update(
            measured_p50_ms=measure["p50"],
            measured_p95_ms=measure["p95"],
            measured_mean_ms=measure["mean"],
            measured_billed_ms_mean=measure["billed_mean"],
            **{f"measured_cost_{arch}": measure[f"cost_{arch}"] for arch in gb_seconds},
        )
        row["model_error_pct"] = (
            (model["mean"] - measure["mean"]) / measure["mean"] * 100
            if measure["mean"] == measure["mean"]
            else math.nan
        )
        if floor is None:
            row["worst_case"] = "not checked"
        else:
            state = floor.by_size[size]
            row["worst_case"] = state["outcome"]
            row["worst_case_peak_mb"] = state.get("peak_mb")
            row["worst_case_modeled_ms"] = state["modeled_ms"]
            row["max_pixels_here"] = state.get("max_pixels")
            if state["outcome"] != "survives":
                fails.append(f"worst case {state['outcome']}")
        row["fails"] = ", ".join(fails)
        checked = run is not None or floor is not None
        row["oom"] = "yes" if fails else ("no" if checked else "not checked")
        return row

    def _notes(self, calibration: list[CalibrationPoint], floor: FloorResult | None, basis: str) -> list[str]:
        spec, options = self.spec, self.options
        notes = [
            f"Worker from the synthesized template: {spec.function_name}, {spec.memory_mb} MB, "
            f"{spec.architecture}, timeout {spec.timeout_seconds} s, pixel cap {spec.max_pixels:,} "
            f"({Env.MAX_PIXELS}).",
            f"Sample: {len(self.sample)} images stratified over the mix (at least 2 per kind), weighted back to "
            f"the mix; {self.invocations} timed invocations per size, one image each, after one warm-up "
            "(the cold start: reported apart with the init, never in the statistics); "
            f"top and bottom {options.trim:.0%} of each kind discarded.",
            "Measured: the real handler in a probe process under a cgroup memory cap of each size and a CFS "
            "quota of its CPU share (memory / 1,769 MB of one CPU; above 1,769 MB the quota exceeds one CPU: "
            "a single-threaded handler is not throttled, as on Lambda)"
            + (
                "; every size."
                if options.measure_below_floor
                else "; sizes the worst case kills are modeled only (--measure-below-floor measures them too)."
            )
            if cpu_writable()
            else "Measured: NOT available (cgroup controllers not writable here): durations are modeled only.",
            "Modeled: CPU time with no caps x max(1, 1769 MB / memory) + the I/O wait (wall time less CPU time "
            "less time spent waiting for a CPU); assumes a Lambda vCPU is as fast as this machine's core "
            f"(this is {platform.machine()}; other architectures are priced, not measured).",
            f"Recommendations use the {basis} durations; cost per invocation is one image, with the "
            "$0.20/M request charge (Power Tuning leaves it out).",
        ]
        if calibration:
            notes.append(
                "CFS calibration (a fixed CPU loop, wall time / CPU time): "
                + ", ".join(f"{c.quota_pct} % quota {c.ratio:.2f}x (linear {c.linear:.0f}x)" for c in calibration)
                + f"; load average {calibration[-1].load_average:.1f} on {os.cpu_count()} CPUs."
            )
        if floor is not None:
            notes.append(
                f"Worst case: {floor.kind} {floor.width}x{floor.height} ({floor.pixels / 1e6:.1f} MP, "
                f"{floor.file_bytes / 1e6:.1f} MB file): peak {floor.peak_mb:.0f} MB with no cap; floor "
                + (f"{floor.floor_mb} MB" if floor.floor_mb else "none of the sizes tried")
                + f". Peak ≈ {floor.fit.intercept_mb:.0f} MB + {floor.fit.mb_per_megapixel:.1f} MB per megapixel "
                "(fit over 3 sizes; each smaller size's pixel cap verified under its real memory cap)."
            )
        return notes


def with_basis(table: pd.DataFrame, basis: str, architectures: Sequence[str]) -> pd.DataFrame:
    """The columns the strategies and `imgops cost` read, from the measured or the modeled durations; the
    cost columns of the first architecture are also the unsuffixed ones."""
    table = table.copy()
    other = "modeled" if basis == "measured" else "measured"

    def column(name: str) -> pd.Series:
        chosen = table[f"{basis}_{name}"]
        fallback = f"{other}_{name}"
        return chosen.fillna(table[fallback]) if fallback in table else chosen

    # A size the basis has no figure for (measured: one below the worst-case floor) takes the other's.
    table["duration_source"] = [
        basis if value == value else other
        for value in table[f"{basis}_mean_ms"]  # NaN != NaN
    ]
    for stat in ("p50", "p95", "mean"):
        table[f"duration_{stat}_ms"] = column(f"{stat}_ms")
    table["billed_ms_mean"] = column("billed_ms_mean")
    for arch in architectures:
        table[f"cost_per_invocation_usd_{arch}"] = column(f"cost_{arch}")
        table[f"cost_per_1000_images_usd_{arch}"] = table[f"cost_per_invocation_usd_{arch}"] * 1000
    table["cost_per_1000_images_usd"] = table[f"cost_per_1000_images_usd_{architectures[0]}"]
    return table


# --- Power Tuning's output --------------------------------------------------------------------------------------


def power_tuning_json(result: SizingResult, strategy: str) -> dict[str, Any]:
    """Shaped like AWS Lambda Power Tuning's result: `power` (the MB chosen), `cost` (USD per invocation there)
    and `duration` (ms), plus `stats` per size; imgops's extra figures under `imgops`."""
    table = result.table

    def chosen(arch: str) -> dict[str, Any]:
        power = result.recommendations[arch][strategy]
        return {
            "power": power,
            "cost": _number(table.loc[power, f"cost_per_invocation_usd_{arch}"]),
            "duration": _number(table.loc[power, "duration_mean_ms"]),
            "stats": [
                {
                    "value": int(size),
                    "averagePrice": _number(row[f"cost_per_invocation_usd_{arch}"]),
                    "averageDuration": _number(row["duration_mean_ms"]),
                }
                for size, row in zip(table.index.astype(int), table.to_dict("records"), strict=True)
            ],
        }

    lead = chosen(result.lead)
    return {
        **lead,
        "strategy": strategy,
        "balancedWeight": result.options.balanced_weight,
        "architecture": result.lead,
        "byArchitecture": {arch: chosen(arch) for arch in result.options.architectures},
        "imgops": {
            "recommendations_mb": result.recommendations,
            "basis": result.basis,
            "worker": asdict(result.spec) | {"environment": dict(result.spec.environment)},
            "sample": result.sample,
            "floor": result.floor.as_dict() if result.floor else None,
            "calibration": [asdict(c) for c in result.calibration],
            "table": json.loads(table.reset_index().to_json(orient="records")),
            "notes": result.notes,
        },
    }


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# --- Apply ------------------------------------------------------------------------------------------------------


def apply_to_cdk_json(path: Path, memory_mb: int) -> None:
    """Set `imgops:worker-memory-mb` in cdk.json's context, leaving the rest of the file as written."""
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except FileNotFoundError:
        raise SizingError(f"{path} not found: --cdk-json names the CDK app's cdk.json") from None
    except ValueError as exc:
        raise SizingError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document.get("context"), dict):
        raise SizingError(f"{path} has no context object")
    key = re.escape(json.dumps(WORKER_MEMORY_CONTEXT))
    existing = re.compile(rf"({key}\s*:\s*)(\"[^\"]*\"|-?\d+)")
    if existing.search(text):
        updated = existing.sub(lambda match: f"{match.group(1)}{memory_mb}", text, count=1)
    else:
        opening = re.search(r"\"context\"\s*:\s*\{(\s*)", text)
        if opening is None:
            document["context"][WORKER_MEMORY_CONTEXT] = memory_mb
            updated = json.dumps(document, indent=2) + "\n"
        else:
            indent = opening.group(1) or "\n    "
            insert = f"{json.dumps(WORKER_MEMORY_CONTEXT)}: {memory_mb},{indent}"
            updated = text[: opening.end()] + insert + text[opening.end() :]
    if json.loads(updated).get("context", {}).get(WORKER_MEMORY_CONTEXT) != memory_mb:
        raise SizingError(f"could not write {WORKER_MEMORY_CONTEXT} into {path}")
    path.write_text(updated, encoding="utf-8")


def update_function_memory(target: Target, memory_mb: int) -> int:
    """Set the deployed worker's memory through the Lambda API; returns the previous size."""
    client = target.client("lambda")
    previous = int(client.get_function_configuration(FunctionName=target.worker_function)["MemorySize"])
    client.update_function_configuration(FunctionName=target.worker_function, MemorySize=memory_mb)
    client.get_waiter("function_updated_v2").wait(FunctionName=target.worker_function)
    return previous


# --- On AWS -----------------------------------------------------------------------------------------------------


def remove_run_outputs(target: LoadTarget, frame: pd.DataFrame) -> int:
    """Delete what a sizing batch wrote into the pipeline: its images' items, thumbnails and originals."""
    if frame.empty or "image_id" not in frame:
        return 0
    s3, dynamodb = target.client("s3"), target.client("dynamodb")
    owner = target.user_sub()
    removed = 0
    for row in frame.itertuples():
        image_id = str(getattr(row, "image_id", "") or "")
        if not image_id:
            continue
        listed = s3.list_objects_v2(Bucket=target.stack.processed_bucket, Prefix=f"processed/{image_id}/")
        thumbnails = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if thumbnails:
            s3.delete_objects(Bucket=target.stack.processed_bucket, Delete={"Objects": thumbnails, "Quiet": True})
        extension = SUPPORTED_CONTENT_TYPES.get(str(getattr(row, "content_type", "")), "jpg")
        s3.delete_object(Bucket=target.stack.upload_bucket, Key=upload_key(owner, image_id, extension))
        dynamodb.delete_item(TableName=target.stack.images_table, Key={"imageId": {"S": image_id}})
        removed += 1
    return removed


def aws_sizing(
    target: LoadTarget,
    sizes: tuple[int, ...],
    run_batch: Callable[[int], RunResult],
    *,
    prices: Mapping[str, Any],
    options: SizingOptions,
    on_step: Callable[[str], object] = lambda _step: None,
) -> pd.DataFrame:
    """Set the deployed worker to each size, send a batch through the pipeline, read its REPORT lines; remove
    what the batch wrote; always restore the original size. Durations are per invocation (a batch of up to 10
    images), trimmed as Power Tuning does; cold starts (Init Duration) are reported apart."""
    client = target.client("lambda")
    original = int(client.get_function_configuration(FunctionName=target.worker_function)["MemorySize"])
    waiter = client.get_waiter("function_updated_v2")
    gb_seconds = {arch: float(prices["lambda"]["gb_second"][arch]) for arch in options.architectures}
    per_request = float(prices["lambda"]["per_million_requests"]) / 1e6
    rows = []
    try:
        for memory in sizes:
            on_step(f"{memory} MB: setting the deployed worker and sending a batch…")
            client.update_function_configuration(FunctionName=target.worker_function, MemorySize=memory)
            waiter.wait(FunctionName=target.worker_function)
            result = run_batch(memory)
            try:
                rows.append(_aws_row(memory, result, gb_seconds, per_request, options.trim))
            finally:
                remove_run_outputs(target, result.frame)
    finally:
        client.update_function_configuration(FunctionName=target.worker_function, MemorySize=original)
        with contextlib.suppress(Exception):
            waiter.wait(FunctionName=target.worker_function)
    table = pd.DataFrame(rows).set_index("memory_mb")
    return with_basis(table, "measured", options.architectures)


def _aws_row(
    memory: int, result: RunResult, gb_seconds: Mapping[str, float], per_request: float, trim: float
) -> dict[str, Any]:
    reports = [r for r in result.reports if r.memory_size_mb == memory]
    ok = [r for r in reports if r.status == "success"]
    images = max(1, int((result.frame.get("status", pd.Series(dtype=str)) == "DONE").sum()))
    invocations = max(1, len(ok))
    per_image = images / invocations  # a REPORT line covers a batch
    observations = [Observation("invocation", 1.0, r.duration_ms) for r in ok]
    stats = duration_stats(observations, memory, gb_seconds, per_request=per_request, trim=trim)
    died = [r for r in reports if r.status != "success" or r.max_memory_used_mb >= memory]
    cold = [r.init_duration_ms for r in reports if r.init_duration_ms is not None]
    row: dict[str, Any] = {
        "memory_mb": memory,
        "cpu_quota_pct": math.nan,
        "measured_p50_ms": stats["p50"],
        "measured_p95_ms": stats["p95"],
        "measured_mean_ms": stats["mean"],
        "measured_billed_ms_mean": stats["billed_mean"],
        "modeled_p50_ms": math.nan,
        "modeled_p95_ms": math.nan,
        "modeled_mean_ms": math.nan,
        "model_error_pct": math.nan,
        "invocations": len(reports),
        "images_per_invocation": round(per_image, 2),
        "init_ms": sum(cold) / len(cold) if cold else math.nan,
        "cold_starts": len(cold),
        "first_invocation_ms": math.nan,
        "sample_peak_mb": max((r.max_memory_used_mb for r in reports), default=math.nan),
        "sample_oom": "yes" if died else "no",
        "fails": "died (OOM or timeout)" if died else "",
        "oom": "yes" if died else "no",
    }
    for arch in gb_seconds:
        row[f"measured_cost_{arch}"] = stats[f"cost_{arch}"] / per_image  # per image
    return row


def mark_floor(table: pd.DataFrame, floor: FloorResult | None) -> pd.DataFrame:
    """The local worst-case result on a table measured elsewhere (AWS): sizes it kills become unusable."""
    table = table.copy()
    if floor is None:
        table["worst_case"] = "not checked"
        return table
    outcomes = []
    for size in table.index:
        state = floor.by_size.get(int(size))
        outcomes.append(state["outcome"] if state else "not checked")
    table["worst_case"] = outcomes
    dies = table["worst_case"].isin(DEATHS)
    table.loc[dies, "oom"] = "yes"
    table.loc[dies, "fails"] = (table.loc[dies, "fails"].astype(str) + " worst case").str.strip()
    return table
