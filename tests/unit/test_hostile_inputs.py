"""Every file in tests.hostile either becomes correct thumbnails or a refusal with a specific reason.

Bombs run in a fresh process each, so that process's peak RSS (VmHWM) is the cost of that one file.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.imaging import ImageOptions, ImageRejected, ProcessedImage, make_thumbnails
from tests.hostile import GIF_REASON, QUADRANTS, HostileFile, hostile_corpus

SIZES = ImageOptions().sizes
MB = 1024 * 1024
SOURCE = ImageOptions(output_format="source")  # thumbnails in the upload's own format, modes as they were


@cache
def corpus() -> dict[str, HostileFile]:
    return {f.name: f for f in hostile_corpus()}


def cases(*, bombs: bool) -> list[str]:
    return [name for name, f in corpus().items() if f.bomb == bombs]


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def check_thumbnails(hostile: HostileFile, result: ProcessedImage) -> list[Image.Image]:
    """What every accepted file must give: the upright size, each thumbnail within its box and the aspect kept
    to a pixel, bytes that decode to what they claim, and no metadata carried over."""
    assert hostile.size is not None
    width, height = hostile.size
    assert (result.width, result.height) == (width, height)
    images = []
    for size, thumbnail in zip(SIZES, result.thumbnails, strict=True):
        out = decode(thumbnail.data)
        assert out.size == (thumbnail.width, thumbnail.height)
        assert max(out.size) == min(size, max(width, height))
        assert abs(out.width - width * max(out.size) / max(width, height)) <= 1
        assert abs(out.height - height * max(out.size) / max(width, height)) <= 1
        assert out.format == thumbnail.format
        assert "exif" not in out.info
        assert len(out.info.get("icc_profile") or b"") <= 64 * 1024
        assert len(thumbnail.data) < 2 * MB
        images.append(out)
    return images


def colour(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    value = image.convert("RGBA").getpixel((int(x * image.width), int(y * image.height)))
    assert isinstance(value, tuple)
    return value


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


@pytest.mark.parametrize("name", cases(bombs=False))
def test_hostile_file_is_processed_or_refused_with_its_reason(name: str) -> None:
    hostile = corpus()[name]
    if hostile.expect == "rejected":
        with pytest.raises(ImageRejected) as caught:
            make_thumbnails(hostile.data)
        reason = caught.value.reason
        assert hostile.reason in reason
        assert len(reason) < 200, "a reason is a sentence, not an echo of the upload"
        return
    check_thumbnails(hostile, make_thumbnails(hostile.data))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    hostile = corpus()[f"jpeg-exif-orientation-{orientation}"]
    [full, _, small] = check_thumbnails(hostile, make_thumbnails(hostile.data))
    for image in (full, small):
        seen = [colour(image, x, y) for x, y in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))]
        assert all(near(c, q) for c, q in zip(seen, QUADRANTS, strict=True)), (orientation, seen)


def test_modes_keep_what_matters() -> None:
    files = corpus()
    cmyk = check_thumbnails(files["jpeg-cmyk"], make_thumbnails(files["jpeg-cmyk"].data))
    assert {image.mode for image in cmyk} == {"RGB"}

    deep = check_thumbnails(files["png-16bit-gray"], make_thumbnails(files["png-16bit-gray"].data, SOURCE))[0]
    top, bottom = colour(deep, 0.5, 0.02)[0], colour(deep, 0.5, 0.98)[0]
    assert deep.mode == "L"
    assert top < 10, "16-bit data scaled, not clipped"
    assert 200 < bottom < 240, bottom  # 199*300/65535*255 ≈ 232

    palette = check_thumbnails(files["png-palette-trns"], make_thumbnails(files["png-palette-trns"].data, SOURCE))[0]
    assert palette.mode == "RGBA"
    assert colour(palette, 0.1, 0.1)[3] == 0
    assert near(colour(palette, 0.9, 0.9), (255, 0, 0, 255), 2)

    gray_alpha = check_thumbnails(files["png-gray-alpha"], make_thumbnails(files["png-gray-alpha"].data, SOURCE))[0]
    assert gray_alpha.mode == "LA"
    assert colour(gray_alpha, 0.1, 0.1)[3] == 0
    assert near(colour(gray_alpha, 0.9, 0.9), (90, 90, 90, 255), 2)

    # Under the default (auto) output format the transparent ones become WebP, the others JPEG.
    auto = {name: make_thumbnails(files[name].data).thumbnails[0] for name in ("png-16bit-gray", "png-gray-alpha")}
    assert (auto["png-16bit-gray"].format, auto["png-gray-alpha"].format) == ("JPEG", "WEBP")
    assert decode(auto["png-16bit-gray"].data).mode == "L"
    webp = decode(auto["png-gray-alpha"].data)
    assert webp.mode == "RGBA"
    assert colour(webp, 0.1, 0.1)[3] == 0


@pytest.mark.parametrize("name", ["webp-animated", "png-animated-apng"])
def test_animations_give_their_first_frame(name: str) -> None:
    hostile = corpus()[name]
    for image in check_thumbnails(hostile, make_thumbnails(hostile.data)):
        assert near(colour(image, 0.5, 0.5), (*QUADRANTS[0], 255), 8)


def test_gif_is_refused_by_default_and_gives_its_first_frame_when_allowed() -> None:
    gif = corpus()["gif-animated"].data
    with pytest.raises(ImageRejected, match=GIF_REASON):
        make_thumbnails(gif)
    allowed = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
    result = make_thumbnails(gif, ImageOptions(allowed_formats=allowed, output_format="source"))
    out = decode(result.thumbnails[0].data)
    assert (result.format, out.format, out.size) == ("GIF", "PNG", (120, 90))
    assert near(colour(out, 0.5, 0.5), (*QUADRANTS[0], 255), 8)
    as_auto = make_thumbnails(gif, ImageOptions(allowed_formats=allowed))
    assert decode(as_auto.thumbnails[0].data).format == "JPEG"


def test_the_bytes_decide_not_the_name_or_content_type() -> None:
    files = corpus()
    as_png = make_thumbnails(files["png-named-jpg"].data, SOURCE)
    as_jpeg = make_thumbnails(files["jpeg-named-png"].data, SOURCE)
    assert {t.content_type for t in as_png.thumbnails} == {"image/png"}
    assert {t.content_type for t in as_jpeg.thumbnails} == {"image/jpeg"}


def test_oversized_icc_profile_is_dropped_but_a_real_one_is_kept() -> None:
    from PIL import ImageCms

    garbage = make_thumbnails(corpus()["jpeg-icc-4mb-garbage"].data)
    assert all(len(t.data) < 64 * 1024 for t in garbage.thumbnails), [len(t.data) for t in garbage.thumbnails]
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, "JPEG", icc_profile=srgb)
    kept = make_thumbnails(buffer.getvalue(), ImageOptions(sizes=(32,)))
    assert decode(kept.thumbnails[0].data).info.get("icc_profile") == srgb
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, "JPEG", icc_profile=b"not a profile" * 10)
    unreadable = make_thumbnails(buffer.getvalue(), ImageOptions(sizes=(32,)))
    assert "icc_profile" not in decode(unreadable.thumbnails[0].data).info


# --- bombs: outcome and peak memory, one fresh process per file ---------------------------------------------

_PROBE = r"""
import io, json, sys, time
from pathlib import Path
from PIL import Image
from pipeline.imaging import ImageRejected, make_thumbnails

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)

