"""The executor against the Centra simulator over real HTTP and a real ledger on SQLite.

Every test counts Centra's ground truth (`/_sim/effects`): whatever faults are injected, each
ledger key has at most one effect. Time is a fake clock shared by the executor, the ledger and
the client's governor, so backoffs and Retry-After cost no real time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.connectors.centra import (
    CentraClient,
    CreatedFromOrigin,
    Governor,
    OrderCreateInput,
    OrderProduct,
    StockDelta,
)
from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.core.actions import (
    RESTOCK_DESCRIPTION,
    Action,
    CreateReturn,
    ExchangeLine,
    ExchangeOrder,
    Refund,
    Restock,
    RestockLine,
    ReturnLinePlan,
    exchange_key,
    exchange_marker,
    exchange_order_number,
    exchange_order_numbers,
    refund_key,
    restock_key,
    return_key,
)
from returnbridge.ledger import Ledger
from returnbridge.scenario import Scenario
from returnbridge.sync.budget import BudgetKind
from returnbridge.sync.executor import ExecutionReport, Executor, ExecutorConfig
from returnbridge.sync.readback import Absent, Found, read_back

# --------------------------------------------------------------------------- harness


class FakeClock:
    """Wall-clock-aligned time that moves only by `sleep` (for the executor, the ledger and the
    client's governor alike): backoffs are taken, never waited."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)
        self._mono = 1000.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))
        self._mono += max(0.0, seconds)


class RecordingGate:
    """A BudgetGate that only counts what it is asked for."""

    def __init__(self) -> None:
        self.acquired: list[BudgetKind] = []

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        self.acquired.extend([kind] * n)


