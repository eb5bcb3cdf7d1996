"""`tracker db copy`: every table of one state DB into another, in bulk, SQLite <-> PostgreSQL.

Part of the store layer (beside `tracker.store`, the other module that runs SQL); the CLI
calls `copy_database` and renders its `CopyReport`.

- **Every table, generically**: the tables of `Base.metadata`, in foreign-key order, with
  every column, so a table a later migration adds is copied without a change here. Only
  `alembic_version` is not copied: the target is migrated to the same head instead.
- **One snapshot of the source**: all reads happen in one read transaction (SQLite: one
  deferred transaction, WAL keeps its snapshot; PostgreSQL: REPEATABLE READ, READ ONLY), so
  a copy taken while recipes write is one coherent point in time. Nothing is written there.
- **One transaction on the target**: migrate to head, empty it (`replace`), copy, move the
  sequences on, verify; any failure (a refusal, a lost connection, a count that differs)
  rolls all of it back and leaves the target as it was. A SQLite target file that the copy
  created is removed again.
- **Triggers do not fire during the copy**: rows are copied as they are, derived tables
  included (the counters in the target's form, below), so a trigger that maintains such a
  table would count every row a second time. User triggers are disabled on PostgreSQL
  (`ALTER TABLE ... DISABLE TRIGGER`) and dropped then re-created from their own SQL on
  SQLite (which cannot disable one), both inside the copy's transaction. A derived table
  therefore equals the source's, which was consistent in the snapshot, whether it is kept
  by triggers or by the store's code.
- **Counters arrive in the target's form** (`COUNTER_TABLES`, revision 0007): PostgreSQL
  keeps a source's or dataset's counts as delta rows that readers sum (and a dataset with
  no items may have none), SQLite exactly one row that its triggers update in place. Delta
  rows copied as they are into SQLite would each receive every later change (the counts
  multiply), and a dataset without a row would never count at all. So each counter table
  is copied as one row per source / dataset, its columns the sums of that one's rows (zero
  without any), ids 1..n: SQLite's form, and PostgreSQL's after a compaction, in every
  direction. Counter rows of a source or dataset that no longer exists (`db check --repair`
  drops them too) are not copied.
- **Values**: rows are read and written through the drivers (SQLAlchemy's per-row
  machinery would cost more than the copy), keeping every primary key (objects' ids are the
  listing order). A column whose type both databases store alike is passed as it is; the
  others (times: naive UTC text on SQLite, timestamptz on PostgreSQL; booleans; enums) go
  through the column type's own result and bind processors, as the store's reads and writes
  would, so time zones, booleans, floats, NULLs and unicode keep their meaning exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.engine import Dialect

from tracker.db import (
    create_db_engine,
    current_revision,
    head_revision,
    masked,
    require_existing,
    sqlite_file,
    translate_db_errors,
    upgrade_in,
)
from tracker.errors import StateDBError, TargetNotEmpty, TrackerError, UsageError
from tracker.models import (
    Base,
    CompactUTCDateTime,
    UTCDateTime,
    dataset_counts,
    datasets,
    source_counts,
    sources,
)

#: PostgreSQL's type OID of `text` (what `to_char` returns).
_PG_TEXT = 25

#: Rows per fetch from the source, and per executemany on a SQLite target.
CHUNK_ROWS = 20_000

#: Called after each chunk: table name, rows copied so far, rows the table has.
Progress = Callable[[str, int, int], None]

#: The counter tables (revision 0007), each with the table whose rows it counts for and
#: the column naming that row: copied as one summed row per source / dataset (see the
#: module's docstring). Every other column of them is a count.
COUNTER_TABLES: dict[str, tuple[Table, str]] = {
    source_counts.name: (sources, "source_id"),
    dataset_counts.name: (datasets, "dataset_id"),
}


class CopyMismatch(TrackerError):
    """The target's row counts or highest ids differ from the source's after the copy (it
    was rolled back); `report` has the figures."""

    def __init__(self, message: str, report: CopyReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class TableCopy:
    """One table's figures: rows and highest integer id, in the source and the target."""

    name: str
    source_rows: int = 0
    target_rows: int = 0
    source_max_id: int | None = None
    target_max_id: int | None = None

    @property
    def ok(self) -> bool:
        return (self.source_rows, self.source_max_id) == (self.target_rows, self.target_max_id)


@dataclass
class CopyReport:
    source: str
    target: str
    revision: str
    tables: list[TableCopy] = field(default_factory=list)
    replaced: bool = False
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.source_rows for t in self.tables)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)


