"""The embedded AWS's SendMessage and ReceiveMessage (localaws.sqs_backlog: they no longer count the queue to read
one setting) still behave as moto's: counts in GetQueueAttributes, content-based deduplication on a FIFO queue,
delays, and messages past the queue's retention period never received."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localaws.moto_process import MotoProcess


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    try:
        yield boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
    finally:
        moto.stop()


def counts(sqs: Any, url: str) -> tuple[int, int, int]:
    names = [f"ApproximateNumberOfMessages{kind}" for kind in ("", "Delayed", "NotVisible")]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return tuple(int(attributes[name]) for name in names)  # type: ignore[return-value]


def test_a_standard_queue_counts_what_was_sent_delayed_and_received(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="sends-standard")["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    assert counts(sqs, url) == (7, 1, 0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3)
    assert counts(sqs, url) == (4, 1, 3)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert "ContentBasedDeduplication" not in attributes


def test_a_fifo_queue_still_deduplicates_by_content(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="sends.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g")
    assert counts(sqs, url)[0] == 2
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ContentBasedDeduplication"] == "true"


def test_a_message_past_the_retention_period_is_not_received(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="sends-retention", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="kept")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]] == ["kept"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "0"})  # moto allows 0: expired
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_get_queue_attributes_reads_each_call_afresh_and_refuses_unknown_names(sqs: Any) -> None:
    """One call builds the queue's attributes once (localaws.sqs_backlog); the next call sees what changed since."""
    url = sqs.create_queue(QueueName="attributes-once")["QueueUrl"]
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    names = ["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessages", "VisibilityTimeout"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"] == {
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessages": "2",
        "VisibilityTimeout": "30",
    }
    sqs.send_message(QueueUrl=url, MessageBody="one more")
    everything = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (everything["ApproximateNumberOfMessages"], everything["ApproximateNumberOfMessagesNotVisible"]) == (
        "3",
        "1",
    )
    with pytest.raises(ClientError) as refused:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
    assert refused.value.response["Error"]["Code"] == "InvalidAttributeName"
