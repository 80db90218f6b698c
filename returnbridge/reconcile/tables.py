"""The warehouse's tables: one Polars schema per snapshot table, and the gap table.

Every loader (the API extractor, the snapshot-file loader, the benchmark generator) produces
frames in exactly these schemas, and every gap rule reads them. Money is integer minor units
with its ISO-4217 currency (docs/architecture.md#money), never float; times are UTC.

Keys (a reload of a parent replaces its children):

| table | key | children |
|---|---|---|
| reveni_returns | reveni_return_id | reveni_items, reveni_refunds |
| centra_orders | order_number | centra_payments |
| centra_returns | centra_return_id | centra_return_lines |
| centra_stock_changes | (stock_change_id, line_id) | |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

UTC_TS: Final = pl.Datetime("us", "UTC")


def _schema(columns: Mapping[str, pl.DataType | type[pl.DataType]]) -> pl.Schema:
    return pl.Schema(columns)


REVENI_RETURNS: Final = _schema(
    {
        "reveni_return_id": pl.String,
        # Centra's order number; null when Reveni's order reference is not a number
        "order_number": pl.Int64,
        "status": pl.String,
        "type": pl.String,  # refund | exchange | mixed
        "instant": pl.Boolean,
        # not inspected yet (on the way in, or on hold before any item was decided)
        "awaiting_inspection": pl.Boolean,
        "created_at": UTC_TS,
        "updated_at": UTC_TS,
        "snapshot_date": pl.Date,  # the day this version was loaded
    }
)

REVENI_ITEMS: Final = _schema(
    {
        "reveni_return_id": pl.String,
        "item_id": pl.String,
        "sku": pl.String,
        "quantity": pl.Int64,
        "status": pl.String,  # pending | accepted | rejected
        "accepted_units": pl.Int64,  # 0 unless accepted
        "restock": pl.Boolean,
        # n of the return's exchange items (accepted or not), null when not an exchange
        "exchange_n": pl.Int64,
        "exchange_sku": pl.String,
        "exchange_units": pl.Int64,  # replacement units due: min(asked, accepted)
        "exchange_order_number": pl.Int64,  # the deterministic Centra order number
        "unit_price_minor": pl.Int64,
        "currency": pl.String,
        "snapshot_date": pl.Date,
    }
)

REVENI_REFUNDS: Final = _schema(
    {
        "reveni_return_id": pl.String,
        "refund_id": pl.String,
        "method": pl.String,  # original_payment_method | bank_transfer | store_credit
        "paid_by": pl.String,  # reveni | merchant
        "status": pl.String,  # pending | paid | failed
        "amount_minor": pl.Int64,
        "currency": pl.String,
        "created_at": UTC_TS,
        "snapshot_date": pl.Date,
    }
)

CENTRA_ORDERS: Final = _schema(
    {
        "order_number": pl.Int64,
        "status": pl.String,
        "currency": pl.String,
        "market": pl.String,
        "created_at": UTC_TS,
        "grand_total_minor": pl.Int64,
        # "{rid}:{n}" of the exchange an order is (its internal comment's marker), else null
        "exchange_of": pl.String,
        "snapshot_date": pl.Date,
    }
)

CENTRA_PAYMENTS: Final = _schema(
    {
        "entry_id": pl.Int64,
        "order_number": pl.Int64,
        # the Centra return whose refund this entry is; null for a refund made on the order
        "centra_return_id": pl.Int64,
        "entry_type": pl.String,
        "status": pl.String,  # SUCCESS | FAILED | ...
        "amount_minor": pl.Int64,
        "currency": pl.String,
        "payment_method": pl.String,
        "external_reference": pl.String,
        "created_at": UTC_TS,
        "snapshot_date": pl.Date,
    }
)

CENTRA_RETURNS: Final = _schema(
    {
        "centra_return_id": pl.Int64,
        "order_number": pl.Int64,
        "external_id": pl.String,  # the Reveni return id returnbridge wrote
        "shipment_id": pl.Int64,
        "status": pl.String,
        "exchange_part": pl.Boolean,  # the exchanged items of a mixed return (never credited)
        "grand_total_minor": pl.Int64,
        "currency": pl.String,
        "created_at": UTC_TS,
        "snapshot_date": pl.Date,
    }
)

CENTRA_RETURN_LINES: Final = _schema(
    {
        "centra_return_id": pl.Int64,
        "line_id": pl.Int64,
        "sku": pl.String,
        "quantity": pl.Int64,
        "snapshot_date": pl.Date,
    }
)

CENTRA_STOCK_CHANGES: Final = _schema(
    {
        "stock_change_id": pl.Int64,
        "line_id": pl.Int64,
        "description": pl.String,
        "warehouse_id": pl.Int64,
        "sku": pl.String,
        "delta": pl.Int64,
        "created_at": UTC_TS,
        "snapshot_date": pl.Date,
    }
)

SNAPSHOT_TABLES: Final[dict[str, pl.Schema]] = {
    "reveni_returns": REVENI_RETURNS,
    "reveni_items": REVENI_ITEMS,
    "reveni_refunds": REVENI_REFUNDS,
    "centra_orders": CENTRA_ORDERS,
    "centra_payments": CENTRA_PAYMENTS,
    "centra_returns": CENTRA_RETURNS,
    "centra_return_lines": CENTRA_RETURN_LINES,
    "centra_stock_changes": CENTRA_STOCK_CHANGES,
}

# How a table's rows are replaced by a newer load: (parent table, parent key) -> children share
# the key column, so reloading a parent replaces all of its children.
TABLE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "reveni_returns": ("reveni_return_id",),
    "reveni_items": ("reveni_return_id",),
    "reveni_refunds": ("reveni_return_id",),
    "centra_orders": ("order_number",),
    "centra_payments": ("order_number",),
    "centra_returns": ("centra_return_id",),
    "centra_return_lines": ("centra_return_id",),
    "centra_stock_changes": ("stock_change_id",),
}

# Open exceptions the ledger already holds: a gap they explain is not raised a second time.
LEDGER_EXCEPTIONS: Final = _schema(
    {
        "code": pl.String,
        "reveni_return_id": pl.String,
        "order_number": pl.Int64,
    }
)

GAPS: Final = _schema(
    {
        "code": pl.String,
        "owner": pl.String,
        "order_number": pl.Int64,
        "reveni_return_id": pl.String,
        "sku": pl.String,
        "amount_minor": pl.Int64,
        "currency": pl.String,
        "since": UTC_TS,  # when the gap could first be seen (its age counts from here)
        "age_days": pl.Int64,  # whole days from `since` to the run
        "fixable": pl.Boolean,  # re-enqueued through the ledger under the same keys
        "detail": pl.String,
        # What the owner needs beyond the amount (the exception's facts, core/codes.py FACTS),
        # null for the rules that have none: Centra's side of a money mismatch ...
        "centra_amount_minor": pl.Int64,
        "centra_currency": pl.String,
        # ... and when it must be done by (an instant return's inspection deadline)
        "deadline": UTC_TS,
    }
)


def empty(schema: pl.Schema) -> pl.DataFrame:
    """A frame with no rows in `schema`."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: pl.Schema, table: str) -> pl.DataFrame:
    """`frame` with exactly `schema`'s columns, in order and type. ValueError naming the table
    and the columns when one is missing (a loader bug, never silently filled)."""
    missing = [name for name in schema.names() if name not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing columns {missing}")
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
