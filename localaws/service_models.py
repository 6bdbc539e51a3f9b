"""botocore's service models, parsed once per machine rather than once per process.

Every process that makes an AWS client parses the JSON models it needs (S3's alone is 1.4 MB, read with an
OrderedDict per object): a local stack's main process, its moto server and each CLI command spent 0.2-0.3 s of
CPU on it every time they started. `install()` keeps each parsed file as a pickle in the user's cache
(`~/.cache/imgops/botocore-models`, keyed by the file's path, size, modification time and botocore's version, so
an upgrade reads the new files) and reads that instead, ~4x faster.

Only the tools' own processes install it: the local stack, its moto server and the `imgops` command. The emulated
Lambda execution environments do not: their cold start should cost what it costs on Lambda.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders

from pipeline.files import write_atomically

_INSTALLED = "_imgops_model_cache"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgops" / "botocore-models"


def install() -> None:
    """From now on, in this process, every botocore loader reads parsed models from the cache (idempotent)."""
    loader_class = botocore.loaders.JSONFileLoader
    if getattr(loader_class, _INSTALLED, False):
        return
    parse = loader_class.load_file
    folder = cache_dir()

    def load_file(self: botocore.loaders.JSONFileLoader, file_path: str) -> Any:
        source = _existing(file_path)
        if source is None:
            return parse(self, file_path)
        stat = source.stat()
        key = f"{source}\0{stat.st_size}\0{stat.st_mtime_ns}\0{botocore.__version__}"
        cached = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"
        unreadable = (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError)
        with contextlib.suppress(*unreadable), cached.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - written by this function, in the user's own cache
        data = parse(self, file_path)
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(cached, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))  # never half a file
        return data

    loader_class.load_file = load_file  # type: ignore[method-assign]
    setattr(loader_class, _INSTALLED, True)


def _existing(file_path: str) -> Path | None:
    """The file botocore's loader would read for `file_path` (it tries `.json`, then `.json.gz`)."""
    for extension in getattr(botocore.loaders, "_JSON_OPEN_METHODS", (".json", ".json.gz")):  # the loader's own
        candidate = Path(file_path + extension)
        if candidate.is_file():
            return candidate
    return None
