"""pipeline.imaging: real pixels in, real pixels checked out. Every image is made in memory here."""

from __future__ import annotations

import io
import random
import struct
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageCms, ImageStat

from pipeline.imaging import (
    SUPPORTED_CONTENT_TYPES,
    ImageOptions,
    ImageRejected,
    Thumbnail,
    Watermark,
    make_thumbnails,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
YELLOW = (255, 255, 0)
ORIENTATION = 0x0112

Pixel = tuple[int, ...]


# --- helpers ---


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    if fmt == "PNG":
        params.setdefault("compress_level", 1)  # the fixtures' own encoding time is not under test
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(thumbnail: Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumbnail.data))
    image.load()
    return image


@cache
def photo(width: int, height: int) -> Image.Image:
    """Gradients in three directions plus grain, so resampling has real structure. Shared: never mutate."""
    horizontal = Image.linear_gradient("L").rotate(90).resize((width, height))
    vertical = Image.linear_gradient("L").resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 24)
    green = ImageChops.add(ImageChops.multiply(vertical, radial), noise, scale=1.0, offset=-64)
    return Image.merge("RGB", (horizontal, green, radial))


def close_to(actual: Pixel, expected: Pixel, tolerance: int = 40) -> bool:
    return len(actual) >= len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def rgb(image: Image.Image, xy: tuple[int, int]) -> Pixel:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def gray(image: Image.Image, xy: tuple[int, int]) -> int:
    value = image.getpixel(xy)
    assert isinstance(value, int)
    return value


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming any size, then a token IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    )


def rejection(data: bytes, options: ImageOptions | None = None) -> str:
    with pytest.raises(ImageRejected) as caught:
        make_thumbnails(data, options or ImageOptions())
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# Thumbnails in the upload's own format: what the tests of modes and transparency below look at.
SOURCE = "source"


# --- sizes, aspect and formats ---


@pytest.mark.parametrize(
    ("fmt", "params", "extension", "content_type"),
    [
        ("JPEG", {"quality": 90}, "jpg", "image/jpeg"),
        ("PNG", {}, "png", "image/png"),
        ("WEBP", {"quality": 90}, "webp", "image/webp"),
        ("AVIF", {"quality": 90, "speed": 10}, "avif", "image/avif"),  # speed: a 12 MP fixture in ~1 s, not 15
    ],
)
def test_each_format_keeps_its_family_and_the_aspect(
    fmt: str, params: dict[str, Any], extension: str, content_type: str
) -> None:
    result = make_thumbnails(encode(photo(4000, 3000), fmt, **params), ImageOptions(output_format=SOURCE))

    assert (result.width, result.height, result.format, result.mode) == (4000, 3000, fmt, "RGB")
    assert result.has_transparency is False
    assert [t.size for t in result.thumbnails] == [1024, 512, 256]
    expected = [(1024, 768), (512, 384), (256, 192)]
    assert [(t.width, t.height) for t in result.thumbnails] == expected
    for thumbnail, dims in zip(result.thumbnails, expected, strict=True):
        out = decode(thumbnail)
        assert (out.format, out.size, out.mode) == (fmt, dims, "RGB")
        assert (thumbnail.format, thumbnail.extension, thumbnail.content_type) == (
            fmt,
            extension,
            content_type,
        )
    assert SUPPORTED_CONTENT_TYPES[content_type] == extension


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF"])
def test_auto_output_is_jpeg_for_opaque_pictures_whatever_the_source(fmt: str) -> None:
    result = make_thumbnails(encode(photo(800, 600), fmt), ImageOptions(sizes=(400,)))
    thumbnail = result.thumbnails[0]
    assert (thumbnail.format, thumbnail.extension, thumbnail.content_type) == ("JPEG", "jpg", "image/jpeg")
    assert (result.format, decode(thumbnail).format) == (fmt, "JPEG")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF"])
