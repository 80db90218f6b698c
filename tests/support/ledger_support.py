"""Builders and a manual clock for the ledger tests, a ledger as schema version 1 left it, and
the worker the multi-process test runs (a module of its own so that a spawned process can
import it)."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from returnbridge.core.actions import (
    RESTOCK_DESCRIPTION,
    Action,
    CreateReturn,
    ExchangeLine,
    ExchangeOrder,
    Refund,
    RestockLine,
    ReturnLinePlan,
    exchange_key,
    exchange_order_number,
    refund_key,
    restock_key,
    return_key,
)
from returnbridge.core.actions import Restock as RestockPayload
from returnbridge.ledger import Ledger
from returnbridge.ledger import schema as ledger_schema
from returnbridge.ledger.engine import WRITE_OPTION, create_engine, resolve_url

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def create_return(rid: str, order_number: int = 1001) -> Action:
    return Action(
        key=return_key(rid),
        kind="create_return",
        reveni_return_id=rid,
        order_number=order_number,
        payload=CreateReturn(
            shipment_id=7,
            lines=(ReturnLinePlan(shipment_line_id=70, quantity=1, sku="SKU-1"),),
            external_id=rid,
        ),
    )


def restock(rid: str, order_number: int = 1001, depends_on: Sequence[str] = ()) -> Action:
    return Action(
        key=restock_key(rid),
        kind="restock",
        reveni_return_id=rid,
        order_number=order_number,
        payload=RestockPayload(
            description=RESTOCK_DESCRIPTION.format(rid=rid),
            warehouse_id=3,
            lines=(RestockLine(sku="SKU-1", variant_id=11, size_id=12, quantity=1),),
        ),
        depends_on=tuple(depends_on),
    )


def refund(
    rid: str,
    refund_id: str = "rf1",
    *,
    amount: str = "49.90",
    order_number: int = 1001,
    depends_on: Sequence[str] = (),
) -> Action:
    return Action(
        key=refund_key(rid, refund_id),
        kind="refund",
        reveni_return_id=rid,
        order_number=order_number,
        payload=Refund(
            centra_return_id=55,
            via_psp=True,
            amount=Decimal(amount),
            currency="EUR",
            reference=f"reveni-{refund_id}",
        ),
        depends_on=tuple(depends_on),
    )


def exchange(rid: str, n: int = 1, order_number: int = 1001) -> Action:
    return Action(
        key=exchange_key(rid, n),
        kind="exchange_order",
        reveni_return_id=rid,
        order_number=order_number,
        payload=ExchangeOrder(
            order_number=exchange_order_number(rid, n),
            origin_order_number=order_number,
            origin_return_id=55,
            lines=(ExchangeLine(sku="SKU-2", quantity=1),),
        ),
    )


def many_refunds(count: int) -> list[Action]:
    return [refund(f"R{i:04d}") for i in range(count)]


def drain_worker(url: str, count: int, start: Any, results: Any) -> None:
    """One process of the multi-process test: open the ledger once every peer is up (`start`
    is a barrier: all open a fresh database at once), plan the same `count` actions as its
    peers, then claim and finish whatever is due until nothing is. Reports ("ok", inserted
    keys, keys it finished) or ("error", traceback, [])."""
    try:
        start.wait(timeout=30)
        finished: list[str] = []
        with Ledger(url) as ledger:
            inserted = ledger.plan(many_refunds(count))
            while batch := ledger.due(limit=10):
                for record in batch:
                    if ledger.claim(record.key, expected=record.state) is None:
                        continue  # a peer won it
                    now = datetime.now(UTC)
                    ledger.record_attempt(
                        record.key,
                        started_at=now,
                        finished_at=now,
                        request_summary="PUT /returns/55",
                        outcome="done",
                    )
                    ledger.transition(record.key, "done", expected="in_flight", centra_ref="55")
                    finished.append(record.key)
        results.put(("ok", inserted, finished))
    except BaseException:
        results.put(("error", traceback.format_exc(), []))


def version_1_ledger(url: str, carry_over: str | None, *, written_at: datetime = T0) -> None:
    """A ledger as schema version 1 left it: every table but `unfinished_returns` (version 2
    added only that), version 1 recorded, the sync's cursor, and the unfinished return ids as
    version 1's sync wrote them, a JSON list under the cursor `reveni_returns:unfinished`."""
    engine = create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                version_1 = [
                    t
                    for t in ledger_schema.metadata.sorted_tables
                    if t is not ledger_schema.unfinished_returns
                ]
                ledger_schema.metadata.create_all(conn, tables=version_1)
                conn.execute(
                    sa.insert(ledger_schema.schema_version).values(version=1, applied_at=T0)
                )
                cursors = [("reveni_returns", "2026-09-30T10:00:00+00:00")]
                if carry_over is not None:
                    cursors.append((ledger_schema.LEGACY_UNFINISHED_CURSOR, carry_over))
                for name, value in cursors:
                    conn.execute(
                        sa.insert(ledger_schema.cursors).values(
                            name=name, value=value, updated_at=written_at
                        )
                    )
    finally:
        engine.dispose()
