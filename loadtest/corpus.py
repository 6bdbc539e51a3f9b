"""Realistic uploads without internet: real photos shipped inside installed packages, made phone-like.

Deterministic from a seed and cached on disk, so two runs with the same parameters push identical bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ImgopsError
from pipeline.files import write_atomically

if TYPE_CHECKING:  # numpy, Pillow and matplotlib load only when a corpus file is generated
    from PIL import Image

CORPUS_VERSION = 1
# Today's uploads, and what every baseline in runs/ and the README's figures were measured with: kept as the
# default so a run stays comparable with the ones before it. PHONE_MIX is a current phone fleet's (iPhones save
# HEIC, Android and the web send more AVIF); pass it as `--mix` to size for it.
DEFAULT_MIX = "jpeg12mp=60,jpeg1080=25,png=10,webp=5"
PHONE_MIX = "heic12mp=45,jpeg12mp=25,jpeg1080=15,avif=10,png=5"


@dataclass(frozen=True)
class Kind:
    width: int
    height: int
    format: str
    content_type: str
    extension: str


KINDS: dict[str, Kind] = {
    "jpeg12mp": Kind(4032, 3024, "JPEG", "image/jpeg", "jpg"),  # a 12 MP phone photo, ~3 MB
    "jpeg1080": Kind(1920, 1080, "JPEG", "image/jpeg", "jpg"),
    "png": Kind(2000, 2000, "PNG", "image/png", "png"),  # with an alpha channel
    "webp": Kind(1600, 1200, "WEBP", "image/webp", "webp"),
    "heic12mp": Kind(4032, 3024, "HEIF", "image/heic", "heic"),  # an iPhone's photo: 512-px tile grid, ~3.5 MB
    "avif": Kind(2000, 1500, "AVIF", "image/avif", "avif"),  # a web/Android photo
}
PHONE_KINDS = frozenset({"jpeg12mp", "heic12mp"})  # held upright now and then: EXIF orientation 6 or 8
CACHE_ENV = "IMGOPS_CORPUS_CACHE"


def default_cache_dir() -> Path:
    """Where generated corpora are kept: the user's cache directory, not a stack's state (IMGOPS_STATE_DIR), so
    every stack, run and test on the machine generates a corpus once (the default one takes ~17 s of CPU)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgops" / "corpus"


class CorpusError(ImgopsError, ValueError):
    pass


@dataclass(frozen=True)
class CorpusImage:
    path: Path
    kind: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    orientation: int


