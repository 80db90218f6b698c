"""`returnbridge status`, the on-call health page, on a real SQLite ledger file and a DuckDB
warehouse: one line per figure (OK / STALE / FAILING) with local times and ages, the watchdog's
thresholds, `--json`, and the exit status a monitor reads (0 healthy, 1 stale or failing, 2 bad
input or no ledger)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ledger_support import refund
from typer.testing import CliRunner, Result

from returnbridge import cli_status
from returnbridge.cli import app
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import Ledger
from returnbridge.ledger.incidents import Incidents
from returnbridge.ledger.sync_runs import record_sync_run
from returnbridge.reconcile.tables import GAPS, empty
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.sync.run import CURSOR

ZONE = ZoneInfo("Europe/Stockholm")
NOW = datetime.now(UTC)
FIGURES = [
    "sync", "cursor", "inbox", "actions", "exceptions", "reconciliation", "digests", "incidents",
]  # fmt: skip


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


class Site:
    """A ledger file and a warehouse path, and the environment that points the command at them."""

    def __init__(self, tmp_path: Path) -> None:
        self.ledger_path = tmp_path / "ledger.db"
        self.warehouse_path = tmp_path / "warehouse.duckdb"
        self.env: dict[str, str | None] = {
            "RETURNBRIDGE_SYNC__LEDGER_URL": f"sqlite:///{self.ledger_path}",
            "RETURNBRIDGE_RECONCILE__WAREHOUSE_PATH": str(self.warehouse_path),
            "RETURNBRIDGE_RECONCILE__TIMEZONE": "Europe/Stockholm",
            "RETURNBRIDGE_SLACK__ENABLED": "true",
            "RETURNBRIDGE_SLACK__TOKEN": "xoxb-test",
        }

    def ledger(self, moment: datetime = NOW) -> Ledger:
        return Ledger(f"sqlite:///{self.ledger_path}", clock=at(moment))

    def warehouse(self, moment: datetime) -> Warehouse:
        return Warehouse(self.warehouse_path, clock=at(moment))

    def run(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(app, ["status", *args], env={**self.env, **env})


def healthy(site: Site) -> None:
    """A sync a few minutes ago, Reveni read recently, a reconciliation and its digests last
    night, two open exceptions, nothing stuck."""
    with site.ledger() as ledger:
        for minutes in (9, 5, 3):
            end = NOW - timedelta(minutes=minutes)
            record_sync_run(ledger, ok=True, started_at=end - timedelta(seconds=5), finished_at=end)
        ledger.set_cursor(CURSOR, (NOW - timedelta(minutes=40)).isoformat())
        ledger.inbox_add("reveni", "evt_1", "{}", received_at=NOW - timedelta(minutes=1))
        ledger.plan([refund("ret_1")])
        ledger.raise_exception(
            ReturnException("refund_post_failed", "ret_1", 1001, amount=Decimal("10.00")),
            now=NOW - timedelta(days=2, hours=1),
        )
        ledger.raise_exception(
            ReturnException("sku_not_in_order", "ret_2", 1002, sku="X"),
            now=NOW - timedelta(hours=3),
        )
    night = NOW - timedelta(hours=8)
    with site.warehouse(night) as warehouse:
        warehouse.record_gap_state(
            empty(GAPS), as_of=night, load_id=0, rules="test", mode="full", reason="test"
        )
        ids = warehouse.put_digests(
            night.date(),
            [
                {"owner": o, "channel": f"#returns-{o}", "text": "digest"}
                for o in ("finance", "ops")
            ],
        )
        for id in ids:
            warehouse.mark_digest_sent(id, "1700000000.000100")


def clock(moment: datetime) -> str:
    local = moment.astimezone(ZONE)
    today = NOW.astimezone(ZONE).date()
    return local.strftime("%H:%M %Z" if local.date() == today else "%Y-%m-%d %H:%M %Z")


def lines(result: Result) -> dict[str, str]:
    """Each figure's line by figure name, in order."""
    out = result.stdout.splitlines()
    assert len(out) == len(FIGURES), result.stdout
    return dict(zip(FIGURES, out, strict=True))


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's clock stands at NOW, however long the test session has run."""
    monkeypatch.setattr(cli_status, "utc_now", lambda: NOW)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


