"""Bytes in, thumbnails out: the worker's image logic, kept free of AWS so it can be tested and timed alone.

Everything that is the upload's fault ends as `ImageRejected` (a permanent failure the worker records and
never retries); anything else that escapes is a bug or a configuration problem, to be retried or alarmed on.

Formats are recognised from the bytes: JPEG, PNG and WebP by Pillow itself, AVIF by Pillow's libavif plugin and
HEIC/HEIF by pillow-heif (libheif), which is loaded the first time an upload looks like one. Both of the last two
are ISOBMFF containers: the size they declare is read from their boxes and checked before either library runs.
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
from functools import cache
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError, features

from pipeline.resources import OUTPUT_FORMATS, SUPPORTED_CONTENT_TYPES
from pipeline.watermark import Watermark, WatermarkStamp

__all__ = [
    "OUTPUT_FORMATS",
    "SUPPORTED_CONTENT_TYPES",
    "CodecUnavailable",
    "ImageOptions",
    "ImageRejected",
    "ProcessedImage",
    "Thumbnail",
    "Watermark",
    "make_thumbnails",
]

_MB = 1024 * 1024
# The thumbnails' format (ImageOptions.output_format, IMGOPS_OUTPUT_FORMAT):
# - auto: JPEG, or WebP when the picture has transparency (JPEG has no alpha channel);
# - source: the upload's own format when browsers show it (JPEG, PNG, WebP, AVIF); HEIC/HEIF, which only Safari
#   shows, follows `auto`, and other formats a deployment chooses to allow (GIF) become PNG;
# - jpeg, webp, avif: always that format (transparent pictures are flattened onto white for JPEG).
# (OUTPUT_FORMATS lists these names; it lives in pipeline.resources so that the settings need no Pillow.)
_FIXED_OUTPUTS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
_WEB_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "AVIF"})
# Pillow format → (extension, content type) of the thumbnails written in it.
_OUTPUTS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "AVIF": ("avif", "image/avif"),
}
# libaom's speed for AVIF thumbnails (0 slowest .. 10 fastest; Pillow's default is 6). A 1024x768 phone photo
# at quality 70, one thread: speed 6 spends ~320 ms of CPU, 8 ~150 ms, 9 ~44 ms (10 writes the same file as 9
# for a still image in this libaom), for files 8% (speed 8) and 14% (speed 9) larger than speed 6's at the same
# luma PSNR (within 0.3 dB). A thumbnail is served many times, but speed 6 would spend 5x the CPU of the decode
# and resize together on every upload.
_AVIF_SPEED = 9
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
    RuntimeError,  # libavif's decode errors, as Pillow's AVIF plugin raises them
    ZeroDivisionError,  # an AVIF image sequence whose track declares a timescale of 0
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
# ... except where a step exactly halves the largest thumbnail (1024 -> 512, the usual sizes): there a 2x2 box
# `reduce(2)` takes ~0.5 ms where BICUBIC takes ~4, for ~0.7 dB less at 512 px; the steps after it stay BICUBIC,
# so at most one box step sits in any thumbnail's chain (detailed 12 MP content: 31.5 dB luma at 256 px, where
# two box steps fell to 29.9). It saves ~3 ms of ~27 on a 1080p JPEG, ~6 of ~66 on a 12 MP one (CPU time,
# `imgops bench thumbnails --kind jpeg1080`).
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
# ISOBMFF `ftyp` brands: a major brand names the family; the generic MIAF brands (mif1, msf1) leave it to the
# compatible brands. HEIF here means HEVC-coded (HEIC) and its generic relatives, decoded by libheif.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})
# Bounds on reading the boxes of an upload, which may be hostile: boxes visited, ipma entries scanned.
_MAX_BOXES = 10_000
_MAX_DETAIL = 120  # characters of a decoder's error message quoted in a refusal


class ImageRejected(Exception):
    """A permanent, user-facing refusal: the upload can never be processed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CodecUnavailable(Exception):
    """A decoder this deployment should have is missing (pillow-heif not installed, a Pillow without libavif):
    a configuration problem, retried and alarmed on like any other, never the upload's fault."""