class FlakyTransport(httpx.AsyncBaseTransport):
    """Refuses the first `refuse` writes before they leave (connection refused), then passes."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        to_order_api = b"/api/order" in request.url.raw_path
        is_write = b"mutation" in request.content or (
            to_order_api and request.method in ("PUT", "POST")
        )
        if is_write and self.refuse > 0:
            self.refuse -= 1
            raise httpx.ConnectError("connection refused (test)", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


FAST = ExecutorConfig(
    concurrency=4,
    max_attempts=5,
    backoff_seconds=0.5,
    backoff_max_seconds=5,
    lease_seconds=60,
    read_back_attempts=3,
    in_doubt_settle_seconds=0,
)


@dataclass
class Harness:
    sim: CentraSimHandle
    centra: CentraClient
    ledger: Ledger
    clock: FakeClock
    url: str

    def executor(self, config: ExecutorConfig = FAST, **kwargs: Any) -> Executor:
        kwargs.setdefault("rng", random.Random(7))
        return Executor(self.centra, self.ledger, config, clock=self.clock, **kwargs)

    async def run(self, config: ExecutorConfig = FAST, **kwargs: Any) -> ExecutionReport:
        return await self.executor(config).run(**kwargs)

    def effects(self) -> dict[str, list[dict[str, Any]]]:
        body: dict[str, list[dict[str, Any]]] = self.sim.client.get("/_sim/effects").json()
        return body

    def faults(self, **faults: Any) -> None:
        response = self.sim.client.post("/_sim/faults", json=faults)
        assert response.status_code == 200, response.text

    def client(self, clock: FakeClock | None = None, **kwargs: Any) -> CentraClient:
        options: dict[str, Any] = {
            "base_url": self.sim.url,
            "token": self.sim.token,
            "order_api_secret": self.sim.order_api_secret,
            "plan": "unlimited",
            "backoff_seconds": 0.01,
            "read_retries": 2,
            "timeout_seconds": 0.5,
            "governor": Governor("unlimited", 1.0, clock=clock or self.clock),
            "rng": random.Random(3),
        }
        options.update(kwargs)
        return CentraClient(**options)


@pytest.fixture
def sim(centra_scenario: Scenario) -> Iterator[CentraSimHandle]:
    with running_centra_sim(centra_scenario, stall_seconds=2.0) as handle:
        yield handle


@pytest.fixture
async def h(sim: CentraSimHandle, tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url, clock=clock.now)
    harness = Harness(sim, None, ledger, clock, url)  # type: ignore[arg-type]
    async with harness.client() as centra:
        harness.centra = centra
        yield harness
    ledger.close()


# --------------------------------------------------------------------------- action builders


async def create_return_action(
    centra: CentraClient, rid: str, number: int = 1001, quantity: int = 1
) -> Action:
    order = (await centra.orders_by_number([number]))[number]
    shipment = next(s for s in order.shipments if s.is_shipped)
    line = shipment.lines[0]
    order_line = order.line(line.order_line_id)
    assert order_line is not None
    return Action(
        key=return_key(rid),
        kind="create_return",
        reveni_return_id=rid,
        order_number=number,
        payload=CreateReturn(
            shipment_id=shipment.id,
            lines=(ReturnLinePlan(line.id, quantity, order_line.sku),),
            external_id=rid,
            comment=f"returnbridge {rid}",
        ),
    )


async def restock_action(
    centra: CentraClient, rid: str, sku: str = "TEE-BLK-M", number: int = 1001
) -> Action:
    size = (await centra.product_sizes_by_sku([sku]))[sku]
    return Action(
        key=restock_key(rid),
        kind="restock",
        reveni_return_id=rid,
        order_number=number,
        payload=Restock(
            description=RESTOCK_DESCRIPTION.format(rid=rid),
            warehouse_id=2,
            lines=(RestockLine(sku, size.variant_id, size.id, 1),),
        ),
    )


def refund_action(
    rid: str,
    centra_return_id: int,
    *,
    via_psp: bool,
    amount: str,
    currency: str = "SEK",
    number: int = 1001,
) -> Action:
    return Action(
        key=refund_key(rid, "rf_1"),
        kind="refund",
        reveni_return_id=rid,
        order_number=number,
        payload=Refund(
            centra_return_id=centra_return_id,
            via_psp=via_psp,
            amount=Decimal(amount),
            currency=currency,
            reference=f"reveni-refund-{rid}",
        ),
    )


def exchange_action(
    rid: str, origin_return_id: int, sku: str = "TEE-BLK-S", *, marked: bool = False
) -> Action:
    """`marked`: as the planner makes it now (a marker and alternate numbers); unmarked, as
    actions planned before markers existed."""
    return Action(
        key=exchange_key(rid, 1),
        kind="exchange_order",
        reveni_return_id=rid,
        order_number=1001,
        payload=ExchangeOrder(
            order_number=exchange_order_number(rid, 1),
            origin_order_number=1001,
            origin_return_id=origin_return_id,
            lines=(ExchangeLine(sku, 1),),
            marker=exchange_marker(rid, 1) if marked else None,
            alternates=exchange_order_numbers(rid, 1)[1:] if marked else (),
        ),
    )


async def created_return(h: Harness, rid: str, number: int = 1001) -> int:
    """Create the Centra return of `rid` through the executor; its Centra id."""
    action = await create_return_action(h.centra, rid, number)
    h.ledger.plan([action])
    report = await h.run(keys=[action.key])
    assert report.outcomes == {action.key: "done"}
    record = h.ledger.action(action.key)
    assert record is not None and record.centra_ref is not None
    return int(record.centra_ref)


def state_of(h: Harness, key: str) -> str:
    record = h.ledger.action(key)
    assert record is not None
    return record.state


def outcomes(h: Harness, key: str) -> list[str]:
    return [a.outcome for a in h.ledger.attempts(key)]


def open_codes(h: Harness) -> dict[str, str]:
    return {e.code: e.owner for e in h.ledger.exceptions(statuses=["open"])}


# --------------------------------------------------------------------------- happy paths


async def test_every_kind_is_sent_once_and_recorded_with_centras_id(h: Harness) -> None:
    gate = RecordingGate()
    ret_id = await created_return(h, "ret_happy")
    restock = await restock_action(h.centra, "ret_happy")
    refund = refund_action("ret_happy", ret_id, via_psp=False, amount="299.00")
    exchange = exchange_action("ret_happy", ret_id)
    h.ledger.plan([restock, refund, exchange])
    report = await h.executor(budget=gate).run()

    assert report.outcomes == {restock.key: "done", refund.key: "done", exchange.key: "done"}
    assert (report.done, report.failed, report.retried, report.read_backs) == (3, 0, 0, 0)
    assert report.mutations_sent == 3 and report.exceptions == []
    assert report.done_returns == ["ret_happy"]
    # One mutation slot for the GraphQL write (the restock); the refund and the exchange order
    # go to the Order API, a plain request each (not one of the metered mutations); the
    # exchange reads its origin order and address first.
    assert sorted(gate.acquired) == ["mutation"] + ["request"] * 4

    effects = h.effects()
    assert [(r["id"], r["external_id"]) for r in effects["returns"]] == [(ret_id, "ret_happy")]
    assert [c["description"] for c in effects["stock_changes"]] == [
        "returnbridge restock ret_happy"
    ]
    ours = [r for r in effects["refunds"] if r["return_id"] == ret_id]
    assert [(r["amount"], r["via_psp"], r["status"]) for r in ours] == [
        ("299.00", False, "SUCCESS")
    ]
    number = exchange_order_number("ret_happy", 1)
    assert [
        (o["order_number"], o["origin_return_id"], o["total"]) for o in effects["orders_created"]
    ] == [(number, ret_id, "0.00")]

    records = {r.key: r for r in h.ledger.actions()}
    assert records[exchange.key].centra_ref == str(number)
    assert records[refund.key].centra_ref == str(ret_id)
    assert records[restock.key].centra_ref is not None
    order = (await h.centra.orders_by_number([number]))[number]
    assert order.is_internal and order.currency == "SEK" and order.grand_total.value == 0
    # Summaries say what was sent, without secrets or the customer's e-mail.
    texts = [
        a.request_summary + (a.response or "") for key in records for a in h.ledger.attempts(key)
    ]
    assert all("anna@example.com" not in t and h.sim.order_api_secret not in t for t in texts)
    assert any("manualRefund 299.00 SEK" in t for t in texts)


async def test_psp_refund_completes_the_return_once(h: Harness) -> None:
    ret_id = await created_return(h, "ret_psp")
    refund = refund_action("ret_psp", ret_id, via_psp=True, amount="299.00")
    h.ledger.plan([refund])
    report = await h.run()
    assert report.outcomes == {refund.key: "done"} and report.exceptions == []
    ours = [r for r in h.effects()["refunds"] if r["return_id"] == ret_id]
    assert [(r["via_psp"], r["status"]) for r in ours] == [(True, "SUCCESS")]
    (row,) = await h.centra.list_returns_rest(return_id=ret_id)
    assert row.completed


async def test_a_psp_refund_of_another_amount_is_done_and_flagged(h: Harness) -> None:
    ret_id = await created_return(h, "ret_amount")
    refund = refund_action("ret_amount", ret_id, via_psp=True, amount="250.00")
    h.ledger.plan([refund])
    report = await h.run()
    assert report.outcomes == {refund.key: "done"}
    assert [e.code for e in report.exceptions] == ["refund_amount_mismatch"]
    assert open_codes(h) == {"refund_amount_mismatch": "finance"}


async def test_priority_runs_the_listed_kinds_first(h: Harness) -> None:
    ret_id = await created_return(h, "ret_prio")
    restock = await restock_action(h.centra, "ret_prio")
    refund = refund_action("ret_prio", ret_id, via_psp=False, amount="10.00")
    h.ledger.plan([restock, refund])  # restock is older
    config = replace(FAST, concurrency=1, priority=("refund",))
    await h.run(config)
    first = {k: h.ledger.attempts(k)[0].started_at for k in (restock.key, refund.key)}
    assert first[refund.key] <= first[restock.key]
    assert [c["description"] for c in h.effects()["stock_changes"]] == [
        "returnbridge restock ret_prio"
    ]


# --------------------------------------------------------------------------- unknown outcomes


# Seeds whose draw for the write stalls the answer (the client times out) or drops the
# connection half-way; the exchange's write is the third request (two reads come first).
_AFTER_COMMIT_SEEDS = {
    ("stall", False): 1,
    ("stall", True): 1,
    ("drop", False): 3,
    ("drop", True): 6,
}


@pytest.mark.parametrize("mode", ["stall", "drop"])
@pytest.mark.parametrize("kind", ["create_return", "restock", "refund", "exchange_order"])
async def test_timeout_after_commit_is_read_back_to_done_with_one_effect(
    h: Harness, kind: str, mode: str
) -> None:
    seed = _AFTER_COMMIT_SEEDS[(mode, kind == "exchange_order")]
    rid = f"ret_doubt_{kind}"
    if kind == "create_return":
        action = await create_return_action(h.centra, rid)
    elif kind == "restock":
        action = await restock_action(h.centra, rid)
    elif kind == "refund":
        action = refund_action(rid, await created_return(h, rid), via_psp=True, amount="299.00")
    else:
        action = exchange_action(rid, await created_return(h, rid))
    before = h.effects()
    h.ledger.plan([action])
    h.faults(seed=seed, timeout_after_commit_rate=1.0)
    report = await h.run()

    assert report.outcomes == {action.key: "done"}
    assert report.mutations_sent == 1 and report.read_backs == 1 and report.exceptions == []
    assert outcomes(h, action.key) == ["in_doubt", "done"]
    uncertain = h.ledger.attempts(action.key)[0].error or ""
    assert ("ReadTimeout" if mode == "stall" else "RemoteProtocolError") in uncertain
    assert h.sim.client.get("/_sim/counters").json()["timeouts_after_commit"] == 1
    after = h.effects()
    grown = {name: len(after[name]) - len(before[name]) for name in after}
    expected = {"create_return": "returns", "restock": "stock_changes", "refund": "refunds",
                "exchange_order": "orders_created"}[kind]  # fmt: skip
    assert grown == {name: int(name == expected) for name in after}


async def test_a_5xx_on_a_write_is_read_back_as_absent_and_sent_again_once(h: Harness) -> None:
    action = await create_return_action(h.centra, "ret_5xx")
    h.ledger.plan([action])
    h.faults(seed=3, error_rate=0.3)  # seed 3: the write gets a 500, reads ride out theirs
    report = await h.run()
    assert report.outcomes == {action.key: "done"}
    assert report.retried >= 1 and report.mutations_sent >= 2
    assert "in_doubt" in outcomes(h, action.key)
    assert [r["external_id"] for r in h.effects()["returns"]] == ["ret_5xx"]


async def test_a_write_that_never_left_is_retried_after_a_backoff(h: Harness) -> None:
    action = await create_return_action(h.centra, "ret_refused")
    h.ledger.plan([action])
    async with h.client(http_transport=FlakyTransport(refuse=2)) as flaky:
        report = await Executor(flaky, h.ledger, FAST, clock=h.clock, rng=random.Random(1)).run()
    assert report.outcomes == {action.key: "done"}
    assert (report.retried, report.mutations_sent, report.read_backs) == (2, 1, 0)
    assert outcomes(h, action.key) == ["pending", "pending", "done"]
    assert len(h.clock.slept) == 2 and all(0.25 <= s <= 1.0 for s in h.clock.slept[:1])
    assert [r["external_id"] for r in h.effects()["returns"]] == ["ret_refused"]


async def test_transient_failures_past_max_attempts_fail_with_the_kinds_exception(
    h: Harness,
) -> None:
    action = await restock_action(h.centra, "ret_never")
    h.ledger.plan([action])
    async with h.client(http_transport=FlakyTransport(refuse=100)) as flaky:
        config = replace(FAST, max_attempts=3)
        report = await Executor(flaky, h.ledger, config, clock=h.clock).run()
    assert report.outcomes == {action.key: "failed"}
    assert outcomes(h, action.key) == ["pending", "pending", "failed"]
    assert [(e.code, e.owner.value) for e in report.exceptions] == [("restock_failed", "ops")]
    assert "gave up after 3 attempts" in report.exceptions[0].detail
    assert h.effects()["stock_changes"] == []


async def test_429_waits_for_retry_after_then_sends(h: Harness) -> None:
    action = await restock_action(h.centra, "ret_429")
    h.ledger.plan([action])
    h.faults(seed=1, rate_limit_rate=1.0)
    first = await h.run(until_idle=False)
    assert first.outcomes == {action.key: "pending"} and first.retried == 1
    record = h.ledger.action(action.key)
    assert record is not None and record.not_before is not None
    waited = (record.not_before - h.clock.now()).total_seconds()
    assert 0 < waited <= 2.0  # the simulator's Retry-After: about a second
    assert "rate limited" in (record.last_error or "")
    h.faults(rate_limit_rate=0.0)
    assert (await h.run()).outcomes == {}  # a fresh run without a deadline does not wait
    second = await h.run(deadline_seconds=60)  # within the deadline it does
    assert second.outcomes == {action.key: "done"}
    assert h.clock.slept and h.clock.slept[0] == pytest.approx(waited)
    assert len(h.effects()["stock_changes"]) == 1


async def test_inconclusive_read_backs_raise_action_in_doubt_and_later_runs_settle_it(
    h: Harness,
) -> None:
    action = await create_return_action(h.centra, "ret_dark")
    h.ledger.plan([action])
    h.faults(seed=1, error_rate=1.0)  # Centra answers 500 to everything
    report = await h.run()
    assert report.outcomes == {action.key: "in_doubt"} and report.read_backs == 3
    assert [(e.code, e.owner.value) for e in report.exceptions] == [("action_in_doubt", "ops")]
    assert outcomes(h, action.key) == ["in_doubt", "in_doubt", "in_doubt", "in_doubt"]
    assert report.mutations_sent == 1  # never resent while in doubt

    h.faults(error_rate=0.0)
    h.clock.advance(60)
    later = await h.run()
    assert later.outcomes == {action.key: "done"}  # read back absent (the 500 came first), sent
    assert [r["external_id"] for r in h.effects()["returns"]] == ["ret_dark"]
    (exc,) = h.ledger.exceptions(code="action_in_doubt")
    assert exc.status == "resolved" and exc.action_key == action.key


async def test_absent_right_after_the_uncertain_call_is_believed_only_after_settling(
    h: Harness,
) -> None:
    action = await create_return_action(h.centra, "ret_settle")
    h.ledger.plan([action])
    h.faults(seed=3, error_rate=0.3)  # the write gets a 500 before Centra executes it
    config = replace(FAST, in_doubt_settle_seconds=20)
    first = await h.run(config, until_idle=False)
    assert first.outcomes == {action.key: "in_doubt"} and first.mutations_sent == 1
    record = h.ledger.action(action.key)
    assert record is not None and (record.last_error or "").startswith("read back too soon")
    assert await h.run(config, until_idle=True, deadline_seconds=5) == ExecutionReport(
        deadline_reached=False
    )  # the settle time ends after the deadline: nothing to do yet, no waiting
    h.faults(error_rate=0.0)
    done = await h.run(config, deadline_seconds=60)
    assert done.outcomes == {action.key: "done"}
    # it waited out the settle time (a read retried under load may sleep briefly after it)
    assert any(s == pytest.approx(20, abs=1) for s in h.clock.slept)
    assert [r["external_id"] for r in h.effects()["returns"]] == ["ret_settle"]


# --------------------------------------------------------------------------- refusals


async def test_a_rejected_return_fails_with_an_ops_exception_and_no_effect(h: Harness) -> None:
    action = await create_return_action(h.centra, "ret_toomany", quantity=5)
    h.ledger.plan([action])
    report = await h.run()
    assert report.outcomes == {action.key: "failed"}
    assert [(e.code, e.owner.value) for e in report.exceptions] == [("return_create_failed", "ops")]
    assert "Centra refused" in report.exceptions[0].detail
    assert h.effects()["returns"] == []
    (exc,) = h.ledger.exceptions()
    assert exc.action_key == action.key and exc.reveni_return_id == "ret_toomany"


async def test_an_exchange_out_of_stock_is_a_cx_exception(h: Harness) -> None:
    action = exchange_action("ret_nostock", origin_return_id=1, sku="JEANS-32")
    h.ledger.plan([action])
    report = await h.run()
    assert report.outcomes == {action.key: "failed"}
    assert [(e.code, e.owner.value) for e in report.exceptions] == [("exchange_out_of_stock", "cx")]
    assert h.effects()["orders_created"] == []


async def test_duplicate_exchange_order_number_is_read_back_as_done(h: Harness) -> None:
    action = exchange_action("ret_dup", origin_return_id=1)
    number = exchange_order_number("ret_dup", 1)
    # The order was created before (a worker that crashed before recording it).
    await h.centra.create_order(
        OrderCreateInput(
            order_number=number,
            products=[OrderProduct("TEE-BLK-S", 1, Decimal(0))],
            created_from_origin=CreatedFromOrigin("return", 1),
            extra={"address": {"email": "anna@example.com", "country": "SE"}},
        )
    )
    h.ledger.plan([action])
    report = await h.run()
    assert report.outcomes == {action.key: "done"} and report.read_backs == 1
    assert h.ledger.action(action.key).centra_ref == str(number)  # type: ignore[union-attr]
    assert outcomes(h, action.key) == ["in_flight", "done"]
    assert [o["order_number"] for o in h.effects()["orders_created"]] == [number]


async def _order_marked(h: Harness, number: int, marker: str) -> None:
    await h.centra.create_order(
        OrderCreateInput(
            order_number=number,
            products=[OrderProduct("TEE-BLK-S", 1, Decimal(0))],
            created_from_origin=CreatedFromOrigin("return", 1),
            extra={
                "address": {"email": "anna@example.com", "country": "SE"},
                "internalComment": marker,
            },
        )
    )


async def test_an_exchange_number_held_by_another_exchange_moves_to_the_next_candidate(
    h: Harness,
) -> None:
    """Two exchanges whose numbers collide: the second is created under its next candidate,
    never adopted as the other's order (the customer would get nothing)."""
    action = exchange_action("ret_coll", origin_return_id=1, marked=True)
    first, second = exchange_order_numbers("ret_coll", 1)[:2]
    await _order_marked(h, first, exchange_marker("ret_other", 0))
    h.ledger.plan([action])
    report = await h.run()
    assert report.outcomes == {action.key: "done"}
    assert h.ledger.action(action.key).centra_ref == str(second)  # type: ignore[union-attr]
    created = {o["order_number"] for o in h.effects()["orders_created"]}
    assert created == {first, second}
    # a read-back (after a crash) finds it again under the second number, marked as ours
    proof = await read_back(h.centra, action)
    assert isinstance(proof, Found) and proof.ref == str(second)


