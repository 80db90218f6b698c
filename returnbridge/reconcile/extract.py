"""Extract what changed in both systems into the warehouse's frames (tables.py).

Reveni: the returns changed since the last load's watermark, less a look-back (its
`changed_since`, whose `high_water` becomes the next watermark), with their items and refunds.

Centra has no "changed since" for orders, so the orders to (re)load are named:
- the orders of the Reveni returns just read, and their exchange orders (`read_orders`);
- the orders of Centra returns created since the last load (less the look-back);
- `recheck`: orders the caller wants re-read anyway (the warehouse's orders with a Reveni return
  active in the last days, where a refund made directly in Centra would otherwise go unseen).
Each is read with all its returns (so every refund entry is linked to its Centra return) in
batched queries. Stock changes of the returns warehouse are read after the connection cursor
of the last load.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl

from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.inputs import DateRange
from returnbridge.connectors.centra.models import Money, Order, StockChange
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.core.actions import (
    exchange_of,
    exchange_order_number,
    exchange_order_numbers,
    is_exchange_part,
)
from returnbridge.core.planner import awaiting_inspection
from returnbridge.reconcile.tables import SNAPSHOT_TABLES

REVENI_SOURCE = "reveni"
CENTRA_SOURCE = "centra"


def minor_units(amount: Decimal, currency: str, what: str) -> int:
    """`amount` in `currency`'s minor units; ValueError naming `what` when it has more digits
    than the currency has (never rounded away silently)."""
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what}: {amount} {currency} is finer than a {currency} minor unit")
    return int(scaled)


def _money(value: Money, what: str) -> tuple[int, str]:
    return minor_units(value.value, value.currency, what), value.currency


class _Columns:
    """Rows of one table gathered column-wise, then made a frame in the table's schema."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.schema = SNAPSHOT_TABLES[table]
        self.columns: dict[str, list[Any]] = {name: [] for name in self.schema.names()}

    def add(self, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values[name])

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.columns, schema=self.schema)


def reveni_frames(
    returns: Iterable[ReveniReturn], *, snapshot_date: date, exchange_order_base: int
) -> dict[str, pl.DataFrame]:
    """The reveni_* tables of these returns (the latest version of each id wins)."""
    latest: dict[str, ReveniReturn] = {}
    for ret in returns:
        known = latest.get(ret.id)
        if known is None or ret.updated_at >= known.updated_at:
            latest[ret.id] = ret
    heads, items, refunds = (
        _Columns("reveni_returns"),
        _Columns("reveni_items"),
        _Columns("reveni_refunds"),
    )
    for ret in latest.values():
        heads.add(
            reveni_return_id=ret.id,
            order_number=ret.order.number,
            status=ret.status,
            type=ret.type,
            instant=ret.instant,
            awaiting_inspection=awaiting_inspection(ret),
            created_at=ret.created_at,
            updated_at=ret.updated_at,
            snapshot_date=snapshot_date,
        )
        n = 0
        for item in ret.return_items:
            exchange_n = units = number = None
            if item.exchange is not None:
                exchange_n, n = n, n + 1
                units = min(item.exchange.quantity, item.accepted_units)
                number = exchange_order_number(ret.id, exchange_n, exchange_order_base)
            currency = item.currency
            price = (
                minor_units(item.unit_price, currency, f"return {ret.id} item {item.item_id}")
                if item.unit_price is not None and currency is not None
                else None
            )
            items.add(
                reveni_return_id=ret.id,
                item_id=item.item_id,
                sku=item.sku,
                quantity=item.quantity,
                status=item.status,
                accepted_units=item.accepted_units,
                restock=bool(item.restock),
                exchange_n=exchange_n,
                exchange_sku=item.exchange.sku if item.exchange is not None else None,
                exchange_units=units,
                exchange_order_number=number,
                unit_price_minor=price,
                currency=currency,
                snapshot_date=snapshot_date,
            )
        for refund in ret.refunds:
            refunds.add(
                reveni_return_id=ret.id,
                refund_id=refund.id,
                method=refund.method,
                paid_by=refund.paid_by,
                status=refund.status,
                amount_minor=minor_units(
                    refund.amount, refund.currency, f"return {ret.id} refund {refund.id}"
                ),
                currency=refund.currency,
                created_at=refund.created_at,
                snapshot_date=snapshot_date,
            )
    return {c.table: c.frame() for c in (heads, items, refunds)}


