"""Whole-file writes: a reader (another process, a concurrent writer) sees the old file or the new one, never half.

Every tool that keeps a file others read while it may be rewritten (the stack's state and fault rules, the template
and corpus caches, botocore's parsed models) writes through here: a temporary file of its own in the same folder
(unique per call, so two writers never share one), then an atomic rename over the target. The new file is the
owner's alone (0600, as tempfile makes it) unless `mode` says otherwise: these are one user's state and caches.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write `data` (a str as UTF-8) to `path` whole and return `path`; its folder must exist."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        if mode is not None:
            temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return path
