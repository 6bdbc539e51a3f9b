"""HEIC/HEIF (pillow-heif) and AVIF (Pillow's libavif) uploads: orientation once, the right picture of many,
refusals from the boxes before a decoder runs, and a decoder that is loaded only when needed.

The files come from tests.hostile (its HEIF/AVIF section and builders), generated at run time.
"""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from PIL import Image

from pipeline.imaging import ImageOptions, ImageRejected, ProcessedImage, make_thumbnails
from tests.hostile import (
    QUADRANTS,
    HostileFile,
    exif_oriented,
    heic_declaring,
    heif_encode,
    hostile_corpus,
)

ROOT = Path(__file__).resolve().parents[2]
SPOTS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))


@cache
def corpus() -> dict[str, HostileFile]:
    return {f.name: f for f in hostile_corpus(include_slow=False) if f.name.startswith(("heic", "avif"))}


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def colour(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    value = image.convert("RGBA").getpixel((int(x * image.width), int(y * image.height)))
    assert isinstance(value, tuple)
    return value


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 28) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def quadrants_upright(result: ProcessedImage) -> list[tuple[int, ...]]:
    """The four quadrant colours of the largest and the smallest thumbnail, as seen."""
    seen = []
    for thumbnail in (result.thumbnails[0], result.thumbnails[-1]):
        image = decode(thumbnail.data)
        seen += [colour(image, x, y) for x, y in SPOTS]
    return seen


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_container_rotation_and_mirroring_are_applied_exactly_once(fmt: str, orientation: int) -> None:
    """heif_encode writes the orientation as irot/imir (pillow-heif also keeps the EXIF tag, as phones do):
    libheif turns HEIC upright while decoding and resets EXIF to 1; Pillow reports AVIF's irot/imir as an EXIF
    orientation, which make_thumbnails applies. Either way the picture is turned once."""
    data = exif_oriented(orientation, fmt=fmt)
    result = make_thumbnails(data, ImageOptions(sizes=(320, 64)))
    assert (result.format, result.width, result.height) == (fmt, 320, 160)
    seen = quadrants_upright(result)
    assert all(near(c, q) for c, q in zip(seen, QUADRANTS * 2, strict=True)), (orientation, seen)


def test_a_heic_exif_orientation_without_irot_is_not_applied() -> None:
    """The HEIF standard has the container's transformations win over EXIF (Apple and libheif read it so): a tag
    that irot does not back is informative only. The file: orientation 6 with its irot box renamed `free`."""
    data = exif_oriented(6, fmt="HEIF")
    assert data.count(b"irot") == 1
    data = data.replace(b"irot", b"free")
    result = make_thumbnails(data, ImageOptions(sizes=(320,)))
    assert (result.width, result.height) == (160, 320), "shown as stored: turned neither by irot nor by EXIF"


def test_the_primary_image_of_a_collection_and_the_still_of_a_sequence_are_shown() -> None:
    files = corpus()
    collection = decode(make_thumbnails(files["heic-image-collection"].data).thumbnails[0].data)
    assert near(colour(collection, 0.5, 0.5), (*QUADRANTS[1], 255)), "the second image is the primary one"
    burst = decode(make_thumbnails(files["heic-sequence-with-still"].data).thumbnails[0].data)
    assert near(colour(burst, 0.5, 0.5), (*QUADRANTS[0], 255))
    animated = decode(make_thumbnails(files["avif-animated"].data).thumbnails[0].data)
    assert near(colour(animated, 0.5, 0.5), (*QUADRANTS[0], 255)), "an AVIF sequence's first frame"


@pytest.mark.parametrize("name", ["avif-10bit", "avif-12bit", "avif-10bit-alpha"])
def test_deep_avif_comes_out_8_bit_with_its_colours(name: str) -> None:
    result = make_thumbnails(corpus()[name].data)
    assert result.mode in ("RGB", "RGBA")
    image = decode(result.thumbnails[0].data)
    # The alpha variant's left 8 of 64 columns are transparent: sample to the right of them.
    for (x, y), expected in zip(((0.3, 0.25), (0.75, 0.25), (0.3, 0.75), (0.75, 0.75)), QUADRANTS, strict=True):
        assert near(colour(image, x, y)[:3], expected), (name, x, y, colour(image, x, y))
    if name.endswith("alpha"):
        assert (result.thumbnails[0].format, image.mode) == ("WEBP", "RGBA")
        assert colour(image, 0.05, 0.5)[3] == 0


@pytest.mark.parametrize("name", ["heic-alpha", "avif-alpha"])
def test_transparency_survives_as_webp(name: str) -> None:
    image = decode(make_thumbnails(corpus()[name].data).thumbnails[0].data)
    assert (image.format, image.mode) == ("WEBP", "RGBA")
    # hostile's gradient alpha: transparent at the top, opaque at the bottom.
    assert colour(image, 0.5, 0.01)[3] < 16
    assert colour(image, 0.5, 0.99)[3] > 239


def test_source_output_keeps_avif_and_turns_heic_into_what_browsers_show() -> None:
    source = ImageOptions(output_format="source")
    files = corpus()
    assert {t.format for t in make_thumbnails(files["avif-photo"].data, source).thumbnails} == {"AVIF"}
    assert {t.format for t in make_thumbnails(files["heic-photo"].data, source).thumbnails} == {"JPEG"}
    assert {t.format for t in make_thumbnails(files["heic-alpha"].data, source).thumbnails} == {"WEBP"}


