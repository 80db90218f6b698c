"""Chaos run: the sync under API faults, webhook faults and SIGKILLs must still do every Centra
effect exactly once (the invariants of docs/architecture.md#effects-and-idempotency-keys).

    .venv/bin/python -m bench.chaos [--returns 2000] [--kills 5] [--seed 1] [--waves 8]
                                    [--plan unlimited] [--timeout 3600] [--keep DIR]
                                    [--async-psp 0.5] [--timeout-after-commit 0.02]

What happens:

1. A scenario: the built-in showcase plus `--returns` generated returns
   (`returnbridge.scenarios.generate`), written to `scenario.yaml` in a work folder and loaded
   back from that file (the file `returnbridge sim ... --scenario` would serve). A seeded
   `--async-psp` share of its orders pay through an asynchronous PSP (`psp: async`: a refund
   is a request left PENDING until the PSP answers), a tenth of those refusing every refund
   (`refund_gateway_fails`).
2. The Centra and Reveni simulators and returnbridge's webhook receiver run in this process
   (they outlive every sync process). Reveni webhooks go to the receiver, which commits them to
   the ledger's inbox (SQLite file in the work folder). Then seeded faults are switched on over
   `/_sim/faults`: Centra answers 5 % of requests with a 500, 5 % with a spurious 429, and for
   2 % of writes (`--timeout-after-commit`) it commits and then times the client out (stall or
   dropped connection); Reveni duplicates 20 %, reorders 10 % and drops 10 % of its webhooks.
3. `returnbridge sync --every 0.2 --json` runs as a child process configured by environment
   only. The returns walk through their histories in waves (`POST /_sim/walk`) while it runs.
   The child is SIGKILLed at seeded moments while it writes to Centra (once it made a seeded
   number of mutations), at least `--kills` times, and started again each time; a child that
   exits by itself is started again too (counted as a crash). The asynchronous PSP answers
   while this goes on: the harness watches `GET /_sim/psp` and has it answer a request
   (`POST /_sim/psp/settle`) about a second of real time after it first saw it pending, so the
   sync (re-reading a waiting refund every 0.5 s) finds refunds pending across its runs; the
   figures count the refunds it saw pending (`psp.seen_pending_by_sync`).
4. Convergence: every kill happened, the ledger owes nothing (no pending, in_flight or in_doubt
   action, so no refund waiting for the PSP either, no unread webhook), nothing is pending at
   the PSP, and two whole runs after that made no Centra mutation; bounded by `--timeout`.
5. The invariants, from the Centra simulator's ground truth and the ledger (`check_invariants`):
   (a) at most one Centra effect per ledger key, none without one; (b) nothing missing, or an
   open exception of a fitting code says why; (c) no return credited both by Centra's PSP and
   by Reveni, no credit other than Reveni's amount, no order refunded beyond what was
   captured; (d) every failed, blocked or in-doubt action has an open exception, each with the
   owner `core/codes.py` gives its code; (e) no Centra return for a return Reveni did not
   accept; (f) per Centra return at most one refund settled SUCCESS (one settled refund per
   Reveni refund); (g) no refund asked of Centra while another on the same Centra return was
   still pending at the PSP (a refund's `entry_id` above every earlier request's `answered_by`);
   (h) every FAILED PSP refund that is the last word on its return (no SUCCESS asked after it)
   has an open `refund_failed_at_gateway` exception owned by Finance; (i) nothing PENDING at the
   PSP at the end (docs/architecture.md#reading-centra-back).

Prints one JSON document (figures and violations), also written to
`bench/results/chaos-<UTC time>.json` (gitignored); exit status 1 when an invariant fails or the
run did not converge. Throughput is bounded by the spurious 429s: the client rightly holds every
call for the Retry-After of each, so about ten Centra requests a second get through.
`tests/bench/test_chaos.py` runs the same engine at `make test` size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import SecretStr

from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.reveni.statuses import ACCEPTED
from returnbridge.connectors.reveni.wire import EVENT_TYPES
from returnbridge.core.actions import RESTOCK_DESCRIPTION
from returnbridge.core.codes import CODES, Owner, owner_of
from returnbridge.ledger import ActionRecord, ExceptionRecord, Ledger
from returnbridge.receiver.app import create_receiver
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.scenario import Scenario, load_scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.scenarios.generate import generate_scenario, scenario_to_yaml
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.centra.simulator import CentraSimulator
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import serve_in_thread

RESULTS = Path(__file__).resolve().parent / "results"
CENTRA_TOKEN = "chaos-centra-token"
CENTRA_SECRET = "chaos-centra-secret"
REVENI_KEY = "chaos-reveni-key"

# Reveni statuses after which Centra owes the return something.
ACCEPTING = ACCEPTED | {"completed"}
LIVE = ("open", "retrying")
PROBLEM_STATES = ("failed", "blocked", "in_doubt")
OWED_STATES = ("pending", "in_flight", "in_doubt")

# Which exception codes explain a missing effect (docs/architecture.md#exception-codes-and-owners):
# the effect itself failing, a prerequisite failing (no Centra return, so nothing after it), or
# the return being invalid.
_INVALID = (
    "order_not_found",
    "order_not_returnable",
    "sku_not_in_order",
    "quantity_exceeds_shipped",
)
_NO_RETURN = (*_INVALID, "return_create_failed", "return_missing", "action_in_doubt")
EXPLAINS: Mapping[str, frozenset[str]] = {
    "return": frozenset(_NO_RETURN),
    "restock": frozenset((*_NO_RETURN, "restock_failed", "restock_missing")),
    "refund": frozenset(
        (
            *_NO_RETURN,
            "refund_amount_mismatch",
            "refund_post_failed",
            "refund_missing",
            "refund_failed_at_gateway",
            "duplicate_refund",
        )
    ),
    "exchange": frozenset(
        (*_NO_RETURN, "exchange_out_of_stock", "exchange_order_failed", "exchange_order_missing")
    ),
}
assert all(code in CODES for codes in EXPLAINS.values() for code in codes)


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run. The defaults are the full size; `tests/bench/test_chaos.py` shrinks them."""

    returns: int = 2000
    kills: int = 5
    seed: int = 1
    waves: int = 8
    plan: str = "unlimited"
    every_seconds: float = 0.2
    timeout_seconds: float = 3600.0  # whole run, walking included
    pause_seconds: tuple[float, float] = (1.0, 3.0)  # after each wave, per 250 returns
    centra_error_rate: float = 0.05
    centra_rate_limit_rate: float = 0.05
    centra_timeout_after_commit_rate: float = 0.02
    centra_client_timeout_seconds: float = 2.0
    # Asynchronous PSP: the share of orders on one, the share of those refusing every refund,
    # how long (real seconds) a request stays pending before the harness has the PSP answer
    # it, and how often the sync re-reads a waiting refund.
    async_psp_share: float = 0.5
    gateway_fail_share: float = 0.1
    psp_answer_seconds: float = 1.0
    psp_recheck_seconds: float = 0.5
    # The executor's patience, scaled to the simulators (the defaults suit a real Centra: a
    # 120 s claim lease, 30 s before "absent" is believed, backoff capped at 300 s; with them a
    # kill that lands on a claimed action holds it for two minutes).
    lease_seconds: float = 10.0
    in_doubt_settle_seconds: float = 4.0
    backoff_max_seconds: float = 5.0
    reveni_duplicate_webhook_rate: float = 0.20
    reveni_out_of_order_webhook_rate: float = 0.10
    reveni_drop_webhook_rate: float = 0.10
    workdir: Path | None = None  # kept afterwards when given; else a temporary folder
    now: datetime | None = None  # the scenario's `now`; default: the wall clock


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which (a-i), about what, and how."""

    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"({self.invariant}) {self.subject}: {self.detail}"


@dataclass
class ChaosResult:
    config: ChaosConfig
    converged: bool = False
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.converged and not self.violations

    def as_dict(self) -> dict[str, Any]:
        config = asdict(self.config)
        config["workdir"] = None if self.config.workdir is None else str(self.config.workdir)
        config["now"] = None if self.config.now is None else self.config.now.isoformat()
        return {
            "ok": self.ok,
            "converged": self.converged,
            "config": config,
            "figures": self.figures,
            "violations": [asdict(v) for v in self.violations],
        }


# ------------------------------------------------------------------------------ ground truth


@dataclass
class GroundTruth:
    """Everything the invariants are checked against, read after the sync stopped."""

    centra_effects: dict[str, list[dict[str, Any]]]  # GET /_sim/effects (run summary's `centra`)
    # Centra returns with the shipment each was created on (not in the effects' shape).
    centra_returns: list[dict[str, Any]]
    stock_changes: list[dict[str, Any]]  # one per changeStock: id, description, lines
    captured: dict[int, Decimal]  # order number -> captured by the PSP
    reveni_returns: list[dict[str, Any]]  # Reveni GET /_sim/effects `returns`
    actions: list[ActionRecord]
    exceptions: list[ExceptionRecord]


def centra_state_truth(sim: CentraSimulator) -> dict[str, Any]:
    """What the effects' shape leaves out: shipment of each return, stock changes one by one,
    captured totals. Read from the in-process simulator under its lock."""
    with sim.lock:
        state = sim.state
        returns = [
            {
                "id": ret.id,
                "external_id": ret.external_id,
                "order_number": ret.order_number,
                "shipment_id": ret.shipment_id,
                "lines": [
                    {
                        "sku": state.sizes[state.order_lines[ln.order_line_id].size_id].sku,
                        "quantity": ln.quantity,
                    }
                    for ln in ret.lines
                ],
            }
            for ret in state.returns.values()
        ]
        changes = [
            {
                "id": change.id,
                "description": change.description,
                "lines": [
                    {
                        "sku": state.sizes[ln.size_id].sku,
                        "warehouse_id": ln.warehouse_id,
                        "delta": ln.delta,
                    }
                    for ln in change.lines
                ],
            }
            for change in state.stock_changes.values()
        ]
        captured: dict[int, Decimal] = defaultdict(Decimal)
        for order in state.orders.values():
            for entry in order.payments:
                if entry.entry_type == "CAPTURE" and entry.status == "SUCCESS":
                    captured[order.number] += entry.value
    return {"centra_returns": returns, "stock_changes": changes, "captured": dict(captured)}


# ------------------------------------------------------------------------------ invariants


def check_invariants(truth: GroundTruth) -> list[Violation]:
    """Every violation of the chaos invariants (a)-(i) in `truth`; empty when all hold."""
    out: list[Violation] = []
    live = [e for e in truth.exceptions if e.status in LIVE]
    codes_of: dict[str, set[str]] = defaultdict(set)
    for exc in live:
        if exc.reveni_return_id:
            codes_of[exc.reveni_return_id].add(exc.code)
    by_key = {a.key: a for a in truth.actions}
    effects = truth.centra_effects
    refunds_by_return: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for refund in effects["refunds"]:
        if refund["return_id"] is not None:
            refunds_by_return[refund["return_id"]].append(refund)
    centra_by_rid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ret in truth.centra_returns:
        if ret["external_id"]:
            centra_by_rid[ret["external_id"]].append(ret)
    changes_by_description: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in truth.stock_changes:
        changes_by_description[change["description"] or ""].append(change)
    created_orders = {o["order_number"]: o for o in effects["orders_created"]}

    out += _at_most_once(truth, by_key, centra_by_rid, changes_by_description, refunds_by_return)
    out += _done_actions_exist(
        truth, centra_by_rid, changes_by_description, refunds_by_return, created_orders
    )
    for ret in truth.reveni_returns:
        out += _return_complete(
            ret,
            centra_by_rid.get(ret["id"], []),
            changes_by_description,
            refunds_by_return,
            effects["orders_created"],
            codes_of.get(ret["id"], set()),
        )
    out += _money(truth, centra_by_rid, refunds_by_return)
    out += _problems_explained(truth, live)
    out += _psp_answers(truth, live, refunds_by_return)
    return out


def _at_most_once(
    truth: GroundTruth,
    by_key: Mapping[str, ActionRecord],
    centra_by_rid: Mapping[str, list[dict[str, Any]]],
    changes_by_description: Mapping[str, list[dict[str, Any]]],
    refunds_by_return: Mapping[int, list[dict[str, Any]]],
) -> list[Violation]:
    """(a) per ledger key at most one Centra effect, and no effect no ledger key accounts for."""
    out: list[Violation] = []
    # Centra returns: each one is the effect of exactly one create_return key of its Reveni
    # return (`return:{rid}[:{shipment}[:part]]`, the ref the ledger holds); a second Centra
    # return for one key is the effect of none, so it shows up here.
    for rid, rets in centra_by_rid.items():
        keys = [a for a in truth.actions if a.kind == "create_return" and a.reveni_return_id == rid]
        claims = Counter(a.centra_ref for a in keys if a.centra_ref)
        for r in rets:
            if not claims[str(r["id"])]:
                out.append(
                    Violation(
                        "a",
                        f"return {rid}",
                        f"Centra return {r['id']} (shipment {r['shipment_id']}) is the effect of "
                        f"no ledger key (keys: {sorted(a.key for a in keys)})",
                    )
                )
        for ref, n in claims.items():
            if n > 1:
                out.append(Violation("a", f"return {rid}", f"{n} keys claim Centra return {ref}"))
    for description, changes in changes_by_description.items():
        if not description.startswith(RESTOCK_DESCRIPTION.format(rid="")):
            continue
        rid = description.removeprefix(RESTOCK_DESCRIPTION.format(rid=""))
        if len(changes) > 1:
            out.append(Violation("a", f"restock {rid}", f"{len(changes)} stock changes"))
        if f"restock:{rid}" not in by_key:
            out.append(Violation("a", f"restock {rid}", "a stock change with no ledger action"))
    for return_id, entries in refunds_by_return.items():
        if len(entries) > 1:
            out.append(
                Violation("a", f"Centra return {return_id}", f"{len(entries)} refund entries")
            )
    exchange_numbers = {_exchange_number(a) for a in truth.actions if a.kind == "exchange_order"}
    seen: Counter[int] = Counter(o["order_number"] for o in truth.centra_effects["orders_created"])
    for number, n in seen.items():
        if n > 1:
            out.append(Violation("a", f"order {number}", f"created {n} times"))
        if number not in exchange_numbers:
            out.append(Violation("a", f"order {number}", "created with no exchange action"))
    return out


def _done_actions_exist(
    truth: GroundTruth,
    centra_by_rid: Mapping[str, list[dict[str, Any]]],
    changes_by_description: Mapping[str, list[dict[str, Any]]],
    refunds_by_return: Mapping[int, list[dict[str, Any]]],
    created_orders: Mapping[int, dict[str, Any]],
) -> list[Violation]:
    """(b) every action the ledger calls done has its effect in Centra."""
    out: list[Violation] = []
    for action in truth.actions:
        if action.state != "done":
            continue
        p, rid, ref = action.payload, action.reveni_return_id, action.centra_ref
        # an adopted action (Centra showed the effect first) has no payload, only its ref
        if action.kind == "create_return":
            found = [r for r in centra_by_rid.get(rid, []) if str(r["id"]) == ref]
            if not found or ("shipment_id" in p and found[0]["shipment_id"] != p["shipment_id"]):
                out.append(
                    Violation("b", action.key, f"done (ref {ref}) but no such Centra return")
                )
        elif action.kind == "restock":
            if not changes_by_description.get(RESTOCK_DESCRIPTION.format(rid=rid)):
                out.append(Violation("b", action.key, "done but no stock change"))
        elif action.kind == "refund":
            ids = (
                [int(p["centra_return_id"])]
                if "centra_return_id" in p
                else [r["id"] for r in centra_by_rid.get(rid, [])]
            )
            entries = [e for i in ids for e in refunds_by_return.get(i, [])]
            if not any("via_psp" not in p or e["via_psp"] == bool(p["via_psp"]) for e in entries):
                out.append(Violation("b", action.key, "done but no refund entry of its kind"))
        elif _exchange_number(action) not in created_orders:
            out.append(Violation("b", action.key, "done but no exchange order"))
    return out


def _exchange_number(action: ActionRecord) -> int | None:
    """The Centra order number of an exchange action (payload, or the ref of an adopted one)."""
    if "order_number" in action.payload:
        return int(action.payload["order_number"])
    ref = action.centra_ref or ""
    return int(ref) if ref.isdigit() else None


def _return_complete(
    ret: Mapping[str, Any],
    centra: Sequence[Mapping[str, Any]],
    changes_by_description: Mapping[str, list[dict[str, Any]]],
    refunds_by_return: Mapping[int, list[dict[str, Any]]],
    orders_created: Sequence[Mapping[str, Any]],
    codes: set[str],
) -> list[Violation]:
    """(b) what Reveni decided is in Centra, or an open exception of a fitting code says why;
    (c) the credit is Reveni's amount, in the form Reveni paid it; (e) a return Reveni did not
    accept has no Centra return."""
    rid = ret["id"]
    subject = f"return {rid}"
    if ret["status"] not in ACCEPTING:
        if centra:
            return [
                Violation(
                    "e", subject, f"{ret['status']} in Reveni, yet {len(centra)} Centra return(s)"
                )
            ]
        return []

    def missing(what: str, detail: str) -> list[Violation]:
        if codes & EXPLAINS[what]:
            return []
        return [
            Violation(
                "b",
                subject,
                f"{detail}; no open exception explains it (open: {sorted(codes) or 'none'})",
            )
        ]

    out: list[Violation] = []
    accepted: Counter[str] = Counter()
    restock: Counter[str] = Counter()
    for item in ret["items"]:
        if item["status"] == "accepted" and item["accepted_quantity"]:
            accepted[item["sku"]] += item["accepted_quantity"]
            if item["restock"]:
                restock[item["sku"]] += item["accepted_quantity"]
    in_centra: Counter[str] = Counter()
    for r in centra:
        for line in r["lines"]:
            in_centra[line["sku"]] += line["quantity"]
    if in_centra != accepted:
        if in_centra and (in_centra - accepted):
            out.append(
                Violation(
                    "b",
                    subject,
                    f"Centra returns {dict(in_centra)}, Reveni accepted {dict(accepted)}",
                )
            )
        else:
            out += missing("return", f"accepted {dict(accepted)}, Centra has {dict(in_centra)}")
    restocked: Counter[str] = Counter()
    for change in changes_by_description.get(RESTOCK_DESCRIPTION.format(rid=rid), []):
        for line in change["lines"]:
            restocked[line["sku"]] += line["delta"]
    if restocked != restock:
        if restocked - restock:
            out.append(
                Violation(
                    "b",
                    subject,
                    f"restocked {dict(restocked)}, accepted for restock {dict(restock)}",
                )
            )
        else:
            out += missing("restock", f"restock {dict(restock)} owed, {dict(restocked)} done")
    entries = [e for r in centra for e in refunds_by_return.get(r["id"], [])]
    live = [r for r in ret["refunds"] if r["status"] != "failed"]
    if live:
        refund = live[0]
        psp = refund["method"] == "original_payment_method" and refund["paid_by"] == "merchant"
        wrong = [e for e in entries if e["via_psp"] != psp]
        if wrong:
            out.append(
                Violation(
                    "b",
                    subject,
                    f"{refund['method']} refund posted {'without' if psp else 'through'} the PSP",
                )
            )
        total = sum((Decimal(e["amount"]) for e in entries), Decimal(0))
        if not entries:
            out += missing("refund", f"{refund['method']} refund {refund['amount']} not in Centra")
        elif total != Decimal(refund["amount"]):  # tolerance 0.00 (docs/architecture.md#money)
            how = "refunded through the PSP" if psp else "credited"
            out.append(Violation("c", subject, f"{how} {total}, Reveni decided {refund['amount']}"))
    centra_ids = {r["id"] for r in centra}
    exchanged: Counter[str] = Counter()
    for order in orders_created:
        if order["origin_return_id"] in centra_ids:
            for line in order["lines"]:
                exchanged[line["sku"]] += line["quantity"]
    wanted: Counter[str] = Counter()
    for item in ret["items"]:
        if item["exchange_sku"] and item["status"] == "accepted" and item["accepted_quantity"]:
            wanted[item["exchange_sku"]] += item["accepted_quantity"]
    if exchanged != wanted:
        if exchanged - wanted:
            out.append(
                Violation("b", subject, f"exchange orders {dict(exchanged)}, wanted {dict(wanted)}")
            )
        else:
            out += missing("exchange", f"exchange {dict(wanted)} owed, {dict(exchanged)} made")
    return out


def _money(
    truth: GroundTruth,
    centra_by_rid: Mapping[str, list[dict[str, Any]]],
    refunds_by_return: Mapping[int, list[dict[str, Any]]],
) -> list[Violation]:
    """(c) no return paid by both Centra's PSP and Reveni; no order refunded beyond capture."""
    out: list[Violation] = []
    for ret in truth.reveni_returns:
        if not any(r["paid_by"] == "reveni" and r["status"] != "failed" for r in ret["refunds"]):
            continue
        for centra_return in centra_by_rid.get(ret["id"], []):
            if any(e["via_psp"] for e in refunds_by_return.get(centra_return["id"], [])):
                out.append(
                    Violation(
                        "c",
                        f"return {ret['id']}",
                        "paid by Reveni and refunded through Centra's PSP",
                    )
                )
    refunded: dict[int, Decimal] = defaultdict(Decimal)
    for entry in truth.centra_effects["refunds"]:
        if entry["status"] != "FAILED":
            refunded[entry["order_number"]] += Decimal(entry["amount"])
    for number, total in refunded.items():
        if total > truth.captured.get(number, Decimal(0)):
            out.append(
                Violation(
                    "c",
                    f"order {number}",
                    f"refunded {total}, captured {truth.captured.get(number, Decimal(0))}",
                )
            )
    return out


