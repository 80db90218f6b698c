"""A small world of both systems' snapshot rows, for the gap-rule tests.

`World` records rows in the warehouse's tables (tables.py) with sensible defaults; `done(...)`
adds what a fully processed return leaves in Centra, so a test starts from "consistent" and
removes or adds exactly the one thing it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from returnbridge.core.actions import RESTOCK_DESCRIPTION, exchange_order_number
from returnbridge.reconcile.tables import SNAPSHOT_TABLES
from returnbridge.reconcile.warehouse import Snapshot

NOW = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
DAY = date(2026, 10, 20)
LONG_AGO = NOW - timedelta(days=3)
OWN_REFERENCE = "<own>"  # `World.credit`: the entry's reference is made from its id


@dataclass
class Item:
    sku: str
    quantity: int = 1
    accepted: int | None = None  # None: all accepted; 0: rejected
    restock: bool = True
    exchange_sku: str | None = None
    price: int = 29900


@dataclass
class World:
    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in SNAPSHOT_TABLES}
    )
    ids: int = 100

    def _next(self) -> int:
        self.ids += 1
        return self.ids

    def add(self, table: str, **values: Any) -> None:
        values.setdefault("snapshot_date", DAY)
        self.rows[table].append(values)

    def order(
        self,
        number: int,
        *,
        currency: str = "SEK",
        status: str = "SHIPPED",
        total: int = 59800,
        exchange_of: str | None = None,
        market: str = "SE",
    ) -> int:
        self.add(
            "centra_orders",
            order_number=number,
            status=status,
            currency=currency,
            market=market,
            created_at=LONG_AGO - timedelta(days=10),
            grand_total_minor=total,
            exchange_of=exchange_of,
        )
        return number

    def reveni(
        self,
        rid: str,
        order: int | None,
        items: list[Item],
        *,
        status: str = "accepted",
        refund: int | None = None,
        currency: str = "SEK",
        method: str = "original_payment_method",
        paid_by: str = "merchant",
        refund_status: str = "paid",
        instant: bool = False,
        awaiting: bool = False,
        created_at: datetime = LONG_AGO,
        updated_at: datetime = LONG_AGO,
    ) -> str:
        self.add(
            "reveni_returns",
            reveni_return_id=rid,
            order_number=order,
            status=status,
            type="exchange" if any(i.exchange_sku for i in items) else "refund",
            instant=instant,
            awaiting_inspection=awaiting,
            created_at=created_at,
            updated_at=updated_at,
        )
        n = 0
        for k, item in enumerate(items):
            accepted = item.quantity if item.accepted is None else item.accepted
            exchange_n = number = units = None
            if item.exchange_sku is not None:
                exchange_n, n = n, n + 1
                units = accepted
                number = exchange_order_number(rid, exchange_n)
            self.add(
                "reveni_items",
                reveni_return_id=rid,
                item_id=f"{rid}-i{k}",
                sku=item.sku,
                quantity=item.quantity,
                status="accepted" if accepted else "rejected",
                accepted_units=accepted,
                restock=item.restock,
                exchange_n=exchange_n,
                exchange_sku=item.exchange_sku,
                exchange_units=units,
                exchange_order_number=number,
                unit_price_minor=item.price,
                currency=currency,
            )
        if refund is not None:
            self.refund(rid, refund, currency=currency, method=method, paid_by=paid_by,
                        status=refund_status)  # fmt: skip
        return rid

    def refund(
        self,
        rid: str,
        amount: int,
        *,
        currency: str = "SEK",
        method: str = "original_payment_method",
        paid_by: str = "merchant",
        status: str = "paid",
        refund_id: str | None = None,
        created_at: datetime = LONG_AGO,
    ) -> None:
        self.add(
            "reveni_refunds",
            reveni_return_id=rid,
            refund_id=refund_id or f"rf_{rid}_{self._next()}",
            method=method,
            paid_by=paid_by,
            status=status,
            amount_minor=amount,
            currency=currency,
            created_at=created_at,
        )

    def centra_return(
        self,
        rid: str | None,
        order: int,
        lines: list[tuple[str, int]],
        *,
        total: int,
        currency: str = "SEK",
        exchange_part: bool = False,
        shipment: int = 1,
    ) -> int:
        cid = self._next()
        self.add(
            "centra_returns",
            centra_return_id=cid,
            order_number=order,
            external_id=rid,
            shipment_id=shipment,
            status="COMPLETED",
            exchange_part=exchange_part,
            grand_total_minor=total,
            currency=currency,
            created_at=LONG_AGO,
        )
        for sku, quantity in lines:
            self.add(
                "centra_return_lines",
                centra_return_id=cid,
                line_id=self._next(),
                sku=sku,
                quantity=quantity,
            )
        return cid

    def credit(
        self,
        order: int,
        centra_return_id: int | None,
        amount: int,
        *,
        currency: str = "SEK",
        status: str = "SUCCESS",
        payment_method: str = "adyen",
        entry_type: str = "REFUND",
        reference: str | None = OWN_REFERENCE,
        at: datetime = LONG_AGO + timedelta(hours=1),
    ) -> int:
        """One Centra payment entry (a successful PSP refund unless told otherwise); its
        `externalReference` is its own (`ref-<id>`) unless `reference` is given."""
        entry = self._next()
        self.add(
            "centra_payments",
            entry_id=entry,
            order_number=order,
            centra_return_id=centra_return_id,
            entry_type=entry_type,
            status=status,
            amount_minor=amount,
            currency=currency,
            payment_method=payment_method,
            external_reference=f"ref-{entry}" if reference == OWN_REFERENCE else reference,
            created_at=at,
        )
        return entry

    def restock(self, rid: str, lines: list[tuple[str, int]], *, warehouse: int = 2) -> int:
        change = self._next()
        for sku, delta in lines:
            self.add(
                "centra_stock_changes",
                stock_change_id=change,
                line_id=self._next(),
                description=RESTOCK_DESCRIPTION.format(rid=rid),
                warehouse_id=warehouse,
                sku=sku,
                delta=delta,
                created_at=LONG_AGO + timedelta(hours=1),
            )
        return change

    def exchange_order(
        self,
        rid: str,
        n: int = 0,
        *,
        total: int = 0,
        currency: str = "SEK",
        attempt: int = 0,
        marked: bool = True,
    ) -> int:
        """The exchange order returnbridge makes: under candidate `attempt`, marked as
        `rid`'s exchange `n` (unless `marked` is False: made before markers, or by hand)."""
        number = exchange_order_number(rid, n, attempt=attempt)
        self.order(number, currency=currency, status="CONFIRMED", total=total,
                   exchange_of=f"{rid}:{n}" if marked else None)  # fmt: skip
        return number

    def done(
        self,
        rid: str,
        order: int,
        items: list[Item],
        *,
        refund: int | None,
        currency: str = "SEK",
        method: str = "original_payment_method",
        paid_by: str = "merchant",
        **reveni: Any,
    ) -> int:
        """A Reveni return and everything returnbridge leaves in Centra once it is processed:
        the Centra return, the credit (PSP or not, as Reveni paid), the restock, the exchange
        orders. Returns the Centra return id."""
        self.reveni(rid, order, items, refund=refund, currency=currency, method=method,
                    paid_by=paid_by, **reveni)  # fmt: skip
        accepted = [(i, i.quantity if i.accepted is None else i.accepted) for i in items]
        lines = [(i.sku, units) for i, units in accepted if units]
        value = sum(i.price * units for i, units in accepted if not i.exchange_sku)
        cid = self.centra_return(rid, order, lines, total=value, currency=currency)
        if refund is not None:
            psp = method == "original_payment_method" and paid_by == "merchant"
            self.credit(order, cid, refund, currency=currency,
                        payment_method="adyen" if psp else "manual")  # fmt: skip
        restock = [(i.sku, units) for i, units in accepted if units and i.restock]
        if restock:
            self.restock(rid, restock)
        n = 0
        for item, units in accepted:
            if item.exchange_sku is not None:
                if units:
                    self.exchange_order(rid, n, currency=currency)
                n += 1
        return cid

    def snapshot(self) -> Snapshot:
        frames = {
            name: pl.DataFrame(rows, schema=SNAPSHOT_TABLES[name])
            if rows
            else pl.DataFrame(schema=SNAPSHOT_TABLES[name])
            for name, rows in self.rows.items()
        }
        return Snapshot.from_frames(frames)