@dataclass(frozen=True)
class ImageOptions:
    sizes: tuple[int, ...] = (1024, 512, 256)
    max_pixels: int = 50_000_000
    max_bytes: int = 25 * 1024 * 1024
    jpeg_quality: int = 85
    webp_quality: int = 80
    # AVIF at 70: the lowest quality that keeps detailed 12 MP content at 30 dB luma at 256 px (60 fell to 28.2);
    # on the corpus's 12 MP photos 38% fewer bytes than JPEG at 85 (tests/unit/test_imaging_quality.py).
    avif_quality: int = 70
    output_format: str = "auto"  # one of OUTPUT_FORMATS
    allowed_formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "HEIF", "AVIF"})
    watermark: Watermark | None = None

    def __post_init__(self) -> None:
        if any(size <= 0 for size in self.sizes):
            raise ValueError(f"thumbnail sizes must be positive, got {self.sizes}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.output_format!r}")
        for name in ("jpeg_quality", "webp_quality", "avif_quality"):
            if not 1 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be between 1 and 100, got {getattr(self, name)}")


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
    container = _container(data)
    if container is not None:
        _check_allowed(container, options)
        declared = _declared(data)
        if declared.size is not None:  # before libheif or libavif parse anything
            _check_pixels(*declared.size, options.max_pixels)
        if container == "HEIF" and declared.sequence and not declared.still:
            # libheif reads a HEIF file's image items only; a sequence's frames live in a track.
            raise ImageRejected("unsupported HEIF image sequence: it has no still image, only a track of frames")
    source = _open(data, options, container)
    image_format = "JPEG" if source.format == "MPO" else str(source.format)
    _check_allowed(image_format, options)
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
    # Transparency is what the pixels have, not what the file could hold: an alpha channel at 255 everywhere
    # (screenshots saved as RGBA) hides nothing, and is dropped so that such a picture can be a JPEG.
    transparent = decoded.mode in ("RGBA", "LA") and not _opaque(decoded)
    # Orient the largest thumbnail rather than the full decode: the same pixels for less work.
    largest = decoded if raw_box == decoded.size else _resize(decoded, raw_box, draft_box, _FIRST_STEP)
    del decoded
    if transpose is not None:
        largest = largest.transpose(transpose)
    width, height = (raw_height, raw_width) if transpose in _SWAPS else (raw_width, raw_height)
    if largest.mode in ("RGBA", "LA") and not transparent:
        largest = largest.convert(largest.mode[:-1])

    output_format = _output_format(options.output_format, image_format, transparent)
    extension, content_type = _OUTPUTS[output_format]
    mark = WatermarkStamp(options.watermark) if options.watermark else None
    made: dict[int, Thumbnail] = {}
    previous = largest
    del largest
    for step, target in enumerate(targets):
        box = _fit(width, height, target)
        current = previous if box == previous.size else _cascade(previous, box, halve=step == 1)
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


def _check_allowed(image_format: str, options: ImageOptions) -> None:
    if image_format not in options.allowed_formats:
        allowed = ", ".join(sorted(options.allowed_formats))
        raise ImageRejected(f"unsupported image format {image_format} (allowed: {allowed})")


def _open(data: bytes, options: ImageOptions, container: str | None) -> Image.Image:
    """Read the header only; our own pixel limit, not Pillow's global one, decides what is a bomb. A HEIF or AVIF
    container goes to its own reader only, so that a damaged one is reported as what it is."""
    formats = None
    if container == "HEIF":
        _load_heif_plugin()
        formats = ["HEIF"]
    elif container == "AVIF":
        if not features.check("avif"):
            raise CodecUnavailable("AVIF uploads need a Pillow built with libavif (Pillow's wheels have it)")
        formats = ["AVIF"]
    with _input_warnings_silenced():
        try:
            return Image.open(io.BytesIO(data), formats=formats)
        except Image.DecompressionBombError as exc:
            raise ImageRejected(_bomb_reason(str(exc), options.max_pixels)) from None
        except UnidentifiedImageError:
            family = container or _family(data)
            if family is not None:
                article = "an" if family[0] in "AEIOU" else "a"
                raise ImageRejected(
                    f"image data is corrupt or truncated: {article} {family} whose header is damaged"
                ) from None
            raise ImageRejected(f"not a recognised image: {_sniff(data)}") from None
        except _DECODE_ERRORS as exc:
            raise _corrupt(exc) from None