def parse_mix(text: str) -> dict[str, float]:
    """`jpeg12mp=60,png=40` → shares that sum to 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in KINDS:
            raise CorpusError(f"--mix entry {part!r}: expected KIND=WEIGHT with KIND one of {', '.join(KINDS)}")
        try:
            weight = float(value)
        except ValueError:
            raise CorpusError(f"--mix entry {part!r}: {value!r} is not a number") from None
        if weight < 0:
            raise CorpusError(f"--mix entry {part!r}: weights cannot be negative")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise CorpusError("--mix needs at least one positive weight")
    return {name: weight / total for name, weight in weights.items() if weight > 0}


def allocate(mix: dict[str, float], count: int) -> dict[str, int]:
    """Largest-remainder split of `count` files over kinds; every kind in the mix gets at least one."""
    exact = {name: share * count for name, share in mix.items()}
    counts = {name: max(1, int(value)) for name, value in exact.items()}
    by_remainder = sorted(mix, key=lambda name: exact[name] - int(exact[name]), reverse=True)
    for name in by_remainder[: max(0, count - sum(counts.values()))]:
        counts[name] += 1
    return counts


def _sources() -> list[Image.Image]:
    import matplotlib
    import numpy as np
    from PIL import Image

    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [Image.open(sample_data / "grace_hopper.jpg").convert("RGB")]
    with np.load(sample_data / "topobathy.npz") as terrain:
        elevation = terrain["topo"].astype(np.float32)
    span = float(elevation.max() - elevation.min()) or 1.0
    colored = matplotlib.colormaps["terrain"]((elevation - elevation.min()) / span)[:, :, :3]
    photos.append(Image.fromarray((colored * 255).astype(np.uint8), "RGB"))
    blue_pack = sample_data / "Minduka_Present_Blue_Pack.png"
    if blue_pack.exists():
        photos.append(Image.open(blue_pack).convert("RGB"))
    return photos


def render(kind_name: str, index: int, seed: int, sources: list[Image.Image]) -> tuple[bytes, int]:
    """A crop of a real photo, upscaled, with mild sensor noise; returns the bytes and EXIF orientation."""
    import numpy as np
    from PIL import Image

    kind = KINDS[kind_name]
    rng = random.Random(f"{seed}:{kind_name}:{index}")
    source = sources[rng.randrange(len(sources))]
    aspect = kind.width / kind.height
    crop_w = min(source.width, int(source.height * aspect))
    crop_h = int(crop_w / aspect)
    crop_w, crop_h = int(crop_w * rng.uniform(0.6, 1.0)), int(crop_h * rng.uniform(0.6, 1.0))
    crop_h = max(1, int(crop_w / aspect))
    left, top = rng.randrange(source.width - crop_w + 1), rng.randrange(source.height - crop_h + 1)
    image = source.crop((left, top, left + crop_w, top + crop_h)).resize(
        (kind.width, kind.height), Image.Resampling.BICUBIC
    )
    if kind.format != "PNG":  # sensor noise; PNGs with alpha are graphics, not camera output
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 5.0, (kind.height, kind.width, 3))
        pixels = np.clip(np.asarray(image, dtype=np.float32) + noise.astype(np.float32), 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    orientation = 1
    if kind_name in PHONE_KINDS and rng.random() < 0.3:
        orientation = rng.choice((6, 8))  # a phone held upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    if kind.format == "JPEG":
        image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    elif kind.format == "PNG":
        image.putalpha(_vignette_alpha(kind.width, kind.height))
        image.save(buffer, "PNG", compress_level=6)
    elif kind.format == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        # pillow-heif writes EXIF orientation as HEIF's own rotation (irot), as phones do. x265's "fast" preset:
        # ~7 s for 12 MP instead of ~50 s, decoded as fast as any other HEVC; once per corpus file (cached).
        image.save(buffer, "HEIF", quality=60, exif=exif.tobytes(), tile_size=512, enc_params={"preset": "fast"})
    elif kind.format == "AVIF":
        image.save(buffer, "AVIF", quality=70, speed=8)
    else:
        image.save(buffer, "WEBP", quality=85, method=4)
    return buffer.getvalue(), orientation


def _vignette_alpha(width: int, height: int) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFilter

    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse((width // 10, height // 10, width * 9 // 10, height * 9 // 10), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(width // 20))


def build_corpus(*, mix: dict[str, float], count: int, seed: int, cache_dir: Path) -> list[CorpusImage]:
    """The corpus for these parameters, generated once and then read from `cache_dir`."""
    key = hashlib.sha256(json.dumps([CORPUS_VERSION, sorted(mix.items()), count, seed]).encode()).hexdigest()[:16]
    folder = cache_dir / key
    manifest = folder / "manifest.json"
    if manifest.exists():
        entries = json.loads(manifest.read_text(encoding="utf-8"))
        images = [CorpusImage(**{**entry, "path": folder / entry["path"]}) for entry in entries]
        if all(image.path.exists() for image in images):
            return images
    folder.mkdir(parents=True, exist_ok=True)
    images = list(_generate(mix, count, seed, folder))
    entries = [{**asdict(image), "path": image.path.name} for image in images]
    # Last: it says every file is there. Two processes may generate the same corpus at once (the same bytes); a
    # reader never sees half a file.
    write_atomically(manifest, json.dumps(entries, indent=1).encode())
    return images


def _generate(mix: dict[str, float], count: int, seed: int, folder: Path) -> Iterator[CorpusImage]:
    sources = _sources()
    for kind_name, kind_count in allocate(mix, count).items():
        kind = KINDS[kind_name]
        for index in range(kind_count):
            data, orientation = render(kind_name, index, seed, sources)
            path = folder / f"{kind_name}-{index:03d}.{kind.extension}"
            write_atomically(path, data)
            yield CorpusImage(path, kind_name, kind.content_type, kind.width, kind.height, len(data), orientation)


def upload_plan(corpus: list[CorpusImage], mix: dict[str, float], images: int, seed: int) -> list[CorpusImage]:
    """The file each upload sends: kinds drawn by the mix, files taken in turn within a kind."""
    by_kind: dict[str, list[CorpusImage]] = {}
    for image in corpus:
        by_kind.setdefault(image.kind, []).append(image)
    kinds = [name for name in mix if name in by_kind]
    rng = random.Random(seed)
    drawn = rng.choices(kinds, weights=[mix[name] for name in kinds], k=images)
    used = dict.fromkeys(kinds, 0)
    plan = []
    for name in drawn:
        plan.append(by_kind[name][used[name] % len(by_kind[name])])
        used[name] += 1
    return plan


# --- Sizing: a stratified sample of the mix, and the most memory-hungry input the worker accepts --------------

SAMPLE_MINIMUM_PER_KIND = 2


@dataclass(frozen=True)
class SampleImage:
    """One image of a sizing sample, and the share of the mix it stands for (the weights sum to 1)."""

    image: CorpusImage
    weight: float


def stratified_counts(mix: dict[str, float], count: int, minimum: int = SAMPLE_MINIMUM_PER_KIND) -> dict[str, int]:
    """Images per kind: every kind of the mix, at least `minimum` each, the rest in proportion to the mix
    (largest remainder). `count` below `minimum` x kinds is raised to it."""
    count = max(count, minimum * len(mix))
    counts = dict.fromkeys(mix, minimum)
    spare = count - minimum * len(mix)
    # What each kind still lacks of its proportional share once it has its minimum.
    wanted = {name: max(0.0, share * count - minimum) for name, share in mix.items()}
    total_wanted = sum(wanted.values())
    if spare and total_wanted > 0:
        exact = {name: spare * value / total_wanted for name, value in wanted.items()}
        for name, value in exact.items():
            counts[name] += int(value)
        by_remainder = sorted(mix, key=lambda name: (exact[name] - int(exact[name]), mix[name]), reverse=True)
        for name in by_remainder[: count - sum(counts.values())]:
            counts[name] += 1
    elif spare:  # every kind has its share already: the largest shares get the rest
        for name in sorted(mix, key=lambda name: mix[name], reverse=True)[:spare]:
            counts[name] += 1
    return counts


def stratified_sample(
    *, mix: dict[str, float], count: int, seed: int, cache_dir: Path, minimum: int = SAMPLE_MINIMUM_PER_KIND
) -> list[SampleImage]:
    """Distinct files per kind (`stratified_counts`), each weighted so that the sample stands for the mix:
    weight = share of its kind / images of its kind. Files are the corpus's own (same seed, same bytes)."""
    sample: list[SampleImage] = []
    for name, kind_count in stratified_counts(mix, count, minimum).items():
        files = build_corpus(mix={name: 1.0}, count=kind_count, seed=seed, cache_dir=cache_dir)
        sample += [SampleImage(image, mix[name] / kind_count) for image in files]
    return sample


