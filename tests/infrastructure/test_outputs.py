"""The stack outputs `imgops loadtest run --target aws` reads (loadtest/targets.py), under their exact keys."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.resources import StackOutputs
from tests.infrastructure.conftest import Synthesized

OUTPUT_KEYS = sorted(value for name, value in vars(StackOutputs).items() if name.isupper())


def expected_values(synthesized: Synthesized) -> dict[str, Any]:
    """What each output must point at, resolved the way the template writes it (no hashed ids here)."""
    stack = synthesized.stack
    return {
        StackOutputs.API_URL: stack.resolve(stack.api.url),
        StackOutputs.TOPIC_ARN: stack.resolve(stack.image_events.topic.topic_arn),
        StackOutputs.USER_POOL_ID: stack.resolve(stack.auth.user_pool.user_pool_id),
        StackOutputs.USER_POOL_CLIENT_ID: stack.resolve(stack.auth.client.user_pool_client_id),
        StackOutputs.WORKER_FUNCTION: stack.resolve(stack.worker.function.function_name),
        StackOutputs.UPLOAD_BUCKET: stack.resolve(stack.storage.upload_bucket.bucket_name),
        StackOutputs.PROCESSED_BUCKET: stack.resolve(stack.storage.processed_bucket.bucket_name),
        StackOutputs.WORK_QUEUE_URL: stack.resolve(stack.work_queue.queue.queue_url),
        StackOutputs.DLQ_URL: stack.resolve(stack.work_queue.dead_letter_queue.queue_url),
        StackOutputs.IMAGES_TABLE: stack.resolve(stack.images.table.table_name),
    }


def test_every_stack_output_name_is_covered_here(synthesized: Synthesized) -> None:
    assert sorted(expected_values(synthesized)) == OUTPUT_KEYS
    assert len(OUTPUT_KEYS) == 10


@pytest.mark.parametrize("key", OUTPUT_KEYS)
def test_output_has_the_exact_key_and_points_at_its_resource(synthesized: Synthesized, key: str) -> None:
    outputs: dict[str, Any] = synthesized.json["Outputs"]

    assert key in outputs, f"no output {key!r}; outputs are {sorted(outputs)}"
    assert outputs[key]["Value"] == expected_values(synthesized)[key]
    assert outputs[key].get("Description")


def test_outputs_reference_resources_not_literals(synthesized: Synthesized) -> None:
    """A literal would survive a rename of the resource and point `--target aws` at nothing."""
    outputs: dict[str, Any] = synthesized.json["Outputs"]
    resources = synthesized.json["Resources"]

    for key in OUTPUT_KEYS:
        value = outputs[key]["Value"]
        referenced = _referenced_logical_ids(value)
        assert referenced, f"{key} is a literal: {value!r}"
        assert referenced <= set(resources), f"{key} references unknown resources {referenced - set(resources)}"


def _referenced_logical_ids(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "Ref" in value:
            return set() if str(value["Ref"]).startswith("AWS::") else {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_referenced_logical_ids(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_referenced_logical_ids(v) for v in value)) if value else set()
    return set()