async def test_a_marked_exchange_already_created_is_read_back_as_done(h: Harness) -> None:
    action = exchange_action("ret_mine", origin_return_id=1, marked=True)
    number = exchange_order_number("ret_mine", 1)
    await _order_marked(h, number, exchange_marker("ret_mine", 1))
    h.ledger.plan([action])
    report = await h.run()
    assert report.outcomes == {action.key: "done"} and report.read_backs == 1
    assert h.ledger.action(action.key).centra_ref == str(number)  # type: ignore[union-attr]
    assert len(h.effects()["orders_created"]) == 1


async def test_a_read_back_never_takes_another_exchanges_order_for_ours(h: Harness) -> None:
    action = exchange_action("ret_rb", origin_return_id=1, marked=True)
    await _order_marked(h, exchange_order_number("ret_rb", 1), exchange_marker("ret_x", 3))
    proof = await read_back(h.centra, action)
    assert isinstance(proof, Absent)


async def test_a_refused_psp_refund_is_refund_failed_at_gateway(h: Harness) -> None:
    ret_id = await created_return(h, "ret_gateway", number=1004)
    refund = refund_action("ret_gateway", ret_id, via_psp=True, amount="29.00", number=1004)
    h.ledger.plan([refund])
    report = await h.run()
    assert report.outcomes == {refund.key: "failed"}
    assert [(e.code, e.owner.value) for e in report.exceptions] == [
        ("refund_failed_at_gateway", "finance")
    ]
    assert report.exceptions[0].amount == Decimal("29.00")
    ours = [r for r in h.effects()["refunds"] if r["return_id"] == ret_id]
    assert [r["status"] for r in ours] == ["FAILED"]


