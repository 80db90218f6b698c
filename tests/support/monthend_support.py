"""A month of both systems for the month-end tests: a hand-built warehouse (the reconciliation's
tables, `reconcile_builders.World`), Reveni's invoice as the dashboard's CSV export, and the
RETURNBRIDGE_* environment that points the command and the flow at them.

Every time here is UTC; which month it falls in is the brand's timezone's business (that is what
the tests check). Ids, order numbers and amounts only: nothing names a customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from reconcile_builders import Item, World

from returnbridge.reconcile.warehouse import Warehouse

STOCKHOLM = ZoneInfo("Europe/Stockholm")
UTC_ZONE = ZoneInfo("UTC")
MID_OCTOBER = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
# 23:30 UTC on 31 October: still October in UTC, already 00:30 on 1 November in Stockholm
LAST_EVENING = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
LOADED_AT = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # after October ended in every zone here
SNAPSHOT_DAY = date(2026, 11, 1)
INVOICE_HEADER = "kind,return_id,order_number,amount,currency,vat_rate,event_date"


def return_with_refund(
    w: World,
    rid: str,
    order: int,
    amount: int,
    *,
    at: datetime = MID_OCTOBER,
    currency: str = "SEK",
    method: str = "original_payment_method",
    paid_by: str = "merchant",
    status: str = "paid",
    instant: bool = False,
    return_status: str = "accepted",
) -> str:
    """An order, its Reveni return created at `at`, and Reveni's refund of `amount` then
    (refund id `rf_<rid>`); nothing in Centra yet."""
    w.order(order, currency=currency)
    w.reveni(
        rid,
        order,
        [Item(f"SKU-{rid}")],
        status=return_status,
        currency=currency,
        instant=instant,
        created_at=at,
        updated_at=at,
    )
    w.refund(
        rid,
        amount,
        currency=currency,
        method=method,
        paid_by=paid_by,
        status=status,
        refund_id=f"rf_{rid}",
        created_at=at,
    )
    return rid


def load_world(path: Path, world: World, *, loaded_at: datetime = LOADED_AT) -> Path:
    """`world` loaded into the warehouse file at `path`, as the reconciliation would at
    `loaded_at`."""
    with Warehouse(path, clock=lambda: loaded_at) as wh:
        wh.load(world.snapshot().frames(), snapshot_date=SNAPSHOT_DAY, source="test")
    return path


def write_invoice(path: Path, *lines: str) -> Path:
    """Reveni's invoice as the dashboard exports it: the header, then `lines`."""
    path.write_text("\n".join([INVOICE_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class ClosedOctober:
    """October 2026 as the CLI and flow tests see it (every event mid-month, so the month is
    the same in UTC and in Stockholm):

    - r_inst (order 1001): an instant refund Reveni paid, 299.00 SEK, credited in Centra by
      returnbridge's non-PSP credit: the invoice's disbursement matches it;
    - r_psp (order 1002): a refund through the payment provider, 500.00 SEK;
    - r_ghost (order 1003): an instant refund Reveni paid, 149.00 SEK, never credited in
      Centra: its disbursement is `settlement_unmatched`."""

    warehouse: Path
    invoice: Path

    INSTANT_MINOR = 29900
    PSP_MINOR = 50000
    UNCREDITED_MINOR = 14900


def closed_october(folder: Path) -> ClosedOctober:
    w = World()
    return_with_refund(
        w,
        "r_inst",
        1001,
        ClosedOctober.INSTANT_MINOR,
        method="bank_transfer",
        paid_by="reveni",
        instant=True,
    )
    cid = w.centra_return("r_inst", 1001, [("SKU-r_inst", 1)], total=ClosedOctober.INSTANT_MINOR)
    w.credit(
        1001,
        cid,
        ClosedOctober.INSTANT_MINOR,
        payment_method="manual",
        reference="rf_r_inst",
        at=MID_OCTOBER + timedelta(hours=2),
    )
    return_with_refund(w, "r_psp", 1002, ClosedOctober.PSP_MINOR)
    psp = w.centra_return("r_psp", 1002, [("SKU-r_psp", 1)], total=ClosedOctober.PSP_MINOR)
    w.credit(
        1002,
        psp,
        ClosedOctober.PSP_MINOR,
        reference="psp-1002",
        at=MID_OCTOBER + timedelta(hours=3),
    )
    return_with_refund(
        w,
        "r_ghost",
        1003,
        ClosedOctober.UNCREDITED_MINOR,
        method="bank_transfer",
        paid_by="reveni",
        instant=True,
    )
    warehouse = load_world(folder / "warehouse.duckdb", w)
    invoice = write_invoice(
        folder / "invoice-2026-10.csv",
        "plan,,,299.00,EUR,21,2026-10-01",
        "disbursement,r_inst,1001,299.00,SEK,,2026-10-10",
        "disbursement,r_ghost,1003,149.00,SEK,,2026-10-10",
    )
    return ClosedOctober(warehouse, invoice)


def month_end_env(
    folder: Path,
    warehouse: Path,
    *,
    timezone: str | None = "UTC",
    mail_port: int | None = None,
    recipients: str | None = None,
) -> dict[str, str]:
    """The RETURNBRIDGE_* environment of a deployment reading `warehouse` and a ledger in
    `folder`, saving reports in `folder/reports`, with Reveni's invoice API off. `timezone`
    None: the default brand timezone. `mail_port`: e-mail through a local SMTP server on that
    port (no TLS) to `recipients`."""
    env = {
        "RETURNBRIDGE_SYNC__LEDGER_URL": f"sqlite:///{folder / 'ledger.db'}",
        "RETURNBRIDGE_RECONCILE__WAREHOUSE_PATH": str(warehouse),
        "RETURNBRIDGE_MONTHEND__INVOICE_SOURCE": "off",
        "RETURNBRIDGE_MONTHEND__REPORT_DIR": str(folder / "reports"),
        "RETURNBRIDGE_MONTHEND__WAREHOUSE_WAIT": "PT5S",
    }
    if timezone is not None:
        env["RETURNBRIDGE_RECONCILE__TIMEZONE"] = timezone
    if mail_port is not None:
        env |= {
            "RETURNBRIDGE_MAIL__HOST": "127.0.0.1",
            "RETURNBRIDGE_MAIL__PORT": str(mail_port),
            "RETURNBRIDGE_MAIL__SECURITY": "none",
            "RETURNBRIDGE_MAIL__TIMEOUT_SECONDS": "5",
            "RETURNBRIDGE_MAIL__SENDER": "returnbridge@example.com",
        }
    if recipients is not None:
        env["RETURNBRIDGE_MONTHEND__RECIPIENTS"] = recipients
    return env
