"""The warehouse: a DuckDB file holding snapshots of both systems, dated gaps and the digest
outbox (docs/architecture.md#the-reconciliation-pipeline).

One writer: only the reconciliation flow opens it for writing (DuckDB allows one writing process
per file). Snapshots are loaded incrementally: a load names the tables it brings, and for each
table the rows whose key (`tables.TABLE_KEYS`) appears in the new rows are replaced. A parent
brings its children with it: a return reloaded with its items replaces all of its old items, so
an item that is gone from Reveni is gone here too.

| table | replaced by key | also replaced when its parent is in the load |
|---|---|---|
| reveni_items, reveni_refunds | reveni_return_id | reveni_returns |
| centra_payments | order_number | centra_orders |
| centra_return_lines | centra_return_id | centra_returns |

A table a load does not name is left alone (its file or frame missing means "no news", not
"nothing"); a table named with no rows is news: the parents in the load have no such children.

Loads are bulk: frames go in as Arrow and Parquet files are read by DuckDB itself, with
`INSERT ... SELECT` and `DELETE ... USING`, never row by row. A load is one transaction: it
lands whole or not at all. Money is integer minor units (BIGINT); a float column where an
integer is due is refused, never rounded. Times are UTC (the connection's time zone is UTC).

Every snapshot row also carries `_load_id`, the load that wrote it, so the rows a load changed
can be found again (`changed_scope`): an incremental run recomputes the gaps of what changed
(`snapshot(scope=...)`) and carries the others over from the last run (`Scope.carry`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl
import pyarrow as pa

from returnbridge.clock import Now, utc_now
from returnbridge.reconcile.tables import GAPS, SNAPSHOT_TABLES, TABLE_KEYS, conform, empty

SCHEMA_VERSION: Final = 3
# Versions this code opens: 1 lacks the gap state (`gap_state`, `gap_runs`), 1 and 2 the gaps'
# fact columns (`GAP_FACT_COLUMNS`); both are added on opening for writing, and a reader reads
# what is missing as empty (no gap state, null facts).
_UPGRADABLE: Final = frozenset({1, 2})
# The gap columns added in version 3 (nullable: the gaps recorded before have none).
GAP_FACT_COLUMNS: Final = ("centra_amount_minor", "centra_currency", "deadline")

# child table -> its parent table (the key column is shared)
PARENTS: Final[dict[str, str]] = {
    "reveni_items": "reveni_returns",
    "reveni_refunds": "reveni_returns",
    "centra_payments": "centra_orders",
    "centra_return_lines": "centra_returns",
}

OUTCOMES: Final = frozenset({"retried", "healed", "still_open"})
# What identifies a gap across runs (as `ReturnException.key` identifies an exception).
GAP_KEY: Final = ("code", "reveni_return_id", "order_number", "sku")
GAP_COLUMNS: Final = pl.Schema([*GAPS.items(), ("run_date", pl.Date()), ("outcome", pl.String())])

LOADS: Final = pl.Schema(
    [
        ("load_id", pl.Int64()),
        ("source", pl.String()),
        ("snapshot_date", pl.Date()),
        ("watermark", pl.String()),
        ("rows", pl.String()),  # JSON {table: rows inserted}
        ("replaced", pl.String()),  # JSON {table: rows deleted because newer ones came}
        ("seconds", pl.Float64()),
        ("loaded_at", pl.Datetime("us", "UTC")),
    ]
)

GAP_RUNS: Final = pl.Schema(
    [
        ("as_of", pl.Datetime("us", "UTC")),
        ("load_id", pl.Int64()),
        ("rules", pl.String()),
        ("mode", pl.String()),
        ("reason", pl.String()),
        ("gaps", pl.Int64()),
        ("computed_at", pl.Datetime("us", "UTC")),
    ]
)

# A load of at least this many rows hands back the buffer memory it used (`_release_buffers`).
_LARGE_LOAD_ROWS: Final = 1_000_000

# The restock stock change's description (`core.actions.RESTOCK_DESCRIPTION`) names its return.
_RESTOCK_PREFIX: Final = "returnbridge restock "
_RESTOCK_PREFIX_LENGTH: Final = len(_RESTOCK_PREFIX)


@dataclass(frozen=True)
class Snapshot:
    """The current state: one Polars frame per table of `SNAPSHOT_TABLES`, in its schema (read
    for the gap rules, `Warehouse.snapshot(reads=...)`: only the columns they read)."""

    reveni_returns: pl.DataFrame
    reveni_items: pl.DataFrame
    reveni_refunds: pl.DataFrame
    centra_orders: pl.DataFrame
    centra_payments: pl.DataFrame
    centra_returns: pl.DataFrame
    centra_return_lines: pl.DataFrame
    centra_stock_changes: pl.DataFrame

    @classmethod
    def from_frames(cls, frames: Mapping[str, pl.DataFrame]) -> Snapshot:
        """A snapshot of `frames` (missing tables are empty), each conformed to its schema;
        ValueError names an unknown table or a missing column."""
        _check_known(frames)
        return cls(
            **{
                table: conform(frames[table], schema, table) if table in frames else empty(schema)
                for table, schema in SNAPSHOT_TABLES.items()
            }
        )

    def frames(self) -> dict[str, pl.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def rows(self) -> dict[str, int]:
        return {table: frame.height for table, frame in self.frames().items()}


@dataclass(frozen=True)
class TableRead:
    """What a reader of the snapshot (the gap rules: `rules.rule_reads`) needs of one table:
    its `columns`, and the SQL conditions its rows must meet, evaluated in DuckDB so that the
    rows it never reads never leave the warehouse. `where`: always; `where_unscoped`: only in a
    read of the whole warehouse (a condition a scope already implies, not worth its cost
    there)."""

    columns: tuple[str, ...]
    where: str | None = None
    where_unscoped: str | None = None


@dataclass(frozen=True)
class LoadReport:
    source: str
    snapshot_date: date
    rows: dict[str, int]  # rows inserted per table
    replaced: dict[str, int]  # old rows deleted per table because new rows replaced them
    seconds: float
    load_id: int


@dataclass(frozen=True)
class Scope:
    """What some loads changed, closed over what the gap rules read together
    (`Warehouse.changed_scope`).

    `reveni_return_ids`: the returns whose gaps must be recomputed; `order_numbers`: the Centra
    orders likewise. A gap about anything else is as the last run found it. An incremental run
    (`incremental.current_gaps`, which also keeps the last run's gaps in the warehouse):

        scope = warehouse.changed_scope(state.load_id, updated_after=...)
        fresh = compute_gaps(warehouse.snapshot(scope=scope), config=config, now=now)
        gaps = scope.carry(state.gaps, fresh, now=now)

    `previous` must hold every gap of the last run, before any was dropped as explained by an
    open ledger exception (an exception resolved since would otherwise hide its gap): filter
    the explained ones after carrying."""

    reveni_return_ids: pl.Series  # String
    order_numbers: pl.Series  # Int64

    def covers(self, gaps: pl.DataFrame) -> pl.Series:
        """Per gap row: whether it is about something in the scope."""
        return gaps.select(
            pl.col("reveni_return_id").is_in(self.reveni_return_ids.implode()).fill_null(False)
            | pl.col("order_number").is_in(self.order_numbers.implode()).fill_null(False)
        ).to_series()

    def carry(self, previous: pl.DataFrame, fresh: pl.DataFrame, *, now: datetime) -> pl.DataFrame:
        """The gaps of the whole warehouse at `now`: `fresh` (computed on the scope's snapshot,
        so about the scope only) plus the gaps of `previous` (the last run's) outside the scope,
        their age counted again to `now`; in `compute_gaps`' order."""
        inside = self.covers(fresh)
        if not inside.all():
            raise ValueError(f"{(~inside).sum()} fresh gaps are about something out of scope")
        kept = conform(previous, GAPS, "previous gaps").filter(~self.covers(previous))
        if "age_days" in GAPS:
            age = (pl.lit(now, pl.Datetime("us", "UTC")) - pl.col("since")).dt.total_days()
            kept = kept.with_columns(age_days=age.clip(lower_bound=0).cast(pl.Int64))
        return pl.concat([kept, conform(fresh, GAPS, "fresh gaps")]).sort(
            "owner", "code", "since", "order_number", "reveni_return_id", nulls_last=True
        )


@dataclass(frozen=True)
class GapState:
    """The latest gap computation (`Warehouse.gap_state`): every gap of the warehouse as it was
    after load `load_id`, at `as_of`, by the rules of version `rules`, before any was left out
    as explained by an open ledger exception. What an incremental computation carries over."""

    as_of: datetime
    load_id: int
    rules: str
    gaps: pl.DataFrame  # GAPS


class Warehouse:
    """The DuckDB warehouse file (`':memory:'` for a throwaway one)."""

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        read_only: bool = False,
        clock: Now | None = None,
    ) -> None:
        self.path = str(path)
        self._clock = clock or utc_now
        self._memory_limit = memory_limit
        config: dict[str, Any] = {}
        if threads is not None:
            config["threads"] = threads
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        # Nothing here relies on the order rows were inserted in (reads that need an order
        # say so): DuckDB then loads and scans in parallel with less memory.
        config["preserve_insertion_order"] = False
        if self.path != ":memory:" and not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(self.path, read_only=read_only, config=config)
        try:
            self._rows("SET TimeZone = 'UTC'")
            if read_only:
                self._check_version()
            else:
                self._create()
        except BaseException:
            self._con.close()
            raise

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        with self._transaction():
            self._rows(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            version = self._value("SELECT max(version) FROM schema_version")
            if version is None or version in _UPGRADABLE:
                self._rows(
                    "INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION, self._clock()]
                )
            elif version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: warehouse schema version {version}, this code knows "
                    f"{SCHEMA_VERSION}"
                )
            for table, schema in SNAPSHOT_TABLES.items():
                self._rows(
                    f"CREATE TABLE IF NOT EXISTS {table} ({_columns_ddl(schema)}, "
                    "_load_id BIGINT NOT NULL)"
                )
            self._rows("CREATE SEQUENCE IF NOT EXISTS load_ids START 1")
            self._rows(
                "CREATE TABLE IF NOT EXISTS loads (load_id BIGINT PRIMARY KEY, "
                "source VARCHAR NOT NULL, snapshot_date DATE NOT NULL, watermark VARCHAR, "
                "rows VARCHAR NOT NULL, replaced VARCHAR NOT NULL, seconds DOUBLE NOT NULL, "
                "loaded_at TIMESTAMPTZ NOT NULL)"
            )
            self._rows(f"CREATE TABLE IF NOT EXISTS gaps ({_columns_ddl(GAP_COLUMNS)})")
            # The latest gap computation, every gap before any is left out as explained by the
            # ledger (`GapState`), and the log of computations (the latest row goes with it).
            self._rows(f"CREATE TABLE IF NOT EXISTS gap_state ({_columns_ddl(GAPS)})")
            for table in ("gaps", "gap_state"):  # version 3: the facts (appended, by name)
                for column in GAP_FACT_COLUMNS:
                    self._rows(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                        f"{_sql_type(GAPS[column])}"
                    )
            self._rows("CREATE SEQUENCE IF NOT EXISTS gap_run_ids START 1")
            self._rows(
                "CREATE TABLE IF NOT EXISTS gap_runs ("
                "id BIGINT PRIMARY KEY DEFAULT nextval('gap_run_ids'), as_of TIMESTAMPTZ NOT NULL, "
                "load_id BIGINT NOT NULL, rules VARCHAR NOT NULL, mode VARCHAR NOT NULL, "
                "reason VARCHAR NOT NULL, gaps BIGINT NOT NULL, computed_at TIMESTAMPTZ NOT NULL)"
            )
            self._rows("CREATE SEQUENCE IF NOT EXISTS digest_ids START 1")
            self._rows(
                "CREATE TABLE IF NOT EXISTS digests ("
                "id BIGINT PRIMARY KEY DEFAULT nextval('digest_ids'), run_date DATE NOT NULL, "
                "owner VARCHAR NOT NULL, channel VARCHAR NOT NULL, text VARCHAR NOT NULL, "
                "blocks VARCHAR NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                "last_error VARCHAR, created_at TIMESTAMPTZ NOT NULL, sent_at TIMESTAMPTZ, "
                "sent_ts VARCHAR)"
            )

    def _check_version(self) -> None:
        try:
            version = self._value("SELECT max(version) FROM schema_version")
        except duckdb.CatalogException:
            raise RuntimeError(f"{self.path} is not a returnbridge warehouse") from None
        if version != SCHEMA_VERSION and version not in _UPGRADABLE:
            raise RuntimeError(
                f"{self.path}: warehouse schema version {version}, this code knows {SCHEMA_VERSION}"
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._con.begin()
        try:
            yield
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()

    # ------------------------------------------------------------------------------ loads

    def load(
        self,
        frames: Mapping[str, pl.DataFrame],
        *,
        snapshot_date: date,
        source: str,
        watermark: str | None = None,
    ) -> LoadReport:
        """Load `frames` (table name -> rows in that table's schema; `snapshot_date` is set
        here) in one transaction, replacing the rows their keys name. ValueError names the
        table of an unknown name, a missing column or a column of the wrong type; a failure
        leaves the warehouse as it was."""
        started = time.perf_counter()
        _check_known(frames)
        arrow: dict[str, pa.Table] = {}
        for table, schema in SNAPSHOT_TABLES.items():
            if table in frames:
                frame = frames[table].with_columns(snapshot_date=pl.lit(snapshot_date))
                _check_lossless(dict(frame.schema), schema, table)
                try:
                    arrow[table] = conform(frame, schema, table).to_arrow()
                except pl.exceptions.PolarsError as exc:
                    raise ValueError(f"{table}: {exc}") from exc
        views = {table: f"_new_{table}" for table in arrow}
        try:
            for table, view in views.items():
                self._con.register(view, arrow[table])
            sources = {
                table: f"SELECT {', '.join(SNAPSHOT_TABLES[table].names())} FROM {view}"
                for table, view in views.items()
            }
            return self._load(sources, snapshot_date, source, watermark, started)
        finally:
            for view in views.values():
                self._con.unregister(view)

    def load_files(
        self,
        directory: Path,
        *,
        snapshot_date: date,
        source: str,
        watermark: str | None = None,
    ) -> LoadReport:
        """Load the Parquet files of `directory`, one per table, named `<table>.parquet`
        (tables without a file are not part of the load), read by DuckDB straight into the
        warehouse. As `load` otherwise; other files are ignored."""
        started = time.perf_counter()
        sources: dict[str, str] = {}
        for table, schema in SNAPSHOT_TABLES.items():
            path = Path(directory) / f"{table}.parquet"
            if not path.exists():
                continue
            found = pl.read_parquet_schema(path)
            missing = [n for n in schema.names() if n not in found and n != "snapshot_date"]
            if missing:
                raise ValueError(f"{table}: missing columns {missing} in {path}")
            _check_lossless(dict(found), schema, table)
            columns = ", ".join(
                f"DATE '{snapshot_date.isoformat()}' AS snapshot_date"
                if name == "snapshot_date"
                else f"CAST({name} AS {_sql_type(dtype)}) AS {name}"
                for name, dtype in schema.items()
            )
            sources[table] = f"SELECT {columns} FROM read_parquet('{_quoted(path)}')"
        return self._load(sources, snapshot_date, source, watermark, started)

    def _load(
        self,
        sources: Mapping[str, str],
        snapshot_date: date,
        source: str,
        watermark: str | None,
        started: float,
    ) -> LoadReport:
        """Replace and insert the rows of each `sources[table]` (a SELECT in the table's
        columns) in one transaction, and record the load."""
        rows: dict[str, int] = {}
        replaced: dict[str, int] = {}
        table = "loads"
        try:
            with self._transaction():
                load_id = self._scalar("SELECT nextval('load_ids')")
                for table in sources:
                    replaced[table] = self._replace(table, sources)
                for table, select in sources.items():
                    rows[table] = self._scalar(
                        f"INSERT INTO {table} SELECT *, ? FROM ({select})", [load_id]
                    )
                table = "loads"
                self._rows(
                    "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        load_id,
                        source,
                        snapshot_date,
                        watermark,
                        json.dumps(rows),
                        json.dumps(replaced),
                        time.perf_counter() - started,
                        self._clock(),
                    ],
                )
        except duckdb.Error as exc:
            raise ValueError(f"{table}: {exc}") from exc
        # Write the load into the file now: the first checkpoint after a large load also
        # compacts what the parallel insert wrote, work that would otherwise fall on whoever
        # next closes (or checkpoints) the warehouse.
        self._rows("CHECKPOINT")
        if sum(rows.values()) >= _LARGE_LOAD_ROWS:
            self._release_buffers()
        return LoadReport(
            source=source,
            snapshot_date=snapshot_date,
            rows=rows,
            replaced=replaced,
            seconds=time.perf_counter() - started,
            load_id=load_id,
        )

    def _release_buffers(self) -> None:
        """Hand back the memory DuckDB's buffer pool kept of what was just written (it is in
        the file now): lowering the memory limit evicts it, the limit is then as it was. After
        a large load this is a few hundred MB the reads that follow would otherwise add to."""
        self._rows("SET memory_limit = '32MB'")
        if self._memory_limit is None:
            self._rows("RESET memory_limit")
        else:
            self._rows("SET memory_limit = ?", [self._memory_limit])

    def _replace(self, table: str, sources: Mapping[str, str]) -> int:
        """Delete the rows of `table` that the load replaces: those whose key is in the new
        rows, or (for a child) in its parent's new rows. The count deleted."""
        if not self._value(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            return 0  # nothing to replace (a first load): no second read of the new keys
        keys = TABLE_KEYS[table]
        key_list = ", ".join(keys)
        parent = PARENTS.get(table)
        replacing = [table] if parent is None or parent not in sources else [table, parent]
        union = " UNION ".join(f"SELECT {key_list} FROM ({sources[t]})" for t in replacing)
        match = " AND ".join(f"{table}.{k} = k.{k}" for k in keys)
        return self._scalar(f"DELETE FROM {table} USING ({union}) k WHERE {match}")

    def watermark(self, source: str) -> str | None:
        """The watermark of the latest load of `source` that recorded one (None: none did)."""
        found = self._value(
            "SELECT watermark FROM loads WHERE source = ? AND watermark IS NOT NULL "
            "ORDER BY load_id DESC LIMIT 1",
            [source],
        )
        return None if found is None else str(found)

    def loads(self) -> pl.DataFrame:
        """The load history, oldest first (`rows` and `replaced` are JSON objects)."""
        return self._frame("SELECT * FROM loads ORDER BY load_id", LOADS)

    def last_load_id(self) -> int:
        """The id of the latest load (0 before the first)."""
        return self._scalar("SELECT coalesce(max(load_id), 0) FROM loads")

    def last_loaded_at(self) -> datetime | None:
        """When the latest load landed (None before the first): how fresh the data is."""
        found = self._value("SELECT max(loaded_at) FROM loads")
        return None if found is None else found.astimezone(UTC)

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """The rows of a read-only `sql` over the snapshot tables, as Polars (the month-end
        report's narrow reads: a month of rows, never the whole history)."""
        frame = pl.from_arrow(self._con.sql(sql, params=params).to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    # ------------------------------------------------------------------------------ reads

    def snapshot(
        self, *, scope: Scope | None = None, reads: Mapping[str, TableRead] | None = None
    ) -> Snapshot:
        """The current state of every table, DuckDB -> Arrow -> Polars. With `scope`, only the
        rows the gap rules read about the scope's returns and orders (`changed_scope`). With
        `reads` (table -> `TableRead`, what a reader such as the gap rules reads of it), only
        those columns of those rows, filtered in DuckDB; a table `reads` does not name is read
        as empty."""
        selects: dict[str, str] = {}
        schemas: dict[str, pl.Schema] = {}
        for table, schema in SNAPSHOT_TABLES.items():
            read = None if reads is None else reads.get(table)
            if reads is not None and read is None:
                continue
            conditions = [] if scope is None else [f"({_SCOPED[table]})"]
            if read is not None:
                schema = pl.Schema({name: schema[name] for name in read.columns})
                if read.where is not None:
                    conditions.append(f"({read.where})")
                if read.where_unscoped is not None and scope is None:
                    conditions.append(f"({read.where_unscoped})")
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            selects[table] = f"SELECT {', '.join(schema.names())} FROM {table}{where}"
            schemas[table] = schema
        if scope is not None:
            self._con.register(
                "_scope_returns", pa.table({"rid": scope.reveni_return_ids.to_arrow()})
            )
            self._con.register("_scope_orders", pa.table({"num": scope.order_numbers.to_arrow()}))
        try:
            return Snapshot(
                **{
                    table: self._frame(selects[table], schemas[table])
                    if table in selects
                    else empty(schema)
                    for table, schema in SNAPSHOT_TABLES.items()
                }
            )
        finally:
            if scope is not None:
                self._con.unregister("_scope_returns")
                self._con.unregister("_scope_orders")

    def rows_of(self, table: str, where: str, params: list[Any] | None = None) -> pl.DataFrame:
        """The rows of snapshot table `table` that satisfy the SQL condition `where` (with
        `params`), in the table's schema: a narrow read where a whole snapshot is not needed."""
        schema = SNAPSHOT_TABLES[table]
        return self._frame(
            f"SELECT {', '.join(schema.names())} FROM {table} WHERE {where}", schema, params
        )

    def changed_scope(
        self,
        since_load: int,
        *,
        updated_after: datetime | None = None,
        pending_entry_types: Sequence[str] = (),
    ) -> Scope:
        """The returns and orders whose gaps may differ from those of the state after load
        `since_load`: everything the later loads wrote, closed over what the gap rules read
        together (a return's order and that order's other returns, its Centra returns, restocks
        and exchange orders), plus the returns whose gaps depend on the clock: instant returns
        awaiting inspection (Reveni's deadline comes closer without any load) and, with
        `updated_after` (the last run's time less the rules' grace), returns whose effects
        became due since, and with `pending_entry_types` (the refund and refund request entry
        types), the orders with such an entry still PENDING (it may have waited too long by
        now)."""
        after = _RESTOCK_PREFIX_LENGTH + 1
        recent = "" if updated_after is None else " OR updated_at >= $after"
        pending = (
            "\n            UNION SELECT order_number FROM centra_payments"
            " WHERE list_contains($pending, entry_type) AND status = 'PENDING'"
            if pending_entry_types
            else ""
        )
        steps = [
            # returns whose rows changed, and those the clock changes
            f"""CREATE TEMP TABLE _touched_returns AS
            SELECT reveni_return_id AS rid FROM reveni_returns
                WHERE _load_id > $load OR (instant AND awaiting_inspection){recent}
            UNION SELECT reveni_return_id FROM reveni_items WHERE _load_id > $load
            UNION SELECT reveni_return_id FROM reveni_refunds WHERE _load_id > $load
            UNION SELECT external_id FROM centra_returns
                WHERE _load_id > $load AND external_id IS NOT NULL
            UNION SELECT external_id FROM centra_returns WHERE centra_return_id IN
                (SELECT centra_return_id FROM centra_return_lines WHERE _load_id > $load)
            UNION SELECT substr(description, {after}) FROM centra_stock_changes
                WHERE _load_id > $load AND starts_with(description, '{_RESTOCK_PREFIX}')
            UNION SELECT reveni_return_id FROM reveni_items WHERE exchange_order_number IN
                (SELECT order_number FROM centra_orders WHERE _load_id > $load)""",
            # orders whose rows changed, and those of the returns above
            f"""CREATE TEMP TABLE _touched_orders AS
            SELECT order_number AS num FROM centra_orders WHERE _load_id > $load
            UNION SELECT order_number FROM centra_payments WHERE _load_id > $load
            UNION SELECT order_number FROM centra_returns WHERE _load_id > $load{pending}
            UNION SELECT order_number FROM reveni_returns
                WHERE reveni_return_id IN (SELECT rid FROM _touched_returns)""",
            # every return on those orders: an order's returns share its refunds
            """CREATE TEMP TABLE _scope_r AS
            SELECT rid FROM _touched_returns WHERE rid IS NOT NULL
            UNION SELECT reveni_return_id FROM reveni_returns
                WHERE order_number IN (SELECT num FROM _touched_orders)""",
            # and the orders the rules read about them, their own and their exchange orders
            # (the rules say nothing about an order no Reveni return names)
            """CREATE TEMP TABLE _scope_o AS
            SELECT order_number AS num FROM reveni_returns
                WHERE order_number IS NOT NULL
                AND reveni_return_id IN (SELECT rid FROM _scope_r)
            UNION SELECT exchange_order_number FROM reveni_items
                WHERE exchange_order_number IS NOT NULL
                AND reveni_return_id IN (SELECT rid FROM _scope_r)""",
        ]
        temp = ("_touched_returns", "_touched_orders", "_scope_r", "_scope_o")
        try:
            values = {
                "load": since_load,
                "after": updated_after,
                "pending": list(pending_entry_types),
            }
            for step in steps:
                self._rows(step, {k: v for k, v in values.items() if f"${k}" in step})
            returns = self._con.sql("SELECT rid FROM _scope_r").pl()["rid"]
            orders = self._con.sql("SELECT num FROM _scope_o").pl()["num"]
        finally:
            for name in temp:
                self._rows(f"DROP TABLE IF EXISTS {name}")
        return Scope(reveni_return_ids=returns.cast(pl.String), order_numbers=orders.cast(pl.Int64))

    # ------------------------------------------------------------------------------ gaps

    def record_gaps(
        self,
        run_date: date,
        gaps: pl.DataFrame,
        *,
        outcomes: Mapping[tuple[str, str | None, int | None, str | None], str] | None = None,
    ) -> None:
        """Record `run_date`'s gaps (replacing any recorded for that date before).

        `outcomes` (gap key `GAP_KEY` -> retried | healed | still_open) sets the `outcome` of
        the gaps they name; others get none (or the `outcome` column of `gaps`, when it has
        one). ValueError on an unknown outcome or a key that names no gap."""
        frame = conform(gaps, GAPS, "gaps").with_columns(
            run_date=pl.lit(run_date),
            outcome=gaps["outcome"].cast(pl.String)
            if "outcome" in gaps.columns
            else pl.lit(None, pl.String),
        )
        if outcomes:
            bad = sorted(set(outcomes.values()) - OUTCOMES)
            if bad:
                raise ValueError(f"unknown gap outcomes {bad}; known: {sorted(OUTCOMES)}")
            given = pl.DataFrame(
                [(*key, value) for key, value in outcomes.items()],
                schema={**{k: GAPS[k] for k in GAP_KEY}, "_outcome": pl.String},
                orient="row",
            )
            unknown = given.join(frame, on=list(GAP_KEY), how="anti", nulls_equal=True)
            if unknown.height:
                raise ValueError(
                    f"outcomes name {unknown.height} gaps not in `gaps`, e.g. {unknown.row(0)[:4]}"
                )
            frame = (
                frame.join(given, on=list(GAP_KEY), how="left", nulls_equal=True)
                .with_columns(outcome=pl.coalesce("_outcome", "outcome"))
                .drop("_outcome")
            )
        bad = sorted(set(frame["outcome"].drop_nulls().unique()) - OUTCOMES)
        if bad:
            raise ValueError(f"unknown gap outcomes {bad}; known: {sorted(OUTCOMES)}")
        self._con.register("_new_gaps", frame.select(GAP_COLUMNS.names()).to_arrow())
        try:
            with self._transaction():
                self._rows("DELETE FROM gaps WHERE run_date = ?", [run_date])
                self._rows("INSERT INTO gaps BY NAME SELECT * FROM _new_gaps")
        finally:
            self._con.unregister("_new_gaps")

    def gaps(self, run_date: date | None = None) -> pl.DataFrame:
        """The gaps recorded for `run_date` (the latest run date when None; no rows when none
        were recorded), in `GAPS` columns plus `run_date` and `outcome`."""
        if run_date is None:
            run_date = self._value("SELECT max(run_date) FROM gaps")
            if run_date is None:
                return empty(GAP_COLUMNS)
        return self._frame(
            f"SELECT {self._gap_columns('gaps', GAP_COLUMNS)} FROM gaps WHERE run_date = ? "
            "ORDER BY code, order_number, reveni_return_id, sku",
            GAP_COLUMNS,
            [run_date],
        )

    def record_gap_state(
        self,
        gaps: pl.DataFrame,
        *,
        as_of: datetime,
        load_id: int,
        rules: str,
        mode: str,
        reason: str,
    ) -> None:
        """Keep `gaps` (every gap of the warehouse after load `load_id` at `as_of`, none left
        out as explained) as the latest computation (`gap_state`), replacing the one before,
        and log it (`mode`: full | incremental, and why)."""
        frame = conform(gaps, GAPS, "gap state")
        self._con.register("_new_gap_state", frame.to_arrow())
        try:
            with self._transaction():
                self._rows("DELETE FROM gap_state")
                self._rows("INSERT INTO gap_state BY NAME SELECT * FROM _new_gap_state")
                self._rows(
                    "INSERT INTO gap_runs (as_of, load_id, rules, mode, reason, gaps, computed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [as_of, load_id, rules, mode, reason, frame.height, self._clock()],
                )
        finally:
            self._con.unregister("_new_gap_state")

    def gap_state(self) -> GapState | None:
        """The latest gap computation (None: none yet)."""
        latest = self._rows("SELECT as_of, load_id, rules FROM gap_runs ORDER BY id DESC LIMIT 1")
        if not latest:
            return None
        as_of, load_id, rules = latest[0]
        gaps = self._frame(f"SELECT {self._gap_columns('gap_state', GAPS)} FROM gap_state", GAPS)
        return GapState(as_of=as_of.astimezone(UTC), load_id=int(load_id), rules=rules, gaps=gaps)

    def gap_runs(self) -> pl.DataFrame:
        """The log of gap computations, oldest first."""
        return self._frame(
            "SELECT as_of, load_id, rules, mode, reason, gaps, computed_at FROM gap_runs "
            "ORDER BY id",
            GAP_RUNS,
        )

    # ------------------------------------------------------------------------------ digests

    def put_digests(self, run_date: date, digests: Sequence[Mapping[str, Any]]) -> list[int]:
        """Queue digests (each: owner, channel, text, blocks) to be sent; their ids."""
        ids: list[int] = []
        with self._transaction():
            for digest in digests:
                missing = [k for k in ("owner", "channel", "text") if not digest.get(k)]
                if missing:
                    raise ValueError(f"digest without {missing}")
                ids.append(
                    self._scalar(
                        "INSERT INTO digests (run_date, owner, channel, text, blocks, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                        [
                            run_date,
                            digest["owner"],
                            digest["channel"],
                            digest["text"],
                            json.dumps(digest.get("blocks", [])),
                            self._clock(),
                        ],
                    )
                )
        return ids

    def pending_digests(self) -> list[dict[str, Any]]:
        """Digests not sent yet, oldest first."""
        rows = self._rows(
            "SELECT id, run_date, owner, channel, text, blocks, attempts, last_error, created_at "
            "FROM digests WHERE sent_at IS NULL ORDER BY id"
        )
        keys = (
            "id", "run_date", "owner", "channel", "text", "blocks", "attempts", "last_error",
            "created_at",
        )  # fmt: skip
        pending = [dict(zip(keys, row, strict=True)) for row in rows]
        for digest in pending:
            digest["blocks"] = json.loads(digest["blocks"])
        return pending

    def mark_digest_sent(self, id: int, ts: str) -> None:
        """Digest `id` was posted (Slack's message `ts`); sending it again is a no-op."""
        self._update_digest(
            "UPDATE digests SET sent_at = ?, sent_ts = ? WHERE id = ? AND sent_at IS NULL",
            [self._clock(), ts, id],
            id,
        )

    def mark_digest_failed(self, id: int, error: str) -> None:
        """Sending digest `id` failed: it stays pending, one attempt more."""
        self._update_digest(
            "UPDATE digests SET attempts = attempts + 1, last_error = ? "
            "WHERE id = ? AND sent_at IS NULL",
            [error, id],
            id,
        )

    def _update_digest(self, sql: str, params: list[Any], id: int) -> None:
        if self._scalar(sql, params) == 0 and not self._scalar(
            "SELECT count(*) FROM digests WHERE id = ?", [id]
        ):
            raise KeyError(f"no digest {id}")

    def last_digest_at(self, owner: str) -> datetime | None:
        """When the last digest for `owner` was sent (None: never)."""
        when = self._value("SELECT max(sent_at) FROM digests WHERE owner = ?", [owner])
        return None if when is None else when.astimezone(UTC)

    # ------------------------------------------------------------------------------ helpers

    def _rows(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run `sql` and drain its result (DuckDB allows no other statement before that)."""
        return self._con.execute(sql, params or []).fetchall()

    def _value(self, sql: str, params: list[Any] | None = None) -> Any:
        """The first column of the first row of `sql` (None: no row)."""
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def _scalar(self, sql: str, params: list[Any] | None = None) -> int:
        return int(self._value(sql, params))

    def _gap_columns(self, table: str, schema: pl.Schema) -> str:
        """The select list of `schema`'s columns from gap table `table`: a column a version 1 or
        2 file opened for reading does not have yet (the facts) is read as null."""
        have = {
            str(row[0])
            for row in self._rows(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                "AND database_name = current_database() AND schema_name = current_schema()",
                [table],
            )
        }
        return ", ".join(
            name if name in have else f"CAST(NULL AS {_sql_type(dtype)}) AS {name}"
            for name, dtype in schema.items()
        )

    def _frame(self, sql: str, schema: pl.Schema, params: list[Any] | None = None) -> pl.DataFrame:
        table = self._con.sql(sql, params=params).to_arrow_table()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.cast(dict(schema))  # type: ignore[arg-type]


# Per table: its rows the gap rules read about a scope's returns (`_scope_returns.rid`) and
# orders (`_scope_orders.num`).
_IN_RETURNS = "reveni_return_id IN (SELECT rid FROM _scope_returns)"
_IN_ORDERS = "order_number IN (SELECT num FROM _scope_orders)"
_SCOPED: Final[dict[str, str]] = {
    "reveni_returns": _IN_RETURNS,
    "reveni_items": _IN_RETURNS,
    "reveni_refunds": _IN_RETURNS,
    "centra_orders": _IN_ORDERS,
    "centra_payments": _IN_ORDERS,
    "centra_returns": f"{_IN_ORDERS} OR external_id IN (SELECT rid FROM _scope_returns)",
    "centra_return_lines": (
        "centra_return_id IN (SELECT centra_return_id FROM centra_returns WHERE "
        f"{_IN_ORDERS} OR external_id IN (SELECT rid FROM _scope_returns))"
    ),
    "centra_stock_changes": (
        f"starts_with(description, '{_RESTOCK_PREFIX}') AND "
        f"substr(description, {len(_RESTOCK_PREFIX) + 1}) IN (SELECT rid FROM _scope_returns)"
    ),
}


def _check_known(frames: Mapping[str, object]) -> None:
    unknown = sorted(set(frames) - set(SNAPSHOT_TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {list(SNAPSHOT_TABLES)}")


def _check_lossless(found: Mapping[str, Any], schema: pl.Schema, table: str) -> None:
    """ValueError naming the table and column when a column's type would lose information in
    the cast to its schema type: a float or decimal where an integer (money) is due."""
    for name, dtype in schema.items():
        have = found.get(name)
        if have is None or not dtype.is_integer():
            continue
        if have.is_float() or isinstance(have, pl.Decimal):
            raise ValueError(
                f"{table}: column {name} is {have}, expected {dtype} (money is integer minor "
                "units; a float is never rounded into it)"
            )


def _sql_type(dtype: pl.DataType) -> str:
    if dtype == pl.String:
        return "VARCHAR"
    if dtype == pl.Int64:
        return "BIGINT"
    if dtype == pl.Boolean:
        return "BOOLEAN"
    if dtype == pl.Date:
        return "DATE"
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return "TIMESTAMPTZ"
    if dtype == pl.Float64:
        return "DOUBLE"
    raise TypeError(f"no warehouse column type for {dtype}")


def _columns_ddl(schema: pl.Schema) -> str:
    return ", ".join(f"{name} {_sql_type(dtype)}" for name, dtype in schema.items())


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
