"""Secrets stay out, and the state DB is private (DESIGN.md, "Secrets stay out").

Each test runs real `tracker` processes with secret values in the environment and in the
DB URL, then searches everything they wrote (stdout, stderr, the SQLite file and its WAL)
for those values.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, require_postgres
from tests.faultproxy import put_objects
from tracker.store import Store

TRACKER = [sys.executable, "-m", "tracker"]


def secret_env(tmp_path: Path, endpoint: str) -> tuple[dict[str, str], list[str]]:
    """An environment whose credentials are unique random strings; returns it and them."""
    secret_key = "SECRETKEY" + secrets.token_hex(16)
    session_token = "SESSIONTOKEN" + secrets.token_hex(24)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in {"TRACKER_DB_URL", "COLUMNS"}
    }
    env.update(
        AWS_ACCESS_KEY_ID="AKIATESTSECURITY0001",
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_SESSION_TOKEN=session_token,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        HOME=str(tmp_path),
    )
    return env, [secret_key, session_token]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TRACKER, *args], env=env, capture_output=True, timeout=120)


COMMANDS = [
    ("sync", "s3://{bucket}", "--page-size", "5"),
    ("status",),
    ("status", "--json"),
    ("keys", "--format", "jsonl"),
    ("sources",),
    ("requeue", "--all", "--dry-run"),
    ("db", "current"),
    ("sync", "s3://no-such-bucket-{bucket}"),  # an error path
    ("sync", "s3://{bucket}", "--endpoint-url", "http://127.0.0.1:1"),  # unreachable
]


def exercise(env: dict[str, str], db: str, bucket: str, *, quiet_too: bool) -> list[bytes]:
    """Every command with -vv (botocore's and SQLAlchemy's DEBUG logs), and with
    `quiet_too` the first four plain and with -v; returns everything they printed."""
    outputs: list[bytes] = []
    runs = [(["-vv"], c) for c in COMMANDS]
    if quiet_too:
        runs += [([], c) for c in COMMANDS[:4]] + [(["-v"], c) for c in COMMANDS[:4]]
    for verbosity, command in runs:
        args = [a.format(bucket=bucket) for a in command]
        done = run(env | {"AWS_MAX_ATTEMPTS": "1"}, "--db", db, *verbosity, *args)
        outputs += [done.stdout, done.stderr]
    return outputs


@pytest.fixture
def filled_moto(moto_server):  # type: ignore[no-untyped-def]
    """moto (auth off: it takes any credentials) with a bucket of 12 images."""
    moto_server.client().create_bucket(Bucket="secret-test")
    put_objects(moto_server.endpoint_url, "secret-test", [f"{i:02d}.jpg" for i in range(12)])
    return moto_server


def assert_absent(values: list[str], blobs: list[bytes], what: str) -> None:
    for value in values:
        for blob in blobs:
            assert value.encode() not in blob, f"a secret appeared in {what}"


def test_credentials_never_reach_output_logs_or_the_sqlite_file(filled_moto, tmp_path):
    """Proves that AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN appear in no stdout or
    stderr of any command (plain, -v, -vv with botocore's and SQLAlchemy's debug logs), nor
    in the state DB file or its WAL, while the commands really used them. (Before the fix in
    `tracker.redact`, -vv printed the session token: botocore logs request headers.)"""
    env, hidden = secret_env(tmp_path, filled_moto.endpoint_url)
    path = tmp_path / "state.db"
    outputs = exercise(env, f"sqlite:///{path}", "secret-test", quiet_too=True)
    sync_out = outputs[0].decode()
    assert "12 keys listed" in sync_out, outputs[1].decode()  # the credentials were used
    assert b"x-amz-security-token:***" in outputs[1]  # -vv logged the signed request
    assert_absent(hidden, outputs, "the output")
    files = [p.read_bytes() for p in tmp_path.glob("state.db*")]  # with -wal, -shm if left
    assert files and b"00.jpg" in b"".join(files)
    assert_absent(hidden, files, "the state DB")


def test_the_db_password_never_reaches_output_or_the_db(filled_moto, tmp_path):
    """Proves the same for a PostgreSQL URL's password (trust auth ignores it, so the
    commands succeed with it in the URL), and for a refused connection's error line."""
    require_postgres()
    from sqlalchemy.engine import make_url

    password = "PGPASS" + secrets.token_hex(12)
    url = make_url(PG_URL).set(password=password)
    schema = "sec_" + secrets.token_hex(6)
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    db = url.render_as_string(hide_password=False)
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        env, hidden = secret_env(tmp_path, filled_moto.endpoint_url)
        outputs = exercise(env, db, "secret-test", quiet_too=False)
        assert "12 keys listed" in outputs[0].decode(), outputs[1].decode()
        refused = url.set(port=1).render_as_string(hide_password=False)
        done = run(env, "--db", refused, "-vv", "status")
        assert done.returncode == 4
        outputs += [done.stdout, done.stderr]
        assert_absent([*hidden, password], outputs, "the output")
        with admin.connect() as conn:
            dumped = [
                repr(row).encode()
                for table in ("sources", "listing_cursors", "items", "alembic_version")
                for row in conn.execute(text(f'SELECT * FROM "{schema}".{table}'))
            ]
        assert dumped
        assert_absent([*hidden, password], dumped, "the state DB")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_new_sqlite_db_wal_and_shm_are_private_even_with_a_lax_umask(tmp_path):
    """Proves that a new state DB and the -wal and -shm files SQLite creates beside it are
    0600, and a new parent directory 0700, whatever the umask (here 0o000)."""
    path = tmp_path / "fresh" / "state.db"
    old = os.umask(0)
    try:
        with Store.open(f"sqlite:///{path}") as store:
            store.source("bucket", create=True)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("state.db*")}
    finally:
        os.umask(old)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_db_file_keeps_its_mode(tmp_path):
    """The tracker does not chmod a file the user created (a shared, group-readable DB is
    the user's choice); only files it creates are private."""
    path = tmp_path / "state.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    Store.open(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "line",
    [
        "headers={'X-Amz-Security-Token': b'TOKEN123', 'Authorization': b'AWS4'}",
        "CanonicalRequest: host:s3\nx-amz-security-token:TOKEN123\nx-amz-date:2024",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Security-Token=TOKEN123&X-Amz-Expires=60",
        "x-amz-s3session-token: TOKEN123",
        "plain TOKEN123 in a message",
    ],
)
def test_log_filter_masks_session_tokens_and_secret_values(line):
    from tracker.redact import redact

    masked = redact(line, ("TOKEN123",))
    assert "TOKEN123" not in masked and "***" in masked