async def test_a_return_already_refunded_is_read_back_as_done(h: Harness) -> None:
    ret_id = await created_return(h, "ret_again")
    await h.centra.update_return(ret_id, completed=True, refund_payment=True)
    refund = refund_action("ret_again", ret_id, via_psp=True, amount="299.00")
    h.ledger.plan([refund])
    report = await h.run()
    assert report.outcomes == {refund.key: "done"} and report.read_backs == 1
    assert len([r for r in h.effects()["refunds"] if r["return_id"] == ret_id]) == 1


async def test_refused_credentials_stop_the_run_and_leave_the_action_pending(h: Harness) -> None:
    first = await restock_action(h.centra, "ret_auth")
    second = await restock_action(h.centra, "ret_auth2")
    h.ledger.plan([first, second])
    async with h.client(token="wrong") as bad:
        one_at_a_time = dataclasses.replace(FAST, concurrency=1)
        report = await Executor(bad, h.ledger, one_at_a_time, clock=h.clock).run()
    # a fault of the run's configuration, not of the action: no exception for its owner
    assert report.exceptions == []
    assert report.credentials_refused is not None
    assert "RETURNBRIDGE_CENTRA__TOKEN" in report.credentials_refused
    states = {k: h.ledger.action(k) for k in (first.key, second.key)}
    assert {r.state for r in states.values() if r is not None} == {"pending"}
    assert len(report.outcomes) == 1  # the run stopped: the second was never tried
    async with h.client() as good:
        fixed = await Executor(good, h.ledger, FAST, clock=h.clock).run()
    assert fixed.outcomes == {first.key: "done", second.key: "done"}