def test_a_deployment_may_refuse_heif_and_avif() -> None:
    options = ImageOptions(allowed_formats=frozenset({"JPEG", "PNG", "WEBP"}))
    for name, fmt in (("heic-photo", "HEIF"), ("avif-photo", "AVIF")):
        with pytest.raises(ImageRejected, match=f"unsupported image format {fmt}"):
            make_thumbnails(corpus()[name].data, options)


def test_the_declared_size_is_checked_against_the_limit_before_decoding() -> None:
    """The ispe box (the coded size, which libheif decodes into) against max_pixels, to the pixel."""
    data = heic_declaring(1000, 1000)
    with pytest.raises(ImageRejected, match=r"image is 1000x1000 \(1\.0 megapixels\), over the 1 megapixel limit"):
        make_thumbnails(data, ImageOptions(max_pixels=999_999))
    with pytest.raises(ImageRejected, match="corrupt or truncated"):  # under the limit: libheif sees the lie
        make_thumbnails(data, ImageOptions(max_pixels=1_000_000))


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_pillow_heif_is_loaded_by_the_first_heic_only() -> None:
    """A cold start pays nothing for HEIC (the import is ~50 ms); a HEIC bomb is refused before libheif loads."""
    out = _run(
        "import io, sys\n"
        "from PIL import Image\n"
        "from pipeline.imaging import ImageRejected, make_thumbnails\n"
        "from tests.hostile import heic_declaring\n"
        "sys.modules.pop('pillow_heif', None)\n"  # tests.hostile's writer imported it: forget it
        "import pipeline.imaging as imaging\n"
        "buffer = io.BytesIO(); Image.new('RGB', (64, 48)).save(buffer, 'JPEG')\n"
        "make_thumbnails(buffer.getvalue())\n"
        "try:\n"
        "    make_thumbnails(heic_declaring(20000, 20000))\n"
        "except ImageRejected as exc:\n"
        "    print('refused:', exc.reason)\n"
        "print('loaded after bomb:', imaging._load_heif_plugin.cache_info().currsize)\n"
    )
    assert "refused: image is 20000x20000" in out
    assert "loaded after bomb: 0" in out


def test_a_missing_pillow_heif_is_a_configuration_error_not_the_uploads_fault() -> None:
    out = _run(
        "import sys\n"
        "from tests.hostile import hostile_corpus\n"
        "heic = next(f for f in hostile_corpus(include_slow=False) if f.name == 'heic-photo').data\n"
        "sys.modules['pillow_heif'] = None  # as if not installed\n"
        "from pipeline.imaging import CodecUnavailable, make_thumbnails\n"
        "try:\n"
        "    make_thumbnails(heic)\n"
        "except CodecUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    assert "unavailable: HEIC/HEIF uploads need pillow-heif" in out


INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


@pytest.mark.parametrize("name", ["heic-photo", "heic-alpha", "heic-image-collection", "avif-photo", "avif-animated"])
def test_mutated_heif_and_avif_headers_are_processed_or_refused(name: str) -> None:
    """The box reader and both decoders on damaged headers (sizes, counts, indices: the first 700 bytes hold
    ftyp and meta): thumbnails or ImageRejected, nothing else. tests/fuzz runs the long version for the other
    formats."""
    seed = corpus()[name].data
    rng = random.Random(name)
    outcomes = {"thumbnails": 0, "rejected": 0}
    reasons: list[str] = []
    for _ in range(120):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(min(len(data), 700))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                data[at : at + 4] = struct.pack(">I", rng.choice(INTERESTING))
        try:
            result = make_thumbnails(bytes(data), ImageOptions(sizes=(64, 16)))
        except ImageRejected as exc:
            reasons.append(exc.reason)
            outcomes["rejected"] += 1
            continue
        assert all(max(t.width, t.height) <= 64 for t in result.thumbnails)
        outcomes["thumbnails"] += 1
    assert outcomes["rejected"] > 0, outcomes
    assert all(0 < len(reason) < 200 for reason in reasons), max(reasons, key=len)


def test_hostile_heic_writer_round_trips() -> None:
    """The corpus's own HEIC writer (pillow-heif + x265) makes files make_thumbnails reads back."""
    data = heif_encode(Image.new("RGB", (96, 64), (10, 120, 230)), "HEIF", quality=90)
    assert data[4:12] == b"ftypheic"
    image = decode(make_thumbnails(data, ImageOptions(sizes=(48,))).thumbnails[0].data)
    assert image.size == (48, 32)
    assert near(colour(image, 0.5, 0.5), (10, 120, 230, 255), 8)


def test_the_bench_command_offers_every_input_kind_and_output_format() -> None:
    """imgops/bench.py spells the choices out so that `--help` imports no Pillow; they must not drift."""
    from imgops.bench import FORMAT_HELP, KIND_HELP
    from loadtest.bench import INPUT_KINDS, OUTPUT_FORMATS

    assert [part.split(" ")[0] for part in KIND_HELP.split(", ")] == list(INPUT_KINDS)
    assert [part.split(" ")[0] for part in FORMAT_HELP.split(", ")] == list(OUTPUT_FORMATS)
