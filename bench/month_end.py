"""Benchmark: the month-end report of one month of a brand's history, from the warehouse.

    .venv/bin/python -m bench.month_end [--orders 1000000] [--returns 300000] [--runs 3]
                                        [--seed 1] [--month YYYY-MM ...] [--exceptions 5000]
                                        [--out PATH] [--docs]

Set up once, not measured: `bench.reconcile_data` writes the history (the reconciliation
benchmark's Parquet files: `--orders` orders, `--returns` returns over about six months up to
2026-11-01), `Warehouse.load_files` loads it into a DuckDB file; then, for each month measured
(`--month`, repeatable; default: the month with the most returns), Reveni's invoice of that
month is written as the dashboard's CSV export (docs/invoice-csv.md) from the warehouse's own
data: one `disbursement` line per refund Reveni paid in the month (`reveni_refunds` paid_by
reveni, status paid), a `transaction_fee` line per return created in the month, an
`instant_transaction_fee` line per disbursement and the `plan` line; and a few disbursements
perturbed so that the settlement has work beyond matching (`PERTURB`: 0.5 % left off the
invoice, 0.5 % billed for another amount, 0.2 % billed twice, 0.1 % more naming returns the
warehouse does not know). A SQLite ledger is filled with `--exceptions` exceptions of every code
and owner on returns of the history (money on Finance's, dated across the months by the daily
run that would have raised them, 45 % resolved and 5 % ignored since), plus the
`settlement_unmatched` exceptions an earlier report of each month measured left open (the
returns billed twice or for another amount, still unmatched, and 1 % of the others, which now
match and heal), all through `Ledger.observe_exceptions` and `resolve_exception`.

Which month: the generator puts most returns late in the history (with the defaults 2026-10
holds 132,406 of the 300,000), so no month holds the issue's "about 25,000"; 2026-07 (28,213)
is the nearest, and `--month 2026-07 --month 2026-10` measures both.

Measured, each run of each month in a fresh Python process (so that its peak memory is its
own: `VmHWM`, the resident high-water mark since exec, which unlike `ru_maxrss` does not
inherit the forking parent's peak), on a fresh copy of that ledger, timed from after the
imports:

- `figures`: the ledger opened, the warehouse opened read-only (`monthend.run.open_warehouse`),
  `build_report` (the SQL reads of `monthend.figures`, the ledger's exceptions, the
  settlement matched by `monthend.settlement.match_settlement`);
- `record`: `record_settlement` (the unmatched lines as `settlement_unmatched` exceptions, those
  of the month's returns that now match healed);
- `render`: `reports.month_end.render_month_end(report)` (charts, the e-mail with 50 lines a
  group, the self-contained file with every line, the text part).

The total is their sum: the report from the warehouse, as `MonthEnd.figures`, `.record` and
`.publish` run it (saving the HTML aside). Reading the invoice CSV (`read_invoice_csv`) is
measured too (`invoice`), outside the total: it is not the warehouse's work. Target (the issue):
under 5 s for a month of about 25,000 returns of a 1 M-order / 300 k-return history, peak memory
stated. Results go to `bench/results/month_end-<UTC time>.json` (gitignored) or `--out`;
`--docs` appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from returnbridge.monthend.figures import Month
    from returnbridge.reconcile.warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent
ZONE: Final = ZoneInfo("Europe/Stockholm")  # the brand's timezone (the settings' default)
TARGET_SECONDS: Final = 5.0
STEPS: Final = ("figures", "record", "render")
EXCEPTIONS: Final = 5_000
# Disbursement lines perturbed: share of the month's lines left off the invoice, billed for
# another amount, billed twice; and lines added naming unknown returns (share of the lines).
PERTURB: Final = {"dropped": 0.005, "amount_changed": 0.005, "duplicated": 0.002, "unknown": 0.001}
# Invoice fees (docs/invoice-csv.md's example), EUR minor units, VAT 21 %.
PLAN_FEE: Final = 29_900
TRANSACTION_FEE: Final = 90
INSTANT_FEE: Final = 150
FEE_VAT: Final = "21"
RESOLVED_SHARE: Final = 0.45
IGNORED_SHARE: Final = 0.05
EARLIER_UNMATCHED_SHARE: Final = 0.01
DAILY_RUN: Final = timedelta(hours=6)  # the daily reconciliation raises its exceptions at 06:00


# ---------------------------------------------------------------------------------- setup


def returns_by_month(wh: Warehouse) -> dict[str, int]:
    """Reveni returns created per month of the brand's timezone."""
    found = wh.query(
        "SELECT strftime(created_at AT TIME ZONE ?, '%Y-%m') AS month, count(*) AS n "
        "FROM reveni_returns GROUP BY month ORDER BY month",
        [str(ZONE)],
    )
    return {row["month"]: int(row["n"]) for row in found.iter_rows(named=True)}


