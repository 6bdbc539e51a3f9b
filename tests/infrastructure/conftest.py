"""One synthesized app for the whole infrastructure suite: synth takes seconds, assertions take milliseconds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before aws_cdk is imported anywhere: jsii's Node end-of-life banner is noise in test output.
os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"

from aws_cdk import assertions

from dashboards import config
from dashboards.app import build_app
from dashboards.stack import ImgopsStack

# No pip, no network: the bundles hold the source packages only (see dashboards/constructs/bundling.py).
TEST_CONTEXT = {config.SKIP_BUNDLING: "true"}


@dataclass(frozen=True)
class Synthesized:
    stack: ImgopsStack
    template: assertions.Template
    outdir: Path

    @property
    def json(self) -> dict[str, Any]:
        return dict(self.template.to_json())

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(TEST_CONTEXT, outdir=str(outdir))
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag (or another validation) failed: say which rules, not a stack trace
        report = outdir / "validation-report.json"
        pytest.fail(f"synth failed: {exc}\n{report.read_text() if report.exists() else ''}", pytrace=False)
    # The app caches its assembly: from_stack reads it, no second synth.
    return Synthesized(stack=stack, template=assertions.Template.from_stack(stack), outdir=outdir)
