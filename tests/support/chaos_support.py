"""Support for `bench/test_chaos.py`: the engine lives in `bench/chaos.py` (the benchmark runs it at
full size, the tests at `make test` size), plus builders of small ground truths for testing the
invariant checker itself."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench.chaos import (  # noqa: E402
    ChaosConfig,
    ChaosResult,
    GroundTruth,
    Violation,
    check_invariants,
    run_chaos,
)
from returnbridge.core.codes import owner_of  # noqa: E402
from returnbridge.ledger import ActionRecord, ExceptionRecord  # noqa: E402

__all__ = [
    "ChaosConfig",
    "ChaosResult",
    "GroundTruth",
    "Violation",
    "action",
    "check_invariants",
    "clean_truth",
    "exception",
    "explain",
    "run_chaos",
]

T0 = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)


def action(
    key: str, kind: str, payload: dict[str, Any], *, state: str = "done", ref: str | None = None
) -> ActionRecord:
    return ActionRecord(
        key=key,
        kind=kind,
        reveni_return_id=key.split(":")[1],
        order_number=1001,
        state=state,
        attempts=1,
        payload=payload,
        depends_on=(),
        centra_ref=ref,
        last_error=None if state == "done" else "boom",
        not_before=None,
        created_at=T0,
        updated_at=T0,
    )


_next_exception = iter(range(1, 10_000))


def exception(
    code: str,
    rid: str | None = "r1",
    *,
    action_key: str | None = None,
    status: str = "open",
    owner: str | None = None,
) -> ExceptionRecord:
    return ExceptionRecord(
        id=next(_next_exception),
        code=code,
        owner=owner or owner_of(code).value,
        reveni_return_id=rid,
        order_number=1001,
        sku=None,
        amount=None,
        currency=None,
        detail="",
        status=status,
        first_seen=T0,
        last_seen=T0,
        attempts=0,
        action_key=action_key,
        resolved_at=None,
        resolution_note=None,
    )


def clean_truth() -> GroundTruth:
    """One accepted return (1 x TEE-M, restock, 299.00 to the original payment method, which an
    asynchronous PSP settled: request 300001, answered by 300002) with every effect done exactly
    once: the checker finds nothing."""
    return GroundTruth(
        centra_effects={
            "returns": [
                {
                    "id": 1,
                    "external_id": "r1",
                    "order_number": 1001,
                    "lines": [{"sku": "TEE-M", "quantity": 1}],
                    "completed": True,
                }
            ],
            "stock_changes": [
                {
                    "sku": "TEE-M",
                    "warehouse_id": 2,
                    "delta": 1,
                    "description": "returnbridge restock r1",
                }
            ],
            "refunds": [
                {
                    "order_number": 1001,
                    "return_id": 1,
                    "amount": "299.00",
                    "currency": "SEK",
                    "via_psp": True,
                    "status": "SUCCESS",
                    "asynchronous": True,
                    "entry_id": 300_001,
                    "answered_by": 300_002,
                    "requested_at": T0.isoformat(),
                    "answered_at": T0.isoformat(),
                }
            ],
            "orders_created": [],
        },
        centra_returns=[
            {
                "id": 1,
                "external_id": "r1",
                "order_number": 1001,
                "shipment_id": 10,
                "lines": [{"sku": "TEE-M", "quantity": 1}],
            }
        ],
        stock_changes=[
            {
                "id": 7,
                "description": "returnbridge restock r1",
                "lines": [{"sku": "TEE-M", "warehouse_id": 2, "delta": 1}],
            }
        ],
        captured={1001: Decimal("598.00")},
        reveni_returns=[
            {
                "id": "r1",
                "order_number": 1001,
                "type": "refund",
                "instant": False,
                "status": "accepted",
                "items": [
                    {
                        "sku": "TEE-M",
                        "quantity": 1,
                        "status": "accepted",
                        "accepted_quantity": 1,
                        "restock": True,
                        "exchange_sku": None,
                    }
                ],
                "refunds": [
                    {
                        "id": "rf1",
                        "method": "original_payment_method",
                        "amount": "299.00",
                        "currency": "SEK",
                        "status": "pending",
                        "paid_by": "merchant",
                    }
                ],
            }
        ],
        actions=[
            action("return:r1", "create_return", {"shipment_id": 10}, ref="1"),
            action("restock:r1", "restock", {"description": "returnbridge restock r1"}),
            action("refund:r1:rf1", "refund", {"centra_return_id": 1, "via_psp": True}),
        ],
        exceptions=[],
    )


def explain(truth: GroundTruth, *exceptions: ExceptionRecord) -> GroundTruth:
    return replace(truth, exceptions=[*truth.exceptions, *exceptions])