def busiest(histogram: dict[str, int], before: datetime) -> str:
    """The month with the most returns among those ended by `before`."""
    from returnbridge.monthend.figures import Month

    ended = {m: n for m, n in histogram.items() if Month.parse(m, ZONE).end <= before}
    return max(sorted(ended), key=lambda m: ended[m])


def _local_dates(frame: Any) -> Any:
    import polars as pl

    return frame.with_columns(
        day=pl.col("created_at").dt.convert_time_zone(str(ZONE)).dt.date().cast(pl.String)
    )


def write_invoice(wh: Warehouse, month: Month, path: Path, seed: int) -> dict[str, Any]:
    """Reveni's invoice of `month` from the warehouse's data, perturbed (`PERTURB`), as the
    dashboard's CSV export at `path`. What it holds and what was perturbed."""
    from returnbridge.monthend.model import money_text

    span = [month.start, month.end]
    paid = _local_dates(
        wh.query(
            "SELECT f.reveni_return_id, r.order_number, f.amount_minor, f.currency, f.created_at "
            "FROM reveni_refunds f JOIN reveni_returns r USING (reveni_return_id) "
            "WHERE f.paid_by = 'reveni' AND f.status = 'paid' "
            "  AND f.created_at >= ? AND f.created_at < ? "
            "ORDER BY f.created_at, f.refund_id",
            span,
        )
    )
    created = _local_dates(
        wh.query(
            "SELECT reveni_return_id, order_number, created_at FROM reveni_returns "
            "WHERE created_at >= ? AND created_at < ? ORDER BY created_at, reveni_return_id",
            span,
        )
    )
    rng = random.Random(f"{seed}:{month.text}")
    planted: Counter[str] = Counter()
    rows: list[tuple[str, str, str, str, str, str, str]] = [
        ("plan", "", "", money_text(PLAN_FEE, "EUR"), "EUR", FEE_VAT, f"{month.text}-01")
    ]
    # what the invoice bills each return, and whether that was perturbed
    billed: list[tuple[str, int, int, str, bool]] = []
    edges = list(PERTURB.values())
    for rid, order, minor, currency, _, day in paid.iter_rows():
        rows.append(
            ("instant_transaction_fee", rid, str(order), money_text(INSTANT_FEE, "EUR"), "EUR",
             FEE_VAT, day)
        )  # fmt: skip
        u = rng.random()
        if u < edges[0]:
            planted["dropped"] += 1
            continue
        amount = minor
        perturbed = u < sum(edges[:3])
        if u < edges[0] + edges[1]:
            planted["amount_changed"] += 1
            amount = minor + max(1, minor // 10)
        line = ("disbursement", rid, str(order), money_text(amount, currency), currency, "", day)
        rows.append(line)
        billed.append((rid, order, amount, currency, perturbed))
        if edges[0] + edges[1] <= u < edges[0] + edges[1] + edges[2]:
            planted["duplicated"] += 1
            rows.append(line)
    unknown = max(1, round(paid.height * PERTURB["unknown"]))
    currencies = sorted(set(paid["currency"].to_list())) or ["EUR"]
    for k in range(unknown):
        planted["unknown"] += 1
        currency = rng.choice(currencies)
        amount = 1_000 * rng.randint(5, 200)
        day = f"{month.text}-{rng.randint(1, 28):02d}"
        rows.append(
            ("disbursement", f"ret_unknown_{k:05d}", "", money_text(amount, currency), currency,
             "", day)
        )  # fmt: skip
    for rid, order, _, day in created.iter_rows():
        rows.append(
            ("transaction_fee", rid, str(order), money_text(TRANSACTION_FEE, "EUR"), "EUR",
             FEE_VAT, day)
        )  # fmt: skip
    rows[1:] = sorted(rows[1:], key=lambda row: (row[6], row[0], row[1]))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ("kind", "return_id", "order_number", "amount", "currency", "vat_rate", "event_date")
        )
        writer.writerows(rows)
    kinds = Counter(row[0] for row in rows)
    return {
        "month": month.text,
        "returns": created.height,
        "reveni_paid_refunds": paid.height,
        "lines": len(rows),
        "by_kind": dict(sorted(kinds.items())),
        "planted": {key: planted[key] for key in PERTURB},
        "bytes": path.stat().st_size,
        "billed": billed,
    }