def centra_frames(
    orders: Iterable[Order],
    returns: Iterable[CentraReturn],
    stock_changes: Iterable[StockChange],
    *,
    snapshot_date: date,
) -> dict[str, pl.DataFrame]:
    """The centra_* tables. Refund entries are linked to the Centra return whose refund history
    holds them; pass every return of every order given, or a linked entry reads as unlinked."""
    tables = {
        name: _Columns(name)
        for name in (
            "centra_orders",
            "centra_payments",
            "centra_returns",
            "centra_return_lines",
            "centra_stock_changes",
        )
    }
    entry_return: dict[int, int] = {}
    for ret in returns:
        total, currency = _money(ret.grand_total, f"Centra return {ret.id}")
        rid = ret.external_id
        tables["centra_returns"].add(
            centra_return_id=ret.id,
            order_number=ret.order_number,
            external_id=rid,
            shipment_id=ret.shipment_id,
            status=ret.status,
            exchange_part=rid is not None and is_exchange_part(rid, ret.comment),
            grand_total_minor=total,
            currency=currency,
            created_at=ret.created_at,
            snapshot_date=snapshot_date,
        )
        for line in ret.lines:
            tables["centra_return_lines"].add(
                centra_return_id=ret.id,
                line_id=line.id,
                sku=line.sku,
                quantity=line.quantity,
                snapshot_date=snapshot_date,
            )
        for entry in ret.refund_payment_history:
            entry_return[entry.id] = ret.id
    for order in orders:
        total, currency = _money(order.grand_total, f"Centra order {order.number}")
        tables["centra_orders"].add(
            order_number=order.number,
            status=order.status,
            currency=currency,
            market=order.market.name if order.market is not None else None,
            created_at=order.created_at,
            grand_total_minor=total,
            exchange_of=exchange_of(order.internal_comment),
            snapshot_date=snapshot_date,
        )
        for entry in order.payment_history:
            amount, entry_currency = _money(
                entry.value, f"Centra order {order.number} payment entry {entry.id}"
            )
            tables["centra_payments"].add(
                entry_id=entry.id,
                order_number=order.number,
                centra_return_id=entry_return.get(entry.id),
                entry_type=entry.entry_type,
                status=entry.status,
                amount_minor=amount,
                currency=entry_currency,
                payment_method=entry.payment_method,
                external_reference=entry.external_reference,
                created_at=entry.created_at,
                snapshot_date=snapshot_date,
            )
    for change in stock_changes:
        for change_line in change.lines:
            tables["centra_stock_changes"].add(
                stock_change_id=change.id,
                line_id=change_line.id,
                description=change.description,
                warehouse_id=change.warehouse_id,
                sku=change_line.size.sku,
                delta=change_line.delivered_quantity,
                created_at=change.created_at,
                snapshot_date=snapshot_date,
            )
    return {name: columns.frame() for name, columns in tables.items()}


def exchanges_of(items: pl.DataFrame) -> list[tuple[str, int]]:
    """`(rid, n)` of every exchange item among `items` (reveni_items rows)."""
    exchanges = items.filter(pl.col("exchange_n").is_not_null())
    return list(exchanges.select("reveni_return_id", "exchange_n").unique().iter_rows())


