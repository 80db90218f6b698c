"""The two client calls the executor added: a manual (non-PSP) refund on `PUT /returns/{id}`
and the shipping address an exchange order copies, against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.connectors.centra import CentraClient, Governor, ManualRefund, ReturnLineInput
from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.scenario import Scenario


def client_for(sim: CentraSimHandle, **kwargs: Any) -> CentraClient:
    options: dict[str, Any] = {
        "base_url": sim.url,
        "token": sim.token,
        "order_api_secret": sim.order_api_secret,
        "plan": "unlimited",
        "governor": Governor("unlimited", 1.0),
    }
    options.update(kwargs)
    return CentraClient(**options)


@pytest.fixture
async def centra(centra_sim: CentraSimHandle) -> AsyncIterator[CentraClient]:
    async with client_for(centra_sim) as client:
        yield client


async def new_return(centra: CentraClient, number: int = 1001) -> int:
    order = (await centra.orders_by_number([number]))[number]
    shipment = next(s for s in order.shipments if s.is_shipped)
    created = await centra.create_return(
        shipment_id=shipment.id, lines=[ReturnLineInput(shipment.lines[0].id, 1)]
    )
    return created.value.id


async def test_manual_refund_records_a_non_psp_entry_with_its_reference(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    return_id = await new_return(centra)
    body = await centra.update_return(
        return_id,
        completed=True,
        refund_payment=False,
        manual_refund=ManualRefund(Decimal("123.45"), "reveni-payout-1"),
    )
    assert body.return_completed is True and body["refund"]["amount"] == "123.45"
    (ret,) = await centra.returns({"id": [return_id]})
    (entry,) = ret.refund_payment_history
    assert (entry.value.value, entry.external_reference, entry.status) == (
        Decimal("123.45"),
        "reveni-payout-1",
        "SUCCESS",
    )
    refunds = [r for r in centra_sim.client.get("/_sim/effects").json()["refunds"]
               if r["return_id"] == return_id]  # fmt: skip
    assert [(r["amount"], r["via_psp"]) for r in refunds] == [("123.45", False)]


async def test_update_return_without_manual_refund_sends_no_manual_refund(
    centra: CentraClient,
) -> None:
    return_id = await new_return(centra)
    body = await centra.update_return(return_id, completed=True, refund_payment=False)
    assert body.return_completed is True and "refund" not in body


@pytest.mark.parametrize(
    ("manual", "psp", "match"),
    [
        (ManualRefund(Decimal("-1"), "ref"), False, "finite Decimal >= 0"),
        (ManualRefund(Decimal("NaN"), "ref"), False, "finite Decimal >= 0"),
        (ManualRefund(Decimal("1"), " "), False, "reference"),
        (ManualRefund(Decimal("1"), "ref"), True, "not both"),
    ],
)
async def test_bad_manual_refunds_are_refused_before_sending(
    centra: CentraClient, manual: ManualRefund, psp: bool, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await centra.update_return(1, completed=True, refund_payment=psp, manual_refund=manual)
    assert centra.rest_requests_sent == 0


async def test_manual_refund_is_refused_locally_where_the_api_has_none(
    centra_scenario: Scenario,
) -> None:
    inferred = CentraInferred(order_api_manual_refund=False)
    with running_centra_sim(centra_scenario, inferred=inferred) as sim:
        async with client_for(sim, settings=CentraSettings(inferred=inferred)) as client:
            with pytest.raises(ValueError, match="order_api_manual_refund"):
                await client.update_return(
                    1,
                    completed=True,
                    refund_payment=False,
                    manual_refund=ManualRefund(Decimal(1), "r"),
                )
            assert client.rest_requests_sent == 0


async def test_shipping_addresses_are_read_in_one_batch(centra: CentraClient) -> None:
    found = await centra.shipping_addresses([1001, 1003, 424242])
    assert sorted(found) == [1001, 1003] and centra.requests_sent == 1
    assert (found[1001].email, found[1001].country) == ("anna@example.com", "SE")
    assert found[1003].country == "DE"