@dataclass(frozen=True)
class HungryKind:
    """A format and pixel mode the worker accepts, as a candidate for its most memory-hungry input."""

    name: str
    format: str  # Pillow's
    mode: str
    content_type: str
    extension: str


HUNGRY_KINDS: dict[str, HungryKind] = {
    kind.name: kind
    for kind in (
        HungryKind("png-rgba", "PNG", "RGBA", "image/png", "png"),
        HungryKind("png-la", "PNG", "LA", "image/png", "png"),
        HungryKind("png-palette-alpha", "PNG", "P", "image/png", "png"),
        HungryKind("png-rgb", "PNG", "RGB", "image/png", "png"),
        HungryKind("png-gray16", "PNG", "I;16", "image/png", "png"),
        HungryKind("webp-rgba", "WEBP", "RGBA", "image/webp", "webp"),
        HungryKind("webp-rgb", "WEBP", "RGB", "image/webp", "webp"),
        HungryKind("jpeg-progressive", "JPEG", "RGB", "image/jpeg", "jpg"),
        HungryKind("jpeg-cmyk", "JPEG", "CMYK", "image/jpeg", "jpg"),
        HungryKind("avif-rgba", "AVIF", "RGBA", "image/avif", "avif"),
        HungryKind("avif-rgb", "AVIF", "RGB", "image/avif", "avif"),
        HungryKind("heic-rgba", "HEIF", "RGBA", "image/heic", "heic"),
        HungryKind("heic-rgb", "HEIF", "RGB", "image/heic", "heic"),
    )
}
HUNGRY_VERSION = 1
WEBP_MAX_SIDE = 16383


