"""The schema's life cycle: Alembic from the command line, Store.open creating and guarding
the schema, bad database files, and migrations shipped inside the wheel."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from tests._workers import open_new_db
from tests.db_support import schema_revision, table_names
from tracker.db import head_revision
from tracker.errors import StateDBError
from tracker.models import Answer, Base
from tracker.records import AnswerRecord
from tracker.store import Store

REPO = Path(__file__).resolve().parents[2]
ALEMBIC = str(Path(sys.executable).with_name("alembic"))
TABLES = {"sources", "listing_cursors", "objects", "datasets", "owners", "items"}


def alembic(*args: str, url: str | None = None, env_url: str | None = None) -> str:
    """Run the real `alembic` command from the repository root; fail with its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_DB_URL"}
    if env_url is not None:
        env["TRACKER_DB_URL"] = env_url
    command = [ALEMBIC, *(["-x", f"db={url}"] if url else []), *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def execute_sql(url: str, statements: Sequence[str]) -> None:
    """Run raw SQL statements in one transaction: rows of an old schema's DB."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def one_line(error: pytest.ExceptionInfo[StateDBError]) -> str:
    message = str(error.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


# -- alembic from the command line ------------------------------------------------------------


def test_alembic_upgrade_head_creates_the_schema_with_x_db(db_url):
    alembic("upgrade", "head", url=db_url)
    assert table_names(db_url) >= TABLES
    assert schema_revision(db_url) == head_revision()


def test_alembic_upgrade_head_uses_tracker_db_url(db_url):
    alembic("upgrade", "head", env_url=db_url)
    assert table_names(db_url) >= TABLES
    assert schema_revision(db_url) == head_revision()


def test_downgrade_to_base_and_upgrade_again(db_url):
    alembic("upgrade", "head", url=db_url)
    alembic("downgrade", "base", url=db_url)
    assert table_names(db_url) & TABLES == set()
    assert schema_revision(db_url) is None
    alembic("upgrade", "head", url=db_url)
    assert table_names(db_url) >= TABLES
    with Store.open(db_url) as store:  # and the re-created schema works
        store.source("bucket", create=True)


def test_alembic_check_finds_no_drift_between_models_and_migrations(db_url):
    alembic("upgrade", "head", url=db_url)
    output = alembic("check", url=db_url)
    assert "No new upgrade operations detected" in output


def test_migrated_schema_equals_the_declared_one(db_url):
    Store.open(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


# -- Store.open -------------------------------------------------------------------------------


def test_store_open_creates_the_schema_on_first_use(db_url):
    assert table_names(db_url) & TABLES == set()
    with Store.open(db_url) as store:
        assert table_names(db_url) >= TABLES
        assert schema_revision(db_url) == head_revision()
        store.source("bucket", create=True)
    with Store.open(db_url) as store:  # and opens it again as is
        assert [s.bucket for s in store.sources()] == ["bucket"]


def test_store_open_refuses_a_schema_newer_than_the_code(db_url):
    Store.open(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d_from_the_future'"))
    engine.dispose()
    with pytest.raises(StateDBError) as error:
        Store.open(db_url)
    message = one_line(error)
    assert "newer" in message and "f00d_from_the_future" in message
    assert schema_revision(db_url) == "f00d_from_the_future"  # left untouched


def test_a_file_that_is_not_a_database_raises_state_db_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is a text file, not SQLite\n" * 100)
    with pytest.raises(StateDBError) as error:
        Store.open(f"sqlite:///{path}")
    assert "not a database" in one_line(error)


def test_a_directory_as_sqlite_path_raises_state_db_error(tmp_path):
    with pytest.raises(StateDBError) as error:
        Store.open(f"sqlite:///{tmp_path}")
    one_line(error)


def test_a_read_only_database_reads_but_refuses_writes_with_state_db_error(tmp_path):
    path = tmp_path / "state.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.dataset(store.source("bucket", create=True), "ds", create=True)
    # SQLite's own read-only mode: chmod does not stop root, which runs CI containers.
    with Store.open(f"sqlite:///file:{path}?mode=ro&uri=true") as store:
        dataset = store.dataset(store.source("bucket"), "ds")
        assert store.counts(dataset).total == 0
        with pytest.raises(StateDBError) as error:
            store.record_answers(dataset, [AnswerRecord("k", Answer.ACCEPT)])
    assert "readonly" in one_line(error)


def test_an_invalid_url_raises_state_db_error():
    with pytest.raises(StateDBError) as error:
        Store.open("not a url at all")
    assert "not a valid database URL" in one_line(error)


def test_an_unknown_driver_raises_state_db_error():
    with pytest.raises(StateDBError) as error:
        Store.open("nosuchdb://user:secret@host/db")
    message = one_line(error)
    assert "secret" not in message


def test_an_unreachable_postgresql_raises_state_db_error_without_the_password():
    with pytest.raises(StateDBError) as error:
        Store.open("postgresql://user:hunter2@127.0.0.1:1/db?connect_timeout=2")
    message = one_line(error)
    assert "hunter2" not in message and "127.0.0.1" in message


def test_new_sqlite_file_is_private_to_its_owner(tmp_path):
    path = tmp_path / "new-dir" / "state.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.source("bucket", create=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal = path.with_name("state.db-wal")
        assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_two_processes_creating_a_new_db_at_once_both_succeed(db_url):
    """Seen to fail when: `upgrade_in` takes no advisory lock (PostgreSQL). The upgrade
    begun DEFERRED on SQLite still passed.
    """
    context = multiprocessing.get_context("spawn")
    workers = 3
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=open_new_db, args=(db_url, barrier, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert outcomes == [("ok", None)] * workers, outcomes
    assert schema_revision(db_url) == head_revision()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM sources")).scalar_one() == 1
    engine.dispose()


# -- the installed package --------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", ".", "-w", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("*.whl")
    return built


# The wheel is built once per worker that asks for it: one worker runs both tests.
@pytest.mark.xdist_group("wheel")
def test_wheel_ships_the_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tracker/_migrations/env.py" in names
    assert "tracker/_migrations/script.py.mako" in names
    versions = {n for n in names if n.startswith("tracker/_migrations/versions/")}
    repo_versions = {
        f"tracker/_migrations/versions/{p.name}"
        for p in (REPO / "migrations/versions").glob("*.py")
    }
    assert repo_versions and repo_versions <= versions


@pytest.mark.xdist_group("wheel")
def test_installed_wheel_creates_the_schema_from_its_own_migrations(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-t", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    script = (
        "import tracker, tracker.db as db; from tracker.store import Store\n"
        "print(tracker.__file__); print(db.migrations_dir())\n"
        f"s = Store.open('sqlite:///{tmp_path / 'state.db'}'); s.source('b', create=True)\n"
        "print(db.head_revision())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("TRACKER_DB_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # not the repository: its migrations/ must not be found
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    module_file, migrations, head = done.stdout.split()
    assert module_file.startswith(str(target))
    assert Path(migrations) == target / "tracker" / "_migrations"
    assert head == head_revision()
    assert table_names(f"sqlite:///{tmp_path / 'state.db'}") >= TABLES


def test_a_tilde_in_a_sqlite_url_means_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with Store.open("sqlite:///~/tracker/state.db") as store:
        store.source("bucket-x", create=True)
    assert (tmp_path / "tracker" / "state.db").is_file()
    assert not (Path.cwd() / "~").exists()
