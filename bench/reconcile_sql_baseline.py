"""The yardstick of the reconciliation scale benchmark: the same gaps, hand-written in DuckDB SQL,
straight from the same snapshot files.

    .venv/bin/python -m bench.reconcile_sql_baseline --data DIR [--now ISO] [--threads N]

`DIR` holds the history's Parquet files (`bench.reconcile_data`'s `full/`). One in-memory DuckDB
connection reads them (`read_parquet`, only the columns and rows the rules need) and computes
every gap rule of `returnbridge.reconcile.rules` (with `GapConfig()`'s defaults) as one SQL
query: no warehouse file, no load, no snapshot, no Polars. It prints one JSON line: seconds
(after the imports), peak memory (`VmHWM`), the gaps per code and a fingerprint of the gap
keys (code, return, order, SKU), which `bench.reconcile_scale` holds equal to the product's.

What it leaves out by design, as a hand-written yardstick would: the gaps' texts, ages and
facts (only their keys), ledger exceptions, the gap state, incremental runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

# The rules' settings, as `GapConfig()` has them (tests/bench holds them equal).
GRACE: Final = timedelta(hours=1)
INSTANT_WINDOW_DAYS: Final = 30
INSTANT_WARN_DAYS: Final = 3
PENDING_MAX: Final = timedelta(hours=48)
MANUAL_METHOD: Final = "manual"
DEFAULT_NOW: Final = "2026-11-01T06:00:00+00:00"  # bench.reconcile_data.NOW


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list(values: Any) -> str:
    return ", ".join(_text(v) for v in sorted(values))


def gap_sql(directory: Path) -> str:
    """The one query of every gap (code, order_number, reveni_return_id, sku); its
    parameters `$cutoff` (now less the grace), `$now` and `$pending_cutoff`."""
    from returnbridge.connectors.centra.refunds import DEFAULT_REFUND_TYPES as TYPES
    from returnbridge.core.actions import RESTOCK_DESCRIPTION
    from returnbridge.core.planner import ACCEPTING
    from returnbridge.core.validation import NOT_RETURNABLE

    prefix = RESTOCK_DESCRIPTION.split("{rid}")[0]

    def f(table: str) -> str:
        return "read_parquet(" + _text(str(directory / f"{table}.parquet")) + ")"

    accepting = _list(ACCEPTING)
    return f"""
WITH
rr AS (SELECT reveni_return_id, order_number, status, instant, awaiting_inspection, created_at,
              updated_at FROM {f("reveni_returns")}),
ri AS (SELECT reveni_return_id, sku, accepted_units, restock, exchange_n, exchange_sku,
              exchange_units, exchange_order_number FROM {f("reveni_items")}),
co AS (SELECT order_number, status, currency, created_at, grand_total_minor, exchange_of
       FROM {f("centra_orders")}),
cr AS (SELECT centra_return_id, external_id, exchange_part, grand_total_minor
       FROM {f("centra_returns")} WHERE external_id IS NOT NULL),
accepted AS (
    SELECT reveni_return_id, order_number, updated_at, updated_at <= $cutoff AS settled
    FROM rr
    WHERE status IN ({accepting})
      AND order_number IN (SELECT order_number FROM co
                           WHERE status NOT IN ({_list(NOT_RETURNABLE)}))
      AND reveni_return_id IN (SELECT reveni_return_id FROM ri WHERE accepted_units > 0)),
-- restocks: expected per (return, SKU) against returnbridge's restock stock changes
expected AS (
    SELECT reveni_return_id, sku, sum(accepted_units) AS expected FROM ri
    WHERE restock AND accepted_units > 0
      AND reveni_return_id IN (SELECT reveni_return_id FROM rr WHERE status IN ({accepting}))
    GROUP BY ALL),
done AS (
    SELECT substr(description, {len(prefix) + 1}) AS reveni_return_id, sku,
           sum(delta) AS restocked, count(DISTINCT stock_change_id) AS changes
    FROM {f("centra_stock_changes")} WHERE starts_with(description, {_text(prefix)})
    GROUP BY ALL),
