"""How fast is the worker's image function? make_thumbnails beside the two usual alternatives, on the corpus.

- `imgops`: `pipeline.imaging.make_thumbnails`, exactly as the worker calls it (with the chosen output format).
- `tutorial`: what most tutorials (AWS's S3-trigger one included) do: write the upload to a temp file, then per
  size open it, `Image.thumbnail`, save to a temp file and read it back. EXIF orientation is applied too
  (`ImageOps.exif_transpose`, after the resize), so all three produce the same thumbnails.
- `pyvips`: libvips' shrink-on-load `thumbnail_buffer` for the largest size, the smaller ones cascaded from it
  with `thumbnail_image`; libvips' operation cache off, so a repeat cannot be served from it. pyvips-binary's
  libvips reads AVIF but not HEIC (it has libheif without an HEVC decoder): its row then says so.

Inputs (`INPUT_KINDS`): the load test's corpus kinds (loadtest.corpus: 12 MP and 1080p JPEGs, 2000x2000 RGBA
PNGs, WebPs), and HEIC / AVIF made from its JPEGs as phones write them (EXIF orientation as irot; HEIC as a grid
of 512-pixel tiles): `heic12mp`, `avif12mp`, `heic1080`, `avif1080`, and `heic48mp` (the 12 MP photos upscaled
to 8064x6048, a 48 MP phone's full resolution). They are made once and cached beside the corpus.

Same sizes (1024/512/256) everywhere, and the same output format: make_thumbnails' own choice under the policy
(`auto`: JPEG, or WebP for transparent pictures), which the other two follow image by image, at the worker's
default qualities (JPEG 85, WebP 80, AVIF 70), no metadata kept. Each approach runs in a process of its own, so
its peak RSS (VmHWM, reset after a warm-up image) is that approach's alone; the processes take turns image by
image, so a busy neighbour on the machine slows all three alike. Wall time and the process's CPU time (all its
threads) are both kept: on a loaded machine CPU time is the steadier of the two, and libheif, libavif and
libvips may use more than one thread where Pillow uses one. Bytes are the three thumbnails' total. Quality is
reported too, as luma PSNR of the first image's thumbnails against a full-decode LANCZOS reference (transparent
pictures seen over mid-grey, or over white when flattened into a JPEG): speed bought with blur is no speed-up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pipeline.files import write_atomically
from pipeline.imaging import ImageOptions, make_thumbnails
from pipeline.resources import OUTPUT_FORMATS

__all__ = [
    "APPROACHES",
    "INPUT_KINDS",
    "OUTPUT_FORMATS",
    "ApproachResult",
    "BenchOptions",
    "bench_inputs",
    "bench_table",
    "psnr",
    "run_bench",
]

APPROACHES = ("imgops", "tutorial", "pyvips")
SIZES = (1024, 512, 256)
_DEFAULTS = ImageOptions()
QUALITY = _DEFAULTS.jpeg_quality
# Pillow format → the encoder settings all three approaches use (make_thumbnails' own, for the comparison).
SAVE_PARAMS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": _DEFAULTS.jpeg_quality},
    "WEBP": {"quality": _DEFAULTS.webp_quality, "method": 4},
    "AVIF": {"quality": _DEFAULTS.avif_quality, "speed": 9},
    "PNG": {"compress_level": 6},
}
# Input kind → (corpus kind it is made from, format, scale). The corpus's own kinds are inputs as they are.
TRANSCODED: dict[str, tuple[str, str, int]] = {
    "heic12mp": ("jpeg12mp", "HEIF", 1),
    "avif12mp": ("jpeg12mp", "AVIF", 1),
    "heic1080": ("jpeg1080", "HEIF", 1),
    "avif1080": ("jpeg1080", "AVIF", 1),
    "heic48mp": ("jpeg12mp", "HEIF", 2),
}
INPUT_KINDS = ("jpeg12mp", "jpeg1080", "png", "webp", *TRANSCODED)
TRANSCODE_VERSION = 1

Thumbnailer = Callable[[bytes, str], dict[int, bytes]]


@dataclass(frozen=True)
class BenchOptions:
    repeat: int = 5
    vips_threads: int = 1  # one core, like the worker's Lambda at <= 1,769 MB and like Pillow's own path
    approaches: tuple[str, ...] = APPROACHES
    output_format: str = "auto"  # make_thumbnails' policy (IMGOPS_OUTPUT_FORMAT); the others follow its choice


@dataclass
class ApproachResult:
    name: str
    available: bool = True
    note: str = ""
    times_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # the process's CPU time (every thread) per image
    bytes_out: list[int] = field(default_factory=list)  # the three thumbnails' bytes, per image
    formats: list[str] = field(default_factory=list)  # the thumbnails' format, per image
    baseline_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    psnr_db: list[float] = field(default_factory=list)  # luma PSNR of every thumbnail of the first image

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_ms) if self.cpu_ms else float("nan")

    @property
    def mean_kb(self) -> float:
        return statistics.fmean(self.bytes_out) / 1024 if self.bytes_out else float("nan")

    @property
    def extra_rss_mb(self) -> float:
        return self.peak_rss_mb - self.baseline_rss_mb


# --- the inputs: corpus kinds, and HEIC / AVIF made from them ----------------------------------------------


def bench_inputs(kind: str, *, count: int, seed: int, cache_dir: Path) -> list[Path]:
    """`count` files of an input kind (INPUT_KINDS), generated once and then read from `cache_dir`."""
    from loadtest.corpus import build_corpus  # matplotlib: only when files are made

    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; expected one of {', '.join(INPUT_KINDS)}")
    base, fmt, scale = TRANSCODED.get(kind, (kind, "", 1))
    corpus = [image.path for image in build_corpus(mix={base: 1.0}, count=count, seed=seed, cache_dir=cache_dir)]
    if not fmt:
        return corpus
    folder = cache_dir / "transcoded"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in corpus:
        extension = "heic" if fmt == "HEIF" else "avif"
        path = folder / f"{kind}-{source.parent.name}-{source.stem}-v{TRANSCODE_VERSION}.{extension}"
        if not path.exists():
            write_atomically(path, _transcode(source.read_bytes(), fmt, scale))
        paths.append(path)
    return paths


def _transcode(data: bytes, fmt: str, scale: int) -> bytes:
    """A phone's HEIC or AVIF of the same picture: EXIF orientation kept (written as irot), HEIC as a grid of
    512-pixel tiles like Apple's, at qualities that give phone-like file sizes (~3 MB for 12 MP HEIC)."""
    with Image.open(io.BytesIO(data)) as jpeg:
        exif = jpeg.info.get("exif", b"")
        image = jpeg.convert("RGB")
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        # x265's "fast" preset: a 12 MP picture in ~7 s instead of ~50 s, decoded as fast as any other HEVC.
        image.save(buffer, "HEIF", quality=60, exif=exif, tile_size=512, enc_params={"preset": "fast"})
    else:
        image.save(buffer, "AVIF", quality=70, speed=8, exif=exif)
    return buffer.getvalue()