def tables() -> list[Table]:
    """Every table of the schema, parents before children."""
    return list(Base.metadata.sorted_tables)


def copy_database(
    source_url: str | None,
    target_url: str,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy the state DB at `source_url` (see `tracker.db.resolve_url`) into `target_url`.

    Raises `StateDBError` (a URL that cannot be used, unreachable, source not at head),
    `UsageError` (the same DB twice), `TargetNotEmpty` and `CopyMismatch`; in every case the
    target is left as it was.
    """
    require_existing(source_url)  # a typo must not copy a new, empty file
    _refuse_same_file(source_url, target_url)
    new_file = _missing_sqlite_file(target_url)
    source = create_db_engine(source_url)
    try:
        target = create_db_engine(target_url)  # creates a SQLite target file
    except BaseException:
        source.dispose()
        raise
    started = time.perf_counter()
    try:
        with _snapshot(source) as src:
            revision = _require_head(src, source)
            with translate_db_errors(target.url), target.begin() as dst:
                report = CopyReport(masked(source.url), masked(target.url), revision)
                _copy(src, dst, report, replace=replace, progress=progress)
        report.seconds = time.perf_counter() - started
        return report
    except BaseException:
        target.dispose()
        if new_file is not None:
            _remove_sqlite_file(new_file)
        raise
    finally:
        source.dispose()
        target.dispose()


def _copy(
    src: Connection,
    dst: Connection,
    report: CopyReport,
    *,
    replace: bool,
    progress: Progress | None,
) -> None:
    """Everything the target's transaction does, in order."""
    _refuse_same_database(src, dst)
    upgrade_in(dst)
    if dst.dialect.name == "postgresql":
        # Times from a SQLite source arrive as its naive UTC text: read in UTC.
        dst.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
    else:
        # A table a later migration adds might reference a table copied after it (a cycle
        # `sorted_tables` cannot order): checked once, at commit.
        dst.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    schema = tables()
    holding = [t.name for t in schema if _has_rows(dst, t)]
    if holding and not replace:
        raise TargetNotEmpty(
            f"the target {report.target} already holds state ({', '.join(holding)}); "
            "nothing was copied: copy into an empty DB, or add --replace to empty it first"
        )
    with _triggers_off(dst, schema):
        if holding:
            _empty(dst, schema)
            report.replaced = True
        totals = {t.name: _source_count(src, t) for t in schema}
        for table in schema:
            copied = TableCopy(table.name)
            report.tables.append(copied)
            _copy_table(src, dst, table, copied, totals[table.name], progress)
        if dst.dialect.name == "postgresql":
            _move_sequences(dst, schema)
    for table, copied in zip(schema, report.tables, strict=True):
        copied.target_rows = _count(dst, table)
        copied.target_max_id = _max_id(dst, table)
        # Rows streamed that differ from what the snapshot counts is a difference too:
        # the target then holds the rows streamed, and the report the snapshot's count.
        copied.source_rows = totals[table.name]
    if not report.ok:
        differ = ", ".join(t.name for t in report.tables if not t.ok)
        raise CopyMismatch(
            f"the copy differs from the source in {differ}: rolled back, the target is unchanged",
            report,
        )
    if dst.dialect.name == "postgresql":
        # Fresh rows have no planner statistics (autovacuum may be off or late): a key
        # lookup would scan the whole source. ANALYZE counts this transaction's rows.
        for table in schema:
            dst.exec_driver_sql(f"ANALYZE {_quote(dst, table.name)}")


# -- the source: one snapshot, at head --------------------------------------------------


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction on the source, every read of the copy in it."""
    with translate_db_errors(engine.url), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            # A deferred BEGIN takes no lock; the first read fixes the WAL snapshot.
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Times come back in the session's zone: UTC spares a conversion per value.
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            if conn.dialect.name == "sqlite":
                # A guard: this connection cannot write the source, whatever runs on it.
                conn.exec_driver_sql("PRAGMA query_only = ON")
            yield conn


def _require_head(src: Connection, engine: Engine) -> str:
    head = head_revision()
    current = current_revision(src)
    if current != head:
        raise StateDBError(
            f"the source DB {masked(engine.url)} is at schema revision "
            f"{current or '(none)'}, not this tracker's {head}: run `tracker --db SOURCE "
            "db upgrade` first (or upgrade s3-annotation-tracker if the DB is newer)"
        )
    return head


# -- refusals before anything is written ----------------------------------------------


def _refuse_same_file(source_url: str | None, target_url: str) -> None:
    """Two URLs naming one SQLite file (`~`, `..`, a symlink): refused before any
    engine exists, so that the target's set-up cannot touch the source."""
    source = sqlite_file(source_url)
    target = sqlite_file(target_url)
    if source is None or target is None:
        return
    try:
        same = target.exists() and os.path.samefile(source, target)
    except OSError:
        same = False
    if same or source.resolve() == target.resolve():
        raise UsageError(f"the source and the target are the same DB ({source}): nothing copied")


def _refuse_same_database(src: Connection, dst: Connection) -> None:
    """Two PostgreSQL URLs reaching one DB and schema (another host name, user or port
    spelling): the same server (its start time, and the source's session seen from the
    target), the same database, and the same `sources` table."""
    if src.dialect.name != "postgresql" or dst.dialect.name != "postgresql":
        return
    pid, started, database, table = src.exec_driver_sql(
        "SELECT pg_backend_pid(), pg_postmaster_start_time(), current_database(), "
        "to_regclass('sources')::oid::bigint"
    ).one()
    same = dst.execute(
        text(
            "SELECT pg_postmaster_start_time() = :started "
            "AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid) "
            "AND current_database() = :database AND to_regclass('sources')::oid::bigint = :table"
        ),
        {"started": started, "pid": pid, "database": database, "table": table},
    ).scalar_one()
    if same:
        raise UsageError(
            f"the source and the target are the same DB ({database}, same schema): nothing copied"
        )


def _missing_sqlite_file(url: str) -> Path | None:
    """The target's SQLite file when it does not exist yet: removed again if the copy
    fails, so that a failed copy leaves nothing behind."""
    path = sqlite_file(url)
    return path if path is not None and not path.exists() else None


def _remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


# -- the target: triggers, emptying, sequences ------------------------------------------


@contextmanager
def _triggers_off(dst: Connection, schema: Sequence[Table]) -> Iterator[None]:
    """The user triggers of the copied tables do not fire inside the block (see the module's
    docstring); restored at its end, in the same transaction. Foreign keys are not
    triggers here: they stay checked."""
    names = [t.name for t in schema]
    if dst.dialect.name == "postgresql":
        enabled = dst.execute(
            text(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c "
                "ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
                "AND c.oid = ANY(CAST(:tables AS regclass[]))"
            ),
            {"tables": names},
        ).all()
        for table, trigger in enabled:
            dst.exec_driver_sql(
                f"ALTER TABLE {_quote(dst, table)} DISABLE TRIGGER {_quote(dst, trigger)}"
            )
        yield
        for table, trigger in enabled:
            dst.exec_driver_sql(
                f"ALTER TABLE {_quote(dst, table)} ENABLE TRIGGER {_quote(dst, trigger)}"
            )
        return
    placeholders = ", ".join("?" * len(names))
    created = dst.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        f"AND tbl_name IN ({placeholders})",
        tuple(names),
    ).all()
    for name, _ in created:
        dst.exec_driver_sql(f"DROP TRIGGER {_quote(dst, name)}")
    yield
    for _, sql in created:
        dst.exec_driver_sql(sql)


