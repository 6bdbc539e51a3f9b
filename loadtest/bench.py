"""How fast is the worker's image function? make_thumbnails beside the two usual alternatives, on the corpus.

- `imgops`: `pipeline.imaging.make_thumbnails`, exactly as the worker calls it.
- `tutorial`: what most tutorials (AWS's S3-trigger one included) do: write the upload to a temp file, then per
  size open it, `Image.thumbnail`, save to a temp file and read it back. EXIF orientation is applied too
  (`ImageOps.exif_transpose`, after the resize), so all three produce the same thumbnails.
- `pyvips`: libvips' shrink-on-load `thumbnail_buffer` for the largest size, the smaller ones cascaded from it
  with `thumbnail_image`; libvips' operation cache off, so a repeat cannot be served from it.

Same sizes (1024/512/256) and JPEG quality (85) everywhere, no metadata kept. Each approach runs in a process of
its own, so its peak RSS (VmHWM, reset after a warm-up image) is that approach's alone; the processes take
turns image by image, so a busy neighbour on the machine slows all three alike. Quality is reported too, as
luma PSNR of the first image's thumbnails against a full-decode LANCZOS reference: speed bought with blur is no
speed-up.
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

__all__ = ["APPROACHES", "ApproachResult", "BenchOptions", "bench_table", "psnr", "run_bench"]

APPROACHES = ("imgops", "tutorial", "pyvips")
SIZES = (1024, 512, 256)
QUALITY = 85

Thumbnailer = Callable[[bytes], dict[int, bytes]]


@dataclass(frozen=True)
class BenchOptions:
    repeat: int = 5
    vips_threads: int = 1  # one core, like the worker's Lambda at <= 1,769 MB and like Pillow's own path
    approaches: tuple[str, ...] = APPROACHES


@dataclass
class ApproachResult:
    name: str
    available: bool = True
    note: str = ""
    times_ms: list[float] = field(default_factory=list)
    baseline_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    psnr_db: list[float] = field(default_factory=list)  # luma PSNR of every thumbnail of the first image

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def extra_rss_mb(self) -> float:
        return self.peak_rss_mb - self.baseline_rss_mb


# --- the three approaches (run inside the measuring process) --------------------------------------------------


def imgops_thumbnails(data: bytes) -> dict[int, bytes]:
    from pipeline.imaging import ImageOptions, make_thumbnails

    result = make_thumbnails(data, ImageOptions(sizes=SIZES, jpeg_quality=QUALITY))
    return {thumbnail.size: thumbnail.data for thumbnail in result.thumbnails}


def tutorial_thumbnails(data: bytes) -> dict[int, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        upload = Path(folder) / "upload.jpg"
        upload.write_bytes(data)  # s3.download_file(...)
        out: dict[int, bytes] = {}
        for size in SIZES:
            with Image.open(upload) as image:
                image.thumbnail((size, size))
                upright = ImageOps.exif_transpose(image)
                target = Path(folder) / f"{size}.jpg"
                upright.convert("RGB").save(target, "JPEG", quality=QUALITY)
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

    def thumbnails(data: bytes) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        largest = pyvips.Image.thumbnail_buffer(data, SIZES[0], height=SIZES[0], size="down").copy_memory()
        previous = largest
        for size in SIZES:
            current = previous
            if max(previous.width, previous.height) > size:
                current = pyvips.Image.thumbnail_image(previous, size, height=size, size="down").copy_memory()
            out[size] = bytes(current.jpegsave_buffer(Q=QUALITY, **strip))
            previous = current
        return out

    return thumbnails


def _thumbnailer(name: str) -> Thumbnailer:
    if name == "imgops":
        return imgops_thumbnails
    if name == "tutorial":
        return tutorial_thumbnails
    if name == "pyvips":
        return pyvips_thumbnailer()
    raise ValueError(f"unknown approach {name!r}; expected one of {', '.join(APPROACHES)}")


def _proc_status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise OSError(f"{name} not in /proc/self/status")


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(name: str, files: list[Path], out_dir: Path) -> None:
    """Inside the approach's own process: warm up on the first image, reset the peak RSS, then time the image
    the parent names on each stdin line until it sends `end`."""
    try:
        thumbnails = _thumbnailer(name)
    except (ImportError, OSError) as exc:  # pyvips without libvips raises OSError from cffi
        _reply({"name": name, "available": False, "note": f"not installed: {exc}"})
        return
    uploads = [path.read_bytes() for path in files]
    for size, data in thumbnails(uploads[0]).items():  # warm-up: codecs loaded, first-call costs paid
        (out_dir / f"{size}.jpg").write_bytes(data)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        baseline_kb = _proc_status_kb("VmRSS")
    except OSError:
        baseline_kb = _proc_status_kb("VmHWM")
    _reply({"name": name, "available": True, "baseline_rss_mb": baseline_kb / 1024})
    for line in sys.stdin:
        if line.strip() == "end":
            break
        data = uploads[int(line)]
        started = time.perf_counter()
        thumbnails(data)
        _reply({"ms": (time.perf_counter() - started) * 1000})
    _reply({"peak_rss_mb": _proc_status_kb("VmHWM") / 1024})


# --- the parent: one process per approach, driven in lockstep, then quality and the table -----------------------


class _Approach:
    """One approach's process. Only one process works at a time and they take turns image by image, so
    background load on the machine lands on all of them alike instead of on whichever ran during it."""

    def __init__(self, name: str, files: list[Path], out_dir: Path, environment: dict[str, str]) -> None:
        self.out_dir = out_dir
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, this module, files the corpus made
            [sys.executable, "-m", "loadtest.bench", name, str(out_dir), *map(str, files)],
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
        self.result.times_ms.append(float(self._read()["ms"]))

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
                approaches.append(_Approach(name, files, Path(folder) / name, environment))
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
    with Image.open(io.BytesIO(original)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    scores = []
    for size in SIZES:
        with Image.open(out_dir / f"{size}.jpg") as thumbnail:
            reference = upright.resize(thumbnail.size, Image.Resampling.LANCZOS)
            scores.append(psnr(thumbnail, reference))
    return scores


def psnr(actual: Image.Image, expected: Image.Image, *, luma: bool = True) -> float:
    """PSNR in dB; on luma (BT.601 Y, as JPEG stores it) by default, the usual measure for image codecs."""
    a = np.asarray(actual.convert("RGB"), dtype=np.float64)
    b = np.asarray(expected.convert("RGB"), dtype=np.float64)
    if luma:
        weights = np.array([0.299, 0.587, 0.114])
        a, b = a @ weights, b @ weights
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def bench_table(results: list[ApproachResult]) -> list[dict[str, str]]:
    """Rows for printing: medians, the ratio to imgops, memory and quality."""
    ours = next((r for r in results if r.name == "imgops" and r.available), None)
    rows = []
    for result in results:
        if not result.available:
            rows.append({"approach": result.name, "median ms/image": "—", "note": result.note})
            continue
        ratio = result.median_ms / ours.median_ms if ours else float("nan")
        rows.append(
            {
                "approach": result.name,
                "median ms/image": f"{result.median_ms:.1f}",
                "vs imgops": f"{ratio:.2f}×",
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
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    serve(args.approach, args.files, args.out_dir)


if __name__ == "__main__":
    _main(sys.argv[1:])