def _problems_explained(truth: GroundTruth, live: Sequence[ExceptionRecord]) -> list[Violation]:
    """(d) every failed, blocked or in-doubt action has an open exception for the right owner;
    every exception carries the owner its code has."""
    out: list[Violation] = []
    for exc in truth.exceptions:
        if exc.owner != owner_of(exc.code).value:
            out.append(
                Violation(
                    "d",
                    f"exception {exc.id}",
                    f"{exc.code} owned by {exc.owner}, not {owner_of(exc.code).value}",
                )
            )
    by_action = {e.action_key for e in live if e.action_key}
    by_return = {e.reveni_return_id for e in live if e.reveni_return_id}
    for action in truth.actions:
        if action.state not in PROBLEM_STATES:
            continue
        if action.key not in by_action and action.reveni_return_id not in by_return:
            out.append(
                Violation(
                    "d",
                    action.key,
                    f"{action.state} with no open exception (last error: {action.last_error})",
                )
            )
    return out


def _psp_answers(
    truth: GroundTruth,
    live: Sequence[ExceptionRecord],
    refunds_by_return: Mapping[int, list[dict[str, Any]]],
) -> list[Violation]:
    """(f) at most one settled refund per Centra return; (g) none asked while an earlier one on
    its return was pending; (h) a PSP refusal that is the last word on its return is with
    Finance; (i) nothing pending at the PSP."""
    out: list[Violation] = []
    rid_of = {r["id"]: r["external_id"] for r in truth.centra_returns}
    finance = Owner.FINANCE.value
    with_finance = {
        e.reveni_return_id
        for e in live
        if e.code == "refund_failed_at_gateway" and e.owner == finance and e.reveni_return_id
    }
    for return_id, entries in refunds_by_return.items():
        subject = f"Centra return {return_id}"
        entries = sorted(entries, key=lambda e: int(e["entry_id"]))
        settled = [e for e in entries if e["status"] == "SUCCESS"]
        if len(settled) > 1:
            ids = [e["entry_id"] for e in settled]
            out.append(Violation("f", subject, f"{len(settled)} settled refunds (entries {ids})"))
        for i, later in enumerate(entries):
            for earlier in entries[:i]:
                if not earlier.get("asynchronous"):
                    continue
                answered = earlier.get("answered_by")
                if answered is None or int(answered) > int(later["entry_id"]):
                    out.append(
                        Violation(
                            "g",
                            subject,
                            f"refund {later['entry_id']} asked while request "
                            f"{earlier['entry_id']} was pending (answered by {answered})",
                        )
                    )
        for entry in entries:
            if entry["status"] != "FAILED" or not entry["via_psp"]:
                continue
            if any(e["entry_id"] > entry["entry_id"] for e in settled):
                continue  # refused, then refunded after all: the refusal is not the last word
            rid = rid_of.get(return_id)
            if rid not in with_finance:
                out.append(
                    Violation(
                        "h",
                        subject,
                        f"PSP refused refund {entry['entry_id']} (return {rid}); no open "
                        "refund_failed_at_gateway exception for Finance",
                    )
                )
    for entry in truth.centra_effects["refunds"]:
        if entry["status"] == "PENDING":
            out.append(
                Violation(
                    "i",
                    f"order {entry['order_number']}",
                    f"refund {entry['entry_id']} (Centra return {entry['return_id']}) still "
                    "pending at the PSP",
                )
            )
    return out


