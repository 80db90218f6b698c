"""The facts the reconciliation and the sync's read-back put on the exceptions they raise
(core/codes.py `FACTS`): Centra's side of a money mismatch and an instant return's deadline, kept
with the gaps in the warehouse (a version 2 warehouse gains the columns)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
from reconcile_builders import NOW, Item, World

from returnbridge.clock import WallClock
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.core.actions import Refund
from returnbridge.ledger import Ledger
from returnbridge.ledger.records import ActionRecord
from returnbridge.reconcile.rules import GapConfig, compute_gaps
from returnbridge.reconcile.run import as_exception, gap_facts
from returnbridge.reconcile.tables import GAPS
from returnbridge.reconcile.warehouse import GAP_FACT_COLUMNS, SCHEMA_VERSION, Warehouse
from returnbridge.sync.executor import ExecutorConfig
from returnbridge.sync.outcomes import Outcomes
from returnbridge.sync.readback import Found, Problem, amount_problems
from returnbridge.sync.session import Session

TEE = "TEE-BLK-M"


def gaps(world: World) -> pl.DataFrame:
    return compute_gaps(world.snapshot(), config=GapConfig(), now=NOW)


def one(frame: pl.DataFrame, code: str) -> dict[str, Any]:
    (row,) = frame.filter(pl.col("code") == code).iter_rows(named=True)
    return row


# ------------------------------------------------------------------------------ the rules


def test_a_mismatch_credited_differently_carries_centras_credit() -> None:
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=None)
    w.refund("ret_1", 25000)
    w.credit(1001, cid, 29900)
    row = one(gaps(w), "refund_amount_mismatch")
    assert (row["amount_minor"], row["currency"]) == (25000, "SEK")
    assert (row["centra_amount_minor"], row["centra_currency"]) == (29900, "SEK")
    exc = as_exception(row)
    assert (exc.amount, exc.currency) == (Decimal("250.00"), "SEK")
    assert dict(exc.facts) == {"centra_amount": "299.00", "centra_currency": "SEK"}


def test_a_mismatch_that_cannot_be_posted_carries_centras_value() -> None:
    w = World()
    w.order(1001, currency="JPY")
    w.centra_return("ret_1", 1001, [(TEE, 1)], total=4000, currency="JPY")
    w.reveni("ret_1", 1001, [Item(TEE, price=4000)], refund=5000, currency="JPY")
    w.restock("ret_1", [(TEE, 1)])
    row = one(gaps(w), "refund_amount_mismatch")
    assert (row["centra_amount_minor"], row["centra_currency"]) == (4000, "JPY")
    assert dict(as_exception(row).facts) == {"centra_amount": "4000", "centra_currency": "JPY"}


def test_an_instant_deadline_gap_carries_the_deadline() -> None:
    w = World()
    w.order(1001)
    created = NOW - timedelta(days=28, hours=5)
    w.reveni("ret_near", 1001, [Item(TEE)], status="shipped", instant=True, awaiting=True,
             created_at=created, updated_at=created)  # fmt: skip
    row = one(gaps(w), "instant_deadline_near")
    assert row["deadline"] == created + timedelta(days=30)
    deadline = dict(as_exception(row).facts)["deadline"]
    assert datetime.fromisoformat(deadline) == created + timedelta(days=30)
    assert deadline.endswith("+00:00")


def test_the_other_rules_have_no_facts_and_every_gap_has_the_columns() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900)
    found = gaps(w)
    assert found.schema == GAPS
    assert found.height == 3  # return, restock and refund missing
    assert found.select(GAP_FACT_COLUMNS).null_count().row(0) == (3, 3, 3)
    assert all(as_exception(row).facts == () for row in found.iter_rows(named=True))


def test_a_gap_row_without_the_fact_columns_still_becomes_an_exception() -> None:
    row = {
        "code": "refund_missing", "reveni_return_id": "R1", "order_number": 1,
        "sku": None, "amount_minor": 4800, "currency": "EUR", "detail": None,
    }  # fmt: skip
    exc = as_exception(row)
    assert (exc.amount, exc.facts) == (Decimal("48.00"), ())
    assert gap_facts({"centra_amount_minor": 100, "centra_currency": None}) == ()
    naive = gap_facts({"deadline": datetime(2026, 10, 20, 12)})
    assert naive == (("deadline", "2026-10-20T12:00:00+00:00"),)


# ------------------------------------------------------------------------------ the warehouse


def test_the_facts_are_kept_with_the_gaps_and_the_gap_state(tmp_path: Path) -> None:
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=None)
    w.refund("ret_1", 25000)
    w.credit(1001, cid, 29900)
    found = gaps(w)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.record_gaps(NOW.date(), found)
        wh.record_gap_state(found, as_of=NOW, load_id=1, rules="r", mode="full", reason="test")
        kept = wh.gaps(NOW.date())
        state = wh.gap_state()
    assert state is not None
    for frame in (kept, state.gaps):
        row = one(frame, "refund_amount_mismatch")
        assert (row["centra_amount_minor"], row["centra_currency"]) == (29900, "SEK")


def test_a_version_2_warehouse_gains_the_fact_columns(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(path) as wh:
        wh.record_gaps(NOW.date(), gaps_with_one_row())
    with duckdb.connect(str(path)) as con:  # as version 2 left it
        for table in ("gaps", "gap_state"):
            for column in GAP_FACT_COLUMNS:
                con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        con.execute("DELETE FROM schema_version; INSERT INTO schema_version VALUES (2, now())")
    with Warehouse(path, read_only=True) as reader:  # read as it is: no facts
        old = reader.gaps(NOW.date())
        assert old["code"].to_list() == ["return_missing"]
        assert old.select(GAP_FACT_COLUMNS).null_count().row(0) == (1, 1, 1)
    with Warehouse(path) as wh:  # opened for writing: upgraded, the old gaps kept
        assert wh._value("SELECT max(version) FROM schema_version") == SCHEMA_VERSION == 3
        assert wh.gaps(NOW.date())["code"].to_list() == ["return_missing"]
        again = gaps_with_one_row().with_columns(
            centra_amount_minor=pl.lit(100, pl.Int64), centra_currency=pl.lit("SEK")
        )
        wh.record_gaps(NOW.date(), again)  # by name: the new columns are at the end
        row = one(wh.gaps(NOW.date()), "return_missing")
        assert (row["centra_amount_minor"], row["centra_currency"], row["outcome"]) == (
            100,
            "SEK",
            None,
        )


def gaps_with_one_row() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "code": "return_missing", "owner": "ops", "order_number": 1001,
                "reveni_return_id": "R1", "sku": None, "amount_minor": None, "currency": None,
                "since": NOW - timedelta(days=2), "age_days": 2, "fixable": True, "detail": "",
            }
        ],
        schema=GAPS,
    )  # fmt: skip


# ------------------------------------------------------------------------------ the read-back


def payload(amount: str = "299.00") -> Refund:
    return Refund(centra_return_id=7, via_psp=True, amount=Decimal(amount), currency="SEK",
                  reference="rf_1")  # fmt: skip


def test_a_read_back_mismatch_carries_what_centra_credited() -> None:
    (problem,) = amount_problems(Decimal("199.00"), payload())
    assert problem.code == "refund_amount_mismatch"
    assert dict(problem.facts) == {"centra_amount": "199.00", "centra_currency": "SEK"}
    (named,) = amount_problems(Decimal("199.00"), payload(), "EUR")
    assert dict(named.facts)["centra_currency"] == "EUR"
    assert amount_problems(Decimal("299.00"), payload()) == ()
    # the facts are not what the problem is
    assert problem == Problem(problem.code, problem.detail)


@dataclass
class _Report:
    exceptions: list[Any] = field(default_factory=list)


def test_a_problem_found_on_read_back_is_raised_with_its_facts(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    outcomes = Outcomes(
        cast(CentraClient, None), ledger, ExecutorConfig(), WallClock(), random.Random(1)
    )
    # the ledger moves are not what this is about: the effect is taken as done
    outcomes.move = lambda *args, **kwargs: True  # type: ignore[method-assign]
    outcomes.attempt = lambda *args, **kwargs: None  # type: ignore[method-assign]
    rec = ActionRecord(
        key="refund:ret_1:rf_1", kind="refund", reveni_return_id="ret_1", order_number=1001,
        state="in_flight", attempts=1,
        payload={"centra_return_id": 7, "via_psp": True, "amount": "299.00", "currency": "SEK",
                 "reference": "rf_1"},
        depends_on=(), centra_ref=None, last_error=None, not_before=None,
        created_at=datetime.now(UTC), updated_at=datetime.now(UTC),
    )  # fmt: skip
    session = cast(Session, type("S", (), {"report": _Report()})())
    found = Found("55", "refund entry 55 settled", amount_problems(Decimal("199.00"), payload()))
    outcomes.done(session, rec, found, datetime.now(UTC), "read back")
    (exc,) = ledger.exceptions(code="refund_amount_mismatch")
    assert (exc.amount, exc.currency) == (Decimal("299.00"), "SEK")
    assert exc.facts == {"centra_amount": "199.00", "centra_currency": "SEK"}
    assert dict(session.report.exceptions[0].facts) == exc.facts
    ledger.close()
