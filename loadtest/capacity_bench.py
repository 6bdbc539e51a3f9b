"""How many object events per second the capacity counter applies here: monitoring.capacity.CapacityStore against
the embedded AWS's DynamoDB (moto, in its own process, over HTTP), with a batch size and a shard count to vary.

A local figure: moto's DynamoDB is pure Python and serves one request at a time here (localaws.moto_process).
moto's own TransactWriteItems deep-copied the whole table once per item of the transaction, so each batch cost
more as the table grew: 2,000 events, batches of 10, 8 shards, 50 owners ran at 10 events/s. With the embedded
AWS backing up only the items a transaction names (localaws.dynamodb_transactions) the same run applies 242
events/s (2026-12-06, `imgops bench capacity --events 2000 --json`, this 2-core VM, idle). On AWS a partition
takes 1,000 write units a second and the counter's functions scale out with the queue.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from localaws.moto_process import MotoProcess
from localaws.object_events import Sequencers, message_body, object_created, object_deleted
from monitoring.capacity import CapacityStore, create_table, parse_message


@dataclass(frozen=True)
class CapacityBench:
    events: int
    batch_size: int
    shards: int
    owners: int
    seconds: float
    events_per_second: float
    transactions: int
    retries: int
    # With an offered rate: events arrive that many a second (None: all at once, the counter's own pace).
    offered_events_per_second: float | None = None
    offered_seconds: float | None = None  # from the first event's arrival to the last's
    # The oldest unapplied event's age when the last event arrived, and when the counter took its last batch.
    behind_seconds_at_last_arrival: float | None = None
    behind_seconds_at_end: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_events(count: int, owners: int, seed: int = 1) -> list[str]:
    """Message bodies as EventBridge hands them to the counter's queue: 3 creates to 1 delete, over `owners`
    uploaders' folders, keys reused so some events are overwrites."""
    rng = random.Random(seed)
    sequencers = Sequencers()
    subs = [str(uuid.UUID(int=n + 1)) for n in range(owners)]
    keys = [f"user-uploads/{rng.choice(subs)}/{uuid.UUID(int=n)}.jpg" for n in range(max(1, count // 2))]
    start = datetime.now(UTC)
    bodies = []
    for step in range(count):
        key, when = rng.choice(keys), start + timedelta(milliseconds=step)
        if rng.random() < 0.75:
            event = object_created("bench", key, rng.randint(1, 5_000_000), "etag", sequencers.next(), when)
        else:
            event = object_deleted("bench", key, sequencers.next(), when)
        bodies.append(message_body(event))
    return bodies


def run(*, events: int, batch_size: int, shards: int, owners: int, offered: float | None = None) -> CapacityBench:
    """Apply `events` in batches of `batch_size` (as the counter's event source hands them over), timed. With
    `offered`, event n arrives n / offered seconds after the first, a batch is taken once its last event has
    arrived, and how far the counter is behind (the oldest unapplied event's age) is measured as it goes."""
    bodies = synthetic_events(events, owners)
    moto = MotoProcess(metrics=False)
    endpoint = moto.start()
    try:
        client = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106 - the embedded AWS's
        )  # fmt: skip
        table = f"capacity-bench-{uuid.uuid4().hex[:8]}"
        create_table(client, table)
        store = CapacityStore(client, table, shards=shards)
        transactions = retries = 0
        started = time.perf_counter()
        arrival = (lambda n: started + n / offered) if offered else (lambda _n: started)
        last_arrival = arrival(len(bodies) - 1)
        behind_at_last_arrival = behind = 0.0
        for first in range(0, len(bodies), batch_size):
            last = min(first + batch_size, len(bodies)) - 1
            time.sleep(max(0.0, arrival(last) - time.perf_counter()))  # the batch is not all there yet
            now = time.perf_counter()
            behind = now - arrival(first)
            if now <= last_arrival:
                behind_at_last_arrival = behind
            batch = [event for body in bodies[first : last + 1] for event in parse_message(body)]
            applied = store.apply(batch)
            transactions += applied.transactions
            retries += applied.retries
        seconds = time.perf_counter() - started
    finally:
        moto.stop()
    result = CapacityBench(events, batch_size, shards, owners, seconds, events / seconds, transactions, retries)
    if offered is None:
        return result
    return replace(
        result,
        offered_events_per_second=offered,
        offered_seconds=last_arrival - started,
        behind_seconds_at_last_arrival=behind_at_last_arrival,
        behind_seconds_at_end=behind,
    )
