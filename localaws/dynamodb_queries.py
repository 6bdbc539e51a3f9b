"""Query in the embedded AWS, reading only the partition it names, as DynamoDB does.

moto's Table.query on a table's own key gathers every item of the table, sorted, to keep one partition's: each
Query costs the whole table. The capacity table holds a record per object key; at 50,000 objects the publisher's
16 Queries a minute (a shard per bucket) and the reconciler's took most of the embedded AWS's time, and the counter,
served by the same process, fell behind (`imgops bench churn`). Here a query on the table's key sees only its
partition's items; moto's own range conditions, filters, paging, order and projections are unchanged, and queries on
an index or a table without a sort key go to moto as they are. For the embedded AWS's process only: ServiceMeter
serves DynamoDB one request at a time there, so narrowing a table's `all_items` for one query changes no other.
"""

from __future__ import annotations

import inspect
from typing import Any

_INSTALLED = "_imgops_partition_queries"


def install() -> None:
    """Patch moto's DynamoDB tables in this process (idempotent)."""
    from moto.dynamodb.models.table import Table

    if getattr(Table, _INSTALLED, False):
        return
    original = Table.query
    signature = inspect.signature(original)

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        hash_key = arguments.get("hash_key")
        if arguments.get("index_name") or hash_key is None or not self.range_key_attr:
            return original(self, *args, **kwargs)
        partition = self.items.get(hash_key) or {}  # .get: the items are a defaultdict, a miss must not add one
        self.all_items = lambda: list(partition.values())  # type: ignore[method-assign]
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]
    setattr(Table, _INSTALLED, True)
