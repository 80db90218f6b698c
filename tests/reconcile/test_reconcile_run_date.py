"""A reconciliation for an earlier run date (`returnbridge reconcile --date`, the flow's
`run_date`) in the brand's timezone, DST-change days included: the run completes, it looks at
the end of that local day (in UTC, like every time it is compared with), its gaps are aged to
that moment, and they and the digests are recorded under that date.

Each case shifts the showcase so that its returns happen the day before the run date ends,
then reconciles with a clock days later: the end of the run date, not the clock, is what the
gaps are aged to."""

from __future__ import annotations

import asyncio
import json
import time as monotonic
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sync_support import Integration, integration
from typer.testing import CliRunner

from reports.digest import render_digest
from returnbridge.cli import app
from returnbridge.clock import Now
from returnbridge.reconcile.run import ReconcileReport, as_of_for, end_of_day
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.scenario import Scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync.settings import SyncSettings

# (brand timezone, run date, the end of that local day in UTC, the day's length in hours)
RUN_DATES = [
    ("Europe/Stockholm", date(2026, 10, 30), datetime(2026, 10, 30, 23, tzinfo=UTC), 24),
    ("Europe/Stockholm", date(2026, 3, 29), datetime(2026, 3, 29, 22, tzinfo=UTC), 23),
    ("Europe/Stockholm", date(2026, 10, 25), datetime(2026, 10, 25, 23, tzinfo=UTC), 25),
    ("America/Los_Angeles", date(2026, 3, 8), datetime(2026, 3, 9, 7, tzinfo=UTC), 23),
    ("America/Los_Angeles", date(2026, 11, 1), datetime(2026, 11, 2, 8, tzinfo=UTC), 25),
    ("Pacific/Auckland", date(2026, 4, 5), datetime(2026, 4, 5, 12, tzinfo=UTC), 25),
    ("Pacific/Auckland", date(2026, 9, 27), datetime(2026, 9, 27, 11, tzinfo=UTC), 23),
    ("UTC", date(2026, 10, 29), datetime(2026, 10, 30, tzinfo=UTC), 24),
]
# the showcase's returns happen this long before the end of the run date
BEFORE_THE_END = timedelta(hours=30)
# the reconciliation's clock this long after it: the run date is days behind
LATER = timedelta(days=2, hours=5)


def shifted(scenario: Scenario, by: timedelta) -> Scenario:
    """`scenario` with every time in it (its `now`, orders, returns) moved by `by`."""
    orders = [
        o if o.created_at is None else o.model_copy(update={"created_at": o.created_at + by})
        for o in scenario.centra.orders
    ]
    returns = [
        r if r.created_at is None else r.model_copy(update={"created_at": r.created_at + by})
        for r in scenario.reveni.returns
    ]
    return scenario.model_copy(
        update={
            "now": scenario.start_time() + by,
            "centra": scenario.centra.model_copy(update={"orders": orders}),
            "reveni": scenario.reveni.model_copy(update={"returns": returns}),
        }
    )


def moving_clock(start: datetime) -> Now:
    """`start`, moving with real time (the executor waits on it)."""
    began = monotonic.monotonic()
    return lambda: start + timedelta(seconds=monotonic.monotonic() - began)


def settle(it: Integration, runs: int = 6) -> None:
    """Walk every history and sync until the ledger owes nothing."""
    it.walk()
    for _ in range(runs):
        it.run()
        counts = it.ledger.counts()
        if not any(counts.get(s, 0) for s in ("pending", "in_flight", "in_doubt")):
            return
    raise AssertionError(f"the sync did not settle: {it.ledger.counts()}")


def reconcile(it: Integration, run_date: date | None, clock: Now, zone: str) -> ReconcileReport:
    """One reconciliation as `returnbridge reconcile --date` runs it, in the brand timezone
    `zone`, at `clock`."""
    settings = it.settings.model_copy(
        update={"reconcile": it.settings.reconcile.model_copy(update={"timezone": zone})}
    )

    async def once() -> ReconcileReport:
        async with open_reconciliation(
            settings, ledger=it.ledger, clock=clock, render_digest=render_digest
        ) as rec:
            return await rec.run(run_date)

    return asyncio.run(once())


Planted = Callable[[datetime], Integration]


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Planted]:
    """A factory: the showcase moved to happen `BEFORE_THE_END` before the given end of a run
    date, and synced (with the product's first look-back, so the July return is left for the
    reconciliation to find)."""
    with ExitStack() as stack:

        def make(end: datetime) -> Integration:
            base = builtin_scenario("showcase")
            scenario = shifted(base, end - BEFORE_THE_END - base.start_time())
            it = stack.enter_context(
                integration(scenario, tmp_path, initial_look_back=SyncSettings().initial_look_back)
            )
            settle(it)
            return it

        yield make


