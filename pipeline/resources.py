"""Names and numbers shared by the CDK app and the local stack, so the two cannot drift."""

from __future__ import annotations

from dataclasses import dataclass

UPLOAD_PREFIX = "user-uploads/"
PROCESSED_PREFIX = "processed/"
# What the presign API hands out upload URLs for (content type → file extension); the worker decodes these.
# Here rather than in pipeline.imaging so the API handlers never import Pillow (their bundle has none).
# The worker decides the format from the bytes, whatever the type says (HEIC/HEIF via pillow-heif, AVIF via Pillow).
SUPPORTED_CONTENT_TYPES: dict[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/avif": "avif",
}
# What IMGOPS_OUTPUT_FORMAT may name (the thumbnails' format; pipeline.imaging says what each means). Here so the
# settings can check it without importing Pillow.
OUTPUT_FORMATS: tuple[str, ...] = ("auto", "source", "jpeg", "webp", "avif")
# What IMGOPS_LABELS may name: the optional labels stage (pipeline.labels). Off by default: it costs a Rekognition
# call per image and an IAM grant, which the CDK app adds only when `-c imgops:labels=rekognition`.
LABELS_MODES: tuple[str, ...] = ("none", "rekognition")
DEFAULT_LABELS_MIN_CONFIDENCE = 80.0

WORKER_TIMEOUT_SECONDS = 60
# AWS recommends a source-queue visibility timeout of at least 6x the function timeout.
QUEUE_VISIBILITY_TIMEOUT_SECONDS = 6 * WORKER_TIMEOUT_SECONDS
QUEUE_MAX_RECEIVE_COUNT = 3
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
WORKER_BATCH_SIZE = 10
# The worker's memory size and the largest image it decodes (width x height) go together: the size must hold one
# image at the cap in the hungriest accepted format. The CDK app takes both from here (MemorySize, and
# IMGOPS_MAX_PIXELS on the function; `-c imgops:worker-memory-mb=N` overrides the size per deployment), and
# `imgops loadtest sizing` reads them back from the synthesized template and measures the pair.
WORKER_MEMORY_MB = 1024
WORKER_MAX_PIXELS = 50_000_000
PRESIGN_EXPIRY_SECONDS = 300

# The capacity counters' S3 Inventory configuration on both buckets: the reports land in the inventory bucket
# under `<INVENTORY_PREFIX>/<source bucket>/<INVENTORY_ID>/` (S3's layout; monitoring.inventory reads it).
INVENTORY_ID = "capacity"
INVENTORY_PREFIX = "inventory"
# What each report row holds besides bucket and key: the reconciler reads Size, the rest serves on-call's queries.
INVENTORY_FIELDS = ("Size", "LastModifiedDate", "ETag")
# How often the capacity publisher runs (an EventBridge rate: a minute is the shortest).
CAPACITY_PUBLISH_MINUTES = 1

DEMO_USERNAME = "demo"
# Only ever used against the embedded local Cognito (moto); never a real credential.
DEMO_PASSWORD = "Demo-pass-123!"  # noqa: S105


@dataclass(frozen=True)
class ResourceNames:
    """Physical names of one deployment of the pipeline; `prefix` keeps deployments (and tests) apart."""

    prefix: str = "imgops"

    @property
    def upload_bucket(self) -> str:
        return f"{self.prefix}-uploads"

    @property
    def processed_bucket(self) -> str:
        return f"{self.prefix}-processed"

    @property
    def work_queue(self) -> str:
        return f"{self.prefix}-work"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-work-dlq"

    @property
    def images_table(self) -> str:
        return f"{self.prefix}-images"

    @property
    def capacity_table(self) -> str:
        """Key records and counters of the buckets' objects (monitoring.capacity)."""
        return f"{self.prefix}-capacity"

    @property
    def capacity_queue(self) -> str:
        """The buckets' object events on their way to the capacity counter."""
        return f"{self.prefix}-capacity-events"

    @property
    def capacity_dead_letter_queue(self) -> str:
        return f"{self.prefix}-capacity-events-dlq"

    @property
    def capacity_counter_function(self) -> str:
        """Applies the buckets' object events to the capacity counters (monitoring.capacity_counter)."""
        return f"{self.prefix}-capacity-counter"

    @property
    def capacity_publisher_function(self) -> str:
        """Publishes the counters as CustomS3 every minute (monitoring.capacity_publisher)."""
        return f"{self.prefix}-capacity-publisher"

    @property
    def athena_workgroup(self) -> str:
        return f"{self.prefix}-capacity"

    @property
    def glue_database(self) -> str:
        """Glue names take letters, digits and underscores."""
        return f"{self.prefix.replace('-', '_')}_capacity"

    @property
    def inventory_bucket(self) -> str:
        """Where S3 Inventory delivers the buckets' daily reports (the reconciler's snapshots at scale)."""
        return f"{self.prefix}-inventory"

    @property
    def notifications_topic(self) -> str:
        return f"{self.prefix}-image-events"

    @property
    def user_pool(self) -> str:
        return f"{self.prefix}-users"

    @property
    def user_pool_client(self) -> str:
        return f"{self.prefix}-cli"

    @property
    def worker_function(self) -> str:
        return f"{self.prefix}-worker"

    @property
    def presign_function(self) -> str:
        return f"{self.prefix}-presign"

    @property
    def read_api_function(self) -> str:
        return f"{self.prefix}-read-api"


