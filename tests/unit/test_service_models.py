"""botocore's models from the user's cache: the same models, rebuilt when a cached file is damaged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MAKE_A_CLIENT = """
import json, boto3
from localaws import service_models
service_models.install()
client = boto3.client("sqs", region_name="us-east-1")
print(json.dumps(sorted(client.meta.service_model.operation_names)))
"""


def run(cache: Path) -> list[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    result = subprocess.run([sys.executable, "-c", MAKE_A_CLIENT], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()


def test_a_second_process_reads_the_same_models_from_the_cache(tmp_path: Path) -> None:
    first = run(tmp_path)
    pickles = sorted((tmp_path / "imgops" / "botocore-models").glob("*.pickle"))
    assert pickles  # the service model, endpoints, partitions...
    assert run(tmp_path) == first
    assert "SendMessage" in first[0]


def test_a_damaged_entry_is_parsed_again_and_rewritten(tmp_path: Path) -> None:
    first = run(tmp_path)
    folder = tmp_path / "imgops" / "botocore-models"
    for entry in folder.glob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert run(tmp_path) == first
    assert all(entry.read_bytes() != b"not a pickle" for entry in folder.glob("*.pickle"))