# ------------------------------------------------------------------------------ the run


class SyncProcess:
    """`returnbridge sync --every S --json` as a child process, restartable; counts what
    happened to it. Its stdout (one JSON report per run) and stderr go to files."""

    def __init__(self, env: Mapping[str, str], every: float, folder: Path) -> None:
        self.env = dict(env)
        self.every = every
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        self.kills = 0
        self.crashes: list[int] = []  # exit codes of children that ended by themselves
        self._files: list[IO[bytes]] = []
        self._reports: list[dict[str, Any]] = []
        self._read_upto: dict[int, int] = {}  # child number -> bytes of its stdout parsed

    def _out(self, n: int) -> Path:
        return self.folder / f"sync-{n}.out"

    def start(self) -> None:
        self.started += 1
        out = self._out(self.started).open("wb")
        err = (self.folder / f"sync-{self.started}.err").open("wb")
        self._files += [out, err]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "returnbridge", "sync", "--every", str(self.every), "--json"],
            env=self.env,
            cwd=self.folder,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart_if_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.crashes.append(self.proc.returncode)
            self.start()

    def kill(self) -> None:
        """SIGKILL, whatever the child is doing; then start a new one."""
        self.restart_if_dead()
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for f in self._files:
            f.close()

    def reports(self) -> list[dict[str, Any]]:
        """Every run report the children printed so far (a killed child's last one may be cut
        short: it is not a report). Reads only what was added since the last call."""
        decoder = json.JSONDecoder()
        for n in range(1, self.started + 1):
            path = self._out(n)
            done = self._read_upto.get(n, 0)
            with path.open("rb") as f:
                f.seek(done)
                text = f.read().decode("utf-8", errors="replace")
            pos = 0
            while True:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                try:
                    doc, pos = decoder.raw_decode(text, pos)
                except json.JSONDecodeError:
                    break  # not complete yet, or cut short by a kill
                if isinstance(doc, dict):
                    self._reports.append(doc)
            self._read_upto[n] = done + len(text[:pos].encode("utf-8"))
        return list(self._reports)