def _empty(dst: Connection, schema: Sequence[Table]) -> None:
    """`--replace`: every copied table emptied, inside the copy's transaction."""
    if dst.dialect.name == "postgresql":
        dst.exec_driver_sql("TRUNCATE " + ", ".join(_quote(dst, t.name) for t in schema))
        return
    for table in reversed(schema):  # children first: foreign keys stay satisfied
        dst.exec_driver_sql(f"DELETE FROM {_quote(dst, table.name)}")


def _move_sequences(dst: Connection, schema: Sequence[Table]) -> None:
    """PostgreSQL: every serial or identity column's sequence continues after the
    highest id copied (rows were inserted with their ids, which does not move it). SQLite
    needs nothing: a rowid continues after max(rowid), and AUTOINCREMENT's counter moves
    with explicit ids too."""
    for table in schema:
        for column in table.columns:
            sequence = dst.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": _quote(dst, table.name), "column": column.name},
            ).scalar_one()
            if sequence is None:
                continue
            dst.execute(
                text(
                    f"SELECT setval(:sequence, coalesce((SELECT max({_quote(dst, column.name)}) "
                    f"FROM {_quote(dst, table.name)}), 0) + 1, false)"
                ),
                {"sequence": sequence},
            )


# -- rows -------------------------------------------------------------------------------