async def test_a_manual_refund_where_the_api_has_none_is_blocked_unsent(h: Harness) -> None:
    ret_id = await created_return(h, "ret_nomanual")
    refund = refund_action("ret_nomanual", ret_id, via_psp=False, amount="10.00")
    h.ledger.plan([refund])
    settings = CentraSettings(inferred=CentraInferred(order_api_manual_refund=False))
    async with h.client(settings=settings) as strict:
        report = await Executor(strict, h.ledger, FAST, clock=h.clock).run()
    assert report.outcomes == {refund.key: "blocked"} and report.mutations_sent == 0
    assert report.exceptions[0].code == "refund_post_failed"
    assert "order_api_manual_refund" in report.exceptions[0].detail


# --------------------------------------------------------------------------- crashes, concurrency


async def test_a_crash_after_sending_is_read_back_after_the_lease(h: Harness) -> None:
    action = await restock_action(h.centra, "ret_crash")
    h.ledger.plan([action])
    # A worker claims it, sends it, and dies before recording anything.
    assert h.ledger.claim(action.key, expected="pending", lease_seconds=30) is not None
    payload = action.payload
    assert isinstance(payload, Restock)
    await h.centra.change_stock(
        description=payload.description,
        deltas=[StockDelta(ln.variant_id, ln.size_id, ln.quantity) for ln in payload.lines],
        into_warehouse_id=payload.warehouse_id,
    )
    early = await h.run(until_idle=False)
    assert early.outcomes == {} and state_of(h, action.key) == "in_flight"  # lease still held
    h.clock.advance(31)
    report = await h.run()
    assert report.expired_leases == [action.key]
    assert report.outcomes == {action.key: "done"} and report.mutations_sent == 0
    assert len(h.effects()["stock_changes"]) == 1


