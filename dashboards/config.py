"""Synth-time choices of the CDK app, read from CDK context (`cdk.json`, `-c key=value`).

Only what changes the synthesized artefacts lives here; deploy-time knobs (batch size, concurrency,
API throttling, alarm e-mail) are CloudFormation parameters on the stack instead. The architecture
is synth-time because the bundled wheels differ per architecture; the metrics rate is synth-time
because alarm periods and thresholds derive from it and CloudWatch periods cannot be tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from dashboards.errors import ConfigError
from pipeline.resources import DEFAULT_LABELS_MIN_CONFIDENCE, LABELS_MODES, WORKER_MEMORY_MB

PREFIX = "imgops:prefix"
ARCHITECTURE = "imgops:arch"
SKIP_BUNDLING = "imgops:skip-bundling"
METRICS_RATE_MINUTES = "imgops:metrics-rate-minutes"
RUNBOOK_BASE_URL = "imgops:runbook-base-url"
PROCESSED_EXPIRY_DAYS = "imgops:processed-expiry-days"
# The worker's memory size, MB; unset: pipeline.resources.WORKER_MEMORY_MB. `imgops loadtest sizing --apply` writes it.
WORKER_MEMORY = "imgops:worker-memory-mb"
# The worker's optional labels stage (pipeline.labels): `none` (default) or `rekognition`, which sets IMGOPS_LABELS on
# the worker and grants it rekognition:DetectLabels; `imgops:labels-min-confidence` (percent) goes with it.
LABELS = "imgops:labels"
LABELS_MIN_CONFIDENCE = "imgops:labels-min-confidence"
LAMBDA_MEMORY_MB = (128, 10240)

Architecture = Literal["x86_64", "arm64"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "arm64")
METRICS_RATES = (1, 5, 60)
# Absolute, so an alarm notification links a page wherever it is read: this checkout's runbooks/ folder by
# default (right for the local stack and the machine that deploys); set a browsable URL per deployment, e.g.
# `-c imgops:runbook-base-url=https://github.com/<org>/imgops/blob/main/runbooks/`.
DEFAULT_RUNBOOK_BASE_URL = (Path(__file__).resolve().parents[1] / "runbooks").as_uri() + "/"
# Bucket names are global: prefixes become part of them, so keep them to S3's character set.
_PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$")


@dataclass(frozen=True)
class AppConfig:
    prefix: str = "imgops"
    architecture: Architecture = "arm64"
    skip_bundling: bool = False
    metrics_rate_minutes: int = 60
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    # Days after which the processed bucket deletes thumbnails; 0 (the default) keeps them. The images table never
    # forgets an image and the read API answers every DONE item with its thumbnail URLs, so expiring thumbnails
    # turns answers into dead links, and nothing in the pipeline regenerates them. They are small next to the
    # originals (which tier to Intelligent-Tiering instead), so keeping them costs little. Set it for
    # throwaway deployments (load tests, demos), e.g. `-c imgops:processed-expiry-days=7`.
    processed_expiry_days: int = 0
    worker_memory_mb: int = WORKER_MEMORY_MB
    labels: str = "none"  # one of pipeline.resources.LABELS_MODES
    labels_min_confidence: float = DEFAULT_LABELS_MIN_CONFIDENCE

    def __post_init__(self) -> None:
        if not _PREFIX_PATTERN.match(self.prefix):
            raise ConfigError(f"{PREFIX}={self.prefix!r}: use 3-42 lowercase letters, digits and dashes")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{ARCHITECTURE}={self.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.metrics_rate_minutes not in METRICS_RATES:
            raise ConfigError(
                f"{METRICS_RATE_MINUTES}={self.metrics_rate_minutes!r}: choose one of "
                + ", ".join(map(str, METRICS_RATES))
            )
        if self.processed_expiry_days < 0:
            raise ConfigError(
                f"{PROCESSED_EXPIRY_DAYS}={self.processed_expiry_days!r}: use a number of days, or 0 to keep thumbnails"
            )

        low, high = LAMBDA_MEMORY_MB
        if not low <= self.worker_memory_mb <= high:
            raise ConfigError(f"{WORKER_MEMORY}={self.worker_memory_mb!r}: Lambda memory is {low} to {high:,} MB")
        if self.labels not in LABELS_MODES:
            raise ConfigError(f"{LABELS}={self.labels!r}: choose one of {', '.join(LABELS_MODES)}")
        if not 0 <= self.labels_min_confidence <= 100:
            raise ConfigError(f"{LABELS_MIN_CONFIDENCE}={self.labels_min_confidence!r}: a percentage, 0 to 100")

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> AppConfig:
        """`get` is `node.try_get_context`; CLI `-c` values arrive as strings, cdk.json values typed."""
        defaults = cls()
        return cls(
            prefix=str(_or(get(PREFIX), defaults.prefix)),
            architecture=cast("Architecture", str(_or(get(ARCHITECTURE), defaults.architecture))),
            skip_bundling=_flag(get(SKIP_BUNDLING)),
            metrics_rate_minutes=_int(get(METRICS_RATE_MINUTES), defaults.metrics_rate_minutes, METRICS_RATE_MINUTES),
            runbook_base_url=str(_or(get(RUNBOOK_BASE_URL), defaults.runbook_base_url)),
            processed_expiry_days=_int(
                get(PROCESSED_EXPIRY_DAYS), defaults.processed_expiry_days, PROCESSED_EXPIRY_DAYS
            ),
            worker_memory_mb=_int(get(WORKER_MEMORY), defaults.worker_memory_mb, WORKER_MEMORY),
            labels=str(_or(get(LABELS), defaults.labels)).strip().lower(),
            labels_min_confidence=_float(
                get(LABELS_MIN_CONFIDENCE), defaults.labels_min_confidence, LABELS_MIN_CONFIDENCE
            ),
        )

    def as_context(self) -> Mapping[str, str]:
        return {
            PREFIX: self.prefix,
            ARCHITECTURE: self.architecture,
            SKIP_BUNDLING: str(self.skip_bundling).lower(),
            METRICS_RATE_MINUTES: str(self.metrics_rate_minutes),
            RUNBOOK_BASE_URL: self.runbook_base_url,
            PROCESSED_EXPIRY_DAYS: str(self.processed_expiry_days),
            WORKER_MEMORY: str(self.worker_memory_mb),
            LABELS: self.labels,
            LABELS_MIN_CONFIDENCE: str(self.labels_min_confidence),
        }

    def runbook_link(self, slug: str) -> str:
        return f"{self.runbook_base_url.rstrip('/')}/{slug}.md"


def _or(value: Any, default: Any) -> Any:
    return default if value is None or value == "" else value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip().lower() in {"", "0", "false", "no"}:
        return False
    if str(value).strip().lower() in {"1", "true", "yes"}:
        return True
    raise ConfigError(f"{SKIP_BUNDLING}={value!r}: use true or false")


def _int(value: Any, default: int, key: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a whole number") from None


def _float(value: Any, default: float, key: str) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a number") from None