restocks AS (
    SELECT k.reveni_return_id, k.sku, r.order_number, coalesce(a.settled, false) AS due,
           coalesce(e.expected, 0) AS expected, coalesce(d.restocked, 0) AS restocked,
           coalesce(d.changes, 0) AS changes
    FROM (SELECT reveni_return_id, sku FROM expected
          UNION SELECT reveni_return_id, sku FROM done) k
    JOIN rr r USING (reveni_return_id)
    LEFT JOIN expected e ON e.reveni_return_id = k.reveni_return_id AND e.sku = k.sku
    LEFT JOIN done d ON d.reveni_return_id = k.reveni_return_id AND d.sku = k.sku
    LEFT JOIN accepted a ON a.reveni_return_id = k.reveni_return_id
    WHERE k.sku IS NOT NULL),
-- Centra's refund attempts: requests paired with their settlements, the rest on their own
entries AS (
    SELECT entry_id, order_number, centra_return_id, entry_type, amount_minor, currency,
           payment_method, external_reference, created_at,
           CASE WHEN entry_type = {_text(TYPES.failed)} THEN 'failed'
                WHEN status = 'SUCCESS' THEN 'settled'
                WHEN status = 'PENDING' THEN 'pending' ELSE 'failed' END AS state
    FROM {f("centra_payments")} WHERE entry_type IN ({_list(TYPES.all)})),
requests AS (
    SELECT *, row_number() OVER (PARTITION BY order_number, centra_return_id,
                                 external_reference ORDER BY created_at, entry_id) AS rank
    FROM entries WHERE entry_type = {_text(TYPES.request)}),
settlements AS (
    SELECT *, row_number() OVER (PARTITION BY order_number, centra_return_id,
                                 external_reference ORDER BY created_at, entry_id) AS rank
    FROM entries WHERE entry_type <> {_text(TYPES.request)} AND external_reference IS NOT NULL),
paired AS (
    SELECT coalesce(s.entry_id, q.entry_id) AS entry_id, q.order_number, q.centra_return_id,
           coalesce(s.amount_minor, q.amount_minor) AS amount_minor,
           coalesce(s.currency, q.currency) AS currency, q.payment_method, q.created_at,
           coalesce(s.state, q.state) AS state, s.entry_id AS settled_by
    FROM requests q LEFT JOIN settlements s
      ON q.order_number IS NOT DISTINCT FROM s.order_number
     AND q.centra_return_id IS NOT DISTINCT FROM s.centra_return_id
     AND q.external_reference IS NOT DISTINCT FROM s.external_reference AND q.rank = s.rank),
attempts AS (
    SELECT entry_id, order_number, centra_return_id, amount_minor, currency, payment_method,
           created_at, state FROM paired
    UNION ALL
    SELECT entry_id, order_number, centra_return_id, amount_minor, currency, payment_method,
           created_at, state FROM entries
    WHERE entry_type <> {_text(TYPES.request)}
      AND entry_id NOT IN (SELECT settled_by FROM paired WHERE settled_by IS NOT NULL)),
refunds AS (
    SELECT a.*, o.external_id AS reveni_return_id FROM attempts a
    LEFT JOIN (SELECT centra_return_id, external_id FROM cr
               WHERE external_id IN (SELECT reveni_return_id FROM rr)) o
      USING (centra_return_id)),
linked AS (SELECT * FROM refunds WHERE reveni_return_id IS NOT NULL),
credits AS (
    SELECT reveni_return_id, sum(amount_minor) AS credited, count(*) AS credits,
           coalesce(bool_or(payment_method <> {_text(MANUAL_METHOD)}), false) AS psp_credit,
           first(currency) AS credit_currency,
           count(DISTINCT centra_return_id) AS credited_returns
    FROM linked WHERE state = 'settled' GROUP BY ALL),
failed AS (
    SELECT reveni_return_id, sum(amount_minor) AS failed_amount FROM linked
    WHERE state = 'failed' AND centra_return_id NOT IN
        (SELECT centra_return_id FROM linked WHERE state IN ('settled', 'pending'))
    GROUP BY ALL),
in_progress AS (
    SELECT reveni_return_id, sum(amount_minor) AS pending_amount FROM linked
    WHERE state = 'pending' GROUP BY ALL),
parts AS (
    SELECT external_id AS reveni_return_id, sum(grand_total_minor) AS centra_value FROM cr
    WHERE NOT exchange_part GROUP BY ALL),
live AS (
    SELECT reveni_return_id, refund_id, method, paid_by, amount_minor, currency, created_at,
           count(*) OVER (PARTITION BY reveni_return_id) AS live_refunds,
           row_number() OVER (PARTITION BY reveni_return_id ORDER BY created_at, refund_id) AS n
    FROM {f("reveni_refunds")} WHERE status <> 'failed'),
