"""Opening the state database: URL resolution, engine set-up, schema creation and upgrade.

Kept apart from `store.py` so that the store only runs queries; everything about *which*
database and *how* it is configured lives here.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url

from tracker.errors import StateDBError

#: Environment variable that names the state database (a SQLAlchemy URL).
DB_URL_ENV = "TRACKER_DB_URL"

#: Seconds a writer waits for SQLite's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60

#: Arbitrary constant for the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x5E3A7


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/s3-annotation-tracker/state.db` (`~/.local/share/...` by default)."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "s3-annotation-tracker" / "state.db"


def resolve_url(url: str | None = None) -> str:
    """The URL given, else `$TRACKER_DB_URL`, else the default SQLite file."""
    return url or os.environ.get(DB_URL_ENV) or f"sqlite:///{default_db_path()}"


def masked(url: str | URL) -> str:
    """The URL with any password replaced by `***`, fit for output and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparseable URL>"


def migrations_dir() -> Path:
    """`migrations/` in a source tree, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StateDBError("the tracker's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config that works without `alembic.ini` (installed package)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _create_private_file(path: Path) -> None:
    """Create a new SQLite file readable by its owner only (WAL files inherit the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch a file to WAL; only the first connection to a new file really does it.

    That switch needs an exclusive lock, and SQLite answers SQLITE_BUSY at once (no busy
    handler) when another process is opening the same new file: retry for a while.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and `BEGIN IMMEDIATE` for write transactions.

    pysqlite's own transaction handling is switched off so that we say BEGIN ourselves: a
    deferred transaction that reads and then writes fails with SQLITE_BUSY instead of
    waiting, whatever the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # Straight to the driver: this runs before every transaction, and SQLAlchemy's
        # statement machinery would cost more than the BEGIN itself.
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


def create_db_engine(url: str | None = None) -> Engine:
    """An engine for the state DB; raises `StateDBError` for a URL we cannot use."""
    raw = resolve_url(url)
    try:
        parsed = make_url(raw)
    except exc.ArgumentError:
        raise StateDBError(f"not a valid database URL: {masked(raw)}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if backend == "sqlite":
            path = _sqlite_file(parsed)
            if path is not None:
                _create_private_file(path)
                parsed = parsed.set(database=str(path))  # `~` expanded, as created
            engine = create_engine(parsed)
            _configure_sqlite(engine)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (exc.ArgumentError, exc.NoSuchModuleError, ModuleNotFoundError) as error:
        hint = " (install the 'postgres' extra)" if backend == "postgresql" else ""
        raise StateDBError(f"cannot use database URL {masked(parsed)}: {error}{hint}") from None
    except OSError as error:
        raise StateDBError(f"cannot create the state DB file: {error}") from None
    return engine


@contextmanager
def translate_db_errors(url: str | URL) -> Iterator[None]:
    """Turn driver errors about the database itself into one-line `StateDBError`s."""
    try:
        yield
    except exc.DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise StateDBError(f"state DB {masked(url)}: {reason}") from None


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema to this code's head; refuse a DB from newer code.

    A DB already at head is only read (so `tracker status` never waits for another
    process's write lock). Otherwise the upgrade runs in one write transaction (under an
    advisory lock on PostgreSQL) so that several processes opening a new DB at once create
    it exactly once.
    """
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    with (
        translate_db_errors(engine.url),
        engine.connect().execution_options(sqlite_begin="DEFERRED") as conn,
    ):
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    _refuse_unknown(script, current, engine)
    with translate_db_errors(engine.url), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        _refuse_unknown(script, current, engine)
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _refuse_unknown(script: ScriptDirectory, current: str | None, engine: Engine) -> None:
    """Raise when the DB is at a revision this code does not know (newer code wrote it)."""
    if current is None:
        return
    try:
        known = script.get_revision(current)
    except Exception:
        known = None
    if known is None:
        raise StateDBError(
            f"state DB {masked(engine.url)} is at schema revision {current}, newer "
            "than this tracker knows; upgrade s3-annotation-tracker to use it"
        )