def seed_ledger(
    path: Path,
    wh: Warehouse,
    *,
    now: datetime,
    count: int,
    seed: int,
    invoices: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """A SQLite ledger at `path` with `count` exceptions on returns of the history, and the
    `settlement_unmatched` ones an earlier report of each month in `invoices` left open."""
    from returnbridge.core.codes import CODES, ReturnException
    from returnbridge.ledger.store import Ledger
    from returnbridge.monthend.figures import Month

    started = time.perf_counter()
    rng = random.Random(f"ledger:{seed}")
    codes = sorted(code for code in CODES if code != "settlement_unmatched")
    sample = wh.query(
        "SELECT r.reveni_return_id, r.order_number, r.created_at, o.currency, "
        "  coalesce(f.amount_minor, o.grand_total_minor // 3) AS amount_minor "
        "FROM reveni_returns r LEFT JOIN centra_orders o USING (order_number) "
        "LEFT JOIN (SELECT reveni_return_id, max(amount_minor) AS amount_minor "
        "  FROM reveni_refunds GROUP BY reveni_return_id) f USING (reveni_return_id) "
        "ORDER BY hash(r.reveni_return_id || ?) LIMIT ?",
        [str(seed), count],
    )
    # raised by the daily run after the return was made, grouped by run as the daily run does
    by_run: dict[datetime, list[ReturnException]] = defaultdict(list)
    for rid, order, created_at, currency, minor in sample.iter_rows():
        code = rng.choice(codes)
        money = CODES[code].owner.value == "finance" and currency is not None and minor
        exc = ReturnException(
            code,
            rid,
            order,
            amount=_decimal(minor, currency) if money else None,
            currency=currency if money else None,
            detail=f"bench: {code}",
        )
        day = created_at.astimezone(UTC).date() + timedelta(days=rng.randint(1, 5))
        at = datetime.combine(day, datetime.min.time(), UTC) + DAILY_RUN
        if at < now:
            by_run[at].append(exc)
    # an earlier month-end report of each measured month left unmatched the returns billed
    # twice or for another amount (still so) and 1 % of the others (which now match)
    for text, invoice in invoices.items():
        month = Month.parse(text, ZONE)
        at = min(month.end + timedelta(hours=7), now - timedelta(hours=1))
        perturbed = [line for line in invoice["billed"] if line[4]]
        others = [line for line in invoice["billed"] if not line[4]]
        chosen = perturbed + rng.sample(
            others, min(len(others), max(1, round(len(others) * EARLIER_UNMATCHED_SHARE)))
        )
        for rid, order, minor, currency, _ in chosen:
            by_run[at].append(
                ReturnException(
                    "settlement_unmatched", rid, order, amount=_decimal(minor, currency),
                    currency=currency, detail="bench: disbursement with no Centra credit",
                )
            )  # fmt: skip
    statuses: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    with Ledger(f"sqlite:///{path}") as ledger:
        for at in sorted(by_run):
            changes = ledger.observe_exceptions(
                by_run[at], scope_return_ids=[], scope_codes=[], now=at
            )
            for record in changes.new:
                owners[record.owner] += 1
                u = rng.random()
                closed = at + timedelta(days=rng.randint(1, 30), hours=rng.randint(0, 9))
                stays_open = u >= RESOLVED_SHARE + IGNORED_SHARE or closed >= now
                if record.code == "settlement_unmatched" or stays_open:
                    statuses["open"] += 1
                else:
                    status = "resolved" if u < RESOLVED_SHARE else "ignored"
                    ledger.resolve_exception(record.id, note="bench", status=status, now=closed)
                    statuses[status] += 1
    return {
        "exceptions": sum(statuses.values()),
        "settlement_unmatched_open": sum(
            1 for found in by_run.values() for exc in found if exc.code == "settlement_unmatched"
        ),
        "by_status": dict(sorted(statuses.items())),
        "by_owner": dict(sorted(owners.items())),
        "first": min(by_run).isoformat() if by_run else None,
        "last": max(by_run).isoformat() if by_run else None,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _decimal(minor: int, currency: str) -> Decimal:
    from returnbridge.connectors.reveni.models import currency_exponent

    return Decimal(minor).scaleb(-currency_exponent(currency))


# ---------------------------------------------------------------------------------- child


def _ru_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (`VmRSS`: now, `VmHWM`: the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Spent:
    """Time spent in functions, by label: wraps them where their callers look them up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)
        seconds = self.seconds

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)


def measure(
    db: Path, ledger_path: Path, invoice_path: Path, month_text: str, now: datetime
) -> dict[str, Any]:
    """One month-end report of `month_text`, step by step, as `MonthEnd` runs it."""
    import reports.month_end as renderer
    from returnbridge.connectors.centra.refunds import RefundTypes
    from returnbridge.ledger.store import Ledger
    from returnbridge.monthend import figures, run
    from returnbridge.monthend.figures import Month
    from returnbridge.monthend.invoice import read_invoice_csv

    spent = _Spent()
    for name in (
        "reveni_paid_credits", "return_facts", "centra_currencies", "exception_tallies",
        "money_problem", "returns_in_month", "money_out", "exchanges", "trend",
    ):  # fmt: skip
        spent.wrap(figures, name, f"figures.{name}")
    spent.wrap(run, "match_settlement", "figures.match_settlement")
    spent.wrap(run, "summarize_invoice", "figures.summarize_invoice")
    spent.wrap(Ledger, "exceptions", "figures.ledger_exceptions")
    spent.wrap(run, "settlement_exceptions", "record.settlement_exceptions")
    spent.wrap(Ledger, "observe_exceptions", "record.observe_exceptions")
    for name in ("money_by_method_chart", "trend_chart"):
        spent.wrap(renderer, name, "render.charts")
    spent.wrap(renderer, "_view", "render.view")
    spent.wrap(renderer, "_html", "render.html")
    imported = _status_mb("VmRSS")
    peaks = {"imports": _status_mb("VmHWM")}

    month = Month.parse(month_text, ZONE)
    started = time.perf_counter()
    invoice = read_invoice_csv(invoice_path, period=month.text)
    read = time.perf_counter()
    with Ledger(f"sqlite:///{ledger_path}") as ledger:
        opened = time.perf_counter()
        spent.seconds["figures.open_ledger"] = opened - read
        with run.open_warehouse(db, wait_seconds=0) as (warehouse, notes):
            spent.seconds["figures.open_warehouse"] = time.perf_counter() - opened
            report = run.build_report(
                warehouse, ledger, month, invoice=invoice, refund_types=RefundTypes(),
                notes=notes, now=now,
            )  # fmt: skip
        figured = time.perf_counter()
        peaks["figures"] = _status_mb("VmHWM")
        changes = run.record_settlement(ledger, report.settlement, now=now)
        recorded = time.perf_counter()
        peaks["record"] = _status_mb("VmHWM")
    closed = time.perf_counter()
    rendered = renderer.render_month_end(report)
    done = time.perf_counter()
    peaks["render"] = _status_mb("VmHWM")
    # The peak is this process's own high-water mark (VmHWM, reset by exec). Not `ru_maxrss`:
    # Linux folds the forking parent's peak into a child's `ru_maxrss` at exec, so a child of
    # the parent that generated the data reports the generator's peak (kept for comparison).
    peak = _status_mb("VmHWM")
    settlement = report.settlement
    steps = {
        "figures_s": figured - read,
        "record_s": recorded - figured,
        "render_s": done - closed,
    }
    return {
        "invoice_s": read - started,
        **steps,
        "seconds": sum(steps.values()),
        "peak_rss_mb": peak,
        "ru_maxrss_mb": _ru_maxrss_mb(),
        "rss_after_imports_mb": imported,
        "peak_after_mb": peaks,
        "breakdown": dict(sorted(spent.seconds.items())),
        "returns_in_month": report.returns_in_month,
        "invoice_lines": len(invoice.lines),
        "settlement_lines": len(settlement.lines),
        "by_match": dict(
            sorted(
                Counter(
                    f"{line.side.value}:{line.match.value}" for line in settlement.lines
                ).items()
            )
        ),
        "settlement_unmatched_lines": len(settlement.exceptions),
        "balanced": settlement.balanced,
        # the split of every currency adds up (the report's own arithmetic)...
        "split_balanced": all(
            t.disbursements_minor
            == t.matched_minor + t.covered_minor + t.awaiting_minor + t.unmatched_minor
            for t in settlement.tie_out
        ),
        # ...and what the invoice charges against Reveni's own data: the planted lines show here
        "reveni_difference_minor": {
            t.currency: t.reveni_difference_minor for t in settlement.tie_out
        },
        "ledger": {
            "new": 0 if changes is None else len(changes.new),
            "still_open": 0 if changes is None else len(changes.seen),
            "healed": 0 if changes is None else len(changes.healed),
        },
        "html_file_bytes": len(rendered.html_file.encode()),
        "html_email_bytes": len(rendered.html_email.encode()),
        "text_bytes": len(rendered.text.encode()),
        "images": len(rendered.images),
        "notes": list(report.notes),
    }


# ---------------------------------------------------------------------------------- parent


def _child(args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON result, with the machine's load
    average (1 minute) before it started."""
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-m", "bench.month_end", "--child", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"month-end run failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = load
    return result


def _copy_ledger(source: Path, target: Path) -> None:
    for suffix in ("", "-wal"):
        found = source.with_name(source.name + suffix)
        copy = target.with_name(target.name + suffix)
        copy.unlink(missing_ok=True)
        if found.exists():
            shutil.copy(found, copy)
    target.with_name(target.name + "-shm").unlink(missing_ok=True)


def run(
    orders: int,
    returns: int,
    runs: int,
    seed: int,
    *,
    months: list[str] | None = None,
    exceptions: int = EXCEPTIONS,
    data: Path | None = None,
) -> dict[str, Any]:
    """Generate and load the history, write each month's invoice and the ledger, then `runs`
    rounds of one measured report per month; every sample and the medians."""
    from bench.machine import machine
    from bench.reconcile_data import generate
    from bench.sync_support import provenance, utc_stamp
    from returnbridge.monthend.figures import Month
    from returnbridge.reconcile.warehouse import Warehouse

    with tempfile.TemporaryDirectory(prefix="month-end-") as scratch:
        work = Path(scratch)
        dataset = generate(data or work, orders=orders, returns=returns, seed=seed, day=False)
        now = dataset.now
        db = work / "warehouse.duckdb"
        ledger_path = work / "ledger.db"
        started = time.perf_counter()
        with Warehouse(db, clock=lambda: now) as wh:
            load = wh.load_files(dataset.full, snapshot_date=now.date(), source="bench")
            loaded = time.perf_counter() - started
            histogram = returns_by_month(wh)
            chosen = list(dict.fromkeys(months or [busiest(histogram, now)]))
            invoices = {
                text: write_invoice(wh, Month.parse(text, ZONE), work / f"invoice-{text}.csv", seed)
                for text in chosen
            }
            ledger = seed_ledger(
                ledger_path, wh, now=now, count=exceptions, seed=seed, invoices=invoices
            )
        samples: dict[str, list[dict[str, Any]]] = {text: [] for text in chosen}
        for _ in range(runs):
            for text in chosen:
                copy = work / "ledger-run.db"
                _copy_ledger(ledger_path, copy)
                invoice_path = work / f"invoice-{text}.csv"
                args = ["--db", str(db), "--ledger", str(copy), "--invoice", str(invoice_path)]
                samples[text].append(_child([*args, "--month", text, "--now", now.isoformat()]))
    busiest_month = busiest(histogram, now)
    measured = []
    for text in chosen:
        invoice = {k: v for k, v in invoices[text].items() if k != "billed"}
        measured.append(
            {
                "month": text,
                "busiest": text == busiest_month,
                "invoice": invoice,
                "samples": samples[text],
                "median": {key: _median(samples[text], key) for key in _medians(samples[text])},
            }
        )
    return {
        "benchmark": "month_end",
        "when": utc_stamp(),
        "orders": orders,
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "timezone": str(ZONE),
        "machine": machine(),
        "code": provenance(),
        "dataset": {
            "seconds": round(dataset.seconds, 2),
            "load_seconds": round(loaded, 2),
            "rows": load.rows,
            "now": now.isoformat(),
            "returns_by_month": histogram,
        },
        "ledger": ledger,
        "months": measured,
    }


_TOP_MEDIANS: Final = (
    "invoice_s", "figures_s", "record_s", "render_s", "seconds", "peak_rss_mb",
    "rss_after_imports_mb", "load_average",
)  # fmt: skip


def _medians(samples: list[dict[str, Any]]) -> list[str]:
    parts = {part for sample in samples for part in sample["breakdown"]}
    return [*_TOP_MEDIANS, *(f"breakdown.{part}" for part in sorted(parts))]


def _median(samples: list[dict[str, Any]], key: str) -> float:
    def value(sample: dict[str, Any]) -> float:
        found: Any = sample
        for part in key.split(".", 1):
            found = found.get(part, 0.0) if isinstance(found, dict) else 0.0
        return float(found)

    return statistics.median(value(s) for s in samples)


# ---------------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    rows = [
        "| month (returns) | run | figures s | record s | render s | **total s** | peak MB "
        "| invoice CSV read s | load avg before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in report["months"]:
        label = f"{entry['month']} ({entry['invoice']['returns']:,})"
        runs = [(str(n), sample) for n, sample in enumerate(entry["samples"], 1)]
        for name, figures in [*runs, ("**median**", entry["median"])]:
            load = figures.get("load_average")
            rows.append(
                f"| {label} | {name} | {figures['figures_s']:.2f} | {figures['record_s']:.2f} | "
                f"{figures['render_s']:.2f} | **{figures['seconds']:.2f}** | "
                f"{figures['peak_rss_mb']:,.0f} | {figures['invoice_s']:.2f} | "
                f"{'' if load is None else f'{load:.2f}'} |"
            )
    return "\n".join(rows)


def breakdown_table(report: dict[str, Any]) -> str:
    """Median seconds of each part of each step."""
    months = report["months"]
    parts = sorted({key for entry in months for key in entry["median"] if "." in key})
    rows = [
        "| part (median s) | " + " | ".join(entry["month"] for entry in months) + " |",
        "|---|" + "---:|" * len(months),
    ]
    for key in parts:
        cells = " | ".join(f"{entry['median'].get(key, 0.0):.3f}" for entry in months)
        rows.append(f"| {key.removeprefix('breakdown.')} | {cells} |")
    return "\n".join(rows)


def counts_text(entry: dict[str, Any]) -> str:
    from returnbridge.monthend.model import money_text

    first = entry["samples"][0]
    invoice = entry["invoice"]
    planted = invoice["planted"]
    matches = ", ".join(f"{k} {v:,}" for k, v in first["by_match"].items())
    ledger = first["ledger"]
    return (
        f"**{entry['month']}**: {invoice['returns']:,} returns created in the month, "
        f"{invoice['reveni_paid_refunds']:,} refunds Reveni paid; the invoice "
        f"{invoice['lines']:,} lines ({invoice['bytes'] / 1e6:.1f} MB; "
        + ", ".join(f"{k} {v:,}" for k, v in invoice["by_kind"].items())
        + f"), perturbed: {planted['dropped']} disbursements left off, "
        f"{planted['amount_changed']} for another amount, {planted['duplicated']} billed twice, "
        f"{planted['unknown']} naming unknown returns. Settlement: "
        f"{first['settlement_lines']:,} lines ({matches}), "
        f"{first['settlement_unmatched_lines']:,} unmatched (amount differs or unmatched), "
        f"tie-out: split adds up {'yes' if first['split_balanced'] else 'NO'}, invoice against "
        "Reveni's own data: "
        + ", ".join(
            f"{currency} {'agrees' if not off else f'{money_text(off, currency)} differs'}"
            for currency, off in first["reveni_difference_minor"].items()
        )
        + "; recorded in the ledger: "
        f"{ledger['new']:,} new, {ledger['still_open']:,} still open, {ledger['healed']:,} "
        f"healed. HTML file {first['html_file_bytes'] / 1e6:.1f} MB, e-mail HTML "
        f"{first['html_email_bytes'] / 1e3:,.0f} kB, text {first['text_bytes'] / 1e3:,.1f} kB, "
        f"{first['images']} charts. Peak RSS {entry['median']['peak_rss_mb']:,.0f} MB "
        f"({entry['median']['rss_after_imports_mb']:,.0f} MB after the imports)."
    )


def verdict(report: dict[str, Any]) -> str:
    lines = []
    for entry in report["months"]:
        m = entry["median"]
        ok = m["seconds"] < TARGET_SECONDS
        lines.append(
            f"{entry['month']} ({entry['invoice']['returns']:,} returns"
            f"{', the busiest month' if entry['busiest'] else ''}): **{m['seconds']:.2f} s, "
            f"{m['peak_rss_mb']:,.0f} MB peak** (figures {m['figures_s']:.2f} s, record "
            f"{m['record_s']:.2f} s, render {m['render_s']:.2f} s; target under "
            f"{TARGET_SECONDS:.0f} s): {'met' if ok else 'MISSED'}."
        )
    return "\n\n".join(lines)


def docs_section(report: dict[str, Any], command: str) -> str:
    from bench.sync_support import machine_line

    data = report["dataset"]
    rows = data["rows"]
    code = report["code"]
    ledger = report["ledger"]
    spread = ", ".join(f"{m} {n:,}" for m, n in data["returns_by_month"].items())
    counts = "\n\n".join(counts_text(entry) for entry in report["months"])
    return (
        f"\n## Month-end report of a month, from the warehouse ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine_line(report['machine'])}  \n"
        f"Code: {code['commit'] or 'unknown'}{' with uncommitted changes' if code['dirty'] else ''}"
        f"  \nData (`bench/reconcile_data.py`, seed {report['seed']}, generated in "
        f"{data['seconds']:.1f} s, loaded into the warehouse in {data['load_seconds']:.1f} s): "
        f"{report['orders']:,} orders and {report['returns']:,} returns, "
        f"{sum(rows.values()):,} rows; returns per month ({report['timezone']}): {spread}. "
        f"Ledger: {ledger['exceptions']:,} exceptions ("
        + ", ".join(f"{k} {v:,}" for k, v in ledger["by_status"].items())
        + "; "
        + ", ".join(f"{k} {v:,}" for k, v in ledger["by_owner"].items())
        + f"), raised from {(ledger['first'] or '')[:10]} to {(ledger['last'] or '')[:10]}. "
        f"Median of {report['runs']} runs; each run from its own process, timed after the "
        "imports, peak = the process's resident high-water mark (`VmHWM`), imports included.\n\n"
        f"{table(report)}\n\n{breakdown_table(report)}\n\n{counts}\n\n{verdict(report)}\n"
    )


def _child_main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--invoice", type=Path, required=True)
    parser.add_argument("--month", required=True)
    parser.add_argument("--now", type=datetime.fromisoformat, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.db, args.ledger, args.invoice, args.month, args.now)))


def main() -> None:
    if "--child" in sys.argv:
        _child_main(sys.argv[1:])
        return
    from bench.sync_support import append_docs, argument_parser, machine_line, write_results

    parser = argument_parser(__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000, help="Centra orders")
    parser.add_argument("--returns", type=int, default=300_000, help="Reveni returns")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their median")
    parser.add_argument("--seed", type=int, default=1, help="data seed")
    parser.add_argument(
        "--month",
        action="append",
        type=_month_text,
        help="YYYY-MM to report (repeatable; default: the month with the most returns)",
    )
    parser.add_argument(
        "--exceptions", type=int, default=EXCEPTIONS, help="ledger exceptions besides the month's"
    )
    parser.add_argument("--data", type=Path, help="keep the generated files here")
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/)")
    parser.add_argument("--docs", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    report = run(
        args.orders,
        args.returns,
        args.runs,
        args.seed,
        months=args.month,
        exceptions=args.exceptions,
        data=args.data,
    )
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(table(report))
    print(f"\n{breakdown_table(report)}\n")
    for entry in report["months"]:
        print(counts_text(entry) + "\n")
    print(verdict(report))
    print(machine_line(report["machine"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    else:
        print(f"wrote {write_results('month_end', report)}")
    if args.docs:
        months = "".join(f" --month {entry['month']}" for entry in report["months"])
        command = (
            f".venv/bin/python -m bench.month_end --orders {args.orders} "
            f"--returns {args.returns} --runs {args.runs} --seed {args.seed}{months}"
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


def _month_text(text: str) -> str:
    from returnbridge.monthend.figures import Month

    return Month.parse(text, ZONE).text


if __name__ == "__main__":
    main()
