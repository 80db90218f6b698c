"""Benchmark: the daily reconciliation at scale, snapshot files to gaps, against hand-written
DuckDB SQL and plain Python.

    .venv/bin/python -m bench.reconcile_scale [--orders 1000000] [--returns 300000] [--runs 3]
                                              [--seed 1] [--data DIR] [--no-plain] [--out PATH]
                                              [--docs]

    # 10 M orders / 3 M returns (not part of `make test`; no plain-Python baseline there):
    .venv/bin/python -m bench.reconcile_scale --orders 10000000 --returns 3000000 --runs 1 \
        --no-plain

`bench.reconcile_data` writes a brand's history as Parquet snapshot files (one per warehouse
table: orders with their captures, returns with their items and refunds, Centra returns and
lines, credits, restocks, exchange orders, with 0.5 % of the returns planted with each gap) and
one day of changes on top of it (about 1/30 of the returns changed or new, 1/30 new orders).
Each run then measures, each in a fresh Python process so that its peak memory (`VmHWM`, the
resident high-water mark since exec) is its own, timed from after the imports:

- `sql`: the yardstick, `bench/reconcile_sql_baseline.py`: every gap rule hand-written as one
  DuckDB SQL query straight over the same files (in memory: no warehouse, no snapshot);
  it must find the very gaps of `full` (their keys: code, return, order, SKU);
- `full`: `Warehouse.load_files` of the history into a new DuckDB file, then the gaps as the
  daily reconciliation computes them (`incremental.current_gaps`, the very function
  `Reconciliation.find_gaps` calls): with no earlier computation, `snapshot()` into Polars of
  what the rules read (`rules.rule_reads`) and `rules.compute_gaps` over everything, kept as
  the warehouse's gap state: end to end;
- `baseline` (unless `--no-plain`): the same gaps in plain Python: the same files read into
  Python lists (pyarrow `to_pydict`, counted) and matched with dictionaries;
- `incremental`: the day loaded into the warehouse `full` left (`load_files`), then
  `current_gaps` again, which now goes incremental: the scope the day changed
  (`changed_scope`), the snapshot of that scope, `compute_gaps` on it, the last computation's
  gaps carried over for the rest (`Scope.carry`), the result kept as the new state;
- `naive`: the same day on a copy of that warehouse, with `current_gaps(full=True)` (as
  `RETURNBRIDGE_RECONCILE__FULL_RECOMPUTE` asks): a full `snapshot()` and `compute_gaps` over
  everything (for comparison: it must find the very same gaps).

Every path must find exactly the planted gaps. Targets (the issue): `full` at most 1.5x the SQL
yardstick and 1 GB peak at 1 M orders (40 s and 4 GB at 10 M), `incremental` at most 0.2 s.
Results go to `bench/results/reconcile_scale-<UTC time>.json` (gitignored) or `--out`;
`--docs` appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bench.reconcile_sql_baseline import peak_mb

ROOT = Path(__file__).resolve().parent.parent
MODES: Final = ("full", "incremental", "naive", "baseline", "sql")
TARGET_SQL_RATIO: Final = 1.5  # full / hand-written DuckDB SQL (bench/reconcile_sql_baseline.py)
TARGET_SQL_PEAK_MB: Final = 1024
TARGET_INCREMENTAL_S: Final = 0.2


# ---------------------------------------------------------------------------------- children


def _peak_mb() -> float:
    """This process's resident high-water mark since exec (`VmHWM`): unlike `ru_maxrss`, it
    does not inherit the peak of the parent that forked it (the generator's, here)."""
    return peak_mb()


def _counts(gaps: Any) -> dict[str, int]:
    return dict(sorted(Counter(gaps["code"].to_list()).items()))


def _digest(gaps: Any) -> str:
    """A fingerprint of a gap table's rows, whatever their order."""
    rows = sorted(json.dumps(row, default=str, sort_keys=True) for row in gaps.to_dicts())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


# What each mode loads, how it computes the gaps, and which step timings it reports.
_PATHS: Final[dict[str, tuple[str, bool, tuple[str, ...]]]] = {
    # mode: (the files loaded, a full recompute forced, the timings of `current_gaps` kept)
    "full": ("full", False, ("snapshot_s", "gaps_s")),
    "incremental": ("day", False, ("scope_s", "snapshot_s", "gaps_s", "carry_s")),
    "naive": ("day", True, ("snapshot_s", "gaps_s")),
}


def measure(
    mode: str, data: Path, db: Path, now: datetime, warehouse: dict[str, Any]
) -> dict[str, Any]:
    """One warehouse path, timed as the daily run does it: load `mode`'s files, then compute
    the gaps with `Reconciliation`'s own function (`incremental.current_gaps`).

    - *full*: the history into a new warehouse; everything computed (there is no earlier
      computation), and kept for the next run;
    - *incremental*: the day on top of the warehouse *full* left; only what the day changed
      recomputed, the rest carried over;
    - *naive*: the day, then everything recomputed (`RETURNBRIDGE_RECONCILE__FULL_RECOMPUTE`).
    """
    from bench.reconcile_sql_baseline import keys_digest
    from returnbridge.reconcile.incremental import current_gaps
    from returnbridge.reconcile.rules import GapConfig
    from returnbridge.reconcile.warehouse import GAP_KEY, Warehouse

    files, forced, steps = _PATHS[mode]
    started = time.perf_counter()
    wh = Warehouse(db, **warehouse)
    load = wh.load_files(data / files, snapshot_date=now.date(), source="bench")
    loaded = time.perf_counter()
    computed = current_gaps(wh, config=GapConfig(), now=now, full=forced)
    done = time.perf_counter()
    peak = _peak_mb()
    wh.close()
    expected = "incremental" if mode == "incremental" else "full"
    assert computed.mode == expected, computed.reason
    t = computed.timings
    result: dict[str, Any] = {
        "load_s": loaded - started,
        **{step: t[step] for step in steps},
        "seconds": done - started,
        "peak_rss_mb": peak,
        "rows": sum(load.rows.values()),
        "gaps": _counts(computed.gaps),
        "digest": _digest(computed.gaps),
        "keys": keys_digest(computed.gaps.select(GAP_KEY).rows()),
    }
    if mode != "naive":
        result["state_s"] = t["state_s"] + t["save_s"]
    if mode == "incremental":
        result["scope"] = {
            "returns": computed.scope_returns,
            "orders": computed.scope_orders,
            "rows": computed.rows_read,
        }
    return result


def measure_baseline(data: Path, now: datetime) -> dict[str, Any]:
    started = time.perf_counter()
    tables = read_plain(data / "full")
    read = time.perf_counter()
    gaps = baseline_gaps(tables, now)
    done = time.perf_counter()
    return {
        "read_s": read - started,
        "match_s": done - read,
        "seconds": done - started,
        "peak_rss_mb": _peak_mb(),
        "gaps": dict(sorted(gaps.items())),
    }


# ---------------------------------------------------------------------------------- baseline

# The columns the baseline reads (all a rule needs), per table.
PLAIN_COLUMNS: Final = {
    "reveni_returns": (
        "reveni_return_id", "order_number", "status", "instant", "awaiting_inspection",
        "created_at", "updated_at",
    ),
    "reveni_items": (
        "reveni_return_id", "sku", "accepted_units", "restock", "exchange_n", "exchange_units",
        "exchange_order_number",
    ),
    "reveni_refunds": (
        "reveni_return_id", "refund_id", "method", "paid_by", "status", "amount_minor",
        "currency", "created_at",
    ),
    "centra_orders": ("order_number", "status", "currency", "grand_total_minor"),
    "centra_payments": (
        "entry_id", "order_number", "centra_return_id", "entry_type", "status", "amount_minor",
        "currency", "payment_method", "created_at",
    ),
    "centra_returns": (
        "centra_return_id", "order_number", "external_id", "exchange_part", "grand_total_minor",
    ),
    "centra_stock_changes": ("stock_change_id", "description", "sku", "delta"),
}  # fmt: skip
# GapConfig's defaults (tests/bench/test_bench_reconcile.py holds them equal)
GRACE: Final = timedelta(hours=1)
INSTANT_WINDOW: Final = timedelta(days=30)
INSTANT_WARN: Final = timedelta(days=3)
MANUAL_METHOD: Final = "manual"


def read_plain(directory: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table the rules read, as a list of row tuples of Python values."""
    import pyarrow.parquet as pq

    tables = {}
    for table, columns in PLAIN_COLUMNS.items():
        data = pq.read_table(directory / f"{table}.parquet", columns=list(columns)).to_pydict()
        tables[table] = list(zip(*(data[c] for c in columns), strict=True))
    return tables


def baseline_gaps(tables: dict[str, list[tuple[Any, ...]]], now: datetime) -> Counter[str]:
    """The gap rules (`returnbridge.reconcile.rules`) with dictionaries and loops: gaps found
    per code."""
    from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED
    from returnbridge.connectors.reveni.statuses import ACCEPTED
    from returnbridge.core.actions import RESTOCK_DESCRIPTION
    from returnbridge.core.validation import NOT_RETURNABLE

    accepting = ACCEPTED | {"completed"}
    refund_type = DEFAULT_INFERRED.payment_entry_type_refund
    prefix = RESTOCK_DESCRIPTION.split("{rid}")[0]
    cutoff = now - GRACE
    found: Counter[str] = Counter()

    returns = {row[0]: row for row in tables["reveni_returns"]}
    orders = {
        num: (status, currency, total) for num, status, currency, total in tables["centra_orders"]
    }
    items: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in tables["reveni_items"]:
        items[row[0]].append(row)
    due: set[str] = set()  # accepted returns whose effects are due
    for rid, number, status, _, _, _, updated in returns.values():
        order = orders.get(number)
        if (
            status in accepting
            and updated <= cutoff
            and order is not None
            and order[0] not in NOT_RETURNABLE
            and any(item[2] > 0 for item in items[rid])
        ):
            due.add(rid)

    # return_missing
    parts: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in tables["centra_returns"]:
        parts[row[2]].append(row)
    found["return_missing"] = sum(1 for rid in due if rid not in parts)

    # restock_missing, restock_duplicated: per (return, SKU)
    expected: Counter[tuple[str, str]] = Counter()
    for rid, sku, accepted, restock, *_ in tables["reveni_items"]:
        if restock and accepted > 0 and returns.get(rid, (None,) * 3)[2] in accepting:
            expected[(rid, sku)] += accepted
    restocked: Counter[tuple[str, str]] = Counter()
    changes: dict[tuple[str, str], set[int]] = defaultdict(set)
    for change_id, description, sku, delta in tables["centra_stock_changes"]:
        if description is not None and description.startswith(prefix):
            key = (description[len(prefix) :], sku)
            restocked[key] += delta
            changes[key].add(change_id)
    for key in expected.keys() | restocked.keys():
        if key[0] not in returns:
            continue
        if key[0] in due and restocked[key] < expected[key]:
            found["restock_missing"] += 1
        if restocked[key] > expected[key] or len(changes[key]) > 1:
            found["restock_duplicated"] += 1

    # refunds: Centra's refund entries, linked to a Reveni return through their Centra return
    linked_to = {row[0]: row[2] for row in tables["centra_returns"] if row[2] in returns}
    entries = [
        (*row, linked_to.get(row[2])) for row in tables["centra_payments"] if row[3] == refund_type
    ]
    credits: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    credited_parts = set()
    for entry in entries:
        if entry[9] is not None and entry[4] == "SUCCESS":
            credits[entry[9]].append(entry)
            credited_parts.add(entry[2])
    failed: Counter[str] = Counter()
    has_failed = set()
    for entry in entries:
        if entry[9] is not None and entry[4] == "FAILED" and entry[2] not in credited_parts:
            failed[entry[9]] += entry[5]
            has_failed.add(entry[9])
    value: dict[str, int] = {}  # Centra's value of a return's refund parts
    for _, _, external_id, exchange_part, total in tables["centra_returns"]:
        if not exchange_part:
            value[external_id] = value.get(external_id, 0) + total
    live: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in tables["reveni_refunds"]:
        if row[4] != "failed":
            live[row[0]].append(row)
    refunded_items = {row[0] for row in tables["reveni_items"] if row[2] > 0 and row[4] is None}

    owed: dict[str, dict[str, Any]] = {}  # the first live refund of each due return
    for rid in due:
        if rid not in live or rid not in refunded_items:
            continue
        first = min(live[rid], key=lambda r: (r[7], r[1]))
        posted = credits.get(rid, [])
        number = returns[rid][1]
        owed[rid] = {
            "order": number,
            "refund_id": first[1],
            "psp": first[2] == "original_payment_method" and first[3] == "merchant",
            "amount": first[5],
            "currency": first[6],
            "created": first[7],
            "live": len(live[rid]),
            "credits": len(posted),
            "credited": sum(e[5] for e in posted),
            "credit_currency": posted[0][6] if posted else None,
            "credited_returns": len({e[2] for e in posted}),
            "psp_credit": any(e[7] != MANUAL_METHOD for e in posted),
            "failed": rid in has_failed,
            "value": value.get(rid),
            "order_currency": orders.get(number, (None, None))[1],
        }

    # refunds made in Centra on the order (no Centra return of a Reveni return) on orders with
    # a Reveni return: covering an uncredited refund of that amount one to one, repeating a
    # credited one, or unmatched
    returned_orders = {row[1] for row in returns.values()}
    uncredited: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    credited_keys: dict[tuple[Any, ...], str] = {}
    for rid, o in sorted(owed.items(), key=lambda kv: kv[1]["created"]):
        match = (o["order"], o["amount"], o["currency"])
        if o["credits"]:
            credited_keys.setdefault(match, rid)
        else:
            uncredited[match].append(rid)
    loose = sorted(
        (e for e in entries if e[9] is None and e[4] == "SUCCESS" and e[1] in returned_orders),
        key=lambda e: e[8],
    )
    rank: Counter[tuple[Any, ...]] = Counter()
    covered: set[str] = set()
    repeated: set[str] = set()
    unmatched: set[tuple[int, str]] = set()
    for entry in loose:
        match = (entry[1], entry[5], entry[6])
        matches = uncredited.get(match, [])
        if rank[match] < len(matches):
            covered.add(matches[rank[match]])
        elif match in credited_keys:
            repeated.add(credited_keys[match])
        else:
            unmatched.add((entry[1], entry[6]))
        rank[match] += 1
    found["unmatched_centra_refund"] = len(unmatched)

    duplicates = set(repeated)
    for rid, o in owed.items():
        twice = o["credits"] > o["credited_returns"] or (not o["psp"] and o["psp_credit"])
        if twice or o["live"] > 1:
            duplicates.add(rid)
        differs = o["credited"] != o["amount"] or o["credit_currency"] != o["currency"]
        if o["credits"] and not twice and differs:
            found["refund_amount_mismatch"] += 1
        if o["credits"] == 0 and o["failed"]:
            found["refund_failed_at_gateway"] += 1
        if o["credits"] == 0 and not o["failed"] and rid not in covered:
            gap = None if o["value"] is None else o["amount"] - o["value"]
            blocked = gap is not None and (
                o["currency"] != o["order_currency"] or (gap != 0 if o["psp"] else gap > 0)
            )
            found["refund_amount_mismatch" if blocked else "refund_missing"] += 1
    found["duplicate_refund"] = len(duplicates)

    # exchanges
    for rid, _, _, _, exchange_n, units, number in tables["reveni_items"]:
        if exchange_n is None or not units or rid not in due:
            continue
        order = orders.get(number)
        if order is None:
            found["exchange_order_missing"] += 1
        elif order[2] != 0:
            found["exchange_not_zero_value"] += 1

    # instant returns close to Reveni's deadline
    for _, _, _, instant, awaiting, created, _ in returns.values():
        if instant and awaiting and created + INSTANT_WINDOW - now <= INSTANT_WARN:
            found["instant_deadline_near"] += 1
    return +found


# ---------------------------------------------------------------------------------- parent


def _child(mode: str, args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON result."""
    command = (
        ["-m", "bench.reconcile_sql_baseline", *args]
        if mode == "sql"
        else ["-m", "bench.reconcile_scale", "--child", mode, *args]
    )
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    orders: int,
    returns: int,
    runs: int,
    seed: int,
    *,
    data: Path | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    plain: bool = True,
) -> dict[str, Any]:
    """Generate the files (into `data`, or a temporary directory), then `runs` rounds of the
    measurements (the plain-Python baseline only when `plain`); every sample and the
    medians."""
    from bench.machine import machine
    from bench.reconcile_data import generate
    from bench.sync_support import provenance, utc_stamp

    with tempfile.TemporaryDirectory(prefix="reconcile-scale-") as scratch:
        directory = data or Path(scratch)
        dataset = generate(directory, orders=orders, returns=returns, seed=seed)
        common = ["--data", str(directory)]
        if threads is not None:
            common += ["--threads", str(threads)]
        if memory_limit is not None:
            common += ["--memory-limit", memory_limit]
        at = ["--now", dataset.now.isoformat()]
        day_at = ["--now", dataset.day_now.isoformat()]
        sql = ["--data", str(directory / "full"), *at]
        if threads is not None:
            sql += ["--threads", str(threads)]
        samples = []
        for i in range(runs):
            db = Path(scratch) / f"warehouse-{i}.duckdb"
            naive_db = Path(scratch) / f"warehouse-{i}-naive.duckdb"
            # the SQL yardstick right before the full run it is compared with
            sample = {"sql": _child("sql", sql)}
            sample["full"] = _child("full", [*common, *at, "--db", str(db)])
            shutil.copy(db, naive_db)
            sample["incremental"] = _child("incremental", [*common, *day_at, "--db", str(db)])
            sample["naive"] = _child("naive", [*common, *day_at, "--db", str(naive_db)])
            if plain:
                sample["baseline"] = _child("baseline", [*common, *at])
            for path in (db, naive_db):
                path.unlink()
            samples.append(_derived(sample))
    planted = dataset.planted
    return {
        "benchmark": "reconcile_scale",
        "when": utc_stamp(),
        "orders": orders,
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "threads": threads,
        "memory_limit": memory_limit,
        "machine": machine(),
        "code": provenance(),
        "dataset": {
            "seconds": round(dataset.seconds, 2),
            "rows": dataset.rows,
            "day_rows": dataset.day_rows,
            "day_returns": dataset.day_returns,
            "planted": planted,
        },
        "samples": samples,
        "median": {key: _median(samples, key) for key in _MEDIANS if _has(samples, key)},
        "checks": _checks(samples, planted),
    }


def _derived(sample: dict[str, Any]) -> dict[str, Any]:
    full = sample["full"]["seconds"]
    if "baseline" in sample:
        sample["baseline_ratio"] = sample["baseline"]["seconds"] / full
    sample["sql_ratio"] = full / sample["sql"]["seconds"]
    sample["incremental_pct"] = 100 * sample["incremental"]["seconds"] / full
    sample["naive_pct"] = 100 * sample["naive"]["seconds"] / full
    return sample


_MEDIANS: Final = (
    "full.seconds", "full.load_s", "full.snapshot_s", "full.gaps_s", "full.peak_rss_mb",
    "baseline.seconds", "baseline.read_s", "baseline.match_s", "baseline.peak_rss_mb",
    "baseline_ratio",
    "incremental.seconds", "incremental.load_s", "incremental.scope_s",
    "incremental.snapshot_s", "incremental.gaps_s", "incremental.carry_s",
    "incremental.state_s",
    "incremental.peak_rss_mb", "incremental_pct",
    "naive.seconds", "naive.peak_rss_mb", "naive_pct",
    "sql.seconds", "sql.peak_rss_mb", "sql_ratio",
)  # fmt: skip


def _has(samples: list[dict[str, Any]], key: str) -> bool:
    """Whether every sample measured `key` (the plain-Python baseline is optional)."""
    mode = key.split(".")[0]
    return all(mode in sample for sample in samples)


def _median(samples: list[dict[str, Any]], key: str) -> float:
    def value(sample: dict[str, Any]) -> float:
        found: Any = sample
        for part in key.split("."):
            found = found[part]
        return float(found)

    return statistics.median(value(s) for s in samples)


def _checks(samples: list[dict[str, Any]], planted: dict[str, int]) -> dict[str, Any]:
    """Whether every path found exactly the planted gaps, and the two incremental paths the
    very same rows, in every run; the differences when not."""
    differences = []
    for i, sample in enumerate(samples, 1):
        for mode in MODES:
            if mode not in sample:
                continue
            found = sample[mode]["gaps"]
            for code in sorted(planted.keys() | found.keys()):
                if found.get(code, 0) != planted.get(code, 0):
                    differences.append(
                        f"run {i} {mode}: {code} found {found.get(code, 0)}, "
                        f"planted {planted.get(code, 0)}"
                    )
        if sample["incremental"]["digest"] != sample["naive"]["digest"]:
            differences.append(f"run {i}: incremental and naive gap rows differ")
        if sample["sql"]["keys"] != sample["full"]["keys"]:
            differences.append(f"run {i}: the SQL baseline's gaps differ from the full run's")
    return {"all_found": not differences, "differences": differences}


# ---------------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    plain = "baseline.seconds" in report["median"]
    rows = [
        "| run | full s (load / snapshot / gaps) | full peak MB | SQL s | SQL peak MB "
        "| **full / SQL** | incremental s (load / scope / snapshot / gaps / carry / state) "
        "| incremental vs full | naive day s (vs full) |"
        + (" plain Python s (read / match) | plain peak MB | plain / full |" if plain else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if plain else ""),
    ]

    def row(label: str, get: Any) -> str:
        def seconds(mode: str, *parts: str) -> str:
            split = " / ".join(f"{get(f'{mode}.{p}'):.2f}" for p in parts)
            return f"{get(f'{mode}.seconds'):.2f} ({split})"

        line = (
            f"| {label} | {seconds('full', 'load_s', 'snapshot_s', 'gaps_s')} | "
            f"{get('full.peak_rss_mb'):,.0f} | {get('sql.seconds'):.2f} | "
            f"{get('sql.peak_rss_mb'):,.0f} | **{get('sql_ratio'):.2f}x** | "
            + seconds(
                "incremental", "load_s", "scope_s", "snapshot_s", "gaps_s", "carry_s", "state_s"
            )
            + f" | {get('incremental_pct'):.1f}% | {get('naive.seconds'):.2f} "
            f"({get('naive_pct'):.0f}%) |"
        )
        if plain:
            line += (
                f" {seconds('baseline', 'read_s', 'match_s')} | "
                f"{get('baseline.peak_rss_mb'):,.0f} | {get('baseline_ratio'):.1f}x |"
            )
        return line

    for number, sample in enumerate(report["samples"], 1):
        rows.append(row(str(number), lambda key, s=sample: _median([s], key)))
    median = report["median"]
    rows.append(row("**median**", lambda key: median[key]))
    return "\n".join(rows)


def gaps_table(report: dict[str, Any]) -> str:
    planted = report["dataset"]["planted"]
    first = report["samples"][0]
    modes = [m for m in ("full", "sql", "incremental", "naive", "baseline") if m in first]
    names = {
        "full": "full",
        "sql": "SQL",
        "incremental": "after the day: incremental",
        "naive": "naive",
        "baseline": "plain Python",
    }
    rows = [
        "| gap | planted | " + " | ".join(names[m] for m in modes) + " |",
        "|---|---:|" + "---:|" * len(modes),
    ]
    codes = sorted(planted.keys() | {c for m in modes for c in first[m]["gaps"]})
    for code in codes:
        cells = " | ".join(f"{first[m]['gaps'].get(code, 0):,}" for m in modes)
        rows.append(f"| {code} | {planted.get(code, 0):,} | {cells} |")
    return "\n".join(rows)


def verdict(report: dict[str, Any]) -> str:
    m = report["median"]
    sql_ok = m["sql_ratio"] <= TARGET_SQL_RATIO and m["full.peak_rss_mb"] <= TARGET_SQL_PEAK_MB
    incremental_ok = m["incremental.seconds"] <= TARGET_INCREMENTAL_S
    checks = report["checks"]
    lines = [
        f"Full run (load + snapshot + gaps): **{m['full.seconds']:.2f} s, "
        f"{m['full.peak_rss_mb']:,.0f} MB peak**; hand-written DuckDB SQL from the same files "
        f"(`bench/reconcile_sql_baseline.py`): {m['sql.seconds']:.2f} s, "
        f"{m['sql.peak_rss_mb']:,.0f} MB: **{m['sql_ratio']:.2f}x** (target at most "
        f"{TARGET_SQL_RATIO}x and {TARGET_SQL_PEAK_MB:,} MB): {'met' if sql_ok else 'MISSED'}.",
        f"One day of changes: **{m['incremental.seconds']:.2f} s**, "
        f"{m['incremental_pct']:.1f} % of the full run (target at most "
        f"{TARGET_INCREMENTAL_S} s): {'met' if incremental_ok else 'MISSED'}. Recomputing every "
        f"gap after the day's load instead (naive) takes {m['naive.seconds']:.2f} s "
        f"({m['naive_pct']:.0f} %).",
        "Every path found exactly the planted gaps in every run, the SQL baseline the very gaps "
        "of the full run (their keys), and the incremental gaps equal the naive recomputation "
        "row for row: "
        + ("yes." if checks["all_found"] else "NO: " + "; ".join(checks["differences"])),
    ]
    if "baseline.seconds" in m:
        lines.insert(
            1,
            f"Plain-Python baseline: {m['baseline.seconds']:.2f} s, "
            f"{m['baseline.peak_rss_mb']:,.0f} MB peak: the warehouse path is "
            f"**{m['baseline_ratio']:.1f}x** faster.",
        )
    return "\n\n".join(lines)


def docs_section(report: dict[str, Any], command: str) -> str:
    from bench.sync_support import machine_line

    data = report["dataset"]
    rows = data["rows"]
    code = report["code"]
    return (
        f"\n## Reconciliation at scale: snapshot files to gaps ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine_line(report['machine'])}  \n"
        f"Code: {code['commit'] or 'unknown'}{' with uncommitted changes' if code['dirty'] else ''}"
        f"  \nData (`bench/reconcile_data.py`, seed {report['seed']}, generated in "
        f"{data['seconds']:.1f} s): {report['orders']:,} orders and {report['returns']:,} "
        f"returns; {sum(rows.values()):,} rows in 8 Parquet files "
        f"({', '.join(f'{t} {n:,}' for t, n in rows.items())}). The day on top: "
        f"{data['day_returns']:,} returns changed or new, {sum(data['day_rows'].values()):,} "
        f"rows. Median of {report['runs']} runs; each figure from its own process, timed after "
        "the imports, peak = the process's resident high-water mark (`VmHWM`).\n\n"
        f"{table(report)}\n\n{gaps_table(report)}\n\n{verdict(report)}\n"
    )


def _child_main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=[m for m in MODES if m != "sql"], required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--now", type=datetime.fromisoformat, required=True)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--memory-limit")
    args = parser.parse_args(argv)
    warehouse = {"threads": args.threads, "memory_limit": args.memory_limit}
    if args.child == "baseline":
        result = measure_baseline(args.data, args.now)
    else:
        result = measure(args.child, args.data, args.db, args.now, warehouse)
    print(json.dumps(result))


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
    parser.add_argument("--data", type=Path, help="keep the generated files here")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--memory-limit", help="DuckDB memory limit, e.g. 2GB")
    parser.add_argument(
        "--no-plain",
        action="store_true",
        help="skip the plain-Python baseline (it needs about 8x the memory: not at 10M)",
    )
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/)")
    parser.add_argument("--docs", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    report = run(
        args.orders,
        args.returns,
        args.runs,
        args.seed,
        data=args.data,
        threads=args.threads,
        memory_limit=args.memory_limit,
        plain=not args.no_plain,
    )
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(table(report))
    print(f"\n{gaps_table(report)}\n\n{verdict(report)}")
    print(machine_line(report["machine"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    else:
        print(f"wrote {write_results('reconcile_scale', report)}")
    if args.docs:
        command = (
            f".venv/bin/python -m bench.reconcile_scale --orders {args.orders} "
            f"--returns {args.returns} --runs {args.runs} --seed {args.seed}"
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