async def test_a_crash_before_sending_is_read_back_as_absent_and_sent_once(h: Harness) -> None:
    action = await create_return_action(h.centra, "ret_crash_early")
    h.ledger.plan([action])
    assert h.ledger.claim(action.key, expected="pending", lease_seconds=30) is not None
    h.clock.advance(31)
    report = await h.run()
    assert report.expired_leases == [action.key]
    assert report.outcomes == {action.key: "done"}
    assert (report.read_backs, report.mutations_sent) == (1, 1)
    assert outcomes(h, action.key) == ["pending", "done"]
    assert [r["external_id"] for r in h.effects()["returns"]] == ["ret_crash_early"]


async def test_two_executors_on_one_ledger_never_send_an_action_twice(h: Harness) -> None:
    rids = [f"ret_race_{i}" for i in range(12)]
    actions = [await restock_action(h.centra, rid, sku="TEE-BLK-S") for rid in rids]
    actions += [await create_return_action(h.centra, "ret_race_return")]
    h.ledger.plan(actions)
    h.faults(seed=5, timeout_after_commit_rate=0.2, error_rate=0.1)
    other_clock = FakeClock()
    other_ledger = Ledger(h.url, clock=other_clock.now)
    try:
        async with h.client() as mine, h.client(clock=other_clock) as theirs:
            config = replace(FAST, concurrency=3)
            first = Executor(mine, h.ledger, config, clock=h.clock, rng=random.Random(1))
            second = Executor(theirs, other_ledger, config, clock=other_clock,
                              rng=random.Random(2))  # fmt: skip
            reports = await asyncio.gather(first.run(), second.run())
    finally:
        other_ledger.close()
    assert h.ledger.counts()["done"] == len(actions)
    assert reports[0].outcomes.keys() | reports[1].outcomes.keys() == {a.key for a in actions}
    effects = h.effects()
    descriptions = sorted(c["description"] for c in effects["stock_changes"])
    assert descriptions == sorted(f"returnbridge restock {rid}" for rid in rids)
    assert [r["external_id"] for r in effects["returns"]] == ["ret_race_return"]
    # Both did work (the claims are shared), and nobody sent a key the other had claimed.
    assert reports[0].outcomes and reports[1].outcomes


