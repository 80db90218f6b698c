"""The code table decides how every exception code lives; the sets the sync, the executor and the
reconciliation act on are derived from it. These tests pin the derived sets (what each part did
before the table existed) and the table's own consistency, so a new code cannot be half-declared.
"""

from __future__ import annotations

import pytest

from returnbridge.core import codes
from returnbridge.core.codes import (
    CODES,
    EXPLAINED_BY,
    FAILURE_CODE,
    FIX_KIND,
    GAP_ONLY_CODES,
    HEALED_ON_DONE,
    PLANNER_CODES,
    Healer,
    Raiser,
    ReturnException,
    owner_of,
)

VALIDATION = {
    "order_not_found",
    "order_not_returnable",
    "sku_not_in_order",
    "quantity_exceeds_shipped",
}
ACTION_KINDS = {"create_return", "restock", "refund", "exchange_order"}


def test_planner_codes_are_those_a_replan_decides() -> None:
    assert (
        VALIDATION
        | {
            "refund_amount_mismatch",
            "refund_failed_at_gateway",
            "duplicate_refund",
            "exchange_out_of_stock",
            "instant_deadline_near",
        }
        == PLANNER_CODES
    )


def test_each_action_kind_has_one_failure_code() -> None:
    assert dict(FAILURE_CODE) == {
        "create_return": "return_create_failed",
        "restock": "restock_failed",
        "refund": "refund_post_failed",
        "exchange_order": "exchange_order_failed",
    }


def test_healed_on_done_are_the_failures_and_what_the_executor_raises_about_an_action() -> None:
    assert (
        set(FAILURE_CODE.values())
        | {
            "action_in_doubt",
            "refund_failed_at_gateway",
            "exchange_out_of_stock",
        }
        == HEALED_ON_DONE
    )


def test_gap_only_codes_are_the_ones_only_the_reconciliation_raises() -> None:
    assert {
        "return_missing",
        "refund_missing",
        "unmatched_centra_refund",
        "refund_pending_too_long",
        "restock_missing",
        "restock_duplicated",
        "exchange_order_missing",
        "exchange_not_zero_value",
    } == GAP_ONLY_CODES
    assert {
        c for c, row in CODES.items() if row.raised_by == {Raiser.RECONCILIATION}
    } == GAP_ONLY_CODES


def test_fix_kinds_reenqueue_the_missing_effect() -> None:
    assert dict(FIX_KIND) == {
        "return_missing": "create_return",
        "refund_missing": "refund",
        "restock_missing": "restock",
        "exchange_order_missing": "exchange_order",
    }


def test_explained_by_names_what_already_tells_the_owner() -> None:
    assert {k: set(v) for k, v in EXPLAINED_BY.items()} == {
        "return_missing": VALIDATION | {"return_create_failed", "action_in_doubt"},
        "refund_missing": VALIDATION
        | {
            "return_create_failed",
            "refund_amount_mismatch",
            "refund_post_failed",
            "refund_failed_at_gateway",
            "refund_pending_too_long",
            "duplicate_refund",
            "action_in_doubt",
        },
        "restock_missing": VALIDATION
        | {"return_create_failed", "restock_failed", "action_in_doubt"},
        "exchange_order_missing": VALIDATION
        | {
            "return_create_failed",
            "exchange_out_of_stock",
            "exchange_order_failed",
            "action_in_doubt",
        },
    }


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_row_is_consistent(code: str) -> None:
    row = CODES[code]
    # whoever heals a code by re-planning or by a done action must be able to raise it
    if Healer.REPLAN in row.healed_by:
        assert Raiser.PLANNER in row.raised_by
    if row.fails_kind is not None:
        assert row.fails_kind in ACTION_KINDS
        assert Raiser.EXECUTOR in row.raised_by and Healer.ACTION_DONE in row.healed_by
    if Healer.RECONCILIATION in row.healed_by:
        assert row.raised_by == {Raiser.RECONCILIATION}
    # a fixable gap is the reconciliation's, and names a real action kind
    if row.fix_kind is not None:
        assert row.fix_kind in ACTION_KINDS and Raiser.RECONCILIATION in row.raised_by
    # only gaps with a fix can be explained: the others are not about a missing effect
    for gap in row.explains:
        assert CODES[gap].fix_kind is not None, f"{code} explains {gap}, which is no missing effect"
    # the month-end settlement match raises and heals its own code, and nothing else does
    if Healer.MONTH_END in row.healed_by:
        assert row.raised_by == {Raiser.MONTH_END}
    # every code is raised by something
    assert row.raised_by, f"{code} has no raiser"


def test_the_month_end_owns_the_settlement_code_alone() -> None:
    assert {"settlement_unmatched"} == codes.MONTH_END_CODES
    assert not codes.MONTH_END_CODES & (codes.GAP_ONLY_CODES | codes.PLANNER_CODES)


def test_the_table_is_the_vocabulary() -> None:
    assert owner_of("duplicate_refund") == codes.Owner.FINANCE
    with pytest.raises(KeyError, match="unknown exception code 'no_such_code'"):
        owner_of("no_such_code")
    with pytest.raises(KeyError):
        ReturnException("no_such_code", "r1", 1001)


def test_every_code_has_a_plain_title_and_only_known_codes_have_one() -> None:
    from returnbridge.core.codes import TITLES, title_of

    assert set(TITLES) == set(CODES)
    for code, title in TITLES.items():
        assert title and "_" not in title and len(title) <= 60, code
        assert title_of(code) == title
    assert title_of("a_code_from_a_newer_version") == "a_code_from_a_newer_version"
