"""Properties of make_thumbnails over generated images: any allowed format, mode, size, orientation, sizes and
output format.

A valid image under the pixel limit must always come out: never upscaled, each long edge exactly
min(size, the image's long edge), the other side within a pixel of the aspect, decodable as what it claims, in
the format the output policy names, and transparent wherever the picture is and the format can be.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.imaging import OUTPUT_FORMATS, ImageOptions, ImageRejected, make_thumbnails
from tests.hostile import declared_extent, heif_encode

# Pillow modes each allowed format can store, as uploads arrive in them.
FORMAT_MODES: dict[str, tuple[str, ...]] = {
    "JPEG": ("L", "RGB", "CMYK"),
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "WEBP": ("RGB", "RGBA"),
    "AVIF": ("L", "RGB", "RGBA"),
    "HEIF": ("L", "RGB", "RGBA"),
}
ALPHA_MODES = frozenset({"LA", "RGBA", "PA"})
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the work tree; a failure prints its reproduction blob instead
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Upload:
    data: bytes = field(repr=False)
    fmt: str
    mode: str
    stored: tuple[int, int]
    orientation: int
    transparent: bool  # some pixel is not fully opaque, as decoded
    declared: tuple[int, int]  # the size the file declares: HEIF codes (and declares) a padded size

    @property
    def upright(self) -> tuple[int, int]:
        width, height = self.stored
        return (height, width) if self.orientation >= 5 else (width, height)


def pixels(width: int, height: int, pattern: str, seed: int) -> np.ndarray:
    """RGBA content: noise (worst case for codecs), gradients (resampling structure) or flat."""
    rng = np.random.default_rng(seed)
    if pattern == "noise":
        return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if pattern == "flat":
        flat: np.ndarray = np.broadcast_to(rng.integers(0, 256, 4, dtype=np.uint8), (height, width, 4)).copy()
        return flat
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    weights = rng.uniform(0, 1, (2, 4))
    ramp: np.ndarray = np.clip(x * weights[0] + y * weights[1], 0, 255).astype(np.uint8)
    return ramp


@st.composite
def uploads(draw: st.DrawFn) -> Upload:
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES)))
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    regular = st.tuples(st.integers(1, 640), st.integers(1, 640))
    sliver = st.tuples(st.integers(1, 3), st.integers(1000, 8000), st.booleans()).map(
        lambda t: (t[0], t[1]) if t[2] else (t[1], t[0])
    )
    width, height = draw(st.one_of(regular, regular, sliver))
    rgba = pixels(width, height, draw(st.sampled_from(["noise", "gradient", "flat"])), draw(st.integers(0, 2**32 - 1)))
    transparent = mode in ALPHA_MODES or (mode == "P" and draw(st.booleans()))
    if mode == "I;16":
        image = Image.fromarray(rgba[:, :, 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(rgba, "RGBA")
        if not transparent or mode == "P":
            image = image.convert("RGB")
        image = image.convert(mode)
    orientation = draw(st.integers(1, 8))
    params: dict[str, Any] = {}
    if orientation != 1 or draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    if fmt == "JPEG":
        params.update(quality=draw(st.integers(1, 100)), progressive=draw(st.booleans()))
    elif fmt == "PNG":
        params.update(compress_level=draw(st.integers(0, 3)))
        if mode == "P" and transparent:
            params["transparency"] = 0
    elif fmt == "WEBP":
        params.update(lossless=draw(st.booleans()), quality=draw(st.integers(1, 100)), method=0)
    elif fmt == "AVIF":
        params.update(quality=draw(st.integers(1, 100)), speed=10)
    else:
        params.update(quality=draw(st.integers(1, 100)))
    buffer = io.BytesIO()
    try:
        if fmt in ("AVIF", "HEIF"):
            buffer.write(heif_encode(image, fmt, **params))
        else:
            image.save(buffer, fmt, **params)
    except (OSError, RuntimeError):
        # Pillow cannot write some combinations (e.g. a progressive JPEG of a sliver at low quality), nor x265 some
        # sizes: such a file cannot be an upload either, so it is not a case for the worker.
        reject()
    with Image.open(io.BytesIO(buffer.getvalue())) as stored:
        # Encoders may drop an alpha channel that is opaque everywhere (libwebp does), and lossy ones may round
        # alpha to 255: what the decoded pixels hold counts.
        alpha = stored.convert("RGBA").getchannel("A").getextrema()[0] if stored.has_transparency_data else 255
    declared = declared_extent(buffer.getvalue()) if fmt == "HEIF" else (width, height)
    return Upload(buffer.getvalue(), fmt, mode, (width, height), orientation, alpha != 255, declared)


def expected_format(output_format: str, fmt: str, transparent: bool) -> str:
    """The policy, written out independently of pipeline.imaging's tables."""
    if output_format in ("jpeg", "webp", "avif"):
        return output_format.upper()
    if output_format == "source" and fmt != "HEIF":
        return fmt
    return "WEBP" if transparent else "JPEG"