def sync_environment(
    scenario: Scenario, config: ChaosConfig, centra_url: str, reveni_url: str, ledger_url: str
) -> dict[str, str]:
    """The child's environment: this one without RETURNBRIDGE_*, plus the settings
    (docs/settings.md)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETURNBRIDGE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        RETURNBRIDGE_CENTRA__BASE_URL=centra_url,
        RETURNBRIDGE_CENTRA__TOKEN=CENTRA_TOKEN,
        RETURNBRIDGE_CENTRA__ORDER_API_SECRET=CENTRA_SECRET,
        RETURNBRIDGE_CENTRA__PLAN=config.plan,
        RETURNBRIDGE_CENTRA__TIMEOUT_SECONDS=str(config.centra_client_timeout_seconds),
        RETURNBRIDGE_REVENI__BASE_URL=reveni_url,
        RETURNBRIDGE_REVENI__API_KEY=REVENI_KEY,
        RETURNBRIDGE_REVENI__STORE_ID=scenario.reveni.store_id,
        RETURNBRIDGE_SYNC__LEDGER_URL=ledger_url,
        RETURNBRIDGE_SYNC__RETURNS_WAREHOUSE_ID=str(scenario.centra.returns_warehouse),
        RETURNBRIDGE_SYNC__INITIAL_LOOK_BACK="P3650D",
        RETURNBRIDGE_SYNC__BACKOFF_SECONDS="0.2",
        RETURNBRIDGE_SYNC__BACKOFF_MAX_SECONDS=str(config.backoff_max_seconds),
        RETURNBRIDGE_SYNC__LEASE_SECONDS=str(config.lease_seconds),
        RETURNBRIDGE_SYNC__IN_DOUBT_SETTLE_SECONDS=str(config.in_doubt_settle_seconds),
        RETURNBRIDGE_SYNC__PSP_RECHECK_SECONDS=str(config.psp_recheck_seconds),
    )
    return env


def build_scenario(config: ChaosConfig) -> Scenario:
    """The showcase plus the generated returns, on the configured Centra plan, with `now` the
    wall clock (the sync child runs on it: instant deadlines then mean what they say); a seeded
    `async_psp_share` of the orders on an asynchronous PSP, `gateway_fail_share` of those
    refusing every refund."""
    base = builtin_scenario("showcase")
    now = config.now or datetime.now(UTC).replace(microsecond=0)
    scenario = generate_scenario(
        config.returns, seed=config.seed, base=base, now=max(now, base.start_time())
    )
    rng = random.Random(f"psp-{config.seed}")
    orders = []
    for order in scenario.centra.orders:
        if rng.random() < config.async_psp_share:
            fails = order.refund_gateway_fails or rng.random() < config.gateway_fail_share
            order = order.model_copy(update={"psp": "async", "refund_gateway_fails": fails})
        orders.append(order)
    centra = scenario.centra.model_copy(update={"plan": config.plan, "orders": orders})
    return scenario.model_copy(update={"centra": centra})


@contextmanager
def _workdir(config: ChaosConfig) -> Iterator[Path]:
    if config.workdir is not None:
        config.workdir.mkdir(parents=True, exist_ok=True)
        for stale in config.workdir.glob("ledger.db*"):
            stale.unlink()
        yield config.workdir
        return
    with tempfile.TemporaryDirectory(prefix="returnbridge-chaos-") as tmp:
        yield Path(tmp)


async def _subscribe(reveni_url: str, store_id: str, receiver_url: str) -> None:
    settings = ReveniSettings(base_url=reveni_url, api_key=SecretStr(REVENI_KEY), store_id=store_id)
    async with settings.client() as reveni:
        await reveni.ensure_webhook(receiver_url, list(EVENT_TYPES))


def _owed(ledger: Ledger) -> int:
    counts = ledger.counts()
    owed = sum(counts.get(state, 0) for state in OWED_STATES)
    return owed + len(ledger.inbox_pending(limit=1))


def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Run the chaos scenario end to end and check the invariants."""
    result = ChaosResult(config)
    began = time.monotonic()
    deadline = began + config.timeout_seconds
    scenario_in = build_scenario(config)
    with _workdir(config) as folder, ExitStack() as stack:
        path = folder / "scenario.yaml"
        path.write_text(scenario_to_yaml(scenario_in), encoding="utf-8")
        scenario = load_scenario(path)  # what `sim ... --scenario` would serve
        ledger_url = f"sqlite:///{folder / 'ledger.db'}"
        ledger = stack.enter_context(Ledger(ledger_url))
        centra_app = create_centra_app(
            scenario, token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET, stall_seconds=30.0
        )
        reveni_app = create_reveni_app(scenario, api_key=REVENI_KEY)
        receiver_app = create_receiver(ledger, ReceiverSettings())
        centra = stack.enter_context(serve_in_thread(centra_app))
        reveni = stack.enter_context(serve_in_thread(reveni_app))
        receiver = stack.enter_context(serve_in_thread(receiver_app))
        centra_ctl = stack.enter_context(httpx.Client(base_url=centra.url, timeout=30))
        reveni_ctl = stack.enter_context(httpx.Client(base_url=reveni.url, timeout=30))
        setup_seconds = time.monotonic() - began

        asyncio.run(
            _subscribe(reveni.url, scenario.reveni.store_id, receiver.url + "/webhooks/reveni")
        )
        centra_ctl.post(
            "/_sim/faults",
            json={
                "seed": config.seed,
                "error_rate": config.centra_error_rate,
                "rate_limit_rate": config.centra_rate_limit_rate,
                "timeout_after_commit_rate": config.centra_timeout_after_commit_rate,
            },
        ).raise_for_status()
        reveni_ctl.post(
            "/_sim/faults",
            json={
                "seed": config.seed,
                "duplicate_webhook_rate": config.reveni_duplicate_webhook_rate,
                "out_of_order_webhook_rate": config.reveni_out_of_order_webhook_rate,
                "drop_webhook_rate": config.reveni_drop_webhook_rate,
                "webhook_delay_scale": 0.05,
            },
        ).raise_for_status()

        sync = SyncProcess(
            sync_environment(scenario, config, centra.url, reveni.url, ledger_url),
            config.every_seconds,
            folder,
        )
        psp = _Psp(centra_ctl, config.psp_answer_seconds)
        driver = _Driver(config, sync, centra_app.state.sim, reveni_ctl, ledger, deadline, psp)
        try:
            sync.start()
            walked = driver.walk()
            walk_done = time.monotonic()
            result.converged = driver.converge()
            converge_seconds = time.monotonic() - walk_done
        finally:
            sync.stop()
        reports = sync.reports()
        truth = GroundTruth(
            centra_effects=centra_ctl.get("/_sim/effects").raise_for_status().json(),
            reveni_returns=reveni_ctl.get("/_sim/effects").raise_for_status().json()["returns"],
            actions=ledger.actions(),
            exceptions=ledger.exceptions(),
            **centra_state_truth(centra_app.state.sim),
        )
        result.violations = check_invariants(truth)
        if config.workdir is not None:  # kept for a post-mortem
            reveni_truth = reveni_ctl.get("/_sim/effects").raise_for_status().json()
            (folder / "centra-effects.json").write_text(json.dumps(truth.centra_effects, indent=1))
            (folder / "reveni-effects.json").write_text(json.dumps(reveni_truth, indent=1))
        centra_counts = centra_ctl.get("/_sim/counters").raise_for_status().json()
        reveni_counts = reveni_ctl.get("/_sim/counters").raise_for_status().json()
        hooks = reveni_ctl.get("/_sim/webhooks").raise_for_status().json()
        result.figures = _figures(
            scenario,
            truth,
            sync,
            reports,
            centra_counts,
            reveni_counts,
            hooks,
            walked,
            psp=psp,
            seen_pending=_seen_pending(ledger, truth.actions),
            kill_points=driver.kill_points,
            duration=time.monotonic() - began,
            setup=setup_seconds,
            converge=converge_seconds,
        )
    return result


