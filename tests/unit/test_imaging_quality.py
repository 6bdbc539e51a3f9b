"""Fast, but not at the picture's expense: every thumbnail against a high-quality reference resize.

The reference decodes every pixel (no DCT scaling), turns the image upright and resizes straight to the
thumbnail's size with LANCZOS. make_thumbnails decodes JPEGs at a reduced scale, resamples with HAMMING then
BICUBIC, cascades the smaller sizes and re-encodes (JPEG q85): all of that together must stay at or above 30 dB.

Phone photos are smooth at thumbnail scale, so they are measured on RGB as delivered. A detailed picture (a real
photo tiled at its native scale) is harder: there JPEG's own 4:2:0 chroma subsampling at q85 costs a *perfect*
LANCZOS resize RGB PSNR below 30 dB (28.6 at 512 px), whatever the resizer. So the detailed JPEG is measured on
luma (BT.601 Y, the channel JPEG keeps at full resolution, and the usual measure for codecs), and the same
picture as a PNG (lossless in and out) measures the resampling alone on RGB.

Every output format (IMGOPS_OUTPUT_FORMAT) is held to the same bar: JPEG q85, WebP q80 and AVIF q70 (the lowest
AVIF quality that keeps the detailed picture above it). A transparent source written as JPEG is compared with the
reference flattened onto white, as make_thumbnails flattens it; otherwise both are seen over mid-grey.
"""

from __future__ import annotations

import io
from functools import cache, lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageOps

from loadtest.bench import psnr as luma_psnr
from loadtest.corpus import _sources, render
from pipeline.imaging import OUTPUT_FORMATS, ImageOptions, make_thumbnails
from tests.hostile import heif_encode

MIN_PSNR_DB = 30.0
# (corpus kind, index): a 12 MP phone JPEG with EXIF orientation 8, a 1080p JPEG, an RGBA PNG
# and a WebP, rendered from real photos exactly as the load test's corpus is.
CASES = [("jpeg12mp", 0), ("jpeg1080", 0), ("png", 0), ("webp", 0)]


@cache
def detailed(width: int, height: int, fmt: str) -> bytes:
    """Grace Hopper's photo (shipped with matplotlib) tiled at 0.5-1.5x its own scale, mirrored at random:
    real image detail at every frequency a thumbnail keeps."""
    source = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    rng = np.random.default_rng(3)
    canvas = Image.new("RGB", (width, height))
    top = 0
    while top < height:
        scale = rng.uniform(0.5, 1.5)
        tile = source.resize((int(source.width * scale), int(source.height * scale)), Image.Resampling.LANCZOS)
        for left in range(0, width, tile.width):
            mirrored = rng.random() < 0.5
            canvas.paste(tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else tile, (left, top))
        top += tile.height
    buffer = io.BytesIO()
    canvas.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


@cache
def upload(kind: str, index: int) -> bytes:
    data, _ = render(kind, index, 7, _sources())
    return data


@lru_cache(maxsize=2)  # the sizes and output formats of one upload in a row share one full decode
def full_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened)
        return upright.convert("RGBA" if "A" in upright.mode else "RGB")


def reference(data: bytes, size: tuple[int, int]) -> Image.Image:
    return full_decode(data).resize(size, Image.Resampling.LANCZOS)


