"""Bytes in, thumbnails out: the worker's image logic, kept free of AWS so it can be tested and timed alone.

Everything that is the upload's fault ends as `ImageRejected` (a permanent failure the worker records and
never retries); anything else that escapes is a bug or a configuration problem, to be retried or alarmed on.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from pipeline.resources import SUPPORTED_CONTENT_TYPES
from pipeline.watermark import Watermark, WatermarkStamp

__all__ = [
    "SUPPORTED_CONTENT_TYPES",
    "ImageOptions",
    "ImageRejected",
    "ProcessedImage",
    "Thumbnail",
    "Watermark",
    "make_thumbnails",
]

_MB = 1024 * 1024
# format → (Pillow format, extension, content type). Other formats a deployment chooses to allow become PNG.
_OUTPUTS: dict[str, tuple[str, str, str]] = {
    "JPEG": ("JPEG", "jpg", "image/jpeg"),
    "PNG": ("PNG", "png", "image/png"),
    "WEBP": ("WEBP", "webp", "image/webp"),
}
# What Pillow's parsers and decoders raise on malformed input. Named rather than `Exception` so that a bug in
# this module still surfaces as a bug instead of as a user's "corrupt image".
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)
# EXIF orientation → the transpose that shows the image upright (the same table as ImageOps.exif_transpose).
_ORIENTATIONS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS = frozenset(
    {
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    }
)
_ORIENTATION_TAG = 0x0112
_BOMB_MESSAGE = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")
# Resampling filters, chosen with `imgops bench thumbnails` and tests/unit/test_imaging_quality.py (PSNR of every
# thumbnail against a full-decode LANCZOS reference). The first step, from the decoded source, handles almost all
# the pixels: on a 12 MP JPEG (decoded at 2016x1512) HAMMING, Pillow's sharpest short filter, takes 19 ms where
# LANCZOS takes 45 and BICUBIC 29, for ~0.5 dB less than LANCZOS on phone photos (~3 dB on very detailed ones,
# still above 33 dB luma). The cascade's steps are small, so they get the better BICUBIC; a box `reduce(2)` there
# saved another ~8 ms but fell to 29.9 dB luma on detailed content at 256 px.
_FIRST_STEP = Image.Resampling.HAMMING
_CASCADE_STEP = Image.Resampling.BICUBIC
# Every real RGB or gray profile fits one JPEG APP2 segment (sRGB v4 is 60 KB, Display P3 0.5 KB). A bigger
# "profile" would be copied into every thumbnail: a 4 MB one turned 10 KB thumbnails into 4 MB each.
_MAX_ICC_BYTES = 64 * 1024
# Magic numbers of the allowed families: a file that starts like one but will not open is damaged, not foreign.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"WEBP", 8, "WebP"),
    (b"GIF8", 0, "GIF"),
)


class ImageRejected(Exception):
    """A permanent, user-facing refusal: the upload can never be processed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageOptions:
    sizes: tuple[int, ...] = (1024, 512, 256)
    max_pixels: int = 50_000_000
    max_bytes: int = 25 * 1024 * 1024
    jpeg_quality: int = 85
    webp_quality: int = 80
    allowed_formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP"})
    watermark: Watermark | None = None

    def __post_init__(self) -> None:
        if any(size <= 0 for size in self.sizes):
            raise ValueError(f"thumbnail sizes must be positive, got {self.sizes}")


@dataclass(frozen=True)
class Thumbnail:
    size: int
    width: int
    height: int
    data: bytes
    format: str
    extension: str
    content_type: str


@dataclass(frozen=True)
class ProcessedImage:
    width: int
    height: int
    format: str
    mode: str
    has_transparency: bool
    thumbnails: tuple[Thumbnail, ...]


_DEFAULT_OPTIONS = ImageOptions()


