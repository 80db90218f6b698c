"""The Reveni client against the Reveni simulator over real HTTP: reads and filters, decisions,
webhooks end to end, merchant and invoices, error kinds, seeded faults, other inferred wire
settings, and `changed_since` while the simulator walks returns between its page requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from reveni_client_support import RecordingSleep
from reveni_sim_support import (
    ReveniSimHandle,
    decode,
    running_receiver,
    running_reveni_sim,
    wait_for,
)

from returnbridge.connectors.reveni import (
    ItemDecision,
    Return,
    ReveniAuthError,
    ReveniClient,
    ReveniInferred,
    ReveniNotFound,
    ReveniRejected,
    normalise_return,
    parse_envelope,
    wire_context,
)
from returnbridge.connectors.reveni.wire import EVENT_TYPES

BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim_server() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def sim(sim_server: ReveniSimHandle) -> ReveniSimHandle:
    sim_server.reset()
    return sim_server


def client(sim: ReveniSimHandle, **kwargs: Any) -> ReveniClient:
    kwargs.setdefault("api_key", sim.api_key)
    kwargs.setdefault("store_id", sim.store_id)
    kwargs.setdefault("inferred", sim.inferred)
    kwargs.setdefault("sleep", RecordingSleep())
    return ReveniClient(sim.url, **kwargs)


class Interleaved(httpx.AsyncBaseTransport):
    """Real HTTP, but `before[n]` runs just before the n-th `GET returns` list request is sent:
    the simulator changes while the client pages."""

    def __init__(self, before: dict[int, Callable[[], None]]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.before = before
        self.list_requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/returns"):
            action = self.before.get(self.list_requests)
            self.list_requests += 1
            if action is not None:
                action()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sim_state(sim: ReveniSimHandle) -> dict[str, datetime]:
    """Every return's updated_at, as the simulator holds it (in list order)."""
    response = sim.api.get("returns", params={"page_size": 100})
    assert response.status_code == 200, response.text
    rows = decode(response)[sim.inferred.envelope_items_key]
    assert len(rows) < 100
    return {
        row["id"]: Return.model_validate(
            normalise_return(row, sim.inferred), context=wire_context(sim.inferred)
        ).updated_at
        for row in rows
    }


# --------------------------------------------------------------------------- reads


async def test_get_list_and_filters(sim: ReveniSimHandle) -> None:
    async with client(sim) as reveni:
        ret = await reveni.get_return("ret_std")
        assert ret.order.number == 1001 and ret.status == "in_progress"
        everything = [r.id async for r in reveni.iter_returns(page_size=2)]
        page = await reveni.list_returns(page_size=3)
        exchanges = await reveni.list_returns(transaction_type="exchange")
        pending = await reveni.list_returns(status=["pending"])
        by_mail = await reveni.list_returns(search="CLARA@example")
        early = await reveni.list_returns(created_to=date(2026, 10, 5))
        with pytest.raises(ReveniNotFound):
            await reveni.get_return("no_such_return")
        assert reveni.requests == 1 + 4 + 5 + 1
    assert everything == list(sim_state(sim))  # sorted by (updated_at, id)
    assert len(everything) == 7
    assert page.count == 7 and page.next is not None and len(page.items) == 3
    assert {r.id for r in exchanges.items} == {"ret_exch", "ret_mixed"}
    assert [r.status for r in pending.items] == ["pending"]
    assert {r.id for r in by_mail.items} == {"ret_inst", "ret_exch"}
    assert {r.id for r in early.items} == {"ret_partial", "ret_std"}


async def test_partial_validate_decides_items(sim: ReveniSimHandle) -> None:
    sim.sim_post("returns/ret_mixed/status", {"status": "received"})
    async with client(sim) as reveni:
        ret = await reveni.get_return("ret_mixed")
        first, second = (item.item_id for item in ret.return_items)
        half = await reveni.partial_validate("ret_mixed", [ItemDecision(first, "accepted")])
        assert half.status == "for_review"
        done = await reveni.partial_validate(
            "ret_mixed",
            [ItemDecision(second, "rejected", reject_reason="defect", reject_reason_text="torn")],
        )
        with pytest.raises(ReveniRejected) as refused:
            await reveni.partial_validate("ret_mixed", [ItemDecision(first, "accepted")])
        with pytest.raises(ReveniNotFound):
            await reveni.partial_validate("nope", [ItemDecision(first, "accepted")])
    assert done.status == "partially_accepted"
    assert [i.status for i in done.return_items] == ["accepted", "rejected"]
    assert done.return_items[1].reject_reason == "defect"
    assert refused.value.status == 400 and refused.value.detail


async def test_merchant_and_invoices(sim: ReveniSimHandle) -> None:
    async with client(sim) as reveni:
        merchant = await reveni.merchant()
        invoices = await reveni.invoices("2026-10")
        one = await reveni.invoice(invoices[0].id)
    assert merchant.store_id == "store_1" and merchant.store_name == "Test Store"
    assert merchant.connector_type == sim.inferred.connector_type
    assert len(invoices) == 1 and one == invoices[0]
    assert one.period_start == date(2026, 10, 1) and one.lines