data = Path(sys.argv[1]).read_bytes()
import pillow_heif
pillow_heif.register_heif_opener()  # the HEIC writer, for the warm-up file
for fmt in ("JPEG", "PNG", "WEBP", "AVIF", "HEIF"):  # load the codecs before the baseline, as a warm worker has
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt != "JPEG" else "RGB", (64, 64)).save(buffer, fmt)
    make_thumbnails(buffer.getvalue())
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    reset = True
except OSError:
    reset = False
baseline = status("VmRSS") if reset else status("VmHWM")
started = time.perf_counter()
try:
    result = make_thumbnails(data)
    outcome = {"outcome": "thumbnails", "size": [result.width, result.height],
               "thumbnails": [[t.width, t.height] for t in result.thumbnails]}
except ImageRejected as exc:
    outcome = {"outcome": "rejected", "reason": exc.reason}
outcome.update(seconds=time.perf_counter() - started, baseline_kb=baseline, peak_kb=status("VmHWM"), reset=reset)
print(json.dumps(outcome))
"""

# Extra peak RSS each bomb may cost, MB. Refusals from the header cost nothing; the two valid 49 MP files cost
# what max_pixels allows (RGBA: 4 bytes a pixel, twice over while Pillow premultiplies alpha to resample).
BOMB_BUDGET_MB = {
    "png-zeros-49mp-gray1": 150,
    "png-zeros-49mp-rgba": 450,
    "jpeg-lying-header-48mp": 40,
}
DEFAULT_BOMB_BUDGET_MB = 10


@pytest.fixture(scope="module")
def bomb_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("bombs")
    root = Path(__file__).resolve().parents[2]

    def probe(name: str) -> tuple[str, dict[str, Any]]:
        path = folder / name
        path.write_bytes(corpus()[name].data)
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120, cwd=root
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return name, json.loads(done.stdout.splitlines()[-1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(pool.map(probe, cases(bombs=True)))
    report = ", ".join(f"{n} {(r['peak_kb'] - r['baseline_kb']) / 1024:.1f} MB" for n, r in runs.items())
    print(f"\nbomb extra peak RSS: {report}")
    return runs


@pytest.mark.parametrize("name", cases(bombs=True))
def test_bomb_outcome_and_peak_memory(name: str, bomb_runs: dict[str, dict[str, Any]]) -> None:
    hostile, run = corpus()[name], bomb_runs[name]
    assert len(hostile.data) < 300 * 1024, "a bomb is small on disk"
    assert run["outcome"] == hostile.expect, run
    if hostile.expect == "rejected":
        assert hostile.reason in run["reason"]
        assert run["seconds"] < 0.5, "refused from the header, not after decoding"
    else:
        assert tuple(run["size"]) == hostile.size
        assert all(max(box) <= size for box, size in zip(run["thumbnails"], SIZES, strict=True))
    extra_mb = (run["peak_kb"] - run["baseline_kb"]) / 1024
    assert extra_mb <= BOMB_BUDGET_MB.get(name, DEFAULT_BOMB_BUDGET_MB), f"{name}: {extra_mb:.1f} MB extra peak RSS"