def make_thumbnails(data: bytes, options: ImageOptions = _DEFAULT_OPTIONS) -> ProcessedImage:
    """Validate cheaply before decoding, decode once at the smallest useful scale, then cascade downwards."""
    if not data:
        raise ImageRejected("empty file")
    if len(data) > options.max_bytes:
        raise ImageRejected(f"file is {len(data) / _MB:.1f} MB, over the {options.max_bytes / _MB:.1f} MB limit")
    source = _open(data, options)
    image_format = "JPEG" if source.format == "MPO" else str(source.format)
    if image_format not in options.allowed_formats:
        allowed = ", ".join(sorted(options.allowed_formats))
        raise ImageRejected(f"unsupported image format {image_format} (allowed: {allowed})")
    raw_width, raw_height = source.size
    _check_pixels(raw_width, raw_height, options.max_pixels)
    if source.mode in ("P", "PA") and source.palette is None:
        # A PNG of colour type 3 without its PLTE chunk: Pillow would fail an assert (or, under -O, an attribute
        # lookup) deep inside, which the worker would retry as if it were a bug of ours. Found by tests/fuzz.
        raise ImageRejected("image data is corrupt or truncated: a palette image without a palette")
    mode = source.mode
    has_transparency = bool(source.has_transparency_data)
    icc_profile = _icc_profile(source)

    targets = sorted(set(options.sizes), reverse=True)
    # The largest thumbnail's box in stored (pre-orientation) pixels: a quarter turn just swaps both sides.
    raw_box = _fit(raw_width, raw_height, targets[0]) if targets else (raw_width, raw_height)
    draft_box = None
    if image_format == "JPEG" and raw_box != (raw_width, raw_height):
        # libjpeg scales by 1/2, 1/4 or 1/8 inside the IDCT: a fraction of the decode work and memory.
        drafted = source.draft("L" if source.mode == "L" else "RGB", raw_box)
        draft_box = drafted[1] if drafted else None
    try:
        with _input_warnings_silenced():
            source.load()
    except _DECODE_ERRORS as exc:
        raise _corrupt(exc) from None
    transpose = _ORIENTATIONS.get(_orientation(source))
    decoded = _normalise(source)
    del source  # the full-size decode goes as soon as the largest thumbnail exists
    # Orient the largest thumbnail rather than the full decode: the same pixels for less work.
    largest = decoded if raw_box == decoded.size else _resize(decoded, raw_box, draft_box, _FIRST_STEP)
    del decoded
    if transpose is not None:
        largest = largest.transpose(transpose)
    width, height = (raw_height, raw_width) if transpose in _SWAPS else (raw_width, raw_height)

    output_format, extension, content_type = _OUTPUTS.get(image_format, _OUTPUTS["PNG"])
    mark = WatermarkStamp(options.watermark) if options.watermark else None
    made: dict[int, Thumbnail] = {}
    previous = largest
    del largest
    for target in targets:
        box = _fit(width, height, target)
        current = previous if box == previous.size else _resize(previous, box, None, _CASCADE_STEP)
        stamped = mark.apply(current) if mark and target >= mark.min_size else current
        made[target] = Thumbnail(
            size=target,
            width=current.width,
            height=current.height,
            data=_encode(stamped, output_format, options, icc_profile),
            format=output_format,
            extension=extension,
            content_type=content_type,
        )
        previous = current
    return ProcessedImage(
        width=width,
        height=height,
        format=image_format,
        mode=mode,
        has_transparency=has_transparency,
        thumbnails=tuple(made[size] for size in options.sizes),
    )


def _open(data: bytes, options: ImageOptions) -> Image.Image:
    """Read the header only; our own pixel limit, not Pillow's global one, decides what is a bomb."""
    with _input_warnings_silenced():
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageRejected(_bomb_reason(str(exc), options.max_pixels)) from None
        except UnidentifiedImageError:
            family = _family(data)
            if family is not None:
                raise ImageRejected(f"image data is corrupt or truncated: a {family} whose header is damaged") from None
            raise ImageRejected(f"not a recognised image: {_sniff(data)}") from None
        except _DECODE_ERRORS as exc:
            raise _corrupt(exc) from None


def _corrupt(exc: BaseException) -> ImageRejected:
    message = _describe(exc)
    if message.startswith("Decompressed data too large"):
        # A PNG text or profile chunk inflating past Pillow's cap: a compression bomb in the metadata.
        limit = PngImagePlugin.MAX_TEXT_CHUNK / _MB
        return ImageRejected(f"image metadata is too large: a compressed chunk expands beyond {limit:.0f} MB")
    return ImageRejected(f"image data is corrupt or truncated: {message}")


def _family(data: bytes) -> str | None:
    for magic, offset, family in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (family != "WebP" or data[:4] == b"RIFF"):
            return family
    return None