def test_auto_output_is_webp_for_transparent_pictures(fmt: str) -> None:
    image = photo(800, 600).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 200, 150))
    result = make_thumbnails(encode(image, fmt), ImageOptions(sizes=(400,)))
    out = decode(result.thumbnails[0])
    assert (result.thumbnails[0].format, result.thumbnails[0].content_type) == ("WEBP", "image/webp")
    assert (out.format, out.mode) == ("WEBP", "RGBA")
    assert rgb(out, (10, 10))[3] == 0
    assert rgb(out, (300, 200))[3] == 255


def test_an_alpha_channel_that_hides_nothing_does_not_count_as_transparency() -> None:
    result = make_thumbnails(encode(photo(800, 600).convert("RGBA"), "PNG"), ImageOptions(sizes=(400,)))
    assert result.has_transparency is True, "the file has an alpha channel"
    assert (result.thumbnails[0].format, decode(result.thumbnails[0]).mode) == ("JPEG", "RGB")


@pytest.mark.parametrize(
    ("output_format", "expected", "mode"),
    [("jpeg", "JPEG", "RGB"), ("webp", "WEBP", "RGB"), ("avif", "AVIF", "RGB"), ("source", "PNG", "RGB")],
)
def test_a_fixed_output_format_applies_to_every_source(output_format: str, expected: str, mode: str) -> None:
    result = make_thumbnails(encode(photo(800, 600), "PNG"), ImageOptions(sizes=(400,), output_format=output_format))
    out = decode(result.thumbnails[0])
    assert (result.thumbnails[0].format, out.format, out.mode, out.size) == (expected, expected, mode, (400, 300))


def test_transparent_pictures_are_flattened_onto_white_for_jpeg() -> None:
    image = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent black: shown as black if alpha is dropped
    image.paste((*BLUE, 255), (200, 0, 400, 300))
    out = decode(make_thumbnails(encode(image, "PNG"), ImageOptions(sizes=(200,), output_format="jpeg")).thumbnails[0])
    assert out.mode == "RGB"
    assert close_to(rgb(out, (20, 75)), (255, 255, 255), tolerance=3)
    assert close_to(rgb(out, (180, 75)), BLUE, tolerance=12)


def test_quality_is_set_per_output_format() -> None:
    data = encode(photo(1600, 1200), "PNG")

    def size(options: ImageOptions) -> int:
        return len(make_thumbnails(data, options).thumbnails[0].data)

    jpeg, webp, avif = (ImageOptions(sizes=(512,), output_format=name) for name in ("jpeg", "webp", "avif"))
    assert size(replace(jpeg, jpeg_quality=20)) < size(replace(jpeg, jpeg_quality=95)) / 2
    assert size(replace(webp, webp_quality=20)) < size(replace(webp, webp_quality=95)) / 2
    assert size(replace(avif, avif_quality=20)) < size(replace(avif, avif_quality=95)) / 2


@pytest.mark.parametrize(
    "options",
    [{"output_format": "heic"}, {"output_format": "JPEG"}, {"jpeg_quality": 0}, {"avif_quality": 101}],
)
def test_invalid_output_options_are_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"output format|quality"):
        ImageOptions(**options)


def test_cascaded_thumbnail_matches_a_direct_resize() -> None:
    original = photo(4000, 3000)
    result = make_thumbnails(encode(original, "PNG"), ImageOptions(sizes=(1024, 512, 256)))
    direct = original.resize((256, 192), Image.Resampling.LANCZOS)
    difference = ImageStat.Stat(ImageChops.difference(decode(result.thumbnails[2]), direct)).mean
    assert max(difference) < 3.0, difference


def test_draft_decoded_jpeg_matches_a_full_decode() -> None:
    original = photo(4032, 3024)
    data = encode(original, "JPEG", quality=95)
    result = make_thumbnails(data, ImageOptions(sizes=(1024,)))
    full = Image.open(io.BytesIO(data)).resize((1024, 768), Image.Resampling.LANCZOS)
    difference = ImageStat.Stat(ImageChops.difference(decode(result.thumbnails[0]), full)).mean
    assert max(difference) < 4.0, difference