class _Driver:
    """Walks the returns in waves and kills the sync child while it writes to Centra.

    A kill is due once the child has made a seeded number of Centra mutations since it started
    (so it lands in the middle of executing, not while idle); thresholds are spread so that the
    kills fall over the whole run. Every wait restarts a child that ended by itself."""

    def __init__(
        self,
        config: ChaosConfig,
        sync: SyncProcess,
        centra: CentraSimulator,
        reveni_ctl: httpx.Client,
        ledger: Ledger,
        deadline: float,
        psp: _Psp,
    ) -> None:
        self.config = config
        self.psp = psp
        self.ledger = ledger
        self.sync = sync
        self.centra = centra
        self.reveni_ctl = reveni_ctl
        self.deadline = deadline
        self.rng = random.Random(config.seed)
        expected = max(20.0, 2.5 * config.returns / (config.kills + 1))
        self.thresholds = [int(self.rng.uniform(5, expected)) for _ in range(config.kills)]
        self.kill_points: list[int] = []  # Centra mutations when each kill happened
        self.since = 0  # mutations when the current child started
        self.quiet_since = time.monotonic()
        self.last_mutations = 0
        self.converging = False

    def mutations(self) -> int:
        with self.centra.lock:
            return int(self.centra.counters.mutations)

    def tick(self) -> None:
        """Restart a child that ended; let the PSP answer what is due; kill the child when its
        kill is due."""
        self.psp.tick()
        if not self.sync.alive():
            self.sync.restart_if_dead()
            self.since = self.mutations()
        done = self.mutations()
        if done != self.last_mutations:
            self.last_mutations, self.quiet_since = done, time.monotonic()
        if len(self.kill_points) >= len(self.thresholds):
            return
        due = done - self.since >= self.thresholds[len(self.kill_points)]
        # nothing left to write (all owed work done): kill anyway; a restart must find
        # nothing to do
        quiet = self.converging and time.monotonic() - self.quiet_since > 3.0
        idle = quiet and not _owed(self.ledger)
        if due or idle:
            self.kill_points.append(done)
            self.sync.kill()
            self.since = self.mutations()
            self.quiet_since = time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Tick for `seconds`; False once past the deadline."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.tick()
            if time.monotonic() > self.deadline:
                return False
            time.sleep(0.02)
        return True

    def walk(self) -> int:
        """Walk every history in `waves` waves with a seeded pause after each."""
        ctl, config = self.reveni_ctl, self.config
        remaining = ctl.post("/_sim/walk", json={"steps": 0}).raise_for_status().json()
        per_wave = max(1, math.ceil(remaining["remaining"] / config.waves))
        scale = max(1.0, (config.returns + 20) / 250)
        walked = 0
        for _ in range(config.waves):
            answer = ctl.post("/_sim/walk", json={"steps": per_wave}).raise_for_status().json()
            walked += int(answer["steps"])
            if not self.wait(self.rng.uniform(*config.pause_seconds) * scale):
                return walked
        rest = ctl.post("/_sim/walk", json={}).raise_for_status().json()
        return walked + int(rest["steps"])

    def converge(self) -> bool:
        """Until every kill happened, the ledger owes nothing, nothing is pending at the PSP,
        and two whole runs after that mutated nothing in Centra."""
        self.converging = True
        while time.monotonic() < self.deadline:
            self.tick()
            owed = _owed(self.ledger) or self.psp.pending()
            if len(self.kill_points) < len(self.thresholds) or owed:
                self.wait(0.1)
                continue
            mutations, runs = self.mutations(), len(self.sync.reports())
            # the run under way now may have started earlier; the two after it are whole
            while len(self.sync.reports()) < runs + 3 and self.wait(0.1):
                pass
            whole = len(self.sync.reports()) >= runs + 3
            quiet = self.mutations() == mutations and not _owed(self.ledger)
            if whole and quiet and not self.psp.pending():
                return True
        return False