class Env:
    """Environment variable names the handlers read (set by the CDK app and by the local stack)."""

    UPLOAD_BUCKET = "IMGOPS_UPLOAD_BUCKET"
    PROCESSED_BUCKET = "IMGOPS_PROCESSED_BUCKET"
    IMAGES_TABLE = "IMGOPS_IMAGES_TABLE"
    TOPIC_ARN = "IMGOPS_TOPIC_ARN"
    CAPACITY_TABLE = "IMGOPS_CAPACITY_TABLE"
    CAPACITY_SHARDS = "IMGOPS_CAPACITY_SHARDS"  # counter shards per bucket (monitoring.capacity; only ever raised)
    CAPACITY_QUEUE = "IMGOPS_CAPACITY_QUEUE"  # the object events' queue: its oldest message is the counters' lag
    CAPACITY_DEAD_LETTER_QUEUE = "IMGOPS_CAPACITY_DEAD_LETTER_QUEUE"  # events parked there hold corrections back
    INVENTORY_BUCKET = "IMGOPS_INVENTORY_BUCKET"  # where the buckets' S3 Inventory reports land (the reconciler)
    ATHENA_WORKGROUP = "IMGOPS_ATHENA_WORKGROUP"  # the reconciler's Athena workgroup (its results and scan cap)
    ATHENA_DATABASE = "IMGOPS_ATHENA_DATABASE"  # the Glue database of the inventory tables
    INVENTORY_ENGINE = "IMGOPS_INVENTORY_ENGINE"  # what queries them: athena (AWS, the default) or duckdb (local)
    THUMBNAIL_SIZES = "IMGOPS_THUMBNAIL_SIZES"
    MAX_PIXELS = "IMGOPS_MAX_PIXELS"
    MAX_UPLOAD_BYTES = "IMGOPS_MAX_UPLOAD_BYTES"
    JPEG_QUALITY = "IMGOPS_JPEG_QUALITY"
    WEBP_QUALITY = "IMGOPS_WEBP_QUALITY"
    AVIF_QUALITY = "IMGOPS_AVIF_QUALITY"
    OUTPUT_FORMAT = "IMGOPS_OUTPUT_FORMAT"  # auto | source | jpeg | webp | avif (pipeline.imaging.OUTPUT_FORMATS)
    URL_EXPIRY_SECONDS = "IMGOPS_URL_EXPIRY_SECONDS"
    WORKER_TIMEOUT_SECONDS = "IMGOPS_WORKER_TIMEOUT_SECONDS"  # the worker's claim lease: its function timeout
    WATERMARK_TEXT = "IMGOPS_WATERMARK_TEXT"
    WATERMARK_PNG_PATH = "IMGOPS_WATERMARK_PNG_PATH"
    WATERMARK_POSITION = "IMGOPS_WATERMARK_POSITION"
    WATERMARK_OPACITY = "IMGOPS_WATERMARK_OPACITY"
    WATERMARK_MIN_SIZE = "IMGOPS_WATERMARK_MIN_SIZE"
    # 1 (default): a batch's reads and writes overlap its decoding (pipeline.overlap); 0: one record at a time.
    WORKER_OVERLAP = "IMGOPS_WORKER_OVERLAP"
    LABELS = "IMGOPS_LABELS"  # none | rekognition (LABELS_MODES)
    LABELS_MIN_CONFIDENCE = "IMGOPS_LABELS_MIN_CONFIDENCE"  # percent, 0-100


class StackOutputs:
    """CloudFormation output names the CDK app exports and `--target aws` reads."""

    API_URL = "ApiUrl"
    TOPIC_ARN = "ImageEventsTopicArn"
    USER_POOL_ID = "UserPoolId"
    USER_POOL_CLIENT_ID = "UserPoolClientId"
    WORKER_FUNCTION = "WorkerFunctionName"
    UPLOAD_BUCKET = "UploadBucketName"
    PROCESSED_BUCKET = "ProcessedBucketName"
    WORK_QUEUE_URL = "WorkQueueUrl"
    DLQ_URL = "DeadLetterQueueUrl"
    IMAGES_TABLE = "ImagesTableName"
