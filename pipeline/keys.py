"""The S3 key contract, built and parsed only here: `user-uploads/<sub>/<uuid>.<ext>` for an original (what the
presign API hands out) and `processed/<image id>/<size>.<ext>` for its thumbnails (what the worker writes)."""

from __future__ import annotations

import uuid

from pipeline.auth import SUB_PATTERN
from pipeline.resources import PROCESSED_PREFIX, UPLOAD_PREFIX


def upload_key(owner: str, image_id: str, extension: str) -> str:
    """Where the user `owner` (a Cognito sub) uploads image `image_id`."""
    return f"{UPLOAD_PREFIX}{owner}/{image_id}.{extension}"


def owner_of(key: str) -> str | None:
    """The Cognito sub a key belongs to, or None when it is not `user-uploads/<sub>/<name>`."""
    if not key.startswith(UPLOAD_PREFIX):
        return None
    owner, _, name = key[len(UPLOAD_PREFIX) :].partition("/")
    return owner if SUB_PATTERN.fullmatch(owner) and name and not name.endswith("/") else None


def image_id_for(bucket: str, key: str) -> str:
    """The UUID the presign API put in the name; objects named otherwise get a stable derived id."""
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    try:
        return str(uuid.UUID(stem))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}"))


def processed_key(image_id: str, size: int, extension: str) -> str:
    """Where the worker writes image `image_id`'s thumbnail of `size` px."""
    return f"{PROCESSED_PREFIX}{image_id}/{size}.{extension}"
