"""TransactWriteItems in the embedded AWS, backed up item by item instead of table by table.

To roll a cancelled transaction back, moto deep-copies each table the transaction names, once per item of the
transaction: a 30-item transaction on a table of 2,000 items copied 60,000 items, and the capacity counter (one
transaction per batch of events) applied 10 events a second, fewer as its table grew (`imgops bench capacity`).
Here only the items the transaction names are copied before it runs, and put back if it is cancelled; moto's own
checks and writes are unchanged. For the embedded AWS's process only: ServiceMeter serves DynamoDB one request at
a time there, so nothing else changes those items meanwhile, and moto's module is patched for the whole process.
"""

from __future__ import annotations

import copy
import types
from typing import Any

_INSTALLED = "_imgops_item_backups"


class _TablesNotCopied(types.SimpleNamespace):
    """The `copy` module as moto's transaction sees it: a table is "copied" as itself (this module keeps the
    backups), anything else as usual."""

    def __init__(self, table_type: type) -> None:
        super().__init__()
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, self._table_type) else copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def install() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    if getattr(backend, _INSTALLED, False):
        return
    original = backend.transact_write_items
    not_copied = _TablesNotCopied(Table)

    def item_key(table: Table, op: dict[str, Any]) -> tuple[Any, Any] | None:
        key = op.get("Key") or op.get("Item") or {}
        if table.hash_key_attr not in key:
            return None
        hash_value = DynamoType(key[table.hash_key_attr])
        if table.range_key_attr is None:
            return hash_value, None
        if table.range_key_attr not in key:
            return None
        return hash_value, DynamoType(key[table.range_key_attr])

    def current(table: Table, hash_value: Any, range_value: Any) -> Any:
        if range_value is None:
            return table.items.get(hash_value)
        return table.items.get(hash_value, {}).get(range_value)

    def restore(table: Table, hash_value: Any, range_value: Any, item: Any) -> None:
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
            return
        items = table.items[hash_value]
        if item is None:
            items.pop(range_value, None)
            if not items:
                table.items.pop(hash_value, None)
        else:
            items[range_value] = item

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        backups = []
        for entry in transact_items:
            op: dict[str, Any] = next(iter(entry.values()), {})
            table = self.tables.get(op.get("TableName"))
            where = item_key(table, op) if table is not None else None
            if table is not None and where is not None:
                backups.append((table, *where, copy.deepcopy(current(table, *where))))
        namespace = vars(models)  # moto's module uses `copy.deepcopy` on the tables: it sees not_copied meanwhile
        real = namespace["copy"]
        namespace["copy"] = not_copied
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                restore(table, hash_value, range_value, item)
            raise
        finally:
            namespace["copy"] = real

    setattr(backend, "transact_write_items", transact_write_items)  # noqa: B010 - a method of moto's class
    setattr(backend, _INSTALLED, True)