async def test_a_keyed_run_touches_only_its_keys_and_a_deadline_stops_waiting(
    h: Harness,
) -> None:
    a = await restock_action(h.centra, "ret_key_a")
    b = await restock_action(h.centra, "ret_key_b")
    h.ledger.plan([a, b])
    report = await h.run(keys=[b.key])
    assert report.outcomes == {b.key: "done"} and state_of(h, a.key) == "pending"
    # A backoff beyond the deadline is not waited for.
    claimed = h.ledger.claim(a.key, expected="pending")
    assert claimed is not None
    h.ledger.transition(a.key, "pending", expected="in_flight",
                        not_before=h.clock.now() + timedelta(seconds=600))  # fmt: skip
    quick = await h.run(deadline_seconds=30)
    assert quick.outcomes == {} and h.clock.slept == []


class BrokenGate:
    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        raise ConnectionError("prefect server unreachable")


async def test_an_unavailable_budget_gate_stops_the_run_before_anything_is_claimed(
    h: Harness,
) -> None:
    action = await restock_action(h.centra, "ret_nogate")
    h.ledger.plan([action])
    report = await h.executor(budget=BrokenGate()).run()
    assert report.outcomes == {} and report.mutations_sent == 0
    assert "prefect server unreachable" in (report.budget_unavailable or "")
    record = h.ledger.action(action.key)
    assert record is not None and (record.state, record.attempts) == ("pending", 0)