async def read_orders(
    centra: CentraClient,
    numbers: Iterable[int],
    exchanges: Iterable[tuple[str, int]],
    base: int,
) -> dict[int, Order]:
    """These orders, and the exchanges' orders: each exchange's first candidate number, and
    its next one only where an order marked as another exchange's holds the one before
    (`exchange_order_numbers`): almost always a single batched read."""
    pending = {(rid, n): exchange_order_numbers(rid, n, base) for rid, n in exchanges}
    wanted = set(numbers) | {candidates[0] for candidates in pending.values()}
    orders: dict[int, Order] = {}
    attempt = 0
    while wanted:
        orders.update(await centra.orders_by_number(sorted(wanted - set(orders))))
        wanted = set()
        for (rid, n), candidates in pending.items():
            held = orders.get(candidates[attempt])
            if held is None or held.internal_comment is None or attempt + 1 == len(candidates):
                continue  # free, or unmarked (taken as the exchange's), or no candidate left
            if exchange_of(held.internal_comment) != f"{rid}:{n}":
                wanted.add(candidates[attempt + 1])
        attempt += 1
        pending = {key: c for key, c in pending.items() if c[attempt - 1] in orders}
    return orders


@dataclass
class CentraRead:
    """Centra's side of one extraction."""

    frames: dict[str, pl.DataFrame]
    stock_cursor: str | None  # the stock-change connection cursor after this read
    orders_read: int


async def extract_centra(
    centra: CentraClient,
    numbers: Iterable[int],
    *,
    exchanges: Iterable[tuple[str, int]] = (),
    exchange_order_base: int,
    stock_cursor: str | None,
    returns_warehouse_ids: Sequence[int],
    snapshot_date: date,
) -> CentraRead:
    """These orders and the exchanges' orders (`read_orders`) with all their returns
    (batched), and the returns warehouse's stock changes after `stock_cursor`."""
    orders = await read_orders(centra, numbers, exchanges, exchange_order_base)
    returns = await centra.returns_for_orders(list(orders))
    changes, cursor = await centra.stock_changes_after(returns_warehouse_ids, stock_cursor)
    frames = centra_frames(
        orders.values(),
        (r for order_returns in returns.values() for r in order_returns),
        changes,
        snapshot_date=snapshot_date,
    )
    return CentraRead(frames, cursor, len(orders))


@dataclass
class Extracted:
    """One extraction: the frames, and the watermarks to store with them."""

    frames: dict[str, pl.DataFrame]
    reveni_watermark: datetime | None  # Reveni's high_water (None: nothing new, keep the old)
    stock_cursor: str | None
    reveni_complete: bool = True
    rejected: list[str] = field(default_factory=list)  # Reveni rows that did not read
    returns_read: int = 0
    orders_read: int = 0


async def extract(
    reveni: ReveniClient,
    centra: CentraClient,
    *,
    reveni_since: datetime,
    centra_since: datetime,
    stock_cursor: str | None,
    returns_warehouse_ids: Sequence[int],
    recheck: Iterable[int] = (),
    exchange_order_base: int,
    snapshot_date: date,
) -> Extracted:
    """Read what changed since the watermarks (see the module docstring)."""
    changed = await reveni.changed_since(reveni_since)
    reveni_tables = reveni_frames(
        changed.returns, snapshot_date=snapshot_date, exchange_order_base=exchange_order_base
    )
    numbers: set[int] = set(recheck)
    numbers.update(r.order.number for r in changed.returns if r.order.number is not None)
    created: DateRange = {"from": centra_since.isoformat()}
    async for centra_return in centra.iter_returns({"createdAt": created}, page_size=200):
        numbers.add(centra_return.order_number)
    read = await extract_centra(
        centra,
        numbers,
        exchanges=exchanges_of(reveni_tables["reveni_items"]),
        exchange_order_base=exchange_order_base,
        stock_cursor=stock_cursor,
        returns_warehouse_ids=returns_warehouse_ids,
        snapshot_date=snapshot_date,
    )
    return Extracted(
        frames={**reveni_tables, **read.frames},
        reveni_watermark=changed.high_water,
        stock_cursor=read.stock_cursor,
        reveni_complete=changed.complete,
        rejected=[str(row) for row in changed.rejected],
        returns_read=len(changed.returns),
        orders_read=read.orders_read,
    )


def look_back(watermark: datetime | None, window: timedelta, first: datetime) -> datetime:
    """Where a load starts: the watermark less the look-back window, or `first` for a first
    load."""
    return first if watermark is None else watermark - window