def _copy_table(
    src: Connection,
    dst: Connection,
    table: Table,
    copied: TableCopy,
    total: int,
    progress: Progress | None,
) -> None:
    """Stream `table` in primary-key order, chunk by chunk, into the target."""
    id_index = _integer_id_index(table)
    if progress is not None:
        progress(table.name, 0, total)
    writer = _pg_writer if dst.dialect.name == "postgresql" else _sqlite_writer
    text_times = src.dialect.name == "postgresql" and dst.dialect.name == "sqlite"
    with (
        _source_rows(src, table, text_times=text_times) as (type_codes, chunks),
        writer(dst, table) as write,
    ):
        convert = row_converter(table, src.dialect, dst.dialect, type_codes)
        for chunk in chunks:
            rows = [convert(row) for row in chunk] if convert is not None else chunk
            write(rows)
            copied.source_rows += len(rows)
            if id_index is not None:
                copied.source_max_id = chunk[-1][id_index]
            if progress is not None:
                progress(table.name, copied.source_rows, total)


Chunks = Iterator[Sequence[Sequence[Any]]]


@contextmanager
def _source_rows(
    src: Connection, table: Table, *, text_times: bool = False
) -> Iterator[tuple[list[Any], Chunks]]:
    """The table's rows as the driver returns them, in primary-key order, in chunks, with
    the driver's type code of each column; on PostgreSQL through a server-side cursor, so
    memory holds one chunk whatever the table's size. `text_times`: PostgreSQL formats
    `UTCDateTime` columns as SQLite stores them (`sqlite_utc_text`), sparing a datetime
    object per value in and out (~2x on a copy to SQLite)."""
    if table.name in COUNTER_TABLES:
        sql = _counter_rows_sql(src, table)
    else:
        columns = ", ".join(
            _utc_text_sql(src, c.name) if text_times and _text_time(c.type) else _quote(src, c.name)
            for c in table.columns
        )
        order = ", ".join(_quote(src, c.name) for c in (table.primary_key.columns or table.columns))
        sql = f"SELECT {columns} FROM {_quote(src, table.name)} ORDER BY {order}"
    driver = src.connection.driver_connection
    assert driver is not None
    if src.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"tracker_copy_{table.name}")
        cursor.itersize = CHUNK_ROWS
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        # A server-side cursor has no description before its first fetch.
        first = cursor.fetchmany(CHUNK_ROWS)
        type_codes = [d[1] for d in cursor.description or ()] or [None] * len(table.columns)

        def chunks() -> Chunks:
            chunk = first
            while chunk:
                yield chunk
                chunk = cursor.fetchmany(CHUNK_ROWS)

        # (Fetching the next chunk in a thread while this one is written measured no
        # faster on 2 cores: the conversion holds the GIL.)
        yield type_codes, chunks()
    finally:
        cursor.close()


def _counter_rows_sql(src: Connection, table: Table) -> str:
    """A counter table as one row per source / dataset (`COUNTER_TABLES`), in its columns'
    order: id 1..n in the owner's id order, the owner's id, and each count summed over the
    owner's rows (0 without any; cast, as PostgreSQL's sum of bigints is numeric)."""
    owner, key = COUNTER_TABLES[table.name]
    owner_id = f"o.{_quote(src, owner.primary_key.columns[0].name)}"
    columns = []
    for column in table.columns:
        name = _quote(src, column.name)
        if column.primary_key:
            columns.append(f"row_number() OVER (ORDER BY {owner_id}) AS {name}")
        elif column.name == key:
            columns.append(f"{owner_id} AS {name}")
        else:
            columns.append(f"CAST(coalesce(sum(c.{name}), 0) AS BIGINT) AS {name}")
    return (
        f"SELECT {', '.join(columns)} FROM {_quote(src, owner.name)} o "
        f"LEFT JOIN {_quote(src, table.name)} c ON c.{_quote(src, key)} = {owner_id} "
        f"GROUP BY {owner_id} ORDER BY {owner_id}"
    )


@contextmanager
def _pg_writer(dst: Connection, table: Table) -> Iterator[Callable[[Sequence[Any]], None]]:
    """PostgreSQL: one COPY FROM STDIN per table (text format: psycopg dumps each value
    by its Python type, and the server parses it by the column's)."""
    columns = ", ".join(_quote(dst, c.name) for c in table.columns)
    driver = dst.connection.driver_connection
    assert driver is not None
    # (psycopg's QueuedLibpqWriter, which sends from a thread, measured ~20% slower here.)
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {_quote(dst, table.name)} ({columns}) FROM STDIN") as copy,
    ):

        def write(rows: Sequence[Any]) -> None:
            for row in rows:
                copy.write_row(row)

        yield write