@pytest.mark.parametrize(
    ("zone", "day", "end", "hours"),
    RUN_DATES,
    ids=[f"{zone}-{day}" for zone, day, _, _ in RUN_DATES],
)
def test_a_run_for_an_earlier_date_looks_at_the_end_of_that_local_day(
    planted: Planted, zone: str, day: date, end: datetime, hours: int
) -> None:
    start = datetime.combine(day, time(0), ZoneInfo(zone))
    assert end - start == timedelta(hours=hours)  # the case is the DST day it says it is
    it = planted(end)
    clock_start = end + LATER

    report = reconcile(it, day, moving_clock(clock_start), zone)

    assert report.run_date == day
    assert report.as_of == end and report.as_of.tzinfo is UTC
    assert report.as_of.astimezone(ZoneInfo(zone)).timetz() == time(0, tzinfo=ZoneInfo(zone))
    # the planted gaps are found and the fixable ones healed, as on any day
    found = {(g["code"], g["reveni_return_id"], g["outcome"]) for g in report.gaps}
    assert found >= {
        ("return_missing", "ret_old_1017", "healed"),
        ("restock_missing", "ret_old_1017", "healed"),
        ("refund_missing", "ret_old_1017", "healed"),
        ("refund_failed_at_gateway", "ret_same_1004", "still_open"),
    }, found
    # every gap aged to the end of the run date, not to the clock
    with Warehouse(it.settings.reconcile.warehouse_path, read_only=True) as warehouse:
        kept = warehouse.gaps(day)
        watermark = json.loads(warehouse.watermark("api") or "{}")
        state = warehouse.gap_state()
    assert kept.height == len(report.gaps) > 0
    for row in kept.iter_rows(named=True):
        since: datetime = row["since"]
        assert row["age_days"] == max(0, (end - since) // timedelta(days=1)), row
    ages = {(g["code"], g["reveni_return_id"]): g["age_days"] for g in report.gaps}
    # refused at the PSP 30 hours before the end of the run date: 1 day old then (3 at the clock)
    assert ages[("refund_failed_at_gateway", "ret_same_1004")] == 1
    assert ages[("return_missing", "ret_old_1017")] > 90  # accepted in July
    # what else the run keeps of its moment is that moment, in UTC
    assert watermark["centra"] == end.isoformat()
    assert state is not None and state.as_of == end
    # the digests are those of the run date
    assert report.digests and {d.run_date for d in report.digests} == {day}


def test_todays_run_is_dated_in_the_brands_timezone(planted: Planted) -> None:
    """No date: the run looks at now (UTC) and is dated by the brand's calendar, a day ahead of
    UTC's in Auckland at 23:30 UTC."""
    end = datetime(2026, 10, 30, 23, 30, tzinfo=UTC)  # 12:30 on 31 October in Auckland
    it = planted(end)
    report = reconcile(it, None, moving_clock(end), "Pacific/Auckland")
    assert report.run_date == date(2026, 10, 31)
    assert report.as_of.tzinfo is UTC and end <= report.as_of < end + timedelta(minutes=5)
    assert {d.run_date for d in report.digests} == {date(2026, 10, 31)}
    with Warehouse(it.settings.reconcile.warehouse_path, read_only=True) as warehouse:
        assert warehouse.gaps(date(2026, 10, 31)).height == len(report.gaps) > 0


# -- as_of_for on its own ------------------------------------------------------------------


def test_as_of_is_utc_whatever_zone_the_clock_gives() -> None:
    settings = ReconcileSettings(timezone="Europe/Stockholm")
    stockholm = ZoneInfo("Europe/Stockholm")
    now = datetime(2026, 12, 1, 9, 0, tzinfo=stockholm)
    today = as_of_for(None, now, settings)
    assert today == now and today.tzinfo is UTC
    earlier = as_of_for(date(2026, 10, 30), now, settings)
    assert earlier == datetime(2026, 10, 30, 23, tzinfo=UTC) and earlier.tzinfo is UTC
    # a date not over yet: never later than now
    assert as_of_for(date(2026, 12, 1), now, settings) == now
    with pytest.raises(ValueError, match="timezone-aware"):
        as_of_for(date(2026, 10, 30), datetime(2026, 12, 1, 9, 0), settings)


def test_a_day_whose_midnight_does_not_exist_ends_when_the_next_one_starts() -> None:
    """Chile moves its clocks at midnight: 6 September 2026 starts at 01:00 (-03), so 5
    September ends at 04:00 UTC, and 6 September is 23 hours long."""
    santiago = ZoneInfo("America/Santiago")
    assert end_of_day(date(2026, 9, 5), santiago) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert end_of_day(date(2026, 9, 6), santiago) == datetime(2026, 9, 7, 3, tzinfo=UTC)
    # 4 April 2026 is 25 hours long: 23:00-24:00 comes twice
    assert end_of_day(date(2026, 4, 4), santiago) == datetime(2026, 4, 5, 4, tzinfo=UTC)


# -- the command ---------------------------------------------------------------------------


def test_reconcile_date_command_exits_0_in_a_brand_timezone(tmp_path: Path) -> None:
    """`returnbridge reconcile --date 2026-10-30` for a brand in Stockholm (the issue's
    `SchemaError ... Datetime('μs','UTC') vs Datetime('μs','Europe/Stockholm')`)."""
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        it.walk()
        env = it.env() | {"RETURNBRIDGE_RECONCILE__TIMEZONE": "Europe/Stockholm"}
        result = CliRunner().invoke(app, ["reconcile", "--date", "2026-10-30"], env=env)
        assert result.exit_code == 0, result.output
        assert "Reconciliation 2026-10-30 (as of 2026-10-30T23:00:00+00:00)" in result.stdout
        again = CliRunner().invoke(app, ["reconcile", "--date", "2026-10-29", "--json"], env=env)
        assert again.exit_code == 0, again.output
        figures = json.loads(again.stdout)
    assert (figures["run_date"], figures["as_of"]) == ("2026-10-29", "2026-10-29T23:00:00+00:00")
    assert {d["run_date"] for d in figures["digests"]} >= {"2026-10-29"}
