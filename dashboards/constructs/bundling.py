"""Lambda code assets built on this machine: no Docker, only pip with a target platform.

dashboards.lambda_bundle builds and checks the bundle; this module makes it a CDK asset. With
`install_dependencies=False` (tests, `imgops:skip-bundling`) the bundle is the source packages alone: offline
and fast, good for synth and assertions, not for deploying.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from dashboards.config import Architecture
from dashboards.lambda_bundle import PYTHON_VERSION, REPO_ROOT, Bundle, build_bundle, pinned_requirements

# Only used if local bundling were ever refused; CDK requires an image on BundlingOptions.
_UNUSED_IMAGE = "public.ecr.aws/sam/build-python3.12"


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
        build_bundle(
            Path(output_dir),
            packages=self.packages,
            requirements=self.requirements if self.install_dependencies else (),
            architecture=self.architecture,
            source_root=self.source_root,
        )
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


def python_code(bundle: Bundle, *, architecture: Architecture, install_dependencies: bool) -> lambda_.Code:
    """One asset per call: reuse the returned Code for functions that share a bundle."""
    packages = bundle.packages
    bundler = LocalPythonBundling(
        packages=packages,
        requirements=pinned_requirements(bundle.requirements),
        architecture=architecture,
        install_dependencies=install_dependencies,
    )
    return lambda_.Code.from_asset(
        str(REPO_ROOT / packages[0]),
        asset_hash=bundler.asset_hash(),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry(_UNUSED_IMAGE), local=bundler),
    )
