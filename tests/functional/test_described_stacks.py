"""DescribeStacks for the local stack, answered by the embedded AWS itself (localaws.cloudformation): what botocore
parses from it, and what still goes on to moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localaws.cloudformation import DescribedStack
from localaws.moto_process import MeteredMotoServer, MotoProcess
from monitoring.target import stack_outputs
from pipeline.resources import StackOutputs

OUTPUTS = {
    StackOutputs.API_URL: "http://127.0.0.1:1/",
    StackOutputs.UPLOAD_BUCKET: "b-uploads & <more>",  # escaped in the XML, whole again after parsing
    "Extra": "x",
}


@pytest.fixture
def server(moto_endpoint: str) -> Iterator[MeteredMotoServer]:
    server = MeteredMotoServer(0, None)
    server.start()
    yield server
    server.stop()


def test_a_published_stack_is_described_as_cloudformation_describes_it(
    server: MeteredMotoServer, unique_prefix: str
) -> None:
    stack = DescribedStack.create(f"{unique_prefix}-pipeline", "us-east-1", "the pipeline", OUTPUTS)
    server.stacks.publish(stack)
    client = boto3.client("cloudformation", endpoint_url=server.url, region_name="us-east-1")

    [by_name] = client.describe_stacks(StackName=stack.name)["Stacks"]
    [by_id] = client.describe_stacks(StackName=stack.stack_id)["Stacks"]
    listed = [s["StackName"] for s in client.describe_stacks()["Stacks"]]

    assert by_name == by_id
    assert (by_name["StackName"], by_name["StackStatus"], by_name["Description"]) == (
        stack.name,
        "CREATE_COMPLETE",
        "the pipeline",
    )
    assert {o["OutputKey"]: o["OutputValue"] for o in by_name["Outputs"]} == OUTPUTS
    assert by_name["CreationTime"].tzinfo is not None
    assert stack.name in listed
    other_region = boto3.client("cloudformation", endpoint_url=server.url, region_name="eu-west-1")
    with pytest.raises(ClientError, match="does not exist"):  # moto's answer: not published in that region
        other_region.describe_stacks(StackName=stack.name)


def test_other_stacks_and_calls_go_on_to_moto(server: MeteredMotoServer, unique_prefix: str) -> None:
    client = boto3.client("cloudformation", endpoint_url=server.url, region_name="us-east-1")
    with pytest.raises(ClientError, match="does not exist"):
        client.describe_stacks(StackName=f"{unique_prefix}-missing")
    assert "StackSummaries" in client.list_stacks()


def test_the_moto_process_publishes_what_the_tools_read(unique_prefix: str) -> None:
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    try:
        needed = {getattr(StackOutputs, attr): f"value-{attr}" for attr in vars(StackOutputs) if attr.isupper()}
        moto.publish_stack(DescribedStack.create(f"{unique_prefix}-pipeline", "us-east-1", "", needed))
        client = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1")
        outputs = stack_outputs(client, f"{unique_prefix}-pipeline", "us-east-1")
    finally:
        moto.stop()
    assert outputs == needed
