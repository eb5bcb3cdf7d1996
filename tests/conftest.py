"""Shared fixtures: a state DB on SQLite and on PostgreSQL, for every store test.

PostgreSQL comes from `$TRACKER_TEST_PG_URL` (default: the local server at 127.0.0.1:5432,
database `test`). Where none answers, PostgreSQL tests skip with the reason, unless
`$TRACKER_REQUIRE_PG` is set (CI sets it), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.s3servers import MotoServer, temporary_bucket
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tracker.store import Store

PG_URL = os.environ.get("TRACKER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = bool(os.environ.get("TRACKER_REQUIRE_PG"))


def _pg_unavailable() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any failure means: no usable server
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} unavailable: {error}"
    return None


_PG_SKIP_REASON = _pg_unavailable()


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
    """One SeaweedFS process for the whole run (it takes ~15 s to start)."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


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