thumbnail_sizes = st.lists(st.integers(1, 1200), min_size=1, max_size=4).map(tuple)


@SETTINGS
@given(upload=uploads(), sizes=thumbnail_sizes, output_format=st.sampled_from(OUTPUT_FORMATS))
def test_any_valid_image_gives_thumbnails_that_fit_and_keep_the_aspect(
    upload: Upload, sizes: tuple[int, ...], output_format: str
) -> None:
    try:
        result = make_thumbnails(upload.data, ImageOptions(sizes=sizes, output_format=output_format))
    except ImageRejected as exc:  # the contract allows it; a valid image under every limit never earns it
        raise AssertionError(f"a valid {upload.fmt} {upload.mode} {upload.stored} was refused: {exc.reason}") from exc

    width, height = upload.upright
    long_edge = max(width, height)
    assert (result.width, result.height) == (width, height)
    assert result.format == upload.fmt
    assert [t.size for t in result.thumbnails] == list(sizes)
    for size, thumbnail in zip(sizes, result.thumbnails, strict=True):
        out = Image.open(io.BytesIO(thumbnail.data))
        assert out.size == (thumbnail.width, thumbnail.height)
        assert out.format == thumbnail.format == expected_format(output_format, upload.fmt, upload.transparent)
        assert max(out.size) == min(size, long_edge), "long edge is the size, or the original's when smaller"
        scale = max(out.size) / long_edge
        assert abs(out.width - width * scale) <= 1
        assert abs(out.height - height * scale) <= 1
        assert min(out.size) >= 1
        if upload.transparent and out.format != "JPEG" and visibly_transparent(upload, out.size):
            assert out.mode in ALPHA_MODES, f"{upload.mode} with transparency came out {out.mode}"


def visibly_transparent(upload: Upload, size: tuple[int, int]) -> bool:
    """Whether the picture still has transparency at `size`: a few transparent pixels averaged into one opaque
    thumbnail pixel leave none, and libwebp then writes no alpha channel at all (found by this test: one
    transparent pixel of a 1x342 palette PNG, at 1 px)."""
    with Image.open(io.BytesIO(upload.data)) as stored:
        alpha = stored.convert("RGBA").getchannel("A")
    if upload.orientation >= 5:
        size = (size[1], size[0])
    low = alpha.resize(size, Image.Resampling.BOX).getextrema()[0]
    return isinstance(low, int | float) and low < 250


@SETTINGS
@given(upload=uploads(), max_pixels=st.integers(1, 400_000))
def test_the_pixel_limit_is_exact(upload: Upload, max_pixels: int) -> None:
    """Refused exactly when the declared pixels exceed the limit, with a reason that says so."""
    width, height = upload.declared
    options = ImageOptions(sizes=(64,), max_pixels=max_pixels)
    if width * height <= max_pixels:
        assert make_thumbnails(upload.data, options).width == upload.upright[0]
        return
    with pytest.raises(ImageRejected, match="megapixel limit"):
        make_thumbnails(upload.data, options)