due AS (
    SELECT l.*, a.order_number, a.settled, coalesce(c.credits, 0) AS credits, c.credited,
           coalesce(c.credited_returns, 0) AS credited_returns,
           coalesce(c.psp_credit, false) AS psp_credit, c.credit_currency, fl.failed_amount,
           p.pending_amount, pt.centra_value, o.currency AS order_currency,
           l.method = 'original_payment_method' AND l.paid_by = 'merchant' AS psp
    FROM live l JOIN accepted a USING (reveni_return_id)
    LEFT JOIN credits c USING (reveni_return_id)
    LEFT JOIN failed fl USING (reveni_return_id)
    LEFT JOIN in_progress p USING (reveni_return_id)
    LEFT JOIN parts pt USING (reveni_return_id)
    LEFT JOIN co o ON o.order_number = a.order_number
    WHERE l.n = 1 AND l.reveni_return_id IN
        (SELECT reveni_return_id FROM ri WHERE accepted_units > 0 AND exchange_n IS NULL)),
-- refunds made in Centra on returned orders, matched one to one to uncredited Reveni refunds
loose AS (
    SELECT entry_id, order_number, amount_minor, currency, state,
           row_number() OVER (PARTITION BY order_number, amount_minor, currency
                              ORDER BY created_at, entry_id) AS rank
    FROM refunds
    WHERE state IN ('settled', 'pending') AND reveni_return_id IS NULL
      AND order_number IN (SELECT order_number FROM rr)),
due_match AS (
    SELECT reveni_return_id, order_number, amount_minor, currency, created_at,
           credits > 0 OR pending_amount IS NOT NULL AS credited FROM due),
uncredited_ranked AS (
    SELECT *, row_number() OVER (PARTITION BY order_number, amount_minor, currency
                                 ORDER BY created_at, reveni_return_id) AS rank
    FROM due_match WHERE NOT credited),
credited_keys AS (
    SELECT order_number, amount_minor, currency, min(reveni_return_id) AS repeated_return_id
    FROM due_match WHERE credited GROUP BY ALL),
unlinked AS (
    SELECT l.entry_id, l.order_number, l.currency, l.state, u.reveni_return_id AS matched,
           k.repeated_return_id
    FROM loose l
    LEFT JOIN uncredited_ranked u ON u.order_number = l.order_number
        AND u.amount_minor = l.amount_minor AND u.currency = l.currency AND u.rank = l.rank
    LEFT JOIN credited_keys k ON k.order_number = l.order_number
        AND k.amount_minor = l.amount_minor AND k.currency = l.currency),
uncredited AS (
    SELECT *, ((currency <> order_currency)
               OR (psp AND abs(amount_minor - centra_value) > 0)
               OR (NOT psp AND amount_minor - centra_value > 0))
              AND centra_value IS NOT NULL AS cannot_post
    FROM due
    WHERE credits = 0 AND failed_amount IS NULL AND pending_amount IS NULL AND settled
      AND reveni_return_id NOT IN (SELECT matched FROM unlinked WHERE matched IS NOT NULL)),
exchanges AS (
    SELECT i.reveni_return_id, a.order_number, a.settled, i.exchange_sku,
           i.exchange_order_number, i.reveni_return_id || ':' || i.exchange_n AS exchange_of
    FROM ri i JOIN accepted a USING (reveni_return_id)
    WHERE i.exchange_n IS NOT NULL AND i.exchange_units > 0),
exchange_orders AS (
    SELECT x.*, m.order_number AS centra_order, m.grand_total_minor FROM exchanges x
    JOIN co m ON m.exchange_of = x.exchange_of
    UNION ALL
    SELECT x.*, CASE WHEN u.grand_total_minor IS NOT NULL THEN x.exchange_order_number END,
           u.grand_total_minor
    FROM exchanges x
    LEFT JOIN (SELECT order_number, grand_total_minor FROM co WHERE exchange_of IS NULL) u
      ON u.order_number = x.exchange_order_number
    WHERE x.exchange_of NOT IN (SELECT exchange_of FROM co WHERE exchange_of IS NOT NULL))