def test_portrait_and_extreme_aspects_round_and_never_drop_below_one_pixel() -> None:
    portrait = make_thumbnails(encode(photo(3000, 4000), "JPEG"))
    assert [(t.width, t.height) for t in portrait.thumbnails] == [(768, 1024), (384, 512), (192, 256)]

    odd = make_thumbnails(encode(photo(1000, 333), "PNG"), ImageOptions(sizes=(256,)))
    assert (odd.thumbnails[0].width, odd.thumbnails[0].height) == (256, 85)  # 85.248 rounds down
    assert decode(odd.thumbnails[0]).size == (256, 85)

    sliver = make_thumbnails(encode(photo(5000, 2), "PNG"), ImageOptions(sizes=(1024,)))
    assert decode(sliver.thumbnails[0]).size == (1024, 1)


def test_small_images_are_never_upscaled() -> None:
    result = make_thumbnails(encode(photo(300, 200), "JPEG"))
    assert [(t.size, t.width, t.height) for t in result.thumbnails] == [
        (1024, 300, 200),
        (512, 300, 200),
        (256, 256, 171),
    ]
    assert decode(result.thumbnails[0]).size == (300, 200)


def test_thumbnails_follow_the_order_of_the_requested_sizes() -> None:
    result = make_thumbnails(encode(photo(2000, 1000), "PNG"), ImageOptions(sizes=(100, 1000, 400)))
    assert [(t.size, t.width, t.height) for t in result.thumbnails] == [
        (100, 100, 50),
        (1000, 1000, 500),
        (400, 400, 200),
    ]


def test_grayscale_jpeg_stays_grayscale() -> None:
    result = make_thumbnails(encode(photo(2000, 1500).convert("L"), "JPEG"))
    out = decode(result.thumbnails[0])
    assert (result.mode, out.mode, out.size) == ("L", "L", (1024, 768))


# --- EXIF orientation ---


def _upright(x: int, y: int, width: int, height: int) -> tuple[int, int, int]:
    """The picture as seen: red top-left, blue top-right, green bottom-left, yellow bottom-right."""
    left, top = x < width // 2, y < height // 2
    return (RED if left else BLUE) if top else (GREEN if left else YELLOW)


# How a camera stores that picture for each EXIF orientation, written from the EXIF definition of each value
# (which visual side row 0 and column 0 hold), independently of any transpose table.
_STORED: dict[int, tuple[bool, Callable[[int, int, int, int], tuple[int, int]]]] = {
    1: (False, lambda x, y, w, h: (x, y)),
    2: (False, lambda x, y, w, h: (w - 1 - x, y)),
    3: (False, lambda x, y, w, h: (w - 1 - x, h - 1 - y)),
    4: (False, lambda x, y, w, h: (x, h - 1 - y)),
    5: (True, lambda x, y, w, h: (y, x)),
    6: (True, lambda x, y, w, h: (w - 1 - y, x)),
    7: (True, lambda x, y, w, h: (w - 1 - y, h - 1 - x)),
    8: (True, lambda x, y, w, h: (y, h - 1 - x)),
}