# --------------------------------------------------------------------------- healthy


def test_a_healthy_site_is_all_ok_and_exits_0(site: Site) -> None:
    healthy(site)
    result = site.run()
    assert result.exit_code == 0, (result.stdout, result.stderr)
    shown = lines(result)
    assert all(line.startswith("OK      ") for line in shown.values()), result.stdout
    assert shown["sync"] == f"OK      last sync 3 min ago, {clock(NOW - timedelta(minutes=3))}, ok"
    assert "cursor lag 40 min" in shown["cursor"]
    assert "inbox 1 webhook(s) waiting" in shown["inbox"]
    assert "actions 1 pending, 0 in_flight, 0 in_doubt, 0 failed, 0 blocked" in shown["actions"]
    assert "finance 1 (oldest 2 days), ops 1 (oldest 3 h), cx 0" in shown["exceptions"]
    assert "last reconciliation 8 h ago" in shown["reconciliation"]
    assert "last digest 8 h ago" in shown["digests"] and "(finance, ops)" in shown["digests"]
    assert shown["incidents"].endswith("none open")
    assert result.stderr == f"ledger: sqlite:///{site.ledger_path}\n"


def test_json_has_every_figure_with_utc_times_and_thresholds(site: Site) -> None:
    healthy(site)
    document = as_json(site.run("--json"))
    assert (document["state"], document["healthy"]) == ("OK", True)
    assert list(document["figures"]) == FIGURES
    sync = document["figures"]["sync"]
    assert sync["ok"] is True and sync["failed_in_a_row"] == 0
    assert datetime.fromisoformat(sync["last"]).utcoffset() == timedelta(0)
    assert document["figures"]["actions"]["pending"] == 1
    assert document["figures"]["exceptions"]["finance"]["open"] == 1
    assert document["thresholds"]["max_sync_age"] == 900
    assert document["thresholds"]["inbox_max_age"] == 900  # the watchdog's setting
    assert document["thresholds"]["sync_failures"] == 3


# --------------------------------------------------------------------------- unhealthy


def test_failing_syncs_stuck_actions_and_open_incidents_exit_1(site: Site) -> None:
    healthy(site)
    with site.ledger() as ledger:
        for minutes in (3, 2, 1):
            end = NOW - timedelta(minutes=minutes)
            record_sync_run(ledger, ok=False, started_at=end, finished_at=end, detail="Boom: 503")
        Incidents(ledger).observe(
            "credentials",
            "reveni",
            title="Reveni credentials failing",
            figure="HTTP 401 on GET returns",
            first_step="rotate the key",
            now=NOW - timedelta(minutes=20),
        )
    with site.ledger(NOW - timedelta(hours=2)) as earlier:
        earlier.plan([refund("ret_9", "rf9")])
        key = refund("ret_9", "rf9").key
        earlier.claim(key, expected="pending")
        earlier.transition(key, "in_doubt", expected="in_flight", error="timeout")
    result = site.run()
    assert result.exit_code == 1
    shown = lines(result)
    assert shown["sync"].startswith("FAILING last sync 1 min ago")
    assert "failed (3 in a row): Boom: 503" in shown["sync"]
    assert shown["actions"].startswith("FAILING ")
    assert "1 in_doubt not read back for 30 min" in shown["actions"]
    assert shown["incidents"].startswith("FAILING watchdog incidents: 1 open: Reveni credentials")
    assert as_json(site.run("--json"))["state"] == "FAILING"


def test_one_failed_run_is_not_yet_failing(site: Site) -> None:
    healthy(site)
    with site.ledger() as ledger:
        end = NOW - timedelta(minutes=1)
        record_sync_run(ledger, ok=False, started_at=end, finished_at=end, detail="Boom")
    shown = lines(site.run())
    assert shown["sync"].startswith("OK      last sync 1 min ago")
    assert "failed (1 in a row): Boom" in shown["sync"]


