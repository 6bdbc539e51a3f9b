"""The handlers' configuration: read once from the environment into one frozen object.

Pillow is imported only when image options or a watermark are built: the API handlers read these settings
too, and their bundle has no Pillow (see dashboards/constructs/bundling.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ImgopsError
from pipeline.resources import (
    DEFAULT_LABELS_MIN_CONFIDENCE,
    LABELS_MODES,
    OUTPUT_FORMATS,
    PRESIGN_EXPIRY_SECONDS,
    WORKER_MAX_PIXELS,
    WORKER_TIMEOUT_SECONDS,
    Env,
)

if TYPE_CHECKING:
    from pipeline.imaging import ImageOptions
    from pipeline.watermark import Watermark

DEFAULT_SIZES = (1024, 512, 256)
DEFAULT_MAX_PIXELS = WORKER_MAX_PIXELS  # defined beside the worker's memory size, which must hold it
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024


class SettingsError(ImgopsError, ValueError):
    """A deployment mistake: a variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    upload_bucket: str
    processed_bucket: str
    images_table: str
    topic_arn: str
    thumbnail_sizes: tuple[int, ...] = DEFAULT_SIZES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    jpeg_quality: int = 85
    webp_quality: int = 80
    avif_quality: int = 70
    output_format: str = "auto"  # the thumbnails' format: one of OUTPUT_FORMATS (see pipeline.imaging)
    url_expiry_seconds: int = PRESIGN_EXPIRY_SECONDS
    worker_timeout_seconds: int = WORKER_TIMEOUT_SECONDS
    watermark: Watermark | None = field(default=None)
    worker_overlap: bool = True  # IMGOPS_WORKER_OVERLAP: overlap a batch's I/O with its decoding (pipeline.overlap)
    labels: str = "none"  # IMGOPS_LABELS: one of LABELS_MODES (pipeline.labels)
    labels_min_confidence: float = DEFAULT_LABELS_MIN_CONFIDENCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            upload_bucket=_required(env, Env.UPLOAD_BUCKET),
            processed_bucket=_required(env, Env.PROCESSED_BUCKET),
            images_table=_required(env, Env.IMAGES_TABLE),
            topic_arn=_required(env, Env.TOPIC_ARN),
            thumbnail_sizes=_sizes(env.get(Env.THUMBNAIL_SIZES)) or DEFAULT_SIZES,
            max_pixels=_positive_int(env, Env.MAX_PIXELS, DEFAULT_MAX_PIXELS),
            max_upload_bytes=_positive_int(env, Env.MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
            jpeg_quality=_quality(env, Env.JPEG_QUALITY, 85),
            webp_quality=_quality(env, Env.WEBP_QUALITY, 80),
            avif_quality=_quality(env, Env.AVIF_QUALITY, 70),
            output_format=_choice(env, Env.OUTPUT_FORMAT, OUTPUT_FORMATS, default="auto"),
            url_expiry_seconds=_positive_int(env, Env.URL_EXPIRY_SECONDS, PRESIGN_EXPIRY_SECONDS),
            worker_timeout_seconds=_positive_int(env, Env.WORKER_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS),
            watermark=_watermark(env),
            worker_overlap=_switch(env, Env.WORKER_OVERLAP, default=True),
            labels=_choice(env, Env.LABELS, LABELS_MODES, default="none"),
            labels_min_confidence=_confidence(env),
        )

    def image_options(self) -> ImageOptions:
        from pipeline.imaging import ImageOptions  # Pillow: the worker's import, not the API's

        return ImageOptions(
            sizes=self.thumbnail_sizes,
            max_pixels=self.max_pixels,
            max_bytes=self.max_upload_bytes,
            jpeg_quality=self.jpeg_quality,
            webp_quality=self.webp_quality,
            avif_quality=self.avif_quality,
            output_format=self.output_format,
            watermark=self.watermark,
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is not set")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _quality(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive_int(env, name, default)
    if value > 100:
        raise SettingsError(f"{name}={value} must be between 1 and 100")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], *, default: str) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} must be 1 or 0")


def _confidence(env: Mapping[str, str]) -> float:
    raw = env.get(Env.LABELS_MIN_CONFIDENCE, "").strip()
    if not raw:
        return DEFAULT_LABELS_MIN_CONFIDENCE
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{Env.LABELS_MIN_CONFIDENCE}={raw!r} is not a number") from None
    if not 0.0 <= value <= 100.0:
        raise SettingsError(f"{Env.LABELS_MIN_CONFIDENCE}={raw!r} must be between 0 and 100 (percent)")
    return value


def _sizes(raw: str | None) -> tuple[int, ...]:
    if not raw or not raw.strip():
        return ()
    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True))
    except ValueError:
        raise SettingsError(f"{Env.THUMBNAIL_SIZES}={raw!r} must be comma-separated pixel sizes") from None
    if not sizes or min(sizes) <= 0:
        raise SettingsError(f"{Env.THUMBNAIL_SIZES}={raw!r} must list positive sizes")
    return sizes


def _watermark(env: Mapping[str, str]) -> Watermark | None:
    text = env.get(Env.WATERMARK_TEXT, "").strip() or None
    png_path = env.get(Env.WATERMARK_PNG_PATH, "").strip()
    if text is None and not png_path:
        return None
    from pipeline.watermark import Watermark  # Pillow, only when a watermark is configured (the worker's)

    try:
        image_png = Path(png_path).read_bytes() if png_path else None
    except OSError as exc:
        raise SettingsError(f"{Env.WATERMARK_PNG_PATH}={png_path!r} cannot be read: {exc.strerror}") from None
    try:
        opacity = float(env.get(Env.WATERMARK_OPACITY, "0.5"))
    except ValueError:
        raise SettingsError(f"{Env.WATERMARK_OPACITY} must be a number between 0 and 1") from None
    if not 0.0 <= opacity <= 1.0:
        raise SettingsError(f"{Env.WATERMARK_OPACITY} must be between 0 and 1")
    position = env.get(Env.WATERMARK_POSITION, "bottom-right").strip()
    if position not in {"top-left", "top-right", "bottom-left", "bottom-right", "center"}:
        raise SettingsError(f"{Env.WATERMARK_POSITION}={position!r} is not a known position")
    return Watermark(
        text=None if image_png else text,
        image_png=image_png,
        position=position,
        opacity=opacity,
        min_size=_positive_int(env, Env.WATERMARK_MIN_SIZE, 512),
    )