@contextmanager
def _sqlite_writer(dst: Connection, table: Table) -> Iterator[Callable[[Sequence[Any]], None]]:
    """SQLite: executemany of one INSERT per chunk, all in the copy's one transaction."""
    columns = ", ".join(_quote(dst, c.name) for c in table.columns)
    values = ", ".join("?" * len(table.columns))
    sql = f"INSERT INTO {_quote(dst, table.name)} ({columns}) VALUES ({values})"
    driver = dst.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        yield lambda rows: cursor.executemany(sql, rows)
    finally:
        cursor.close()


def row_converter(
    table: Table, source: Dialect, target: Dialect, type_codes: Sequence[Any]
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """How a row read raw from `source` becomes a row `target`'s driver stores as the
    store would: per column, the type's result processor for `source` (given the driver's
    type code, as SQLAlchemy's own reads are), then its bind processors for `target`. None
    when no column needs one (same database kind)."""
    if source.name == target.name:
        return None
    steps: list[tuple[int, Callable[[Any], Any]]] = []
    for index, column in enumerate(table.columns):
        step = _column_converter(column.type, source, target, type_codes[index])
        if step is not None:
            steps.append((index, step))
    if not steps:
        return None

    def convert(row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for index, step in steps:
            value = values[index]
            if value is not None:
                values[index] = step(value)
        return tuple(values)

    return convert


def _column_converter(
    type_: Any, source: Dialect, target: Dialect, type_code: Any
) -> Callable[[Any], Any] | None:
    if _text_time(type_):
        # The hot columns (four per key), short-cut: SQLite's naive UTC text is what a
        # PostgreSQL session in UTC (`_copy`) parses to the same instant, and an aware
        # time becomes that text with one call (the general path below costs ~4x more).
        if source.name == "sqlite" or isinstance(type_code, str) or type_code == _PG_TEXT:
            return None  # already the text (`_source_rows(text_times=True)`)
        return sqlite_utc_text
    read = type_.dialect_impl(source).result_processor(source, type_code)
    write_type = type_.dialect_impl(target)
    bind = write_type.bind_processor(target)
    # `bind_processor` of a TypeDecorator already applies `process_bind_param`.
    steps = [step for step in (read, bind) if step is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]  # type: ignore[no-any-return]
    first, second = steps
    return lambda value: second(first(value))


def _text_time(type_: Any) -> bool:
    """A time SQLite stores as naive UTC text: copied by the short cut. Not the compact
    times (integer microseconds on SQLite), which take their type's own conversions."""
    return isinstance(type_, UTCDateTime) and not isinstance(type_, CompactUTCDateTime)


def _utc_text_sql(conn: Connection, column: str) -> str:
    """PostgreSQL SQL for a timestamptz column as `sqlite_utc_text` writes it."""
    name = _quote(conn, column)
    return f"to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS {name}"


def sqlite_utc_text(value: datetime) -> str:
    """An aware time as `UTCDateTime` stores it on SQLite: naive UTC text with
    microseconds, SQLAlchemy's own format (so ordering and comparisons in SQL hold)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


# -- small queries ------------------------------------------------------------------------


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _has_rows(conn: Connection, table: Table) -> bool:
    sql = f"SELECT 1 FROM {_quote(conn, table.name)} LIMIT 1"
    return conn.exec_driver_sql(sql).first() is not None


def _count(conn: Connection, table: Table) -> int:
    sql = f"SELECT count(*) FROM {_quote(conn, table.name)}"
    return int(conn.exec_driver_sql(sql).scalar_one())


def _source_count(conn: Connection, table: Table) -> int:
    """The rows the copy reads from the source's `table`: a counter table's one per source
    or dataset (`COUNTER_TABLES`)."""
    if table.name in COUNTER_TABLES:
        return _count(conn, COUNTER_TABLES[table.name][0])
    return _count(conn, table)


def _integer_id_index(table: Table) -> int | None:
    """The position of the table's single integer primary key column, if it has one."""
    keys = list(table.primary_key.columns)
    try:
        integer = len(keys) == 1 and keys[0].type.python_type is int
    except NotImplementedError:  # a type that names no Python type
        integer = False
    if not integer:
        return None
    return list(table.columns).index(keys[0])


def _max_id(conn: Connection, table: Table) -> int | None:
    index = _integer_id_index(table)
    if index is None:
        return None
    column = list(table.columns)[index]
    value = conn.exec_driver_sql(
        f"SELECT max({_quote(conn, column.name)}) FROM {_quote(conn, table.name)}"
    ).scalar_one()
    return None if value is None else int(value)