class _Psp:
    """The asynchronous PSP's pace: it answers a refund request (`POST /_sim/psp/settle` for its
    order) once the harness has seen it pending for `answer_after` real seconds; the simulator
    clock stands still, so nothing answers by itself."""

    POLL_SECONDS = 0.1

    def __init__(self, ctl: httpx.Client, answer_after: float) -> None:
        self.ctl = ctl
        self.answer_after = answer_after
        self.first_seen: dict[int, float] = {}  # request entry id -> when first seen pending
        self.answered: set[int] = set()  # settlement entries written at the harness's word
        self.polled = 0.0

    def pending(self) -> int:
        """Requests pending at the PSP now (`GET /_sim/psp`)."""
        return len(self.ctl.get("/_sim/psp").raise_for_status().json()["pending"])

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.polled < self.POLL_SECONDS:
            return
        self.polled = now
        due: set[int] = set()
        for request in self.ctl.get("/_sim/psp").raise_for_status().json()["pending"]:
            seen = self.first_seen.setdefault(int(request["entry_id"]), now)
            if now - seen >= self.answer_after:
                due.add(int(request["order_number"]))
        for number in sorted(due):
            answer = self.ctl.post("/_sim/psp/settle", json={"order_number": number})
            self.answered.update(s["entry_id"] for s in answer.raise_for_status().json()["settled"])


