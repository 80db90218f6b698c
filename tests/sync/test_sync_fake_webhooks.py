"""Fake Reveni webhooks (signing is off by default, so anyone who reaches the receiver can post
one) cost one read each, are settled at once as "unknown_resource", and never hold real work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sync_support import Integration, integration

from returnbridge.connectors.reveni import ReveniClient
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync.run import UNKNOWN_RESOURCE


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Integration]:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        yield it


def _envelope(n: int, rid: str) -> str:
    return json.dumps(
        {
            "id": f"evt_{n}",
            "event": "return.updated",
            "created": 1,
            "data": {"resource_id": rid, "status": "accepted"},
        }
    )


def test_fake_webhooks_cost_one_read_each_no_wait_and_are_settled_as_unknown(
    showcase: Integration, monkeypatch: pytest.MonkeyPatch
) -> None:
    showcase.walk()
    showcase.run()
    reads: list[str] = []
    real_get = ReveniClient.get_return

    async def counted(self: ReveniClient, rid: str) -> Any:
        reads.append(rid)
        return await real_get(self, rid)

    monkeypatch.setattr(ReveniClient, "get_return", counted)
    fakes = [f"ret_fake_{n}" for n in range(60)]
    for n, rid in enumerate(fakes):
        assert showcase.ledger.inbox_add("reveni", f"fake_{n}", _envelope(n, rid), resource_id=rid)
    # a real one among them, and the same fake named twice
    assert showcase.ledger.inbox_add(
        "reveni", "real", _envelope(999, "ret_std_1001"), resource_id="ret_std_1001"
    )
    assert showcase.ledger.inbox_add(
        "reveni", "fake_again", _envelope(1000, fakes[0]), resource_id=fakes[0]
    )
    report = showcase.run()
    # one read each (a retried 404 would read it 4 times, waiting 0.5 + 1 + 2 s between)
    assert sorted(r for r in reads if r.startswith("ret_fake_")) == sorted(fakes)
    assert report.inbox_unknown == 61 and report.inbox_events == 62
    assert report.from_inbox in (0, 1)  # the real one, unless Reveni's changed list had it
    assert showcase.ledger.inbox_pending() == []
    since = datetime.now(UTC) - timedelta(days=3650)
    assert showcase.ledger.inbox_settled(outcome=UNKNOWN_RESOURCE, since=since) == 61
    assert report.as_dict()["inbox_unknown"] == 61


def test_junk_is_settled_even_when_the_run_fails_later(
    showcase: Integration, monkeypatch: pytest.MonkeyPatch
) -> None:
    showcase.walk()
    showcase.run()
    for n in range(5):
        rid = f"ret_fake_{n}"
        showcase.ledger.inbox_add("reveni", f"fake_{n}", _envelope(n, rid), resource_id=rid)
    from returnbridge.sync.run import ReturnSync

    def die(*_: object) -> None:
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(ReturnSync, "commit", die)
    with pytest.raises(RuntimeError, match="killed"):
        showcase.run()
    assert showcase.ledger.inbox_pending() == []  # settled as found, not held for the commit
