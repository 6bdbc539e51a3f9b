"""Labels for an upload from Amazon Rekognition DetectLabels: an optional stage, off unless IMGOPS_LABELS=rekognition.

A label is a nice-to-have next to the thumbnails, so it never fails them: whatever goes wrong (throttling, an
image Rekognition cannot read, a missing permission) ends as `labels_error` on the item and in the notification,
and the thumbnails are DONE as usual. `labels_error` is the owner's to read (GET /images/{id} returns it), so it
names the error code only; the AWS message, which can name accounts and roles, goes to the worker's log.

What is sent: the original when Rekognition can read it (JPEG or PNG) — its bytes up to DetectLabels' 5 MB
limit for `Image.Bytes`, else a reference to the object (`Image.S3Object`, up to 15 MB; Rekognition then reads it
with the worker's own s3:GetObject). Phones' HEIC, AVIF and WebP uploads Rekognition cannot read: then the largest
thumbnail goes instead when it is a JPEG or PNG (it is, under the default output policy, for opaque pictures).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from pipeline.errors import describe_failure, error_code

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_rekognition.type_defs import ImageTypeDef

    from pipeline.imaging import ProcessedImage
    from pipeline.store import Upload

MAX_LABELS = 5
BYTES_LIMIT = 5 * 2**20  # DetectLabels' limit for Image.Bytes
S3_OBJECT_LIMIT = 15 * 2**20  # and for an Image.S3Object
READABLE_FORMATS = frozenset({"JPEG", "PNG"})  # what DetectLabels decodes

logger = Logger(service="imgops-worker")


def wanted_bytes(image: ProcessedImage, original_size: int) -> bool:
    """Whether `detect` will send the original's bytes (so the worker keeps them until then)."""
    return image.format in READABLE_FORMATS and original_size <= BYTES_LIMIT


# The most one DetectLabels call may take with its client's retries and timeouts (pipeline.aws: 2 tries of at most
# 2 s to connect + 5 s to read), and what must stay for finishing the item and notifying after it.
CALL_SECONDS = 15.0
NO_TIME = "skipped: too little of the invocation's time was left to ask Rekognition"


def time_left(deadline: float | None) -> bool:
    """Whether a call still fits before `deadline` (time.monotonic(); None: no deadline known)."""
    return deadline is None or time.monotonic() + CALL_SECONDS < deadline


def detect(
    client: RekognitionClient,
    *,
    upload: Upload,
    image: ProcessedImage,
    original: bytes | None,
    original_size: int,
    min_confidence: float,
) -> dict[str, Any]:
    """`{"labels": [{"name", "confidence"}, ...]}` (at most MAX_LABELS, most confident first), or
    `{"labels_error": why}`; never raises."""
    picture, source = _picture(upload, image, original, original_size)
    if picture is None:
        return {"labels_error": source}
    try:
        response = client.detect_labels(Image=picture, MaxLabels=MAX_LABELS, MinConfidence=min_confidence)
        # Rekognition applies both limits itself; applied again so a stub that ignores them cannot break the contract.
        found = sorted(
            (
                (round(float(label["Confidence"]), 1), str(label["Name"]))
                for label in response.get("Labels", [])
                if "Name" in label and isinstance(label.get("Confidence"), int | float)
                if float(label["Confidence"]) >= min_confidence
            ),
            reverse=True,
        )
    except Exception as exc:  # noqa: BLE001 - labels never fail the thumbnails
        error = describe_failure(exc, "labels")
        logger.warning(
            "labels missing", extra={"key": upload.key, "image_id": upload.image_id, "error": error, "source": source}
        )
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        return {"labels_error": f"Rekognition DetectLabels failed: {code or type(exc).__name__}"}
    return {"labels": [{"name": name, "confidence": confidence} for confidence, name in found[:MAX_LABELS]]}


def _picture(
    upload: Upload, image: ProcessedImage, original: bytes | None, original_size: int
) -> tuple[ImageTypeDef | None, str]:
    """What to send, and where it came from (or None and why there is nothing Rekognition can read)."""
    if image.format in READABLE_FORMATS:
        if original is not None and len(original) <= BYTES_LIMIT:
            return {"Bytes": original}, "original"
        if original_size <= S3_OBJECT_LIMIT:
            return {"S3Object": {"Bucket": upload.bucket, "Name": upload.key}}, "original (S3 object)"
    largest = max(image.thumbnails, key=lambda thumbnail: thumbnail.size, default=None)
    if largest is not None and largest.format in READABLE_FORMATS:
        return {"Bytes": largest.data}, f"thumbnail {largest.size}"
    if image.format in READABLE_FORMATS:
        return None, f"the original is {original_size / 2**20:.1f} MB, over Rekognition's 15 MB limit"
    return None, f"Rekognition reads JPEG and PNG only; the upload is {image.format} and so are its thumbnails"