def _figures(
    scenario: Scenario,
    truth: GroundTruth,
    sync: SyncProcess,
    reports: Sequence[Mapping[str, Any]],
    centra_counts: Mapping[str, Any],
    reveni_counts: Mapping[str, Any],
    hooks: Mapping[str, Any],
    walked: int,
    *,
    psp: _Psp,
    seen_pending: int,
    kill_points: Sequence[int],
    duration: float,
    setup: float,
    converge: float,
) -> dict[str, Any]:
    effects = truth.centra_effects
    live = [e for e in truth.exceptions if e.status in LIVE]
    generated = [r for r in truth.reveni_returns if str(r["id"]).startswith("gen_")]
    return {
        "returns": len(truth.reveni_returns),
        "generated_returns": len(generated),
        "orders": len(scenario.centra.orders),
        "status_steps_walked": walked,
        "kills": sync.kills,
        "kills_at_mutation": list(kill_points),
        "crashes": len(sync.crashes),
        "crash_exit_codes": sorted(set(sync.crashes)),
        "sync_processes": sync.started,
        "runs": len(reports),
        "centra_requests": centra_counts["requests"],
        "centra_mutations": centra_counts["mutations"],
        "centra_5xx": centra_counts["errors_5xx"],
        "centra_429": centra_counts["rate_limited"],
        "centra_timeouts_after_commit": centra_counts["timeouts_after_commit"],
        "reveni_requests": reveni_counts["requests"],
        "webhooks": {
            k: hooks[k]
            for k in ("events", "delivered", "dropped", "duplicated", "reordered", "failed", "held")
        },
        "effects": {k: len(v) for k, v in effects.items()},
        "psp": {
            "async_orders": sum(o.psp == "async" for o in scenario.centra.orders),
            "refusing_async_orders": sum(
                o.psp == "async" and o.refund_gateway_fails for o in scenario.centra.orders
            ),
            "refunds": dict(Counter(r["status"] for r in effects["refunds"])),
            "async_refunds": dict(
                Counter(r["status"] for r in effects["refunds"] if r.get("asynchronous"))
            ),
            "seen_pending_by_harness": len(psp.first_seen),
            "answered_by_harness": len(psp.answered),
            "seen_pending_by_sync": seen_pending,
        },
        "actions": dict(Counter(a.state for a in truth.actions)),
        "actions_by_kind": dict(Counter(a.kind for a in truth.actions)),
        "attempts": sum(a.attempts for a in truth.actions),
        "exceptions_open": dict(sorted(Counter(e.code for e in live).items())),
        "exceptions_open_generated": dict(
            sorted(
                Counter(e.code for e in live if str(e.reveni_return_id).startswith("gen_")).items()
            )
        ),
        "duration_seconds": round(duration, 1),
        "setup_seconds": round(setup, 1),
        "converge_seconds": round(converge, 1),
    }


