"""One real moto server over HTTP per session; each test provisions its own uniquely named stack."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

# Never let a test reach a real account, whatever the developer's shell exports.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per moto request
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    os.environ.pop("AWS_ENDPOINT_URL", None)
    server.stop()


@pytest.fixture
def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def jpeg_bytes(width: int = 1600, height: int = 1200, *, orientation: int | None = None) -> bytes:
    """A photo-like JPEG: a gradient, so resizing has real content to work on."""
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


# The files that take minutes (each runs whole on one worker: scripts/test uses pytest-xdist's --dist loadfile and
# --no-loadscope-reorder), started first so that they run beside the many short files instead of after them. The
# first three go to the three workers; xdist at once queues one more file behind a worker whose file has at most two
# tests left (the drill and the stress test are single tests), so the 4th and 5th are the shorter ones. Times: one
# serial run on the project's 2-core machine, 2026-12-05.
LONGEST_FIRST = (
    "tests/e2e/test_readme.py",  # ~275 s: the README's main job, 1,000 images, and ~60 short tests
    "tests/e2e/test_drill.py",  # ~250 s: every drill in a row (one test)
    "tests/e2e/test_ctrl_c_stress.py",  # ~210 s: 30 interrupts (one test)
    "tests/e2e/test_runbooks.py",  # ~90 s, behind the drill
    "tests/e2e/test_chaos.py",  # ~100 s, behind the stress test
    "tests/e2e/test_loadtest.py",  # ~175 s, to the first worker free
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run LONGEST_FIRST's files before every other file; the order inside a file, and of the rest, is kept."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable
