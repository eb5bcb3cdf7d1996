"""Opening the state database: URL resolution, engine set-up, schema creation and upgrade.

Kept apart from `store.py` so that the store only runs queries; everything about *which*
database and *how* it is configured lives here.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import Connection, Engine, create_engine, event, exc, inspect, text
from sqlalchemy.engine import URL, make_url

from tracker.errors import StateDBError
from tracker.redact import mask_url, url_password, url_secrets

if TYPE_CHECKING:
    # Alembic is imported only where a schema is created, upgraded or inspected: it costs a
    # quarter of a second, and a DB already at head (every `tracker status`) needs none of it.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

#: Environment variable that names the state database (a SQLAlchemy URL).
DB_URL_ENV = "TRACKER_DB_URL"

#: Seconds a writer waits for SQLite's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60

#: Environment variable for SQLite's `PRAGMA synchronous` (NORMAL by default; FULL or EXTRA
#: also survive a power loss, at the cost of an fsync per commit).
SQLITE_SYNCHRONOUS_ENV = "TRACKER_SQLITE_SYNCHRONOUS"
_SYNCHRONOUS_LEVELS = ("NORMAL", "FULL", "EXTRA")

#: `RETURNING`, which the store's claim uses, arrived in SQLite 3.35.0.
MIN_SQLITE_VERSION = (3, 35, 0)

#: The databases the store is written and tested for; other SQLAlchemy URLs are refused.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")

#: Arbitrary constant for the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x5E3A7

#: Class (first key) of the per-source PostgreSQL advisory locks `(PG_FRONTIER_LOCK,
#: source_id)` that order inserts of objects before frontier walks: every transaction that
#: inserts a source's objects holds it shared, a claim walking a dataset's frontier holds it
#: exclusive (`tracker.store.Store._hold_frontier`). The two-int key space does not overlap
#: the single-bigint one of `_PG_MIGRATION_LOCK`; the class is not one of the counters'
#: compactions (70071, 70072: migration 0007).
PG_FRONTIER_LOCK = 0x5E3A8


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/s3-annotation-tracker/state.db` (`~/.local/share/...` by default)."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "s3-annotation-tracker" / "state.db"


def resolve_url(url: str | None = None) -> str:
    """The URL given, else `$TRACKER_DB_URL`, else the default SQLite file."""
    return url or os.environ.get(DB_URL_ENV) or f"sqlite:///{default_db_path()}"


def masked(url: str | URL) -> str:
    """The URL with every credential (password, `?password=`...) replaced by `***`, fit for
    output and logs. Works on the text, so a password SQLAlchemy misparses is masked too."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    return mask_url(url)


def parse_db_url(raw: str) -> URL:
    """`make_url`, except that an unencoded `@` in a password stays in the password.

    SQLAlchemy ends the password at the first `@` and makes the rest part of the host
    (`user:p@ss@db` -> password `p`, host `ss@db`): the connection fails and the error
    names the password's tail. The last `@` before the host is the separator instead.
    """
    url = make_url(raw)
    password = url_password(raw)
    if password is not None and "@" in password:
        url = make_url(raw.replace(f":{password}@", ":@", 1)).set(password=unquote(password))
    return url


def migrations_dir() -> Path:
    """`migrations/` in a source tree, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StateDBError("the tracker's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config that works without `alembic.ini` (installed package)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory DB.

    A `file:` URI (`sqlite:///file:state.db?uri=true`) names a file too: its path is read
    as SQLite reads it (an optional empty or `localhost` authority, percent-decoding), so
    that a new file is created private like a plain path.
    """
    database = url.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        path = database[len("file:") :].partition("?")[0].partition("#")[0]
        if path.startswith("//"):
            authority, _, rest = path[2:].partition("/")
            if authority not in ("", "localhost"):
                return None
            path = "/" + rest
        path = unquote(path)
        return Path(path).expanduser() if path and path != ":memory:" else None
    return Path(database).expanduser()


def sqlite_file(url: str | None) -> Path | None:
    """The file a state DB URL names when it is SQLite (see `resolve_url`); None for
    PostgreSQL, an in-memory DB, or a URL that does not parse (`create_db_engine` says why)."""
    try:
        parsed = parse_db_url(resolve_url(url))
    except exc.ArgumentError:
        return None
    return _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None


