"""Synth-time configuration and the local bundler, without synthesizing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from dashboards import config
from dashboards import lambda_bundle as bundling
from dashboards.config import AppConfig
from dashboards.constructs.bundling import LocalPythonBundling
from dashboards.constructs.s3_metrics import metrics_timeout_seconds, scan_budget_seconds
from dashboards.errors import ConfigError
from dashboards.lambda_bundle import BundlingError, pinned_requirements, pip_command


def context(values: dict[str, Any]) -> Any:
    return values.get


def test_defaults_match_cdk_json() -> None:
    from dashboards.app import cdk_json_context

    assert AppConfig.from_context(context(cdk_json_context())) == AppConfig()


def test_cli_strings_are_parsed() -> None:
    parsed = AppConfig.from_context(
        context(
            {
                config.PREFIX: "acme-imgops",
                config.ARCHITECTURE: "x86_64",
                config.SKIP_BUNDLING: "true",
                config.METRICS_RATE_MINUTES: "60",
                config.PROCESSED_EXPIRY_DAYS: "30",
            }
        )
    )
    assert parsed == AppConfig(
        prefix="acme-imgops",
        architecture="x86_64",
        skip_bundling=True,
        metrics_rate_minutes=60,
        processed_expiry_days=30,
    )
    assert AppConfig.from_context(context(dict(parsed.as_context()))) == parsed


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (config.PREFIX, "Imgops", "lowercase"),
        (config.ARCHITECTURE, "sparc", "x86_64, arm64"),
        (config.METRICS_RATE_MINUTES, "15", "1, 5, 60"),
        (config.METRICS_RATE_MINUTES, "often", "whole number"),
        (config.SKIP_BUNDLING, "maybe", "true or false"),
        (config.PROCESSED_EXPIRY_DAYS, "-1", "0 to keep"),
        (config.PROCESSED_EXPIRY_DAYS, "a year", "processed-expiry-days='a year' is not a whole number"),
        (config.WORKER_MEMORY, "64", "128 to 10,240 MB"),
        (config.WORKER_MEMORY, "lots", "worker-memory-mb='lots' is not a whole number"),
    ],
)
def test_bad_context_is_a_config_error(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_context(context({key: value}))


def test_worker_memory_is_a_context_value_defaulting_to_the_one_constant() -> None:
    """`imgops loadtest sizing --apply` writes `imgops:worker-memory-mb` into cdk.json; unset, the size is
    pipeline.resources.WORKER_MEMORY_MB, the one place the CDK app and the tools take it from."""
    from pipeline.resources import WORKER_MEMORY_MB

    assert AppConfig.from_context(context({})).worker_memory_mb == WORKER_MEMORY_MB
    assert config.WORKER_MEMORY == "imgops:worker-memory-mb"
    typed = AppConfig.from_context(context({config.WORKER_MEMORY: 1536}))  # cdk.json: a number
    assert typed.worker_memory_mb == 1536
    assert AppConfig.from_context(context({config.WORKER_MEMORY: "1536"})) == typed  # `-c key=1536`: a string
    assert typed.as_context()[config.WORKER_MEMORY] == "1536"


def test_runbook_links() -> None:
    default = AppConfig().runbook_link("dlq-not-empty")
    assert default.startswith("file:///")  # absolute: the notification links the page wherever it is read
    assert Path(default.removeprefix("file://")).is_file()
    base = AppConfig(runbook_base_url="https://example.com/imgops/blob/main/runbooks/")
    assert base.runbook_link("x") == "https://example.com/imgops/blob/main/runbooks/x.md"


@pytest.mark.parametrize(("rate", "timeout", "budget"), [(1, 50, 40), (5, 290, 280), (60, 900, 890)])
def test_metrics_function_finishes_before_the_next_run(rate: int, timeout: int, budget: int) -> None:
    assert metrics_timeout_seconds(rate) == timeout
    assert scan_budget_seconds(rate) == budget
    assert timeout < rate * 60


def test_thumbnails_are_kept_unless_configured() -> None:
    assert AppConfig().processed_expiry_days == 0


def test_api_handlers_import_without_pillow() -> None:
    """Their bundle has no Pillow (bundling.API_REQUIREMENTS): importing either handler in a fresh interpreter,
    as a Lambda cold start does, must not load PIL, not even through pipeline.settings."""
    probe = "import sys, pipeline.presign, pipeline.read_api; print(sorted(m for m in sys.modules if m[:3] == 'PIL'))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=bundling.REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert "Pillow" not in bundling.API_REQUIREMENTS


def test_requirements_come_from_pyproject() -> None:
    pinned = pinned_requirements(bundling.WORKER_REQUIREMENTS)
    assert [spec.split(">")[0].split("<")[0].lower() for spec in pinned] == [
        "pillow",
        "pillow-heif",
        "aws-lambda-powertools",
    ]
    assert all(any(op in spec for op in "<>=") for spec in pinned), pinned
    with pytest.raises(BundlingError, match="not declared"):
        pinned_requirements(["left-pad"])


@pytest.mark.parametrize(
    ("arch", "platform"), [("x86_64", "manylinux_2_28_x86_64"), ("arm64", "manylinux_2_28_aarch64")]
)
def test_pip_asks_for_lambda_wheels(arch: config.Architecture, platform: str, tmp_path: Path) -> None:
    command = pip_command(tmp_path, ["Pillow>=11"], arch)
    assert command[command.index("--platform") + 1] == platform
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path)
    assert command[-1] == "Pillow>=11"


def bundler(*, install: bool, arch: config.Architecture = "arm64") -> LocalPythonBundling:
    return LocalPythonBundling(
        packages=("monitoring", "pipeline"),
        requirements=("aws-lambda-powertools>=3",),
        architecture=arch,
        install_dependencies=install,
    )


def test_skipped_bundling_copies_sources_and_never_runs_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when dependencies are skipped")

    monkeypatch.setattr(subprocess, "run", no_pip)
    image = cdk.DockerImage.from_registry("unused")

    assert bundler(install=False).try_bundle(str(tmp_path), image=image) is True

    assert (tmp_path / "monitoring" / "s3_metrics.py").is_file()
    assert (tmp_path / "pipeline" / "worker.py").is_file()
    assert not list(tmp_path.rglob("__pycache__"))


def test_pip_failure_is_a_bundling_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def failing_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "Collecting x\nERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", failing_pip)

    with pytest.raises(BundlingError, match="No matching distribution"):
        bundler(install=True).try_bundle(str(tmp_path), image=cdk.DockerImage.from_registry("unused"))
    assert "manylinux_2_28_aarch64" in calls[0]


def test_asset_hash_tracks_platform_and_dependencies_not_time() -> None:
    assert bundler(install=True).asset_hash() == bundler(install=True).asset_hash()
    assert bundler(install=True).asset_hash() != bundler(install=False).asset_hash()
    assert bundler(install=True).asset_hash() != bundler(install=True, arch="x86_64").asset_hash()