def stored_image(orientation: int, width: int, height: int, cell: int) -> Image.Image:
    """Build the stored pixels on a coarse grid, then blow each cell up to `cell` px (nearest neighbour)."""
    grid_w, grid_h = width // cell, height // cell
    swapped, source_of = _STORED[orientation]
    stored_w, stored_h = (grid_h, grid_w) if swapped else (grid_w, grid_h)
    small = Image.new("RGB", (stored_w, stored_h))
    for y in range(stored_h):
        for x in range(stored_w):
            small.putpixel((x, y), _upright(*source_of(x, y, grid_w, grid_h), grid_w, grid_h))
    return small.resize((stored_w * cell, stored_h * cell), Image.Resampling.NEAREST)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, fmt: str) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored = stored_image(orientation, 1600, 800, cell=100)
    assert stored.size == ((800, 1600) if orientation >= 5 else (1600, 800))
    data = encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))

    result = make_thumbnails(data, ImageOptions(sizes=(400, 100)))

    assert (result.width, result.height) == (1600, 800)
    for thumbnail, (w, h) in zip(result.thumbnails, [(400, 200), (100, 50)], strict=True):
        out = decode(thumbnail).convert("RGB")
        assert out.size == (w, h)
        assert (thumbnail.width, thumbnail.height) == (w, h)
        corners = [rgb(out, (w // 4, h // 4)), rgb(out, (3 * w // 4, h // 4))]
        corners += [rgb(out, (w // 4, 3 * h // 4)), rgb(out, (3 * w // 4, 3 * h // 4))]
        assert all(close_to(c, e) for c, e in zip(corners, [RED, BLUE, GREEN, YELLOW], strict=True)), corners


def test_exif_is_not_copied_but_the_colour_profile_is() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    result = make_thumbnails(encode(photo(800, 600), "JPEG", exif=exif.tobytes(), icc_profile=icc))
    out = decode(result.thumbnails[0])
    assert out.info.get("icc_profile") == icc
    assert "exif" not in out.info
    assert b"SpyCam" not in result.thumbnails[0].data


def test_unreadable_exif_counts_as_upright() -> None:
    data = encode(photo(400, 200), "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = make_thumbnails(data, ImageOptions(sizes=(200,)))
    assert (result.width, result.height) == (400, 200)
    assert decode(result.thumbnails[0]).size == (200, 100)


# --- modes and transparency ---


def test_rgba_png_keeps_alpha_without_dark_fringes() -> None:
    image = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent *black*: the colour that would bleed
    image.paste((255, 255, 255, 255), (203, 0, 400, 300))
    result = make_thumbnails(encode(image, "PNG"), ImageOptions(sizes=(200,), output_format=SOURCE))

    assert (result.format, result.mode, result.has_transparency) == ("PNG", "RGBA", True)
    out = decode(result.thumbnails[0])
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", (200, 150))
    assert rgb(out, (0, 0))[3] == 0
    assert rgb(out, (199, 149)) == (255, 255, 255, 255)
    pixels = [rgb(out, (x, 75)) for x in range(200)]
    partial = [p for p in pixels if 0 < p[3] < 255]
    assert partial, "the edge should be anti-aliased"
    assert all(min(p[:3]) >= 250 for p in pixels if p[3] > 0), partial


def test_palette_png_with_transparency_becomes_rgba() -> None:
    image = Image.new("P", (300, 300), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 150, 150))
    data = encode(image, "PNG", transparency=0)
    result = make_thumbnails(data, ImageOptions(sizes=(100,)))

    assert (result.mode, result.has_transparency) == ("P", True)
    out = decode(result.thumbnails[0])
    assert (out.mode, out.size) == ("RGBA", (100, 100))
    assert rgb(out, (0, 0))[3] == 0
    assert close_to(rgb(out, (90, 90)), (*RED, 255), tolerance=2)


def test_palette_png_without_transparency_becomes_rgb() -> None:
    image = Image.new("RGB", (300, 300), BLUE).convert("P")
    result = make_thumbnails(encode(image, "PNG"), ImageOptions(sizes=(100,)))
    out = decode(result.thumbnails[0])
    assert (result.mode, result.has_transparency, out.mode) == ("P", False, "RGB")
    assert close_to(rgb(out, (50, 50)), BLUE, tolerance=2)


def test_gray_alpha_and_rgb_colour_key_keep_their_transparency() -> None:
    gray = Image.new("LA", (200, 200), (100, 255))
    gray.paste((0, 0), (0, 0, 100, 100))
    out = decode(make_thumbnails(encode(gray, "PNG"), ImageOptions(sizes=(50,), output_format=SOURCE)).thumbnails[0])
    assert out.mode == "LA"
    assert rgb(out, (0, 0))[1] == 0
    assert rgb(out, (45, 45)) == (100, 255)

    keyed = Image.new("RGB", (200, 200), RED)
    keyed.paste(GREEN, (0, 0, 100, 100))
    result = make_thumbnails(encode(keyed, "PNG", transparency=GREEN), ImageOptions(sizes=(50,)))
    out = decode(result.thumbnails[0])
    assert (result.has_transparency, out.mode) == (True, "RGBA")
    assert rgb(out, (0, 0))[3] == 0
    assert close_to(rgb(out, (45, 45)), (*RED, 255), tolerance=2)


def test_webp_with_alpha_stays_webp_with_alpha() -> None:
    image = Image.new("RGBA", (400, 400), (*BLUE, 255))
    image.paste((0, 0, 0, 0), (0, 0, 200, 200))
    result = make_thumbnails(encode(image, "WEBP", quality=90), ImageOptions(sizes=(100,)))
    out = decode(result.thumbnails[0])
    assert (result.format, result.has_transparency, out.format, out.mode) == ("WEBP", True, "WEBP", "RGBA")
    assert rgb(out, (0, 0))[3] == 0
    assert close_to(rgb(out, (90, 90)), (*BLUE, 255), tolerance=12)


def test_cmyk_jpeg_becomes_rgb_jpeg() -> None:
    cmyk = Image.new("CMYK", (600, 400), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    result = make_thumbnails(encode(cmyk, "JPEG", quality=95), ImageOptions(sizes=(300,)))
    out = decode(result.thumbnails[0])
    assert (result.mode, out.format, out.mode, out.size) == ("CMYK", "JPEG", "RGB", (300, 200))
    assert close_to(rgb(out, (150, 100)), RED, tolerance=10), rgb(out, (150, 100))


def test_sixteen_bit_png_is_scaled_not_clipped_to_white() -> None:
    row = [0] * 100 + [30000] * 100 + [60000] * 200
    deep = Image.frombytes("I;16", (400, 200), struct.pack("<400H", *row) * 200)
    result = make_thumbnails(encode(deep, "PNG"), ImageOptions(sizes=(100,)))
    out = decode(result.thumbnails[0])
    assert (result.mode, out.mode, out.size) == ("I;16", "L", (100, 50))
    assert gray(out, (10, 25)) == 0
    assert abs(gray(out, (40, 25)) - 117) <= 2  # 30000 / 257
    assert abs(gray(out, (90, 25)) - 233) <= 2  # 60000 / 257


def test_bilevel_png_becomes_gray() -> None:
    image = Image.new("1", (200, 200), 0)
    image.paste(1, (100, 0, 200, 200))
    out = decode(make_thumbnails(encode(image, "PNG"), ImageOptions(sizes=(100,))).thumbnails[0])
    assert out.mode == "L"
    assert (gray(out, (10, 50)), gray(out, (90, 50))) == (0, 255)


# --- animated and multi-picture sources ---


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF"])
def test_animated_sources_use_the_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (200, 200), colour) for colour in (RED, BLUE, GREEN)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    result = make_thumbnails(data, ImageOptions(sizes=(100,), output_format=SOURCE))
    out = decode(result.thumbnails[0])
    assert (result.format, out.format, out.size) == (fmt, fmt, (100, 100))
    assert close_to(rgb(out, (50, 50)), RED, tolerance=12)


def test_multi_picture_jpeg_is_treated_as_jpeg() -> None:
    frames = [Image.new("RGB", (800, 600), colour) for colour in (GREEN, BLUE)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    result = make_thumbnails(data, ImageOptions(sizes=(200,)))
    out = decode(result.thumbnails[0])
    assert (result.format, out.format, out.size) == ("JPEG", "JPEG", (200, 150))
    assert close_to(rgb(out, (100, 75)), GREEN, tolerance=10)


# --- rejections ---


def test_empty_file_is_rejected() -> None:
    assert rejection(b"") == "empty file"


def test_oversized_file_is_rejected_before_parsing() -> None:
    reason = rejection(b"\0" * (3 * 1024 * 1024 // 2), ImageOptions(max_bytes=1024 * 1024))
    assert reason == "file is 1.5 MB, over the 1.0 MB limit"


def test_html_is_not_an_image() -> None:
    reason = rejection(b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>")
    assert reason.startswith("not a recognised image")
    assert "text" in reason
    assert "<!DOCTYPE html>" in reason


def test_random_binary_is_not_an_image() -> None:
    reason = rejection(bytes(range(200, 256)) * 10)
    assert reason == "not a recognised image: unknown file signature c8 c9 ca cb cc cd ce cf"


def test_gif_is_an_unsupported_format() -> None:
    gif = encode(Image.new("RGB", (50, 50), RED), "GIF")
    assert rejection(gif) == "unsupported image format GIF (allowed: AVIF, HEIF, JPEG, PNG, WEBP)"


def test_a_deployment_may_allow_more_formats_which_come_out_as_png() -> None:
    gif = encode(Image.new("RGB", (50, 50), RED), "GIF")
    options = ImageOptions(sizes=(25,), allowed_formats=frozenset({"GIF", "PNG"}), output_format=SOURCE)
    result = make_thumbnails(gif, options)
    out = decode(result.thumbnails[0])
    assert (result.format, result.thumbnails[0].extension, out.format, out.size) == (
        "GIF",
        "png",
        "PNG",
        (25, 25),
    )


def test_truncated_jpeg_is_rejected_as_corrupt() -> None:
    data = encode(photo(1200, 900), "JPEG", quality=90)
    reason = rejection(data[: len(data) // 2])
    assert reason.startswith("image data is corrupt or truncated: ")
    assert "truncated" in reason


def test_truncated_and_damaged_png_are_rejected_as_corrupt() -> None:
    data = encode(photo(300, 200), "PNG")
    assert rejection(data[: len(data) // 2]).startswith("image data is corrupt or truncated: ")
    idat = data.index(b"IDAT")
    damaged = data[: idat + 20] + bytes(b ^ 0x5A for b in data[idat + 20 : idat + 60]) + data[idat + 60 :]
    assert rejection(damaged).startswith("image data is corrupt or truncated: ")


@pytest.mark.parametrize(
    ("side", "megapixels"),
    [(12000, "144.0"), (20000, "400.0")],  # under and over the size at which Pillow itself refuses
)
def test_decompression_bomb_is_rejected_from_the_header(side: int, megapixels: str) -> None:
    data = png_declaring(side, side)
    assert len(data) < 1000
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape either
        reason = rejection(data)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"took {elapsed:.2f}s: the pixels were decoded"
    assert f"{megapixels} megapixels" in reason
    assert "50.0 megapixel limit" in reason
    if side == 12000:
        assert reason == "image is 12000x12000 (144.0 megapixels), over the 50.0 megapixel limit"


def test_pixel_limit_is_configurable() -> None:
    data = encode(photo(400, 300), "JPEG")
    reason = rejection(data, ImageOptions(max_pixels=100_000))
    assert reason == "image is 400x300 (0.12 megapixels), over the 0.1 megapixel limit"
    assert make_thumbnails(data, ImageOptions(max_pixels=120_000)).width == 400


def _mutants(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    sources = [
        encode(photo(64, 48), "JPEG", quality=80),
        encode(photo(64, 48), "JPEG", quality=80, progressive=True),
        encode(photo(64, 48).convert("RGBA"), "PNG"),
        encode(photo(64, 48), "WEBP"),
    ]
    mutants = []
    for source in sources:
        for _ in range(60):
            data = bytearray(source)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            mutants.append(bytes(data))
        mutants.extend(source[:cut] for cut in range(1, len(source), max(1, len(source) // 25)))
    return mutants


def outcome(data: bytes) -> str:
    try:
        result = make_thumbnails(data, ImageOptions(sizes=(32, 16)))
    except ImageRejected as exc:
        return "rejected" if exc.reason else "rejected without a reason"
    return "processed" if all(t.data for t in result.thumbnails) else "processed without data"


def test_damaged_input_is_either_processed_or_rejected_never_anything_else() -> None:
    outcomes = Counter(outcome(data) for data in _mutants(seed=20261101))
    assert set(outcomes) <= {"processed", "rejected"}, outcomes
    assert outcomes["rejected"] > 50, outcomes


# --- watermark ---


@pytest.fixture(scope="module")
def gray_png() -> bytes:
    return encode(Image.new("RGB", (2048, 1536), (128, 128, 128)), "PNG")


def changed_box(data: bytes, options: ImageOptions, index: int) -> tuple[int, int, int, int] | None:
    unmarked = ImageOptions(sizes=options.sizes, output_format=options.output_format)
    plain = decode(make_thumbnails(data, unmarked).thumbnails[index])
    marked = decode(make_thumbnails(data, options).thumbnails[index])
    return ImageChops.difference(plain, marked).getbbox()


def test_text_watermark_only_on_sizes_at_or_above_min_size() -> None:
    data = encode(photo(4000, 3000), "JPEG", quality=90)
    plain = make_thumbnails(data)
    marked = make_thumbnails(data, ImageOptions(watermark=Watermark(text="© imgops", min_size=512)))
    assert marked.thumbnails[0].data != plain.thumbnails[0].data
    assert marked.thumbnails[1].data != plain.thumbnails[1].data
    assert marked.thumbnails[2].data == plain.thumbnails[2].data
    assert [(t.width, t.height) for t in marked.thumbnails] == [(t.width, t.height) for t in plain.thumbnails]


@pytest.mark.parametrize(
    ("position", "inside"),
    [
        ("bottom-right", (512, 384, 1024, 768)),
        ("top-left", (0, 0, 512, 384)),
        ("top-right", (512, 0, 1024, 384)),
        ("bottom-left", (0, 384, 512, 768)),
        ("center", (256, 192, 768, 576)),
    ],
)
def test_text_watermark_lands_where_asked(gray_png: bytes, position: str, inside: tuple[int, ...]) -> None:
    mark = Watermark(text="© imgops", position=position, opacity=0.8)
    options = ImageOptions(sizes=(1024,), watermark=mark, output_format=SOURCE)  # lossless: only the mark differs
    box = changed_box(gray_png, options, 0)
    assert box is not None
    assert inside[0] <= box[0], box
    assert inside[1] <= box[1], box
    assert box[2] <= inside[2], box
    assert box[3] <= inside[3], box
    height = box[3] - box[1]
    assert 20 <= height <= 80, f"text should be ~4% of the 1024 px edge, box {box}"
    if position == "center":
        assert box[0] < 512 < box[2]
        assert box[1] < 384 < box[3]


def test_png_watermark_is_scaled_and_blended_at_the_given_opacity(gray_png: bytes) -> None:
    mark = encode(Image.new("RGBA", (400, 400), (*RED, 255)), "PNG")
    watermark = Watermark(image_png=mark, opacity=0.5, min_size=512)
    options = ImageOptions(sizes=(1024, 256), watermark=watermark, output_format=SOURCE)
    result = make_thumbnails(gray_png, options)
    large = decode(result.thumbnails[0])
    box = changed_box(gray_png, options, 0)
    assert box is not None
    assert box[2] - box[0] <= round(0.2 * 1024), box
    assert box[3] - box[1] <= round(0.2 * 1024), box
    assert box[2] > 1000, "bottom-right with a small margin"
    assert box[3] > 740, "bottom-right with a small margin"
    centre = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    assert close_to(rgb(large, centre), (191, 64, 64), tolerance=3), rgb(large, centre)
    assert changed_box(gray_png, options, 1) is None


def test_watermark_on_transparent_png_keeps_the_alpha_channel() -> None:
    image = Image.new("RGBA", (1200, 900), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 300, 300))
    options = ImageOptions(sizes=(600,), watermark=Watermark(text="mark", position="bottom-right", min_size=1))
    out = decode(make_thumbnails(encode(image, "PNG"), options).thumbnails[0])
    assert out.mode == "RGBA"
    assert rgb(out, (0, 0))[3] == 0


def test_invalid_watermark_configuration_is_not_the_uploads_fault() -> None:
    options = ImageOptions(sizes=(64,), watermark=Watermark(image_png=b"not a png", min_size=1))
    with pytest.raises(ValueError, match="watermark image_png"):
        make_thumbnails(encode(photo(128, 128), "PNG"), options)
    with pytest.raises(ValueError, match="position"):
        Watermark(text="x", position="middle")
    with pytest.raises(ValueError, match="opacity"):
        Watermark(text="x", opacity=1.5)
    with pytest.raises(ValueError, match="sizes"):
        ImageOptions(sizes=(256, 0))


def test_rejection_carries_its_reason() -> None:
    exc = ImageRejected("not a recognised image: x")
    assert exc.reason == str(exc) == "not a recognised image: x"