# --- the three approaches (run inside the measuring process) --------------------------------------------------


def imgops_thumbnailer(output_format: str) -> Thumbnailer:
    options = ImageOptions(sizes=SIZES, output_format=output_format)

    def thumbnails(data: bytes, _fmt: str) -> dict[int, bytes]:
        result = make_thumbnails(data, options)
        return {thumbnail.size: thumbnail.data for thumbnail in result.thumbnails}

    return thumbnails


def tutorial_thumbnails(data: bytes, fmt: str) -> dict[int, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        upload = Path(folder) / "upload"
        upload.write_bytes(data)  # s3.download_file(...)
        out: dict[int, bytes] = {}
        for size in SIZES:
            with Image.open(upload) as image:
                image.thumbnail((size, size))
                upright = ImageOps.exif_transpose(image)
                target = Path(folder) / f"{size}.out"
                if fmt == "JPEG" and upright.has_transparency_data:  # onto white, as the others flatten it
                    background = Image.new("RGB", upright.size, "white")
                    background.paste(upright, mask=upright.convert("RGBA").getchannel("A"))
                    upright = background
                upright.convert("RGB" if fmt == "JPEG" else upright.mode).save(target, fmt, **SAVE_PARAMS[fmt])
            out[size] = target.read_bytes()  # s3.upload_file(...)
    return out


def pyvips_thumbnailer() -> Thumbnailer:
    import importlib

    pyvips: Any = importlib.import_module("pyvips")  # optional and untyped
    pyvips.cache_set_max(0)
    try:
        pyvips.Image.black(1, 1).jpegsave_buffer(keep=pyvips.enums.ForeignKeep.NONE)
        strip: dict[str, Any] = {"keep": pyvips.enums.ForeignKeep.NONE}
    except (AttributeError, pyvips.Error):  # libvips before 8.15
        strip = {"strip": True}

    def save(image: Any, fmt: str) -> bytes:
        if fmt == "JPEG":
            if image.hasalpha():
                image = image.flatten(background=[255, 255, 255])
            return bytes(image.jpegsave_buffer(Q=SAVE_PARAMS["JPEG"]["quality"], **strip))
        if fmt == "WEBP":
            return bytes(image.webpsave_buffer(Q=SAVE_PARAMS["WEBP"]["quality"], effort=4, **strip))
        if fmt == "AVIF":  # libvips' effort 0-9 is 9 - libaom's speed
            effort = 9 - SAVE_PARAMS["AVIF"]["speed"]
            return bytes(
                image.heifsave_buffer(compression="av1", Q=SAVE_PARAMS["AVIF"]["quality"], effort=effort, **strip)
            )
        return bytes(image.pngsave_buffer(compression=SAVE_PARAMS["PNG"]["compress_level"], **strip))

    def thumbnails(data: bytes, fmt: str) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        largest = pyvips.Image.thumbnail_buffer(data, SIZES[0], height=SIZES[0], size="down").copy_memory()
        previous = largest
        for size in SIZES:
            current = previous
            if max(previous.width, previous.height) > size:
                current = pyvips.Image.thumbnail_image(previous, size, height=size, size="down").copy_memory()
            out[size] = save(current, fmt)
            previous = current
        return out

    return thumbnails


def _thumbnailer(name: str, output_format: str) -> Thumbnailer:
    if name == "imgops":
        return imgops_thumbnailer(output_format)
    if name == "tutorial":
        return tutorial_thumbnails
    if name == "pyvips":
        return pyvips_thumbnailer()
    raise ValueError(f"unknown approach {name!r}; expected one of {', '.join(APPROACHES)}")


def _chosen_format(data: bytes, output_format: str) -> str:
    """The thumbnails' format make_thumbnails picks for this upload under the policy: the other approaches
    write the same (it depends on the picture's transparency under `auto`)."""
    return make_thumbnails(data, ImageOptions(sizes=(16,), output_format=output_format)).thumbnails[0].format


def _proc_status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise OSError(f"{name} not in /proc/self/status")


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(name: str, files: list[Path], out_dir: Path, output_format: str = "auto") -> None:
    """Inside the approach's own process: warm up on the first image, reset the peak RSS, then time the image
    the parent names on each stdin line until it sends `end`."""
    try:
        thumbnails = _thumbnailer(name, output_format)
    except (ImportError, OSError) as exc:  # pyvips without libvips raises OSError from cffi
        _reply({"name": name, "available": False, "note": f"not installed: {exc}"})
        return
    uploads = [path.read_bytes() for path in files]
    formats = [_chosen_format(data, output_format) for data in uploads]
    try:
        first = thumbnails(uploads[0], formats[0])  # warm-up: codecs loaded, first-call costs paid
    except Exception as exc:  # noqa: BLE001 - e.g. a libvips that cannot read the input: say so in the table
        note = " ".join(str(exc).split())[:160]
        _reply({"name": name, "available": False, "note": f"cannot process this input: {note}"})
        return
    for size, data in first.items():
        (out_dir / str(size)).write_bytes(data)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        baseline_kb = _proc_status_kb("VmRSS")
    except OSError:
        baseline_kb = _proc_status_kb("VmHWM")
    _reply({"name": name, "available": True, "baseline_rss_mb": baseline_kb / 1024})
    for line in sys.stdin:
        if line.strip() == "end":
            break
        index = int(line)
        started, cpu_started = time.perf_counter(), time.process_time()
        made = thumbnails(uploads[index], formats[index])
        cpu_ms = (time.process_time() - cpu_started) * 1000
        ms = (time.perf_counter() - started) * 1000
        _reply({"ms": ms, "cpu_ms": cpu_ms, "bytes": sum(map(len, made.values())), "format": formats[index]})
    _reply({"peak_rss_mb": _proc_status_kb("VmHWM") / 1024})


# --- the parent: one process per approach, driven in lockstep, then quality and the table -----------------------


class _Approach:
    """One approach's process. Only one process works at a time and they take turns image by image, so
    background load on the machine lands on all of them alike instead of on whichever ran during it."""

    def __init__(
        self, name: str, files: list[Path], out_dir: Path, environment: dict[str, str], output_format: str
    ) -> None:
        self.out_dir = out_dir
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, this module, files the corpus made
            [sys.executable, "-m", "loadtest.bench", name, output_format, str(out_dir), *map(str, files)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env=environment,
        )
        self.result = ApproachResult(**self._read())

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench process exited with {self.process.wait()}; see its stderr above")
        message: dict[str, Any] = json.loads(line)
        return message

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def time(self, index: int) -> None:
        self._send(str(index))
        reply = self._read()
        self.result.times_ms.append(float(reply["ms"]))
        self.result.cpu_ms.append(float(reply["cpu_ms"]))
        self.result.bytes_out.append(int(reply["bytes"]))
        self.result.formats.append(str(reply["format"]))

    def finish(self) -> ApproachResult:
        if self.result.available:
            self._send("end")
            self.result.peak_rss_mb = float(self._read()["peak_rss_mb"])
        self.process.wait(timeout=60)
        return self.result


def run_bench(files: list[Path], options: BenchOptions | None = None) -> list[ApproachResult]:
    options = options or BenchOptions()
    environment = {**os.environ, "VIPS_CONCURRENCY": str(options.vips_threads)}
    with tempfile.TemporaryDirectory(prefix="imgops-bench-") as folder:
        approaches = []
        try:
            for name in options.approaches:
                (Path(folder) / name).mkdir()
                approaches.append(_Approach(name, files, Path(folder) / name, environment, options.output_format))
            running = [a for a in approaches if a.result.available]
            for turn in range(options.repeat * len(files)):
                index = turn % len(files)
                shift = turn % max(1, len(running))  # rotate who goes first
                for approach in running[shift:] + running[:shift]:
                    approach.time(index)
            results = [approach.finish() for approach in approaches]
        finally:
            for approach in approaches:
                if approach.process.poll() is None:
                    approach.process.kill()
                    approach.process.wait()
        for result, approach in zip(results, approaches, strict=True):
            if result.available:
                result.psnr_db = _quality(files[0].read_bytes(), approach.out_dir)
    return results


def _quality(original: bytes, out_dir: Path) -> list[float]:
    if original[4:8] == b"ftyp":  # HEIC needs pillow-heif's reader here too
        import pillow_heif

        pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(original)) as opened:
        upright = ImageOps.exif_transpose(opened)
        upright = upright.convert("RGBA" if upright.has_transparency_data else "RGB")
    scores = []
    for size in SIZES:
        with Image.open(out_dir / str(size)) as thumbnail:
            reference = upright.resize(thumbnail.size, Image.Resampling.LANCZOS)
            scores.append(psnr(thumbnail, reference))
    return scores


