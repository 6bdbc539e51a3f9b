"""Seed files for fuzzing: a real camera JPEG (matplotlib ships one) re-encoded the ways uploads arrive.

Small on purpose: a mutation of a 20 KB file is tried in milliseconds, so a time box covers thousands.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
from PIL import Image

from tests.hostile import exif_oriented, png_raw


def _save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@cache
def seed_files() -> dict[str, bytes]:
    """Name → bytes; every one of them is a valid upload that make_thumbnails turns into thumbnails."""
    original = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(original) as opened:
        photo = opened.convert("RGB").resize((96, 112), Image.Resampling.LANCZOS)
    rgba = photo.copy()
    rgba.putalpha(photo.convert("L"))
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    animation: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "duration": 50, "loop": 0}
    return {
        "camera.jpg": _save(photo, "JPEG", quality=85),
        "progressive.jpg": _save(photo, "JPEG", quality=70, progressive=True),
        "cmyk.jpg": _save(photo.convert("CMYK"), "JPEG", quality=80),
        "oriented.jpg": exif_oriented(6, 64, 32),
        "gray.png": _save(photo.convert("L"), "PNG"),
        "rgba.png": _save(rgba, "PNG"),
        "palette.png": _save(photo.convert("P"), "PNG", transparency=0),
        "deep.png": png_raw(40, 30, bit_depth=16, color_type=2, row=lambda y: bytes(range(240))),
        "animated.png": _save(frames[0], "PNG", **animation),
        "lossy.webp": _save(photo, "WEBP", quality=70),
        "alpha.webp": _save(rgba, "WEBP", lossless=True),
        "animated.webp": _save(frames[0], "WEBP", **animation),
    }