@contextmanager
def _input_warnings_silenced() -> Iterator[None]:
    """Pillow warns about malformed uploads (bomb-sized headers, corrupt EXIF): they are refused or tolerated
    here on purpose, and a warning per bad upload would only be noise in the worker's logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} ({_megapixels(width * height)} megapixels), "
            f"over the {_megapixels(max_pixels)} megapixel limit"
        )


def _bomb_reason(message: str, max_pixels: int) -> str:
    """Pillow refuses beyond twice its own limit before we see the header; keep the reason ours."""
    match = _BOMB_MESSAGE.search(message)
    if match is None:
        return f"image declares more pixels than the {_megapixels(max_pixels)} megapixel limit"
    declared, pillow_limit = int(match.group(1)), int(match.group(2))
    limit = min(max_pixels, pillow_limit)
    return f"image declares {_megapixels(declared)} megapixels, over the {_megapixels(limit)} megapixel limit"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}" if pixels >= 1_000_000 else f"{pixels / 1e6:.3g}"


def _sniff(data: bytes) -> str:
    """Say what the upload looks like instead, without echoing much of it back."""
    head = data[:64]
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        snippet = " ".join(head.decode("ascii").split())[:32]
        return f"the content looks like text ({snippet!r})"
    return f"unknown file signature {head[:8].hex(' ')}"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    """Long edge = min(target, long edge), aspect kept, rounded half up, never below 1 px."""
    long_edge = max(width, height)
    if long_edge <= target:
        return width, height

    def scaled(side: int) -> int:
        return max(1, (2 * side * target + long_edge) // (2 * long_edge))

    return (target, scaled(height)) if width >= height else (scaled(width), target)


def _orientation(image: Image.Image) -> int:
    """A broken EXIF block is no reason to refuse the pixels: treat it as upright."""
    try:
        with _input_warnings_silenced():
            value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _icc_profile(image: Image.Image) -> bytes | None:
    """Keep the colour profile (phones shoot Display P3) unless the pixels change colour space, or it is too big
    to copy into every thumbnail, or littlecms cannot read it (then no viewer could use it either)."""
    profile = image.info.get("icc_profile")
    if not isinstance(profile, bytes) or not profile or len(profile) > _MAX_ICC_BYTES:
        return None
    if image.mode not in {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA"}:
        return None
    return profile if _readable_profile(profile) else None


def _readable_profile(profile: bytes) -> bool:
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without littlecms: pass profiles through unchecked
        return True
    try:
        ImageCms.getOpenProfile(io.BytesIO(profile))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return False
    return True


def _normalise(image: Image.Image) -> Image.Image:
    """Bring every source mode to L, LA, RGB or RGBA, keeping transparency, before any resampling."""
    mode = image.mode
    transparent = bool(image.has_transparency_data)
    if mode in ("RGBA", "LA"):
        return image
    if mode in ("RGB", "L"):
        return image.convert("LA" if mode == "L" else "RGBA") if transparent else image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if transparent else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    if mode.startswith("I") or mode == "F":
        return _to_gray8(image)
    return image.convert("RGBA" if transparent else "RGB")


def _to_gray8(image: Image.Image) -> Image.Image:
    """Scale high-bit-depth gray into 0..255; a plain convert clips 16-bit data to almost pure white."""
    if image.mode.startswith("I;16") and image.mode != "I;16":
        image = image.convert("I")
    if image.mode == "I;16":
        low, high = 0.0, 65535.0
    else:
        extrema = image.getextrema()
        low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            low, high = 0.0, 1.0
        elif low >= 0.0 and high <= 255.0:
            low, high = 0.0, 255.0
        elif low >= 0.0 and high <= 65535.0:
            low, high = 0.0, 65535.0
    scale = 255.0 / (high - low) if high > low else 1.0
    offset = 0.5 - low * scale
    return image.point(lambda value: value * scale + offset).convert("L")


def _resize(
    image: Image.Image,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None,
    resample: Image.Resampling,
) -> Image.Image:
    # Pillow premultiplies alpha for RGBA/LA here, so transparent pixels' colour cannot bleed into the edges.
    return image.resize(size, resample, box=box, reducing_gap=2.0)


def _encode(image: Image.Image, output_format: str, options: ImageOptions, icc_profile: bytes | None) -> bytes:
    """No EXIF is copied: thumbnails are public and GPS tags are not."""
    params: dict[str, Any] = {}
    if output_format == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        params = {"quality": options.jpeg_quality}
    elif output_format == "PNG":
        params = {"compress_level": 6, "optimize": False}
    elif output_format == "WEBP":
        params = {"quality": options.webp_quality, "method": 4}
    if icc_profile is not None:
        params["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, output_format, **params)
    return buffer.getvalue()
