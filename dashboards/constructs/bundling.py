"""Lambda code assets built on this machine: no Docker, only pip with a target platform.

Pillow ships Linux wheels only for manylinux_2_28 (python3.12 runs on Amazon Linux 2023), so pip is asked
for exactly that platform and binary wheels only; a source build could never match the runtime anyway.
With `install_dependencies=False` (tests, `imgops:skip-bundling`) the bundle is the source packages
alone: offline and fast, good for synth and assertions, not for deploying.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from dashboards.config import Architecture
from pipeline.errors import ImgopsError

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.12"
# The Lambda runtime already provides boto3; everything else the handlers import must be bundled. Only the worker
# decodes images: the API handlers' bundle leaves Pillow (~20 MB unzipped) out, so they must never import it.
WORKER_REQUIREMENTS = ("Pillow", "pillow-heif", "aws-lambda-powertools")  # pillow-heif: HEIC/HEIF uploads
API_REQUIREMENTS = ("aws-lambda-powertools",)
METRICS_REQUIREMENTS = ("aws-lambda-powertools",)
# Only used if local bundling were ever refused; CDK requires an image on BundlingOptions.
_UNUSED_IMAGE = "public.ecr.aws/sam/build-python3.12"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


class BundlingError(ImgopsError, RuntimeError):
    """pip could not produce the Lambda bundle (no network, no wheel for the platform, ...)."""


def pinned_requirements(names: Sequence[str], pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's own version ranges for `names`, so the bundle cannot drift from what tests ran."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    by_name = {_requirement_name(spec): spec for spec in declared}
    missing = [name for name in names if name.lower() not in by_name]
    if missing:
        raise BundlingError(f"{', '.join(missing)} not declared in {pyproject.name}")
    return [by_name[name.lower()] for name in names]


def _requirement_name(spec: str) -> str:
    for index, char in enumerate(spec):
        if not (char.isalnum() or char in "-_."):
            return spec[:index].lower()
    return spec.lower()


def pip_command(target: Path, requirements: Sequence[str], architecture: Architecture) -> list[str]:
    machine = "x86_64" if architecture == "x86_64" else "aarch64"
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        f"manylinux_2_28_{machine}",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """Copies source packages and pip-installs platform wheels next to them."""

    def __init__(
        self,
        *,
        packages: Sequence[str],
        requirements: Sequence[str],
        architecture: Architecture,
        install_dependencies: bool,
        source_root: Path = REPO_ROOT,
    ) -> None:
        self.packages = tuple(packages)
        self.requirements = tuple(requirements)
        self.architecture = architecture
        self.install_dependencies = install_dependencies
        self.source_root = source_root

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_options: Any) -> bool:
        target = Path(output_dir)
        for package in self.packages:
            shutil.copytree(self.source_root / package, target / package, ignore=_IGNORED, dirs_exist_ok=True)
        if self.install_dependencies and self.requirements:
            command = pip_command(target, self.requirements, self.architecture)
            result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
            if result.returncode != 0:
                detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
                raise BundlingError(f"pip install for the Lambda bundle failed: {' '.join(detail)}")
        return True

    def asset_hash(self) -> str:
        """Sources + requirement ranges + platform: pip output is not byte-reproducible, so never hash it."""
        digest = hashlib.sha256()
        for part in (*self.requirements, self.architecture, PYTHON_VERSION, str(self.install_dependencies)):
            digest.update(part.encode())
        for package in self.packages:
            for path in sorted((self.source_root / package).rglob("*.py")):
                digest.update(str(path.relative_to(self.source_root)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


def python_code(
    *,
    packages: Sequence[str],
    requirements: Sequence[str],
    architecture: Architecture,
    install_dependencies: bool,
) -> lambda_.Code:
    """One asset per call: reuse the returned Code for functions that share a bundle."""
    bundler = LocalPythonBundling(
        packages=packages,
        requirements=pinned_requirements(requirements),
        architecture=architecture,
        install_dependencies=install_dependencies,
    )
    return lambda_.Code.from_asset(
        str(REPO_ROOT / packages[0]),
        asset_hash=bundler.asset_hash(),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry(_UNUSED_IMAGE), local=bundler),
    )