def test_old_things_are_stale(site: Site) -> None:
    with site.ledger() as ledger:
        end = NOW - timedelta(hours=2)
        record_sync_run(ledger, ok=True, started_at=end, finished_at=end)
        ledger.set_cursor(CURSOR, (NOW - timedelta(days=2)).isoformat())
        ledger.inbox_add("reveni", "evt_old", "{}", received_at=NOW - timedelta(minutes=40))
    last_week = NOW - timedelta(days=6)
    with site.warehouse(last_week) as warehouse:
        warehouse.record_gap_state(
            empty(GAPS), as_of=last_week, load_id=0, rules="t", mode="full", reason="t"
        )
        (id,) = warehouse.put_digests(
            last_week.date(), [{"owner": "cx", "channel": "#returns-cx", "text": "t"}]
        )
        warehouse.mark_digest_sent(id, "1.2")
    result = site.run()
    assert result.exit_code == 1
    shown = lines(result)
    assert shown["sync"].startswith("STALE   last sync 2 h ago")
    assert shown["sync"].endswith("none for over 15 min")
    assert shown["cursor"].startswith("STALE   cursor lag 2 days")
    assert shown["inbox"].startswith("STALE   inbox 1 webhook(s) waiting")
    assert shown["reconciliation"].startswith("STALE   last reconciliation 6 days ago")
    assert shown["digests"].startswith("STALE   last digest 6 days ago")
    # thresholds from the options and the watchdog's settings
    relaxed = site.run(
        "--max-sync-age", "3h",
        "--max-cursor-lag", "P3D",
        "--max-reconcile-age", "7d",
        "--max-digest-age", "604800",
        RETURNBRIDGE_WATCH__INBOX_MAX_AGE="PT1H",
    )  # fmt: skip
    assert relaxed.exit_code == 0, relaxed.stdout


def test_a_digest_slack_refused_is_failing(site: Site) -> None:
    healthy(site)
    with site.warehouse(NOW - timedelta(hours=1)) as warehouse:
        (id,) = warehouse.put_digests(
            NOW.date(), [{"owner": "cx", "channel": "#returns-cx", "text": "t"}]
        )
        warehouse.mark_digest_failed(id, "channel_not_found")
    result = site.run()
    assert result.exit_code == 1
    assert "FAILING last digest 8 h ago" in lines(result)["digests"]
    assert "1 not delivered: channel_not_found" in lines(result)["digests"]


def test_a_site_that_never_synced_or_reconciled(site: Site) -> None:
    site.ledger().close()  # an empty ledger
    result = site.run()
    assert result.exit_code == 1
    shown = lines(result)
    assert shown["sync"] == "STALE   last sync never ran (no sync run recorded)"
    assert shown["cursor"].startswith("STALE   cursor lag unknown")
    assert shown["reconciliation"] == (
        f"STALE   last reconciliation never ran (no warehouse at {site.warehouse_path})"
    )
    assert not site.warehouse_path.exists()  # read, never created
    off = site.run(RETURNBRIDGE_SLACK__ENABLED="false")
    assert lines(off)["digests"].startswith("OK      digests off")


# --------------------------------------------------------------------------- bad input


def test_no_ledger_exits_2_and_creates_none(site: Site) -> None:
    result = site.run()
    assert result.exit_code == 2
    assert f"no ledger at {site.ledger_path}" in result.stderr
    assert "RETURNBRIDGE_SYNC__LEDGER_URL" in result.stderr
    assert not site.ledger_path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-sync-age", "soon"], "--max-sync-age: 'soon' is not a duration"),
        (["--max-cursor-lag", "0"], "--max-cursor-lag: must be above zero"),
    ],
)
def test_bad_thresholds_exit_2(site: Site, args: list[str], message: str) -> None:
    healthy(site)
    result = site.run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_many_webhooks_naming_unknown_returns_are_failing(site: Site) -> None:
    healthy(site)
    with site.ledger() as ledger:
        for n in range(51):
            ledger.inbox_add("reveni", f"fake_{n}", "{}", received_at=NOW - timedelta(hours=1))
        fakes = [e.id for e in ledger.inbox_pending() if e.event_id.startswith("fake_")]
        assert ledger.settle_inbox(fakes, outcome="unknown_resource", now=NOW) == 51
    result = site.run()
    assert result.exit_code == 1
    shown = lines(result)
    assert shown["inbox"].startswith("FAILING")
    assert "51 in 24 h named returns Reveni does not have" in shown["inbox"]
    assert as_json(site.run("--json"))["figures"]
