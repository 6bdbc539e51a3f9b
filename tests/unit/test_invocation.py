"""pipeline.invocation: the worker's SDK retries fit in the invocation (issue #21). A real botocore client whose
calls get an AWS error response before anything is sent (the faults' hook), so botocore's own retry logic runs."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localaws.faults import error_response
from pipeline.invocation import RESERVE_SHARE, Invocation, longest_backoff
from pipeline.overlap import Abandoned, HeldBytes

# The worker's retry configuration (pipeline.aws): 4 retries, 5 attempts.
WORKER_RETRIES = Config(retries={"max_attempts": 4, "mode": "standard"})
ATTEMPTS = 5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SERVICE = "dynamodb"  # the failing client's


def failing_client(invocation: Invocation) -> tuple[Any, list[str]]:
    """A DynamoDB client whose every GetItem fails with a 500 (retried after ~50 ms, not a throttle's seconds);
    the list grows by one per attempt sent."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the hook answers first
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=WORKER_RETRIES,
    )
    sent: list[str] = []

    def respond(**_: Any) -> Any:
        sent.append("GetItem")
        return error_response("dynamodb", "InternalServerError", 500)

    client.meta.events.register("before-send.dynamodb.GetItem", respond)
    invocation.bound_retries(client)
    invocation.bound_retries(client)  # idempotent
    return client, sent


def attempts_of(client: Any, sent: list[str]) -> int:
    sent.clear()
    with pytest.raises(ClientError, match="InternalServerError"):
        client.get_item(TableName="t", Key={"imageId": {"S": "i"}})
    return len(sent)


def test_outside_an_invocation_the_sdk_retries_as_configured() -> None:
    invocation = Invocation()
    client, sent = failing_client(invocation)
    assert attempts_of(client, sent) == ATTEMPTS
    invocation.failed_transiently(SERVICE)  # no invocation running: nothing to stop
    assert attempts_of(client, sent) == ATTEMPTS


def test_with_time_left_the_sdk_retries_until_a_call_gave_up_then_tries_each_call_once() -> None:
    invocation = Invocation()
    client, sent = failing_client(invocation)
    with invocation.running(60.0):
        assert attempts_of(client, sent) == ATTEMPTS
        invocation.failed_transiently("sns")  # another service giving up leaves this one's retries alone
        assert attempts_of(client, sent) == ATTEMPTS
        invocation.failed_transiently(SERVICE)
        assert attempts_of(client, sent) == 1
    assert attempts_of(client, sent) == ATTEMPTS  # the next invocation starts afresh
    with invocation.running(60.0):
        assert attempts_of(client, sent) == ATTEMPTS


def test_no_backoff_may_reach_into_the_reserve() -> None:
    invocation = Invocation()
    client, sent = failing_client(invocation)
    with invocation.running(1.2):  # the reserve starts 0.9 s from now; the first backoff may last 1 s
        assert attempts_of(client, sent) == 1


def test_may_retry_counts_the_longest_backoff_against_the_reserve() -> None:
    clock = Clock()
    invocation = Invocation(clock)
    assert [longest_backoff(n) for n in (1, 2, 3, 4, 5, 6, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    with invocation.running(8.0) as running:
        assert running.deadline == 1008.0
        retry_until = 1008.0 - RESERVE_SHARE * 8.0  # 1006
        assert invocation.may_retry(3, SERVICE)  # 1000 + 4 <= 1006
        clock.now = retry_until - 4.0
        assert invocation.may_retry(3, SERVICE)
        clock.now += 0.01
        assert not invocation.may_retry(3, SERVICE)
        assert invocation.may_retry(2, SERVICE)
        clock.now = retry_until
        assert not invocation.may_retry(1, SERVICE)
    assert invocation.deadline is None
    assert invocation.may_retry(9, SERVICE)
    with invocation.running(None):
        assert invocation.deadline is None
        assert invocation.may_retry(9, SERVICE)


def test_an_abandoned_batch_lets_a_waiting_read_go_instead_of_hanging() -> None:
    held = HeldBytes(budget=100)
    held.reserve_original(80)
    held.start_decoding(80)  # the decoder holds it; an original over the budget waits until it is done
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            held.reserve_original(150)
        except Abandoned as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=fetch, daemon=True)
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()  # waits for the decoder, which failed and will never release it

    held.abandon()
    waiting.join(5)
    assert not waiting.is_alive()
    assert [type(exc) for exc in outcome] == [Abandoned]
    assert held.originals == 1  # the one being decoded: the one never read is not counted
    with pytest.raises(Abandoned):
        held.reserve_original(1)