def over_gray(image: Image.Image, background: float = 128.0) -> np.ndarray:
    """Transparent pixels have no colour to compare: compare what a viewer shows, composited on mid-grey."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:4] / 255.0
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def psnr(actual: Image.Image, expected: Image.Image) -> float:
    # A thumbnail without alpha of a source with it was flattened onto white: compare with the same.
    background = 255.0 if "A" not in actual.mode and "A" in expected.mode else 128.0
    mse = float(np.mean((over_gray(actual, background) - over_gray(expected, background)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def test_the_measure_can_fail() -> None:
    """On detailed content a copy scores infinity, while a 2x blur, a one-pixel shift or resizing without
    antialiasing (NEAREST) all land below the bar."""
    data = detailed(4032, 3024, "JPEG")
    sharp = reference(data, (1024, 768))
    with Image.open(io.BytesIO(data)) as full:
        aliased = full.convert("RGB").resize((1024, 768), Image.Resampling.NEAREST)
    blurred = sharp.resize((512, 384), Image.Resampling.BOX).resize((1024, 768), Image.Resampling.BILINEAR)
    shifted = sharp.transform(sharp.size, Image.Transform.AFFINE, (1, 0, 1, 0, 1, 0), Image.Resampling.BILINEAR)
    assert luma_psnr(sharp, sharp) == float("inf")
    for name, worse in {"blurred": blurred, "shifted": shifted, "aliased": aliased}.items():
        assert luma_psnr(worse, sharp) < MIN_PSNR_DB, name
        assert psnr(worse, sharp) < MIN_PSNR_DB, name


@pytest.mark.parametrize(
    ("kind", "index", "output_format"), [(*case, output) for case in CASES for output in OUTPUT_FORMATS]
)
def test_every_thumbnail_is_within_30_db_of_a_full_decode_lanczos_reference(
    kind: str, index: int, output_format: str
) -> None:
    data = upload(kind, index)
    result = make_thumbnails(data, ImageOptions(output_format=output_format))
    scores = {}
    for thumbnail in result.thumbnails:
        with Image.open(io.BytesIO(thumbnail.data)) as out:
            out.load()
            assert out.format == thumbnail.format
            scores[thumbnail.size] = psnr(out, reference(data, out.size))
    print(
        f"\n{kind}[{index}] {result.width}x{result.height} as {result.thumbnails[0].format}: "
        + ", ".join(f"{s}px {v:.1f} dB" for s, v in scores.items())
    )
    assert min(scores.values()) >= MIN_PSNR_DB, scores


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_sources_are_within_30_db(fmt: str) -> None:
    """The 12 MP phone photo transcoded (its EXIF orientation becoming the container's irot), against a full
    decode of the transcoded file itself."""
    with Image.open(io.BytesIO(upload("jpeg12mp", 0))) as jpeg:
        fast = {"enc_params": {"preset": "ultrafast"}} if fmt == "HEIF" else {"speed": 10}  # x265 ~40x faster
        data = heif_encode(jpeg, fmt, exif=jpeg.info["exif"], quality=80, **fast)
    result = make_thumbnails(data)
    found = {}
    for thumbnail in result.thumbnails:
        with Image.open(io.BytesIO(thumbnail.data)) as out:
            out.load()
            found[thumbnail.size] = psnr(out, reference(data, out.size))
    print(f"\n{fmt} {result.width}x{result.height}: " + ", ".join(f"{s}px {v:.1f} dB" for s, v in found.items()))
    assert (result.width, result.height) == (3024, 4032), "upright: orientation 8 turns the 4032x3024 picture"
    assert min(found.values()) >= MIN_PSNR_DB, found


def scores(data: bytes, measure: str, output_format: str = "source") -> dict[int, float]:
    result = make_thumbnails(data, ImageOptions(output_format=output_format))
    found = {}
    for thumbnail in result.thumbnails:
        with Image.open(io.BytesIO(thumbnail.data)) as out:
            out.load()
            expected = reference(data, out.size)
            found[thumbnail.size] = luma_psnr(out, expected) if measure == "luma" else psnr(out, expected)
    return found


@pytest.mark.parametrize(
    ("fmt", "measure", "output_format"),
    [("JPEG", "luma", "source"), ("JPEG", "luma", "webp"), ("JPEG", "luma", "avif"), ("PNG", "rgb", "source")],
)
def test_detailed_content_stays_above_30_db(fmt: str, measure: str, output_format: str) -> None:
    size = (4032, 3024) if fmt == "JPEG" else (2000, 1500)  # a 12 MP PNG would spend seconds in zlib
    found = scores(detailed(*size, fmt), measure, output_format)
    print(
        f"\ndetailed {fmt} as {output_format} ({measure}): " + ", ".join(f"{s}px {v:.1f} dB" for s, v in found.items())
    )
    assert min(found.values()) >= MIN_PSNR_DB, found