def _visible(image: Image.Image, background: float) -> np.ndarray:
    """RGB as a viewer shows it: transparent pixels composited over a flat background."""
    if "A" not in image.getbands():
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:4] / 255.0
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def psnr(actual: Image.Image, expected: Image.Image, *, luma: bool = True) -> float:
    """PSNR in dB; on luma (BT.601 Y, as JPEG stores it) by default, the usual measure for image codecs.
    Transparency is seen over mid-grey, or over white where `actual` lost it (a JPEG, flattened onto white)."""
    flattened = "A" not in actual.getbands() and "A" in expected.getbands()
    background = 255.0 if flattened else 128.0
    a, b = _visible(actual, background), _visible(expected, background)
    if luma:
        weights = np.array([0.299, 0.587, 0.114])
        a, b = a @ weights, b @ weights
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def bench_table(results: list[ApproachResult]) -> list[dict[str, str]]:
    """Rows for printing: medians, the ratio to imgops, CPU time, bytes, memory and quality."""
    ours = next((r for r in results if r.name == "imgops" and r.available), None)
    rows = []
    for result in results:
        if not result.available:
            rows.append({"approach": result.name, "median ms/image": "—", "note": result.note})
            continue
        ratio = result.median_ms / ours.median_ms if ours else float("nan")
        cpu_ratio = result.median_cpu_ms / ours.median_cpu_ms if ours else float("nan")
        rows.append(
            {
                "approach": result.name,
                "median ms/image": f"{result.median_ms:.1f}",
                "vs imgops": f"{ratio:.2f}×",
                "median CPU ms": f"{result.median_cpu_ms:.1f}",
                "CPU vs imgops": f"{cpu_ratio:.2f}×",
                "KB/image": f"{result.mean_kb:.0f}",
                "format": "/".join(sorted(set(result.formats))),
                "peak RSS MB": f"{result.peak_rss_mb:.0f}",
                "extra RSS MB": f"{result.extra_rss_mb:.0f}",
                "min PSNR-Y dB": f"{min(result.psnr_db):.1f}" if result.psnr_db else "—",
                "note": result.note,
            }
        )
    return rows


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Serve one approach's timings to run_bench (stdin/stdout).")
    parser.add_argument("approach", choices=APPROACHES)
    parser.add_argument("output_format", choices=OUTPUT_FORMATS)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    serve(args.approach, args.files, args.out_dir, args.output_format)


if __name__ == "__main__":
    _main(sys.argv[1:])