def _sqlite_read_only(url: URL) -> bool:
    return url.query.get("mode") == "ro"


def sqlite_library_version() -> tuple[int, ...]:
    """The SQLite library Python is linked with (a function, so tests can stand in one)."""
    return sqlite3.sqlite_version_info


def _check_sqlite_version() -> None:
    version = sqlite_library_version()
    if tuple(version) < MIN_SQLITE_VERSION:
        have = ".".join(map(str, version))
        need = ".".join(map(str, MIN_SQLITE_VERSION))
        raise StateDBError(
            f"SQLite {have} is too old: the state DB needs SQLite >= {need} (RETURNING); "
            "use a Python linked with a newer SQLite, or a PostgreSQL state DB"
        )


def sqlite_synchronous() -> str:
    """`PRAGMA synchronous` for SQLite state DBs: `$TRACKER_SQLITE_SYNCHRONOUS` or NORMAL.

    NORMAL in WAL mode never corrupts the DB, but the last commits before a power loss or
    OS crash (not a process crash) may be rolled back; FULL syncs every commit.
    """
    value = os.environ.get(SQLITE_SYNCHRONOUS_ENV, "").strip().upper() or "NORMAL"
    if value not in _SYNCHRONOUS_LEVELS:
        raise StateDBError(
            f"{SQLITE_SYNCHRONOUS_ENV}={value!r} is not one of {', '.join(_SYNCHRONOUS_LEVELS)}"
        )
    return value


def require_existing(url: str | None = None) -> None:
    """Refuse (exit 4) a SQLite file that does not exist, before anything is created.

    For commands that only read or repair: a typo in `--db` must not leave an empty DB and
    its directories behind and then report "no source". PostgreSQL databases are never
    created by the tracker, so there is nothing to check there.
    """
    raw = resolve_url(url)
    try:
        parsed = parse_db_url(raw)
    except exc.ArgumentError:
        return  # `create_db_engine` says why in one line
    if parsed.get_backend_name() != "sqlite":
        return
    path = _sqlite_file(parsed)
    if path is not None and not path.exists():
        raise StateDBError(
            f"the state DB {path} does not exist (check --db / {DB_URL_ENV}; "
            "`tracker sync` or `tracker db upgrade` creates it)"
        )


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
    synchronous = sqlite_synchronous()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _enable_wal(cursor)
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
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
        parsed = parse_db_url(raw)
    except exc.ArgumentError:
        raise StateDBError(f"not a valid database URL: {masked(raw)}") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        # The store's SQL (RETURNING, ON CONFLICT, SKIP LOCKED) is written and tested for
        # these two only; another backend would fail later, in the middle of a command.
        raise StateDBError(
            f"unsupported database URL {masked(parsed)}: the state DB is SQLite "
            "(sqlite:///PATH) or PostgreSQL (postgresql://USER@HOST/DB)"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if backend == "sqlite":
            _check_sqlite_version()
            path = _sqlite_file(parsed)
            if path is not None and not _sqlite_read_only(parsed):
                _create_private_file(path)
                if not parsed.database or not parsed.database.startswith("file:"):
                    parsed = parsed.set(database=str(path))  # `~` expanded, as created
            engine = create_engine(parsed)
            _configure_sqlite(engine)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (exc.ArgumentError, exc.NoSuchModuleError, ModuleNotFoundError) as error:
        hint = _driver_hint(parsed) if backend == "postgresql" else ""
        raise StateDBError(f"cannot use database URL {masked(parsed)}: {error}{hint}") from None
    except OSError as error:
        raise StateDBError(f"cannot create the state DB file: {error}") from None
    return engine


def _driver_hint(url: URL) -> str:
    """What to install for a PostgreSQL URL whose driver is missing.

    The 'postgres' extra installs psycopg 3, which `postgresql://` and
    `postgresql+psycopg://` use; any other driver (psycopg2, asyncpg...) is the user's to
    install, and naming the extra there would not help.
    """
    if url.get_driver_name() == "psycopg":
        return " (pip install 's3-annotation-tracker[postgres]' installs psycopg 3)"
    return (
        f" (the {url.get_driver_name()} driver is not installed; use postgresql:// with "
        "psycopg 3, which pip install 's3-annotation-tracker[postgres]' installs)"
    )


@contextmanager
def translate_db_errors(url: str | URL) -> Iterator[None]:
    """Turn driver errors about the database itself into one-line `StateDBError`s."""
    try:
        yield
    except exc.DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        text_url = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        for secret in url_secrets(text_url):
            if len(secret) >= 3:  # a driver may echo a host or option that holds it
                reason = reason.replace(secret, "***")
        translated = StateDBError(f"state DB {masked(url)}: {reason}")
        translated.sqlstate = getattr(error.orig, "sqlstate", None)
        raise translated from None


def current_revision(conn: Connection) -> str | None:
    """The schema revision of the DB behind `conn` (None: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head


_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=\n]*=(.*)$", re.MULTILINE)


def _plain_head() -> str | None:
    """The head revision read from the migration files' `revision = ...` and
    `down_revision = ...` lines, without importing Alembic; None when that is not one plain
    answer (a merge, a line written another way), and Alembic decides.

    Only `ensure_schema`'s "already at head?" test relies on it, and a test checks it
    against Alembic's own `head_revision()`.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revision = re.fullmatch(r"\s*[\"'](\w+)[\"']\s*", found.get("revision", ""))
        if revision is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"'](\w+)[\"']", found.get("down_revision", "")))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stamped_revisions(conn: Connection) -> list[str]:
    """The rows of Alembic's version table, read without Alembic (none: no schema)."""
    if not inspect(conn).has_table("alembic_version"):
        return []
    return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def ensure_schema(engine: Engine, *, dataset: str | None = None) -> None:
    """Create or upgrade the schema to this code's head; refuse a DB from newer code.

    `dataset` names the Prodigy dataset that a 0001 DB's annotation state belongs to, for
    the 0002 migration, when its lease owners and sessions do not name exactly one (without
    it that upgrade stops with one line and changes nothing).

    A DB already at head is only read (so `tracker status` never waits for another
    process's write lock). Otherwise the upgrade runs in one write transaction (under an
    advisory lock on PostgreSQL) so that several processes opening a new DB at once create
    it exactly once.
    """
    head = _plain_head()
    with (
        translate_db_errors(engine.url),
        engine.connect().execution_options(sqlite_begin="DEFERRED") as conn,
    ):
        if head is not None and _stamped_revisions(conn) == [head]:
            return
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

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
        upgrade_in(conn, dataset=dataset)