async def test_a_plain_now_function_is_accepted_as_the_clock(h: Harness) -> None:
    action = await restock_action(h.centra, "ret_clockfn")
    h.ledger.plan([action])
    report = await Executor(h.centra, h.ledger, FAST, clock=h.clock.now).run()
    assert report.outcomes == {action.key: "done"}


class StuckGate:
    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        await asyncio.Event().wait()


async def test_at_the_deadline_work_still_waiting_for_the_budget_is_dropped_unclaimed(
    h: Harness,
) -> None:
    action = await restock_action(h.centra, "ret_stuck")
    h.ledger.plan([action])
    executor = Executor(h.centra, h.ledger, FAST, budget=StuckGate())  # real time: 0.2 s
    report = await asyncio.wait_for(executor.run(deadline_seconds=0.2), timeout=5)
    assert report.deadline_reached and report.outcomes == {}
    record = h.ledger.action(action.key)
    assert record is not None and (record.state, record.attempts) == ("pending", 0)
    assert h.effects()["stock_changes"] == []


# --------------------------------------------------------------------------- leases


async def test_a_slow_write_keeps_its_lease_so_no_other_worker_takes_it_over(
    sim: CentraSimHandle, tmp_path: Path
) -> None:
    """Real time: a write slower than the lease (Centra answering late, or the client waiting
    for its rate window) renews the claim while it works, so a second worker finds no expired
    lease to read back and resend. Exactly one effect."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'lease.db'}")
    wall = replace(FAST, lease_seconds=0.3)
    options: dict[str, Any] = {
        "base_url": sim.url,
        "token": sim.token,
        "order_api_secret": sim.order_api_secret,
        "plan": "unlimited",
        "timeout_seconds": 5,
        "governor": Governor("unlimited", 1.0),
    }
    try:
        async with CentraClient(**options) as centra:
            action = await restock_action(centra, "ret_lease")
            ledger.plan([action])
            response = sim.client.post("/_sim/faults", json={"latency_ms": 1200})
            assert response.status_code == 200, response.text
            worker = asyncio.create_task(Executor(centra, ledger, wall).run())
            expired: list[str] = []
            for _ in range(8):  # a second worker looking for crashed claims meanwhile
                await asyncio.sleep(0.15)
                expired += ledger.expire_leases()
            report = await worker
        assert expired == []
        assert report.outcomes == {action.key: "done"}
        descriptions = [c["description"] for c in sim.client.get("/_sim/effects").json()[
            "stock_changes"]]  # fmt: skip
        assert descriptions.count("returnbridge restock ret_lease") == 1
    finally:
        ledger.close()


def test_a_lost_claim_cannot_be_renewed(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'renew.db'}")
    try:
        action = exchange_action("ret_renew", 1)
        ledger.plan([action])
        claim = ledger.claim(action.key, expected="pending", lease_seconds=60)
        assert claim is not None
        assert ledger.renew_lease(action.key, attempts=claim.attempts, lease_seconds=60)
        # another worker took it over after the lease ran out: the old claim is gone
        ledger.transition(action.key, "in_doubt", expected="in_flight")
        again = ledger.claim(action.key, expected="in_doubt", lease_seconds=60)
        assert again is not None and again.attempts == claim.attempts + 1
        assert not ledger.renew_lease(action.key, attempts=claim.attempts, lease_seconds=60)
        assert ledger.renew_lease(action.key, attempts=again.attempts, lease_seconds=60)
    finally:
        ledger.close()
