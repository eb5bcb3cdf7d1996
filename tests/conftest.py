"""Shared fixtures: a state DB on SQLite and on PostgreSQL, for every store test.

PostgreSQL comes from `$TRACKER_TEST_PG_URL` (default: the local server at 127.0.0.1:5432,
database `test`). Where none answers, PostgreSQL tests skip with the reason, unless
`$TRACKER_REQUIRE_PG` is set (CI sets it), which turns that skip into a failure.

Under pytest-xdist every worker has its own PostgreSQL database beside that one (created
when the worker starts, dropped when it ends), its own SeaweedFS and its own moto servers:
advisory locks are per database, not per schema, so tests on two workers would otherwise
wait on each other's frontier and migration locks, and skip each other's counter
compactions (`pg_try_advisory_xact_lock`).
"""

from __future__ import annotations

import fcntl
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tests.s3servers import MotoServer, temporary_bucket
from tracker.errors import TrackerError
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tracker.store import Store

BASE_PG_URL = os.environ.get(
    "TRACKER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = bool(os.environ.get("TRACKER_REQUIRE_PG"))

#: "gw0", "gw1"... in a pytest-xdist worker; None in a plain run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def _worker_database(base: str) -> str:
    """`test_gw0_<run>`: the run's id keeps two runs at once (two clones) apart."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8]
    return f"{make_url(base).database}_{WORKER}_{run}"


#: The database the tests use: the configured one, or this worker's own.
PG_URL = (
    make_url(BASE_PG_URL)
    .set(database=_worker_database(BASE_PG_URL))
    .render_as_string(hide_password=False)
    if WORKER
    else BASE_PG_URL
)


def _pg_unavailable() -> str | None:
    try:
        engine = create_engine(BASE_PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any failure means: no usable server
        return f"PostgreSQL at {make_url(BASE_PG_URL).render_as_string()} unavailable: {error}"
    return None


_PG_SKIP_REASON = _pg_unavailable()


def _admin_on_base() -> Engine:
    # CREATE/DROP DATABASE cannot run in a transaction.
    return create_engine(BASE_PG_URL, isolation_level="AUTOCOMMIT")


_OWN_DATABASE = False


def pytest_configure(config: pytest.Config) -> None:
    global PG_URL, _OWN_DATABASE
    if WORKER and _PG_SKIP_REASON is None:
        admin = _admin_on_base()
        database = make_url(PG_URL).database
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{database}"'))
            _OWN_DATABASE = True
        except Exception as error:  # no CREATEDB right: share the one database
            warnings.warn(f"{WORKER} shares {BASE_PG_URL}: {error}", stacklevel=1)
            PG_URL = BASE_PG_URL
        admin.dispose()


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Not in pytest_unconfigure: xdist ends a worker's process once the worker reports its
    # session finished, which can be before that hook has run.
    if _OWN_DATABASE:
        admin = _admin_on_base()
        with admin.connect() as conn:  # FORCE: a leaked connection must not keep it
            conn.execute(
                text(f'DROP DATABASE IF EXISTS "{make_url(PG_URL).database}" WITH (FORCE)')
            )
        admin.dispose()


#: How many xdist workers `-n auto` (pyproject's addopts) starts: twice the 2 cores it was
#: chosen on, since most tests wait on servers, subprocesses and sleeps (README, "Tests").
WORKERS = 4
UNIT = Path(__file__).parent / "unit"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`WORKERS`, or none for `tests/unit` alone: starting workers would cost more than its
    whole run. `PYTEST_XDIST_AUTO_NUM_WORKERS` overrides, as with xdist's own rule."""
    if chosen := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(chosen)
    here = config.invocation_params.dir
    paths = [(here / arg.split("::")[0]).resolve() for arg in config.args]
    if paths and all(path.is_relative_to(UNIT) for path in paths):
        return 0
    return WORKERS


@pytest.hookimpl(trylast=True)  # after xdist's own, which tags grouped tests' node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the long tests first (the slow ones and the groups), so that no worker
    starts a minute-long test when the others are about to finish, and the `alone` ones
    last, when the other workers have little left to wait with. Every worker sorts its
    (identical) collection the same way, as xdist requires; a plain run keeps file order."""
    if not WORKER:
        return
    if config.getvalue("loadgroup") and any(
        _grouped(item) and "@" not in item.nodeid for item in items
    ):  # the suite still passes, in minutes more: say why
        warnings.warn(
            "xdist_group marks are ignored by this pytest and pytest-xdist "
            "(pytest-dev/pytest-xdist#1386): expensive module fixtures are built once per "
            "worker; install the dev extra's pytest",
            stacklevel=1,
        )
    items.sort(key=_order)


def _grouped(item: pytest.Item) -> bool:
    return item.get_closest_marker("xdist_group") is not None


def _order(item: pytest.Item) -> int:
    if item.get_closest_marker("alone"):
        return 2
    return 0 if item.get_closest_marker("slow") or _grouped(item) else 1


@pytest.fixture(autouse=True)
def _alone_or_beside_others(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under xdist, a test marked `alone` (a wall-clock bound, a one-second lease) runs
    while no other worker runs a test: the others hold a shared lock, it an exclusive one.

    A turnstile keeps it from starving: it takes the gate first, and a test that starts
    meanwhile waits at the gate instead of joining the holders of the shared lock. The
    files sit in the run's base temporary directory, which all its workers share."""
    if not WORKER:
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "alone.gate", "a") as gate, open(shared / "alone.lock", "a") as lock:
        if request.node.get_closest_marker("alone"):
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(lock, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:  # explicitly: a forked child of the test may hold the same files open
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


def require_postgres() -> None:
    """Skip (or, under CI, fail) a test that needs PostgreSQL when there is none."""
    if _PG_SKIP_REASON is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"TRACKER_REQUIRE_PG is set but {_PG_SKIP_REASON}")
    pytest.skip(_PG_SKIP_REASON)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema, dropped after the test."""
    yield from fresh_pg_schema()


def fresh_pg_schema() -> Iterator[str]:
    """Yields a URL to a new, empty PostgreSQL schema of the worker's database, and drops
    it after (a fixture's body: `pg_url`, and a test's second schema)."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """The URL of a new, empty state DB: once on a SQLite file, once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


# -- S3 servers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    """One SeaweedFS process for the whole run (per xdist worker; it takes ~15 s to start).

    A second try on new ports if the first fails: another worker's server may have bound
    one of the ports `free_port()` chose before this one did."""
    try:
        server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    except TrackerError:
        server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_server(tmp_path) -> Iterator[MotoServer]:
    """A fresh moto server process for one test; `.restart()` kills its tokens."""
    server = MotoServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch) -> None:
    """Static test credentials in the environment, as boto3's chain would find them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.fixture
def bucket(seaweedfs, s3_env) -> Iterator[str]:
    """A new, empty bucket on the session's SeaweedFS, deleted after the test."""
    yield from temporary_bucket(seaweedfs)