def upgrade_in(conn: Connection, *, dataset: str | None = None) -> None:
    """Upgrade the DB behind `conn` to head inside the caller's write transaction (under
    an advisory lock on PostgreSQL), so that the caller's rollback also undoes it (`tracker
    db copy` migrates its target in the transaction that copies). Refuses a newer DB."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    current = MigrationContext.configure(conn).get_current_revision()
    if current == script.get_current_head():
        return
    _refuse_unknown(script, current, conn.engine)
    config = alembic_config()
    config.attributes["connection"] = conn
    if dataset is not None:
        config.attributes["dataset"] = dataset
    command.upgrade(config, "head")


#: The revision that rewrites SQLite rows smaller (0009): the file shrinks after a VACUUM.
SHRINKING_REVISION = "0009"


def vacuum_hint(url: str | URL, before: str | None) -> str | None:
    """What to run after an upgrade from `before` that left free pages in a SQLite file:
    VACUUM returns them to the disk, and cannot run inside the upgrade's transaction."""
    url = make_url(url) if isinstance(url, str) else url
    path = _sqlite_file(url) if url.get_backend_name() == "sqlite" else None
    if path is None or before is None:
        return None
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    older = {r.revision for r in script.iterate_revisions(SHRINKING_REVISION, "base")}
    if before == SHRINKING_REVISION or before not in older:
        return None
    return (
        f"the rows are smaller now; `sqlite3 {shlex.quote(str(path))} VACUUM` gives the "
        "space back to the disk (it rewrites the file: ~2 s per million keys, and needs "
        "as much free disk as the file)"
    )


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
