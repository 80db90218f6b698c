"""The reconciliation reads Centra's refunds exactly as the planner does:
`rules.refund_attempt_rows` (Polars, over every order's payment entries at once) gives, row for
row, what
`refunds.refund_attempts` gives on each (order, Centra return) group's entries, on seeded random
histories of requests, settlements, refusals, shared and missing references, order-level entries
and entries of other types."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from returnbridge.connectors.centra.models import Money, PaymentEntry
from returnbridge.connectors.centra.refunds import (
    DEFAULT_REFUND_TYPES,
    RefundAttempt,
    RefundTypes,
    refund_attempts,
)
from returnbridge.reconcile.rules import refund_attempt_rows
from returnbridge.reconcile.tables import CENTRA_PAYMENTS

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
CUSTOM = RefundTypes(refund="CREDIT", request="CREDIT_ASKED", failed="CREDIT_REFUSED")
BATCHES, CASES = 10, 40  # 400 histories

# (order, centra_return_id, proving entry id, state, amount, asked at, currency, reference)
Row = tuple[int, int | None, int, str, int, datetime, str, str | None]


def history(rng: random.Random, types: RefundTypes) -> list[dict[str, Any]]:
    """Payment entries of a few orders, each with entries on the order (no Centra return) and
    on one to three Centra returns; references drawn from a small pool shared by every group
    (so a reference recurring on another return or order must not pair across them); times on
    a coarse grid (ties are common, broken by id); ids not in time order."""
    kinds = [types.request] * 5 + [types.refund] * 4 + [types.failed] * 2 + ["CAPTURE", "AUTH"]
    # mostly as the PSPs write them (requests pending, refunds successful), not only
    statuses = {
        types.request: ["PENDING"] * 4 + ["SUCCESS", "FAILED"],
        types.refund: ["SUCCESS"] * 4 + ["FAILED", "PENDING", "CANCELLED"],
    }
    anything = ["SUCCESS", "PENDING", "FAILED", "CANCELLED"]
    references = [None, "psp-a", "psp-a", "psp-b"]
    ids = rng.sample(range(1, 10_000), 200)
    rows: list[dict[str, Any]] = []
    for order in range(1000, 1000 + rng.randint(1, 4)):
        currency = rng.choice(["SEK", "EUR", "JPY"])
        groups: list[int | None] = [None, *rng.sample(range(1, 50), rng.randint(1, 3))]
        for centra_return_id in groups:
            for _ in range(rng.randint(0, 8)):
                kind = rng.choice(kinds)
                rows.append(
                    {
                        "entry_id": ids.pop(),
                        "order_number": order,
                        "centra_return_id": centra_return_id,
                        "entry_type": kind,
                        "status": rng.choice(statuses.get(kind, anything)),
                        "amount_minor": rng.choice(
                            [2500, 2500, 29900, 100, rng.randint(1, 99_999)]
                        ),
                        # now and then a settlement in another currency: whose counts
                        "currency": currency if rng.random() < 0.9 else "NOK",
                        "payment_method": rng.choice(["adyen", "klarna", "manual"]),
                        "external_reference": rng.choice(references),
                        "created_at": T0 + timedelta(minutes=10 * rng.randint(0, 12)),
                        "snapshot_date": None,
                    }
                )
    rng.shuffle(rows)
    return rows


def as_entry(row: dict[str, Any]) -> PaymentEntry:
    return PaymentEntry(
        id=row["entry_id"],
        created_at=row["created_at"],
        status=row["status"],
        entry_type=row["entry_type"],
        value=Money(value=Decimal(row["amount_minor"]), currency=row["currency"]),
        external_reference=row["external_reference"],
        payment_method=row["payment_method"],
    )


def python_rows(rows: list[dict[str, Any]], types: RefundTypes) -> tuple[list[Row], Counter[str]]:
    """`refund_attempts` per (order, Centra return) group, and what shapes it met."""
    groups: dict[tuple[int, int | None], list[PaymentEntry]] = {}
    for row in rows:
        groups.setdefault((row["order_number"], row["centra_return_id"]), []).append(as_entry(row))
    found: list[Row] = []
    shapes: Counter[str] = Counter()
    for (order, centra_return_id), entries in groups.items():
        attempts = refund_attempts(entries, types)
        shapes.update(shape(a, attempts, types) for a in attempts)
        found.extend(
            (
                order,
                centra_return_id,
                a.id,
                a.state.value,
                int(a.amount),
                a.created_at,
                a.currency,
                a.external_reference,
            )
            for a in attempts
        )
    return sorted(found, key=_key), shapes


def shape(attempt: RefundAttempt, attempts: list[RefundAttempt], types: RefundTypes) -> str:
    if attempt.settled_by is None:
        kind = "request" if attempt.entry.entry_type == types.request else "settlement"
        return f"{kind} alone {attempt.state.value}"
    ref = attempt.external_reference
    earlier = [a for a in attempts if a.settled_by is not None and a.external_reference == ref]
    nth = "later pair" if earlier.index(attempt) > 0 else "first pair"
    return f"{nth} {attempt.state.value}"


def polars_rows(rows: list[dict[str, Any]], types: RefundTypes) -> list[Row]:
    frame = (
        pl.DataFrame(rows, schema=CENTRA_PAYMENTS) if rows else pl.DataFrame(schema=CENTRA_PAYMENTS)
    )
    got = refund_attempt_rows(frame.lazy(), types).collect()
    assert "status" not in got.columns and "state" in got.columns
    picked = got.select(
        "order_number",
        "centra_return_id",
        "entry_id",
        "state",
        "amount_minor",
        "created_at",
        "currency",
        "external_reference",
    )
    return sorted(picked.rows(), key=_key)


def _key(row: Row) -> tuple[object, ...]:
    return tuple((v is None, v) for v in row)


def cases(batch: int) -> Iterator[tuple[int, RefundTypes, list[dict[str, Any]]]]:
    for case in range(CASES):
        seed = batch * CASES + case
        rng = random.Random(seed)
        types = CUSTOM if seed % 5 == 4 else DEFAULT_REFUND_TYPES
        yield seed, types, history(rng, types)


@pytest.mark.parametrize("batch", range(BATCHES))
def test_polars_reads_refunds_as_refund_attempts_does(batch: int) -> None:
    shapes: Counter[str] = Counter()
    for seed, types, rows in cases(batch):
        expected, met = python_rows(rows, types)
        shapes += met
        assert polars_rows(rows, types) == expected, f"seed {seed}"
    # the batch exercised every shape, or it proves little
    for needed in (
        "first pair settled",
        "first pair failed",
        "later pair settled",
        "request alone pending",
        "request alone settled",
        "settlement alone settled",
        "settlement alone failed",
    ):
        assert shapes[needed] > 0, (needed, shapes)


def test_polars_reads_refunds_of_every_history_in_one_frame() -> None:
    """All of a batch's histories in one frame, orders renumbered apart: grouping keeps each
    (order, Centra return) to itself."""
    everything: list[dict[str, Any]] = []
    offset = 0
    for _, _, rows in cases(0):
        everything.extend(
            {**r, "order_number": r["order_number"] + offset, "entry_id": r["entry_id"] + offset}
            for r in rows
        )
        offset += 100_000
    types = DEFAULT_REFUND_TYPES
    expected, _ = python_rows(everything, types)
    assert len(expected) > 100
    assert polars_rows(everything, types) == expected


def test_a_reference_shared_across_returns_and_the_order_pairs_within_each_only() -> None:
    def row(entry_id: int, cr: int | None, kind: str, status: str, minutes: int) -> dict[str, Any]:
        return {
            "entry_id": entry_id,
            "order_number": 1,
            "centra_return_id": cr,
            "entry_type": kind,
            "status": status,
            "amount_minor": 1000 + entry_id,
            "currency": "EUR",
            "payment_method": "adyen",
            "external_reference": "same",
            "created_at": T0 + timedelta(minutes=minutes),
            "snapshot_date": None,
        }

    rows = [
        row(1, 7, "REFUND_REQUEST", "PENDING", 0),
        row(2, None, "REFUND", "SUCCESS", 1),  # on the order: settles nothing on return 7
        row(3, 8, "REFUND_FAILED", "FAILED", 2),  # on another return
        row(4, None, "REFUND_REQUEST", "PENDING", 3),
        row(5, 8, "REFUND_REQUEST", "PENDING", 4),
    ]
    expected = [
        (1, None, 2, "settled", 1002, T0 + timedelta(minutes=3), "EUR", "same"),
        (1, 7, 1, "pending", 1001, T0, "EUR", "same"),
        (1, 8, 3, "failed", 1003, T0 + timedelta(minutes=4), "EUR", "same"),
    ]
    assert python_rows(rows, DEFAULT_REFUND_TYPES)[0] == sorted(expected, key=_key)
    assert polars_rows(rows, DEFAULT_REFUND_TYPES) == sorted(expected, key=_key)


def test_no_entries_no_refunds() -> None:
    assert polars_rows([], DEFAULT_REFUND_TYPES) == []
