"""CDK entry point (`cdk.json`: `python -m dashboards.app`) and the in-process synth the CLI and tests use."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsii prints a banner for Node versions it no longer supports; the major version silences it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # after the banner switch: importing starts the jsii runtime
from cdk_nag import AwsSolutionsChecks

from dashboards.config import SKIP_BUNDLING, AppConfig
from dashboards.errors import ConfigError, SynthError
from dashboards.stack import ImgopsStack

REPO_ROOT = Path(__file__).resolve().parents[1]
CDK_JSON = REPO_ROOT / "cdk.json"
STACK_ID = "Imgops"


@dataclass(frozen=True)
class SynthSummary:
    templates: tuple[Path, ...]
    dashboards: int
    alarms: int
    outdir: Path


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's context, so an in-process synth sees what `cdk synth` sees."""
    if not path.exists():
        return {}
    try:
        context = json.loads(path.read_text()).get("context", {})
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid JSON: {exc}") from None
    return dict(context) if isinstance(context, dict) else {}


def build_app(
    context: Mapping[str, Any] | None = None, *, outdir: str | None = None, nag: bool = True
) -> tuple[cdk.App, ImgopsStack]:
    """cdk.json's context, then the CDK CLI's `-c` values, then `context` (for in-process callers) win."""
    app = cdk.App(outdir=outdir, context=cdk_json_context(), post_cli_context=dict(context or {}))
    config = AppConfig.from_context(app.node.try_get_context)
    stack = ImgopsStack(app, STACK_ID, config=config, stack_name=f"{config.prefix}-pipeline")
    if nag:
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        )
    return app, stack


@contextlib.contextmanager
def jsii_quiet(quiet: bool = True) -> Iterator[None]:
    """Swallow what the jsii runtime forwards to stderr (CDK's `Bundling asset …` lines) while synthesizing."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def synthesize(context: Mapping[str, Any] | None = None, *, outdir: Path) -> SynthSummary:
    """Synthesize into `outdir` and count what was made; raises SynthError with one readable line. Without
    real bundling (`imgops:skip-bundling`) CDK's bundling chatter is not shown: nothing is being built."""
    skip = str((context or {}).get(SKIP_BUNDLING, "false")).lower() == "true"
    try:
        with jsii_quiet(skip):
            app, _ = build_app(context, outdir=str(outdir))
            assembly = app.synth()
    except ValueError as exc:  # ConfigError and jsii's own argument errors
        raise SynthError(str(exc)) from None
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = f" (details: {report})" if report.exists() else ""
        raise SynthError(f"{first_line}{hint}") from None
    templates: list[Path] = []
    dashboards = alarms = 0
    for stack in assembly.stacks:
        templates.append(Path(assembly.directory) / stack.template_file)
        for resource in stack.template.get("Resources", {}).values():
            dashboards += resource.get("Type") == "AWS::CloudWatch::Dashboard"
            alarms += resource.get("Type") == "AWS::CloudWatch::Alarm"
    return SynthSummary(tuple(templates), dashboards, alarms, Path(assembly.directory))


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