@cache
def _load_heif_plugin() -> None:
    """pillow-heif costs ~50 ms to import: paid by the first HEIC a worker sees, not by every cold start."""
    try:
        import pillow_heif
    except ImportError as exc:
        raise CodecUnavailable(f"HEIC/HEIF uploads need pillow-heif, which is not installed: {exc}") from None
    Image.init()  # Pillow's own readers first: a generic `mif1` file is tried as AVIF before libheif gets it
    # Embedded thumbnails, depth maps and auxiliary images are never used here: not even parsed. libheif applies
    # the container's rotation and mirroring (irot, imir) while decoding and pillow-heif resets the EXIF
    # orientation to 1, as the HEIF standard has the container's transformations win over EXIF: no second turn.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def _container(data: bytes) -> str | None:
    """HEIF or AVIF from the `ftyp` box that starts every ISOBMFF file, or None for anything else."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    size = int.from_bytes(data[:4], "big")
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, min(size, len(data), 1024) - 3, 4)}
    if major in _AVIF_BRANDS:
        return "AVIF"
    if major in _HEIF_BRANDS:
        return "HEIF"
    if major in _GENERIC_BRANDS:
        if compatible & _AVIF_BRANDS:
            return "AVIF"
        return "HEIF"  # libheif reads the generic brands' other codecs (HEVC, JPEG, uncompressed)
    return None


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each ISOBMFF box in data[start:end]; stops at the first malformed one."""
    for _ in range(_MAX_BOXES):
        if start + 8 > end:
            return
        size, kind, header = int.from_bytes(data[start : start + 4], "big"), data[start + 4 : start + 8], 8
        if size == 1 and start + 16 <= end:
            size, header = int.from_bytes(data[start + 8 : start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


@dataclass(frozen=True)
class _Declared:
    """What a HEIF or AVIF file says about itself, from its boxes alone."""

    size: tuple[int, int] | None  # the largest picture it declares
    still: bool  # a primary image item (meta/pitm)
    sequence: bool  # a track of frames (moov)


def _declared(data: bytes) -> _Declared:
    """The primary item's image spatial extent (`ispe`: a grid's full size too) and the sample size of each
    track (image sequences), without decoding or even validating anything else."""
    sizes: list[tuple[int, int]] = []
    still = sequence = False
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"meta":
            primary = _primary_item_size(data, start + 4, end)  # meta is a full box: version and flags first
            still = still or primary is not None
            sizes += primary or []
        elif kind == b"moov":
            sequence = True
            sizes += _track_sizes(data, start, end)
    return _Declared(max(sizes, key=lambda size: size[0] * size[1], default=None), still, sequence)


def _primary_item_size(data: bytes, start: int, end: int) -> list[tuple[int, int]] | None:
    """None without a primary item; else its `ispe` sizes (one, unless the file is malformed)."""
    children = {kind: (body, stop) for kind, body, stop in reversed(list(_boxes(data, start, end)))}
    if b"pitm" not in children:
        return None
    pitm, pitm_end = children[b"pitm"]
    if pitm_end - pitm < 6:  # version and flags, then a 16-bit item id (32-bit from version 1)
        return []
    primary = int.from_bytes(data[pitm + 4 : min(pitm_end, pitm + (6 if data[pitm] == 0 else 8))], "big")
    iprp = {kind: (body, stop) for kind, body, stop in reversed(list(_boxes(data, *children.get(b"iprp", (0, 0)))))}
    if not {b"ipco", b"ipma"} <= iprp.keys():
        return []
    properties = list(_boxes(data, *iprp[b"ipco"]))
    sizes = []
    for index in _associations(data, *iprp[b"ipma"], primary):
        if 1 <= index <= len(properties) and properties[index - 1][0] == b"ispe":
            _, body, stop = properties[index - 1]
            if stop - body < 12:  # version and flags, width, height
                continue
            sizes.append(
                (int.from_bytes(data[body + 4 : body + 8], "big"), int.from_bytes(data[body + 8 : body + 12], "big"))
            )
    return sizes


def _associations(data: bytes, start: int, end: int, item: int) -> list[int]:
    """The 1-based ipco indices of `item`'s properties, from an ItemPropertyAssociation (ipma) box."""
    if end - start < 8:
        return []
    version, wide_index = data[start], data[start + 3] & 1
    position, entries = start + 8, int.from_bytes(data[start + 4 : start + 8], "big")
    id_bytes, index_bytes = (2 if version < 1 else 4), (2 if wide_index else 1)
    for _ in range(min(entries, _MAX_BOXES)):
        if position + id_bytes + 1 > end:
            break
        item_id = int.from_bytes(data[position : position + id_bytes], "big")
        count = data[position + id_bytes]
        position += id_bytes + 1
        values = [
            int.from_bytes(data[position + i * index_bytes : position + (i + 1) * index_bytes], "big")
            for i in range(count)
        ]
        position += count * index_bytes
        if position > end:
            break
        if item_id == item:
            return [value & (0x7FFF if wide_index else 0x7F) for value in values]
    return []


def _track_sizes(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Width and height of every visual sample entry: moov/trak/mdia/minf/stbl/stsd/<entry>."""
    sizes = []
    for kind, trak, trak_end in _boxes(data, start, end):
        if kind != b"trak":
            continue
        boxes = [(trak, trak_end)]
        for path in (b"mdia", b"minf", b"stbl", b"stsd"):
            boxes = [(body, stop) for outer in boxes for kind, body, stop in _boxes(data, *outer) if kind == path]
        for stsd, stsd_end in boxes:  # a full box with an entry count, then the sample entries
            for _, entry, entry_end in _boxes(data, stsd + 8, stsd_end):
                if entry + 28 <= entry_end:  # VisualSampleEntry: 24 bytes, then width and height (16 bits each)
                    sizes.append(
                        (
                            int.from_bytes(data[entry + 24 : entry + 26], "big"),
                            int.from_bytes(data[entry + 26 : entry + 28], "big"),
                        )
                    )
    return sizes


def _corrupt(exc: BaseException) -> ImageRejected:
    message = _describe(exc)
    if message.startswith("Decompressed data too large"):
        # A PNG text or profile chunk inflating past Pillow's cap: a compression bomb in the metadata.
        limit = PngImagePlugin.MAX_TEXT_CHUNK / _MB
        return ImageRejected(f"image metadata is too large: a compressed chunk expands beyond {limit:.0f} MB")
    return ImageRejected(f"image data is corrupt or truncated: {message}")


def _family(data: bytes) -> str | None:
    container = _container(data)
    if container is not None:
        return container
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
    """The decoder's own words, on one line and short: libheif's can run to a paragraph."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if len(message) <= _MAX_DETAIL else message[: _MAX_DETAIL - 1] + "…"


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


def _opaque(image: Image.Image) -> bool:
    """Every alpha value 255. getextrema reads the image in place (~6 ms for 4 MP): no copy of the channel."""
    alpha = image.getextrema()[-1]
    return isinstance(alpha, tuple) and alpha[0] == 255


def _output_format(policy: str, image_format: str, transparent: bool) -> str:
    fixed = _FIXED_OUTPUTS.get(policy)
    if fixed is not None:
        return fixed
    if policy == "source" and image_format in _WEB_FORMATS:
        return image_format
    if policy == "source" and image_format != "HEIF":
        return "PNG"
    return "WEBP" if transparent else "JPEG"


def _cascade(image: Image.Image, size: tuple[int, int], *, halve: bool) -> Image.Image:
    if halve and size == ((image.width + 1) // 2, (image.height + 1) // 2):
        return image.reduce(2)  # premultiplies alpha too
    return _resize(image, size, None, _CASCADE_STEP)


def _flatten(image: Image.Image) -> Image.Image:
    """Transparent pixels over white, for a format without alpha: what a page behind the picture would show."""
    background = Image.new(image.mode[:-1], image.size, "white")
    background.paste(image, mask=image.getchannel("A"))
    return background


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
        if image.mode in ("RGBA", "LA"):
            image = _flatten(image)
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        params = {"quality": options.jpeg_quality}
    elif output_format == "PNG":
        params = {"compress_level": 6, "optimize": False}
    elif output_format == "WEBP":
        params = {"quality": options.webp_quality, "method": 4}
    elif output_format == "AVIF":
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        params = {"quality": options.avif_quality, "speed": _AVIF_SPEED}
    if icc_profile is not None:
        params["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, output_format, **params)
    return buffer.getvalue()
