"""Coverage-guided fuzzing of make_thumbnails with atheris (libFuzzer), for runs longer than CI's time box.

    .venv/bin/pip install atheris
    .venv/bin/python -m tests.fuzz.atheris_imaging CORPUS_DIR -max_total_time=600 -timeout=10

CORPUS_DIR may start empty (the seeds from tests/fuzz/seeds.py are added to it). Any exception other than
ImageRejected is reported as a crash, with the input saved as crash-<sha1> (see -artifact_prefix).
Coverage guides Python code only (Pillow's plugins and ours); Pillow's C codecs are not instrumented.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

atheris: Any = importlib.import_module("atheris")  # optional, untyped: imported by name so mypy need not see it

with atheris.instrument_imports():
    from pipeline.imaging import ImageOptions, ImageRejected, make_thumbnails

OPTIONS = ImageOptions(sizes=(64, 16))


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ImageRejected):  # the only exception an upload may cause
        make_thumbnails(data, OPTIONS)


def main(argv: list[str]) -> None:
    from tests.fuzz.seeds import seed_files

    for arg in argv[1:]:
        folder = Path(arg)
        if not arg.startswith("-") and folder.is_dir():
            for name, data in seed_files().items():
                (folder / f"seed-{name}").write_bytes(data)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