SELECT 'return_missing' AS code, order_number, reveni_return_id, NULL AS sku FROM accepted
WHERE settled AND reveni_return_id NOT IN (SELECT external_id FROM cr)
UNION ALL
SELECT 'restock_missing', order_number, reveni_return_id, sku FROM restocks
WHERE due AND restocked < expected
UNION ALL
SELECT 'restock_duplicated', order_number, reveni_return_id, sku FROM restocks
WHERE restocked > expected OR changes > 1
UNION ALL
SELECT 'refund_missing', order_number, reveni_return_id, NULL FROM uncredited
WHERE NOT cannot_post
UNION ALL
SELECT 'refund_amount_mismatch', order_number, reveni_return_id, NULL FROM due
WHERE credits > 0 AND pending_amount IS NULL
  AND NOT (credits > credited_returns OR (NOT psp AND psp_credit))
  AND (abs(credited - amount_minor) > 0 OR credit_currency <> currency)
UNION ALL
SELECT 'refund_amount_mismatch', order_number, reveni_return_id, NULL FROM uncredited
WHERE cannot_post
UNION ALL
SELECT DISTINCT 'duplicate_refund', order_number, reveni_return_id, NULL FROM (
    SELECT order_number, reveni_return_id FROM due
    WHERE credits > credited_returns OR (NOT psp AND psp_credit) OR live_refunds > 1
    UNION ALL
    SELECT order_number, repeated_return_id FROM unlinked
    WHERE matched IS NULL AND repeated_return_id IS NOT NULL AND state = 'settled')
UNION ALL
SELECT 'unmatched_centra_refund', order_number, NULL, NULL FROM unlinked
WHERE matched IS NULL AND repeated_return_id IS NULL AND state = 'settled'
GROUP BY order_number, currency
UNION ALL
SELECT 'refund_failed_at_gateway', order_number, reveni_return_id, NULL FROM due
WHERE credits = 0 AND failed_amount IS NOT NULL
UNION ALL
SELECT 'refund_pending_too_long', order_number, reveni_return_id, NULL FROM linked
WHERE state = 'pending' AND created_at <= $pending_cutoff
GROUP BY reveni_return_id, order_number, currency
UNION ALL
SELECT 'exchange_order_missing', order_number, reveni_return_id, exchange_sku
FROM exchange_orders WHERE settled AND centra_order IS NULL
UNION ALL
SELECT 'exchange_not_zero_value', order_number, reveni_return_id, exchange_sku
FROM exchange_orders WHERE centra_order IS NOT NULL AND grand_total_minor <> 0
UNION ALL
SELECT 'instant_deadline_near', order_number, reveni_return_id, NULL FROM rr
WHERE instant AND awaiting_inspection
  AND created_at + INTERVAL {INSTANT_WINDOW_DAYS} DAY - $now <= INTERVAL {INSTANT_WARN_DAYS} DAY
"""


def sql_gaps(
    directory: Path, now: datetime, *, threads: int | None = None
) -> list[tuple[Any, ...]]:
    """Every gap's key (code, reveni_return_id, order_number, sku), computed in DuckDB from
    the snapshot files of `directory`."""
    import duckdb

    config: dict[str, Any] = {"preserve_insertion_order": False}
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET TimeZone = 'UTC'")
        params = {"cutoff": now - GRACE, "now": now, "pending_cutoff": now - PENDING_MAX}
        # in the order of the product's gap key (`warehouse.GAP_KEY`)
        query = f"SELECT code, reveni_return_id, order_number, sku FROM ({gap_sql(directory)})"
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def gap_keys(rows: Any) -> list[tuple[Any, ...]]:
    """Gap keys (code, reveni_return_id, order_number, sku) in one order."""
    return sorted(tuple(row) for row in rows)


def keys_digest(keys: list[tuple[Any, ...]]) -> str:
    """A fingerprint of a gap table's keys, whatever their order: the product's gaps
    (`GAP_KEY` columns) and this query's give the same one when they find the same gaps."""
    text = "\n".join(json.dumps(list(k), default=str) for k in gap_keys(keys))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def peak_mb() -> float:
    """This process's resident high-water mark since exec (`VmHWM` in /proc: unlike
    `ru_maxrss` it does not inherit the peak of the parent that forked it); `ru_maxrss` where
    there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(directory: Path, now: datetime, threads: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    keys = sql_gaps(directory, now, threads=threads)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_mb(),
        "gaps": dict(sorted(Counter(k[0] for k in keys).items())),
        "keys": keys_digest(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the history's Parquet files")
    parser.add_argument("--now", type=datetime.fromisoformat, default=DEFAULT_NOW)
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.now, args.threads)))


if __name__ == "__main__":
    main()
