"""A local stack started in a process whose handlers already ran (a test session, a program embedding the stack)
must not inherit what they cached: the presign handler once signed uploads for the previous endpoint, so every
upload to the new stack answered NoSuchBucket."""

from __future__ import annotations

import json

import pytest

from localaws.stack import LocalStack, LocalStackOptions
from monitoring.target import StackInfo
from pipeline import presign
from tests.functional.test_iam import api_event, lambda_context


def upload_url() -> str:
    body = json.dumps({"content_type": "image/jpeg", "method": "POST"})
    response = presign.handler(api_event("POST", "/uploads", body), lambda_context("presign", 10))
    assert response["statusCode"] == 201, response
    return str(json.loads(response["body"])["upload_url"])


@pytest.mark.usefixtures("handler_env")
def test_a_stack_presigns_for_itself_and_leaves_the_process_as_found(stack: StackInfo, unique_prefix: str) -> None:
    before = upload_url()  # the session's stack: its endpoint and bucket are now cached in this process
    assert before.startswith(stack.endpoint_url)

    with LocalStack(LocalStackOptions(workers=1, prefix=unique_prefix, metrics=False)) as local:
        info = local.start()
        during = upload_url()

    assert during.startswith(f"{info.endpoint_url}/{info.upload_bucket}"), during
    assert upload_url() == before  # stopped: the session's endpoint and names again, not the stopped stack's
