"""One stack, two places: with AWS_ENDPOINT_URL pointing at a fresh local stack, the deployed-stack paths run as
they would against AWS — CloudFormation outputs, the Lambda API's configuration, REPORT lines from CloudWatch
Logs, and a memory change through the Lambda API that the next invocations obey."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from dashboards.template import stack_template
from monitoring.target import StackInfo
from pipeline.resources import StackOutputs
from tests.e2e.conftest import start_local_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackInfo, dict[str, str]]]:
    state = tmp_path_factory.mktemp("one-stack")
    process, info, env = start_local_up(state, "--workers", "1", "--prefix", "onestack")
    exports = subprocess.run(
        [sys.executable, "-m", "imgops", "local", "env"], env=env, capture_output=True, text=True, check=True
    ).stdout
    shell = {
        name: shlex.split(value)[0]
        for line in exports.splitlines()
        for name, _, value in [line.removeprefix("export ").partition("=")]
    }
    try:
        yield info, {**env, **shell}  # what `eval "$(imgops local env)"` gives a shell
    finally:
        process.terminate()
        process.wait(timeout=30)


def aws(env: dict[str, str], service: str) -> object:
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    return session.client(service, endpoint_url=env["AWS_ENDPOINT_URL"])  # type: ignore[call-overload]


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgops", *args], env={**env, "COLUMNS": "120"}, cwd=cwd,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def worker_reports(out: Path) -> pd.DataFrame:
    [folder] = [f for f in out.iterdir() if f.is_dir()]
    return pd.read_csv(folder / "worker-reports.csv")


def test_describe_stacks_lists_the_cdk_outputs(local: tuple[StackInfo, dict[str, str]]) -> None:
    info, env = local
    cloudformation = aws(env, "cloudformation")
    [stack] = cloudformation.describe_stacks(StackName="onestack-pipeline")["Stacks"]  # type: ignore[attr-defined]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    assert set(outputs) == set(stack_template("onestack")["Outputs"])
    assert outputs[StackOutputs.API_URL] == info.api_url
    assert outputs[StackOutputs.WORK_QUEUE_URL] == info.queue_url


def test_the_functions_have_the_templates_configuration(local: tuple[StackInfo, dict[str, str]]) -> None:
    _, env = local
    template = stack_template("onestack")
    lambda_ = aws(env, "lambda")
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        expected = resource["Properties"]
        found = lambda_.get_function_configuration(FunctionName=expected["FunctionName"])  # type: ignore[attr-defined]
        assert (found["MemorySize"], found["Architectures"]) == (expected["MemorySize"], expected["Architectures"])


def test_target_aws_runs_against_the_local_stack_and_obeys_a_memory_change(
    local: tuple[StackInfo, dict[str, str]], tmp_path: Path
) -> None:
    _, env = local
    common = ["loadtest", "run", "--target", "aws", "--stack-name", "onestack-pipeline"]
    first = run(env, *common, "--images", "20", "--mix", "jpeg1080=1", "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads(next((tmp_path / "a").glob("*/summary.json")).read_text())
    assert summary["counts"] == {"DONE": 20}
    assert summary["target"] == "aws:onestack-pipeline"
    reports = worker_reports(tmp_path / "a")  # from CloudWatch Logs: `--target aws` reads no local file
    assert len(reports) >= 2
    assert set(reports["memory_size_mb"]) == {1024}

    lambda_ = aws(env, "lambda")
    lambda_.update_function_configuration(FunctionName="onestack-worker", MemorySize=512)  # type: ignore[attr-defined]
    second = run(env, *common, "--images", "4", "--mix", "jpeg1080=1", "--out", str(tmp_path / "b"), cwd=tmp_path)

    assert second.returncode == 0, second.stdout + second.stderr
    assert set(worker_reports(tmp_path / "b")["memory_size_mb"]) == {512}
    log = aws(env, "logs").filter_log_events(  # type: ignore[attr-defined]
        logGroupName="/aws/lambda/onestack-worker", filterPattern='"Memory Size: 512 MB"'
    )
    assert log["events"]
    assert os.environ.get("AWS_ENDPOINT_URL") != env["AWS_ENDPOINT_URL"]  # the test's own session is untouched