# How the sync's attempts record a refund the PSP has not answered: the refund call's answer,
# and a read-back's (returnbridge.sync.calls and .readback).
_PENDING_MARKS = ("the PSP has not answered", "pending at the PSP")


def _seen_pending(ledger: Ledger, actions: Sequence[ActionRecord]) -> int:
    """Refund actions the sync found pending at the PSP at least once (its attempts say so)."""
    return sum(
        any(
            t.outcome == "in_doubt" and any(m in (t.response or "") for m in _PENDING_MARKS)
            for t in ledger.attempts(a.key)
        )
        for a in actions
        if a.kind == "refund"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chaos run of the sync (bench/chaos.py).")
    parser.add_argument("--returns", type=int, default=2000, help="generated returns")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of the sync, at least")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--waves", type=int, default=8, help="waves the histories walk in")
    parser.add_argument("--plan", default="unlimited", help="Centra plan of the simulator")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds, whole run")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    parser.add_argument(
        "--async-psp",
        type=float,
        default=ChaosConfig.async_psp_share,
        metavar="SHARE",
        help="share of orders whose PSP answers refunds asynchronously",
    )
    parser.add_argument(
        "--timeout-after-commit",
        type=float,
        default=ChaosConfig.centra_timeout_after_commit_rate,
        metavar="RATE",
        help="share of Centra writes committed, then timed out",
    )
    args = parser.parse_args(argv)
    config = ChaosConfig(
        returns=args.returns,
        kills=args.kills,
        seed=args.seed,
        waves=args.waves,
        plan=args.plan,
        timeout_seconds=args.timeout,
        workdir=args.keep,
        async_psp_share=args.async_psp,
        centra_timeout_after_commit_rate=args.timeout_after_commit,
    )
    result = run_chaos(config)
    document = json.dumps(result.as_dict(), indent=2, default=str)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"chaos-{stamp}.json").write_text(document + "\n", encoding="utf-8")
    print(document)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
