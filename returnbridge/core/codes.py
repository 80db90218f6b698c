"""The one vocabulary of exceptions and their owners
(docs/architecture.md#exception-codes-and-owners).

The ledger, the digests, the reports and the runbook all use these codes; nothing else invents
one. Each code has exactly one owning team, who acts on it, and an auto-retry policy.

This table is also the one place that decides how each code lives: which part of returnbridge
raises it (`raised_by`), what heals it (`healed_by`), which action kind's failure it reports
(`fails_kind`), which action kind a gap of it re-enqueues (`fix_kind`) and which gaps an open
exception of it already explains (`explains`). The sets the sync, the executor and the
reconciliation act on (`PLANNER_CODES`, `FAILURE_CODE`, `HEALED_ON_DONE`, `GAP_ONLY_CODES`,
`FIX_KIND`, `EXPLAINED_BY`) are derived from it at the bottom of this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType


class Owner(StrEnum):
    FINANCE = "finance"
    OPS = "ops"
    CX = "cx"


class Retry(StrEnum):
    """Whether returnbridge retries the cause of an exception by itself."""

    NO = "no"  # a person must act
    YES = "yes"  # re-enqueued through the same ledger key
    TRANSIENT = "transient"  # only when the failure was transient
    READ_BACK = "read_back"  # resolved by reading the other system back
    WHEN_STOCK_RETURNS = "when_stock_returns"


class Raiser(StrEnum):
    """The part of returnbridge that raises a code."""

    PLANNER = "planner"  # planning a return finds it (sync/run.py → core/planner.py)
    EXECUTOR = "executor"  # an action sent to Centra failed or its outcome is unknown
    RECONCILIATION = "reconciliation"  # a gap between Reveni and Centra (reconcile/rules.py)
    MONTH_END = "month_end"  # Reveni's invoice against Centra (monthend/settlement.py)


class Healer(StrEnum):
    """What closes an exception of a code without a person."""

    REPLAN = "replan"  # the return planned again no longer shows it
    ACTION_DONE = "action_done"  # the action it is about is done after all
    RECONCILIATION = "reconciliation"  # the next reconciliation no longer finds the gap
    MONTH_END = "month_end"  # the month's report, made again, matches the line after all


# The action kinds (core/actions.py `Action.kind`).
CREATE_RETURN, RESTOCK, REFUND, EXCHANGE_ORDER = (
    "create_return",
    "restock",
    "refund",
    "exchange_order",
)


@dataclass(frozen=True)
class Code:
    code: str
    owner: Owner
    retry: Retry
    raised_when: str
    raised_by: frozenset[Raiser] = frozenset()
    healed_by: frozenset[Healer] = frozenset()
    fails_kind: str | None = None  # the action kind whose failure this code reports
    fix_kind: str | None = None  # a gap of this code is fixed by re-enqueueing this kind
    explains: frozenset[str] = frozenset()  # gap codes an open exception of this one explains


_F, _O, _C = Owner.FINANCE, Owner.OPS, Owner.CX
_PLAN, _EXEC, _REC = Raiser.PLANNER, Raiser.EXECUTOR, Raiser.RECONCILIATION
# Gaps whose effect is missing: a validation problem or a failed create explains every one.
_MISSING = frozenset(
    {"return_missing", "refund_missing", "restock_missing", "exchange_order_missing"}
)


def _code(
    code: str,
    owner: Owner,
    retry: Retry,
    raised_when: str,
    *,
    by: tuple[Raiser, ...] = (),
    healed: tuple[Healer, ...] = (),
    fails: str | None = None,
    fix: str | None = None,
    explains: frozenset[str] | set[str] = frozenset(),
) -> Code:
    return Code(
        code,
        owner,
        retry,
        raised_when,
        raised_by=frozenset(by),
        healed_by=frozenset(healed),
        fails_kind=fails,
        fix_kind=fix,
        explains=frozenset(explains),
    )


def _validation(code: str, owner: Owner, raised_when: str) -> Code:
    """A validation code: the planner finds it, a re-plan without it heals it, and it explains
    every missing effect of its return."""
    return _code(
        code, owner, Retry.NO, raised_when, by=(_PLAN,), healed=(Healer.REPLAN,), explains=_MISSING
    )


_H_PLAN, _H_DONE, _H_REC = Healer.REPLAN, Healer.ACTION_DONE, Healer.RECONCILIATION
_CODES = (
    # -- validation: the return against its Centra order (core/validation.py)
    _validation("order_not_found", _C, "the return names an order number Centra does not have"),
    _validation("order_not_returnable", _F, "the order is ARCHIVED or CANCELLED"),
    _validation("sku_not_in_order", _O, "a returned SKU is not on the order"),
    _validation(
        "quantity_exceeds_shipped", _C, "more returned than shipped minus already returned"
    ),
    # -- the Centra return
    _code(
        "return_create_failed",
        _O,
        Retry.TRANSIENT,
        "createReturn rejected or retries exhausted",
        by=(_EXEC,),
        healed=(_H_DONE,),
        fails=CREATE_RETURN,
        explains=_MISSING,
    ),
    _code(
        "return_missing",
        _O,
        Retry.YES,
        "accepted in Reveni, no Centra return",
        by=(_REC,),
        healed=(_H_REC,),
        fix=CREATE_RETURN,
    ),
    # -- refunds
    _code(
        "refund_amount_mismatch",
        _F,
        Retry.NO,
        "Reveni's refund differs from Centra's computed credit",
        by=(_PLAN, _REC),
        healed=(_H_PLAN,),
        explains={"refund_missing"},
    ),
    _code(
        "refund_post_failed",
        _F,
        Retry.TRANSIENT,
        "the credit could not be posted",
        by=(_EXEC,),
        healed=(_H_DONE,),
        fails=REFUND,
        explains={"refund_missing"},
    ),
    _code(
        "refund_missing",
        _F,
        Retry.YES,
        "refund confirmed in Reveni, no Centra credit",
        by=(_REC,),
        healed=(_H_REC,),
        fix=REFUND,
    ),
    _code(
        "unmatched_centra_refund",
        _F,
        Retry.NO,
        "a Centra refund with no Reveni refund behind it",
        by=(_REC,),
        healed=(_H_REC,),
    ),
    _code(
        "refund_failed_at_gateway",
        _F,
        Retry.NO,
        "Centra's PSP refused the refund (a FAILED refund, or a REFUND_FAILED answer)",
        by=(_PLAN, _EXEC, _REC),
        healed=(_H_PLAN, _H_DONE),
        explains={"refund_missing"},
    ),
    _code(
        "refund_pending_too_long",
        _F,
        Retry.NO,
        "a refund asked of Centra's PSP has had no answer for longer than allowed",
        by=(_REC,),
        healed=(_H_REC,),
        explains={"refund_missing"},
    ),
    _code(
        "duplicate_refund",
        _F,
        Retry.NO,
        "one return credited twice, in any form",
        by=(_PLAN, _REC),
        healed=(_H_PLAN,),
        explains={"refund_missing"},
    ),
    # -- stock
    _code(
        "restock_failed",
        _O,
        Retry.YES,
        "the stock change failed",
        by=(_EXEC,),
        healed=(_H_DONE,),
        fails=RESTOCK,
        explains={"restock_missing"},
    ),
    _code(
        "restock_missing",
        _O,
        Retry.YES,
        "an accepted item was never restocked",
        by=(_REC,),
        healed=(_H_REC,),
        fix=RESTOCK,
    ),
    _code(
        "restock_duplicated",
        _O,
        Retry.NO,
        "two stock changes for one returned item",
        by=(_REC,),
        healed=(_H_REC,),
    ),
    # -- exchanges
    _code(
        "exchange_out_of_stock",
        _C,
        Retry.WHEN_STOCK_RETURNS,
        "the replacement SKU has no available stock",
        by=(_PLAN, _EXEC),
        healed=(_H_PLAN, _H_DONE),
        explains={"exchange_order_missing"},
    ),
    _code(
        "exchange_order_failed",
        _C,
        Retry.TRANSIENT,
        "the exchange order could not be created",
        by=(_EXEC,),
        healed=(_H_DONE,),
        fails=EXCHANGE_ORDER,
        explains={"exchange_order_missing"},
    ),
    _code(
        "exchange_order_missing",
        _C,
        Retry.YES,
        "an approved exchange has no Centra order",
        by=(_REC,),
        healed=(_H_REC,),
        fix=EXCHANGE_ORDER,
    ),
    _code(
        "exchange_not_zero_value",
        _F,
        Retry.NO,
        "the exchange order's total is not 0",
        by=(_REC,),
        healed=(_H_REC,),
    ),
    # -- money and deadlines
    _code(
        "settlement_unmatched",
        _F,
        Retry.NO,
        "an invoice disbursement and Centra credits do not match",
        by=(Raiser.MONTH_END,),
        healed=(Healer.MONTH_END,),
    ),
    _code(
        "instant_deadline_near",
        _O,
        Retry.NO,
        "instant return not inspected, at most 3 days of Reveni's 30 left",
        by=(_PLAN, _REC),
        healed=(_H_PLAN,),
    ),
    _code(
        "action_in_doubt",
        _O,
        Retry.READ_BACK,
        "outcome unknown and read-back inconclusive",
        by=(_EXEC,),
        healed=(_H_DONE,),
        explains=_MISSING,
    ),
)

CODES: dict[str, Code] = {c.code: c for c in _CODES}

# What a person reads first (digests, `exceptions list`, the runbook's headings): plain words,
# the code after it. One per code.
TITLES: Mapping[str, str] = MappingProxyType(
    {
        "order_not_found": "Return names an order Centra does not have",
        "order_not_returnable": "Return on an archived or cancelled order",
        "sku_not_in_order": "Returned item is not on the order",
        "quantity_exceeds_shipped": "More returned than was shipped",
        "return_create_failed": "Centra return could not be created",
        "return_missing": "Accepted return missing in Centra",
        "refund_amount_mismatch": "Refund amounts differ between Reveni and Centra",
        "refund_post_failed": "Refund could not be recorded in Centra",
        "refund_missing": "Refund paid in Reveni, missing in Centra",
        "unmatched_centra_refund": "Centra refund with no Reveni refund behind it",
        "refund_failed_at_gateway": "Payment provider refused the refund",
        "refund_pending_too_long": "Refund stuck at the payment provider",
        "duplicate_refund": "Return refunded twice",
        "restock_failed": "Restock failed",
        "restock_missing": "Returned item never restocked",
        "restock_duplicated": "Returned item restocked twice",
        "exchange_out_of_stock": "Exchange item out of stock",
        "exchange_order_failed": "Exchange order could not be created",
        "exchange_order_missing": "Exchange approved, no Centra order",
        "exchange_not_zero_value": "Exchange order is not free of charge",
        "settlement_unmatched": "Reveni payout does not match Centra",
        "instant_deadline_near": "Instant return deadline is near",
        "action_in_doubt": "Unsure whether Centra took a change",
    }
)


def title_of(code: str) -> str:
    """The plain title of `code` (the code itself for one this version does not know)."""
    return TITLES.get(code, code)


def owner_of(code: str) -> Owner:
    """The team that owns `code`; KeyError names an unknown code."""
    try:
        return CODES[code].owner
    except KeyError:
        raise KeyError(f"unknown exception code {code!r}; known: {sorted(CODES)}") from None


# The facts an exception may carry (`ReturnException.facts`), each a string:
FACTS: Mapping[str, str] = MappingProxyType(
    {
        "centra_amount": "the other side of a money mismatch: Centra's amount (decimal)",
        "centra_currency": "the currency of `centra_amount`",
        "deadline": "when it must be done by (ISO 8601 date-time, UTC)",
        "period": "the month a month-end exception is about (YYYY-MM, the brand's timezone)",
    }
)


@dataclass(frozen=True)
class ReturnException:
    """One exception raised about a return: what is wrong, whose it is, and its keys."""

    code: str
    reveni_return_id: str | None
    order_number: int | None
    sku: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    detail: str = ""
    # What the owner needs beyond `amount` to act, by name (`FACTS`), e.g. the other side of a
    # mismatch. Not part of the identity: the same problem with new figures is the same one.
    facts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        owner_of(self.code)  # an unknown code is a bug, caught where it is made
        unknown = sorted({name for name, _ in self.facts} - set(FACTS))
        if unknown:
            raise ValueError(f"{self.code}: unknown fact(s) {unknown}; known: {sorted(FACTS)}")

    @property
    def owner(self) -> Owner:
        return owner_of(self.code)

    @property
    def key(self) -> tuple[str, str | None, int | None, str | None]:
        """Identity: the same problem seen again is the same exception, not a new one."""
        return (self.code, self.reveni_return_id, self.order_number, self.sku)

    def as_summary(self, status: str = "open") -> dict[str, object]:
        """The run summary's `exceptions[]` entry
        (docs/architecture.md#the-cli-and-the-run-summary)."""
        return {
            "code": self.code,
            "owner": self.owner.value,
            "order_number": self.order_number,
            "reveni_return_id": self.reveni_return_id,
            "sku": self.sku,
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "status": status,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------- derived sets


def _healed_by(healer: Healer) -> frozenset[str]:
    return frozenset(c.code for c in _CODES if healer in c.healed_by)


# Codes the planner decides: a return re-planned without one of them has healed it.
PLANNER_CODES: frozenset[str] = _healed_by(Healer.REPLAN)
# Codes about an action's own failure: healed (resolved) once the action is done after all.
HEALED_ON_DONE: frozenset[str] = _healed_by(Healer.ACTION_DONE)
# Codes only the reconciliation raises: it also heals them. The others it shares with the sync
# (which heals them as it re-plans); the reconciliation raises those but never heals them.
GAP_ONLY_CODES: frozenset[str] = _healed_by(Healer.RECONCILIATION)
# Codes the month-end settlement match raises, and heals when the month's report is made again.
MONTH_END_CODES: frozenset[str] = _healed_by(Healer.MONTH_END)
# The exception an action of each kind raises when it cannot be done.
FAILURE_CODE: Mapping[str, str] = MappingProxyType(
    {c.fails_kind: c.code for c in _CODES if c.fails_kind is not None}
)
# What re-enqueues a fixable gap: the kind of action whose effect is missing.
FIX_KIND: Mapping[str, str] = MappingProxyType(
    {c.code: c.fix_kind for c in _CODES if c.fix_kind is not None}
)
# Open exceptions that already explain a gap: the owner knows, and the gap is not raised a
# second time under another code.
EXPLAINED_BY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        gap: frozenset(c.code for c in _CODES if gap in c.explains)
        for gap in sorted({g for c in _CODES for g in c.explains})
    }
)