def hungry_candidates(accepted_content_types: Iterable[str]) -> list[str]:
    """The candidate kinds of the content types the pipeline accepts, that this machine can also encode (AVIF:
    Pillow's libavif plugin; HEIC: pillow-heif)."""
    accepted = set(accepted_content_types)
    return [name for name, kind in HUNGRY_KINDS.items() if kind.content_type in accepted and _can_encode(kind.format)]


def _can_encode(image_format: str) -> bool:
    if image_format == "AVIF":
        from PIL import features

        return bool(features.check("avif"))
    if image_format == "HEIF":
        import importlib.util

        return importlib.util.find_spec("pillow_heif") is not None  # the optional HEIC encoder
    return True


def square_side(pixels: int) -> int:
    """The side of the largest square image of at most `pixels` pixels."""
    side = max(1, int(pixels**0.5))
    while side * side > pixels:
        side -= 1
    while (side + 1) * (side + 1) <= pixels:
        side += 1
    return side


def hungry_image(kind_name: str, pixels: int, *, cache_dir: Path, max_bytes: int) -> CorpusImage:
    """A square image of `kind_name` with at most `pixels` pixels (just under a cap of that many), generated
    deterministically (smooth colour, a hard-edged alpha checkerboard, fixed noise for the lossy formats) and
    cached under `cache_dir/worst-case/`. Refused when its file would be larger than the worker accepts."""
    kind = HUNGRY_KINDS[kind_name]
    side = square_side(pixels)
    if kind.format == "WEBP" and side > WEBP_MAX_SIDE:
        raise CorpusError(f"a {kind.name} image cannot have {pixels:,} pixels (WebP sides are at most 16,383)")
    folder = cache_dir / "worst-case"
    path = folder / f"{kind.name}-{side}x{side}-v{HUNGRY_VERSION}.{kind.extension}"
    if not path.exists():
        data = _render_hungry(kind, side)
        if len(data) > max_bytes:
            raise CorpusError(
                f"the {side}x{side} {kind.name} test image is {len(data):,} bytes, over the worker's "
                f"{max_bytes:,}-byte limit"
            )
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
    return CorpusImage(path, kind.name, kind.content_type, side, side, path.stat().st_size, 1)


def _render_hungry(kind: HungryKind, side: int) -> bytes:
    import numpy as np
    from PIL import Image

    ramp = (np.arange(side, dtype=np.uint32) * 255 // max(1, side - 1)).astype(np.uint8)
    pixels = np.empty((side, side, 4), np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = ramp[None, :] // 2 + ramp[:, None] // 2
    cells = (np.arange(side) // 97) % 2
    pixels[..., 3] = ((cells[None, :] ^ cells[:, None]) * 180 + 60).astype(np.uint8)
    if kind.format != "PNG":  # lossy formats: some sensor-like noise, so the file is photo-sized
        block = np.random.default_rng(HUNGRY_VERSION).integers(0, 12, (512, 512, 3), dtype=np.uint8)
        for top in range(0, side, 512):
            rows = min(512, side - top)
            pixels[top : top + rows, :, :3] += np.tile(block[:rows], (1, -(-side // 512), 1))[:, :side]
    image = Image.fromarray(pixels, "RGBA")
    del pixels
    buffer = io.BytesIO()
    if kind.mode == "P":
        palette = image.convert("RGB").quantize(64)
        palette.save(buffer, "PNG", compress_level=1, transparency=0)
    elif kind.mode == "I;16":
        wide = (np.arange(side, dtype=np.uint32) * 65535 // max(1, side - 1)).astype(np.uint16)
        Image.fromarray(np.broadcast_to(wide, (side, side)).copy()).save(buffer, "PNG", compress_level=1)
    elif kind.format == "PNG":
        image.convert(kind.mode).save(buffer, "PNG", compress_level=1)
    elif kind.format == "WEBP":
        image.convert(kind.mode).save(buffer, "WEBP", quality=80, method=0)
    elif kind.format == "AVIF":
        image.convert(kind.mode).save(buffer, "AVIF", quality=60, speed=10)
    elif kind.format == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        image.convert(kind.mode).save(buffer, "HEIF", quality=50)
    else:
        image.convert(kind.mode).save(buffer, "JPEG", quality=90, progressive=kind.name == "jpeg-progressive")
    return buffer.getvalue()