async def test_wrong_key_and_wrong_store_are_auth_errors(sim: ReveniSimHandle) -> None:
    async with client(sim, api_key="wrong") as reveni:
        with pytest.raises(ReveniAuthError) as bad_key:
            await reveni.merchant()
    async with client(sim, store_id="store_2") as reveni:
        with pytest.raises(ReveniAuthError) as bad_store:
            await reveni.merchant()
    assert bad_key.value.status == 401 and bad_store.value.status == 403


async def test_reads_ride_out_seeded_5xx_and_429_faults(sim: ReveniSimHandle) -> None:
    sim.sim_post("faults", {"seed": 7, "error_rate": 0.3, "rate_limit_rate": 0.2})
    sleep = RecordingSleep()
    try:
        async with client(sim, read_retries=10, sleep=sleep) as reveni:
            result = await reveni.changed_since(BEGINNING, page_size=2)
            assert reveni.retries > 0 and reveni.requests == result.requests
    finally:
        sim.sim_post("faults", {"error_rate": 0.0, "rate_limit_rate": 0.0})
    assert [r.id for r in result.returns] == list(sim_state(sim))
    assert 1.0 in sleep.waits  # the simulator's Retry-After was honoured


# --------------------------------------------------------------------------- webhooks


async def test_webhooks_subscribe_once_notify_and_fetch_back(sim: ReveniSimHandle) -> None:
    sim.sim_post("faults", {"webhook_delay_scale": 0.0})
    with running_receiver() as (receiver, hook):
        async with client(sim) as reveni:
            sub = await reveni.ensure_webhook(hook, list(EVENT_TYPES))
            again = await reveni.ensure_webhook(hook, list(EVENT_TYPES))
            assert again == sub and len(await reveni.list_webhooks()) == 1
            sim.sim_post("returns/ret_std/status", {"status": "shipped"})
            wait_for(lambda: receiver.bodies())
            event = parse_envelope(receiver.bodies()[0])
            fetched = await reveni.fetch_for_event(event)
            await reveni.delete_webhook(sub.id)
            assert await reveni.list_webhooks() == []
            with pytest.raises(ReveniNotFound):
                await reveni.delete_webhook(sub.id)
    assert event.event == "return.updated" and event.data.resource_id == "ret_std"
    assert fetched is not None and fetched.status == "shipped"


# --------------------------------------------------------------------------- changed_since


async def test_changed_since_while_returns_are_walked(sim: ReveniSimHandle) -> None:
    """Pages of two; before the 2nd and 3rd list requests the simulator moves returns that
    were already read (to the end of the list) and one that was not."""

    def move(*changes: tuple[str, str]) -> Callable[[], None]:
        def act() -> None:
            for return_id, status in changes:
                sim.sim_post(f"returns/{return_id}/status", {"status": status})

        return act

    transport = Interleaved(
        {
            1: move(("ret_partial", "received"), ("ret_inst", "shipped")),
            2: move(("ret_std", "shipped"), ("ret_exch", "shipped")),
        }
    )
    async with client(sim, http_transport=transport) as reveni:
        result = await reveni.changed_since(BEGINNING, page_size=2)
    final = sim_state(sim)
    assert {r.id: r.updated_at for r in result.returns} == final
    assert len(result.returns) == len({r.id for r in result.returns}) == 7
    assert result.high_water == max(final.values())
    moved = {r.id: r.status for r in result.returns}
    assert moved["ret_partial"] == "received" and moved["ret_std"] == "shipped"

    # the next sync from the cursor sees exactly what changed since, the cursor's instant again
    sim.sim_post("returns/ret_mixed/status", {"status": "received"})
    async with client(sim) as reveni:
        assert result.high_water is not None
        later = await reveni.changed_since(result.high_water)
    assert [r.id for r in later.returns] == ["ret_exch", "ret_mixed"]


async def test_changed_since_across_a_whole_walk_in_both_precisions() -> None:
    """The simulator walks the scenario's histories one step before each of the client's list
    requests. Every return comes back once; a version made after the client's last read (here,
    just before its count request) is at or after the cursor, so the next call returns it."""
    for inferred in (
        ReveniInferred(),
        ReveniInferred(
            date_filter_precision="datetime",
            status_case="upper",
            partially_accepted_status="partly_accepted",
            money_format="minor_units",
        ),
    ):
        with running_reveni_sim(inferred=inferred) as handle:
            walk: dict[int, Callable[[], None]] = {
                n: (lambda: handle.sim_post("walk", {"steps": 1})) for n in range(1, 12)
            }
            async with client(handle, http_transport=Interleaved(walk)) as reveni:
                result = await reveni.changed_since(BEGINNING, page_size=2)
            final = sim_state(handle)
            ids = [r.id for r in result.returns]
            assert sorted(ids) == sorted(final) and len(ids) == len(set(ids))
            assert result.high_water is not None
            seen = {r.id: r for r in result.returns}
            for return_id, updated_at in final.items():
                assert seen[return_id].updated_at == updated_at or updated_at >= result.high_water
            async with client(handle) as reveni:
                later = await reveni.changed_since(result.high_water, page_size=2)
            seen.update({r.id: r for r in later.returns})
            assert {i: r.updated_at for i, r in seen.items()} == final
            effects = handle.control.get("/_sim/effects").json()["returns"]
            assert {i: r.status for i, r in seen.items()} == {e["id"]: e["status"] for e in effects}
