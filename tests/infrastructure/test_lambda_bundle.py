"""The worker's bundle as a deploy builds it: the deployed architecture's native libraries, and it imports.

Real pip (the platform's wheels from the index), real ELF files. The python3.12 runtime itself cannot run here,
so the arm64 bundle is checked from its files (what the loader checks), and the same bundle built for this
machine is imported and run in a bare interpreter that sees only the bundle and what the runtime provides.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dashboards.config import Architecture
from dashboards.lambda_bundle import BUNDLES, MAX_UNZIPPED_BYTES, BundleReport, build_bundle, check_bundle

WORKER = BUNDLES["worker"]


@pytest.fixture(scope="module")
def arm64_worker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleReport]:
    root = tmp_path_factory.mktemp("arm64") / "worker"
    report = build_bundle(root, packages=WORKER.packages, requirements=WORKER.requirements, architecture="arm64")
    assert report is not None
    return root, report


def test_the_arm64_worker_bundle_holds_aarch64_libraries_for_python312(arm64_worker: tuple[Path, BundleReport]) -> None:
    root, report = arm64_worker
    assert report.ok, report.problems
    natives = set(report.native_files)
    for module in ("PIL/_imaging", "PIL/_avif", "PIL/_webp", "_pillow_heif"):
        assert f"{module}.cpython-312-aarch64-linux-gnu.so" in natives
    assert any(name.startswith("pillow_heif.libs/libheif") for name in natives)
    assert report.newest_glibc <= (2, 34)
    assert report.system_libraries <= {
        "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libgcc_s.so.1", "libstdc++.so.6",
        "libz.so.1", "ld-linux-aarch64.so.1",
    }  # fmt: skip
    assert 10 * 2**20 < report.unzipped_bytes < MAX_UNZIPPED_BYTES
    assert (root / "pipeline" / "worker.py").is_file()


def test_a_host_library_in_the_bundle_is_refused(arm64_worker: tuple[Path, BundleReport], tmp_path: Path) -> None:
    """What a copied virtualenv or a wrong wheel leaves: this machine's extension, without its libraries."""
    import PIL

    root = tmp_path / "worker"
    shutil.copytree(arm64_worker[0], root)
    host = next(Path(PIL.__file__).parent.glob("_imaging.cpython-*.so"))
    shutil.copy(host, root / "PIL" / host.name)

    problems = check_bundle(root, "arm64", "3.12").problems

    mine = [p for p in problems if p.startswith(f"PIL/{host.name}")]
    assert any("the function runs EM_AARCH64" in p for p in mine), problems
    assert any("an extension for another Python (the runtime's is 3.12)" in p for p in mine), problems
    assert any("which neither the bundle nor the runtime has" in p for p in mine), problems
    assert not [p for p in problems if p not in mine]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="Lambda runs x86_64 or arm64 only")
def test_the_worker_bundle_imports_and_runs_with_nothing_else(tmp_path: Path) -> None:
    """This machine's build of the same bundle in a bare interpreter (-I -S: no site-packages), beside only
    boto3 (the runtime provides it): the handler imports, takes a batch, and decodes HEIC and AVIF."""
    architecture: Architecture = "arm64" if platform.machine() == "aarch64" else "x86_64"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = tmp_path / "bundle"
    report = build_bundle(
        bundle, packages=WORKER.packages, requirements=WORKER.requirements, architecture=architecture,
        python_version=python,
    )  # fmt: skip
    assert report is not None
    assert report.ok, report.problems
    runtime = tmp_path / "runtime"  # what Lambda's python runtime brings: boto3 and its dependencies
    runtime.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py"):
        module = next(Path(p) / name for p in sys.path if (Path(p) / name).exists())
        (runtime / name).symlink_to(module)
    import pillow_heif

    pillow_heif.register_heif_opener()
    for fmt, suffix in (("HEIF", "heic"), ("AVIF", "avif")):
        buffer = io.BytesIO()
        Image.new("RGB", (640, 480), (200, 60, 30)).save(buffer, fmt, quality=60)
        (tmp_path / f"photo.{suffix}").write_bytes(buffer.getvalue())
    probe = f"""
import json, sys
sys.path[:0] = [{str(bundle)!r}, {str(runtime)!r}]
from pathlib import Path
import pipeline.worker as worker
from pipeline.imaging import ImageOptions, make_thumbnails
import PIL, pillow_heif

class Context:
    function_name, memory_limit_in_mb, aws_request_id = "worker", 1024, "probe"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:worker"

# The message S3 sends when a notification is set up: the worker takes it and has nothing to do.
record = {{"messageId": "m-1", "receiptHandle": "r", "body": json.dumps({{"Event": "s3:TestEvent"}}),
          "attributes": {{}}, "messageAttributes": {{}}, "md5OfBody": "", "eventSource": "aws:sqs",
          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}}
out = worker.handler({{"Records": [record]}}, Context())
formats = [make_thumbnails(Path({str(tmp_path)!r}, f"photo.{{s}}").read_bytes(), ImageOptions()).format
           for s in ("heic", "avif")]
print(json.dumps({{"out": out, "formats": formats, "pil": PIL.__file__, "heif": pillow_heif.__file__,
                  "paths": [p for p in sys.path if "site-packages" in p]}}))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "AWS_", "IMGOPS_"))}
    env |= {
        "AWS_DEFAULT_REGION": "us-east-1", "IMGOPS_UPLOAD_BUCKET": "up", "IMGOPS_PROCESSED_BUCKET": "out",
        "IMGOPS_IMAGES_TABLE": "images", "IMGOPS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["out"] == {"batchItemFailures": []}
    assert seen["formats"] == ["HEIF", "AVIF"]
    assert seen["pil"].startswith(str(bundle))
    assert seen["heif"].startswith(str(bundle))
    assert seen["paths"] == []
