"""`tracker sync` as a user runs it: run the command, then open the DB and check its state.

Most tests call the CLI's `main` in-process (fast, same error handling as the installed
command); Ctrl-C and the terminal display run it as a real subprocess.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import signal
import subprocess
import sys
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text

from tests.cli_support import run_cli
from tests.faultproxy import FaultProxy, put_objects
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, free_port
from tracker.models import objects
from tracker.store import Store

TRACKER = [sys.executable, "-m", "tracker"]


#: Every table a sync could write: the listing (sources, cursors, objects) and, though sync
#: never should, per-dataset state.
TABLES = ("sources", "listing_cursors", "objects", "datasets", "items")


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: to prove that a failed command changed nothing."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {table}"))), key=repr)
                for table in TABLES
            }
    finally:
        engine.dispose()


def keys_in(url: str, bucket: str, prefix: str = "") -> list[str]:
    """The source's listed keys in listing order, read from the `objects` table: a sync
    lists for every dataset and creates no dataset state."""
    with Store.open(url) as store, store.engine.connect() as conn:
        source = store.source(bucket, prefix)
        return list(
            conn.execute(
                sa.select(objects.c.key)
                .where(objects.c.source_id == source.id)
                .order_by(objects.c.id)
            ).scalars()
        )


# -- listing (SeaweedFS) ------------------------------------------------------------------


def test_sync_creates_the_source_and_lists_everything(db_url, bucket, seaweedfs, capsys):
    """Proves the first sync: the source is created, every image under the prefix is an
    item in listing order, a plain progress line goes to stderr and a summary to stdout."""
    keys = [f"imgs/{i:03d}.jpg" for i in range(130)]
    put_objects(seaweedfs.endpoint_url, bucket, [*keys, "other/x.jpg", "imgs/readme.txt"])
    result = run_cli(capsys, "--db", db_url, "sync", f"s3://{bucket}/imgs/",
                     "--endpoint-url", seaweedfs.endpoint_url, "--page-size", "50")  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"s3://{bucket}/imgs/: 3 pages, 131 keys listed (130 new), "
        + result.out.split("new), ")[1].strip()
    )
    assert "listing complete" in result.out
    assert result.err_lines[0].startswith(f"s3://{bucket}/imgs/: 1 page, 50 keys listed")
    assert keys_in(db_url, bucket, "imgs/") == keys
    state = dump(db_url)  # listed for every dataset to come; no dataset state yet
    assert state["datasets"] == [] and state["items"] == []
    with Store.open(db_url) as store:
        cursor = store.cursor(store.source(bucket, "imgs/"))
        assert cursor.exhausted and cursor.pages_listed == 3
        assert cursor.last_key == "imgs/readme.txt"  # the last key listed, taken or not


def test_max_pages_then_continue(sqlite_url, bucket, seaweedfs, capsys, monkeypatch):
    """Proves --max-pages and that the next run continues (boto3's AWS_ENDPOINT_URL_S3
    honoured, no --endpoint-url): 2 pages, then the remaining 2, nothing twice."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs.endpoint_url)
    keys = [f"{i:03d}.png" for i in range(160)]
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    first = run_cli(capsys, "--db", sqlite_url, "sync", f"s3://{bucket}",
                    "--page-size", "40", "--max-pages", "2")  # fmt: skip
    assert first.code == 0 and "more to list: run again to continue" in first.out
    assert keys_in(sqlite_url, bucket) == keys[:80]
    second = run_cli(capsys, "--db", sqlite_url, "sync", f"s3://{bucket}", "--page-size", "40")
    assert second.code == 0 and "2 pages, 80 keys listed (80 new)" in second.out
    assert keys_in(sqlite_url, bucket) == keys


# -- errors: one line, an exit code, the DB unchanged -------------------------------------


def test_unknown_bucket_leaves_no_source(db_url, seaweedfs, capsys, s3_env):
    result = run_cli(capsys, "--db", db_url, "sync", "s3://no-such-bucket-here",
                     "--endpoint-url", seaweedfs.endpoint_url)  # fmt: skip
    assert result.code == 3
    assert result.err_lines == ["error: bucket 'no-such-bucket-here' does not exist"]
    assert dump(db_url) == {table: [] for table in TABLES}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://bucket/prefix", "not an S3 URL"),
        ("s3:/bucket", "not an S3 URL"),
        ("s3://", "not a valid S3 bucket name: ''"),
        ("s3://ab", "not a valid S3 bucket name: 'ab'"),
        ("s3://-bad-/x", "not a valid S3 bucket name"),
    ],
)
def test_bad_s3_url_is_a_usage_error_before_the_db_is_touched(tmp_path, capsys, uri, message):
    result = run_cli(capsys, "--db", f"sqlite:///{tmp_path / 'state.db'}", "sync", uri)
    assert result.code == 2 and len(result.err_lines) == 1
    assert result.err_lines[0].startswith(f"error: {message}")
    assert not (tmp_path / "state.db").exists()


def test_bad_endpoint_url(tmp_path, capsys, s3_env):
    result = run_cli(capsys, "--db", f"sqlite:///{tmp_path / 'state.db'}", "sync",
                     "s3://bucket", "--endpoint-url", "not a url")  # fmt: skip
    assert result.code == 2
    assert result.err_lines == ["error: bad S3 endpoint 'not a url': Invalid endpoint: not a url"]


def test_unreachable_endpoint(sqlite_url, capsys, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = run_cli(capsys, "--db", sqlite_url, "sync", "s3://bucket", "--endpoint-url", endpoint)
    assert result.code == 3 and len(result.err_lines) == 1
    assert result.err_lines[0].startswith("error: cannot reach S3 (EndpointConnectionError)")
    assert dump(sqlite_url)["sources"] == []


def test_no_credentials(sqlite_url, capsys, seaweedfs, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = run_cli(capsys, "--db", sqlite_url, "sync", "s3://bucket",
                     "--endpoint-url", seaweedfs.endpoint_url)  # fmt: skip
    assert result.code == 3
    assert result.err_lines[0].startswith("error: no AWS credentials found")
    assert dump(sqlite_url)["sources"] == []


@pytest.fixture
def moto_with_auth(moto_server, s3_env):  # type: ignore[no-untyped-def]
    """moto with IAM enforced: bucket `locked` (3 images), already synced into a DB, and
    users `nobody` (no policy) and `reader` (may list). Returns (server, db url, keys)."""
    client = moto_server.client()
    client.create_bucket(Bucket="locked")
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        client.put_object(Bucket="locked", Key=key, Body=b"1")
    iam = boto3.client(
        "iam",
        endpoint_url=moto_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    users = {}
    for name in ("nobody", "reader"):
        iam.create_user(UserName=name)
        users[name] = iam.create_access_key(UserName=name)["AccessKey"]
    # AWS authorises ListObjectsV2 as s3:ListBucket; moto 5.2 checks an action named after
    # the operation (s3:ListObjectsV2). Granting both lets `reader` list on either.
    iam.put_user_policy(
        UserName="reader",
        PolicyName="list",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": ["s3:ListBucket", "s3:ListObjectsV2"], "Resource": "*"}]}',
    )
    # Enforce authentication and IAM policies from now on.
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(
            f"{moto_server.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
    ).read()
    return moto_server, users


def use_key(monkeypatch: Any, key: dict[str, str], secret: str | None = None) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or key["SecretAccessKey"])


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("nobody", "error: access denied to s3://locked"),
        ("unknown-key", "error: S3 rejected the credentials (InvalidAccessKeyId) for s3://locked"),
        ("wrong-secret", "error: S3 rejected the credentials (SignatureDoesNotMatch) for s3://locked"),
    ],
)  # fmt: skip
def test_refused_credentials_change_nothing(
    moto_with_auth, sqlite_url, capsys, monkeypatch, who, message
):
    """Proves that access denied and bad credentials are one line, exit 3, and leave an
    existing source's cursor and listed objects exactly as they were (and create no new source)."""
    server, users = moto_with_auth
    endpoint = ("--endpoint-url", server.endpoint_url)
    use_key(monkeypatch, users["reader"])
    assert run_cli(capsys, "--db", sqlite_url, "sync", "s3://locked", "--page-size", "2",
                   "--max-pages", "1", *endpoint).code == 0  # fmt: skip
    before = dump(sqlite_url)
    assert len(before["objects"]) == 2
    if who == "nobody":
        use_key(monkeypatch, users["nobody"])
    elif who == "unknown-key":
        use_key(monkeypatch, {"AccessKeyId": "AKIAUNKNOWNKEY000000", "SecretAccessKey": "x"})
    else:
        use_key(monkeypatch, users["reader"], secret="not-the-secret")
    for uri in ("s3://locked", "s3://locked/new-prefix/"):
        result = run_cli(capsys, "--db", sqlite_url, "sync", uri, *endpoint)
        assert result.code == 3, result.err
        assert result.err_lines == [message]
    assert dump(sqlite_url) == before


# -- a dead token, as the user sees it ----------------------------------------------------


def test_dead_token_is_one_warning_line_and_nothing_lost(sqlite_url, moto_server, s3_env,
                                                        capsys, monkeypatch):  # fmt: skip
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # moto answers a dead token with a 500
    keys = [f"{i:03d}.jpg" for i in range(150)]
    args = ("--db", sqlite_url, "sync", "s3://tokens", "--page-size", "50",
            "--endpoint-url", moto_server.endpoint_url)  # fmt: skip
    moto_server.client().create_bucket(Bucket="tokens")
    put_objects(moto_server.endpoint_url, "tokens", keys)
    assert run_cli(capsys, *args, "--max-pages", "1").code == 0
    moto_server.restart()
    moto_server.client().create_bucket(Bucket="tokens")
    put_objects(moto_server.endpoint_url, "tokens", keys)
    result = run_cli(capsys, *args)
    assert result.code == 0, result.err
    warnings = [line for line in result.err_lines if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "rejected the saved continuation token" in warnings[0]
    assert keys_in(sqlite_url, "tokens") == keys


# -- Ctrl-C and the terminal display (real subprocesses) ----------------------------------


def test_ctrl_c_stops_after_the_page_in_flight_and_says_how_to_resume(
    sqlite_url, bucket, seaweedfs
):
    """Proves Ctrl-C: pressed while page 3 is in flight, that page is still committed,
    the exit code is 130, and the printed command resumes with page 4: no page twice."""
    keys = [f"{i:04d}.jpg" for i in range(260)]
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    with FaultProxy(seaweedfs.endpoint_url) as proxy:
        held, release = proxy.hold_list(after=2)
        process = subprocess.Popen(
            [*TRACKER, "--db", sqlite_url, "sync", f"s3://{bucket}", "--page-size", "50",
             "--endpoint-url", proxy.endpoint_url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert held.wait(60)
        process.send_signal(signal.SIGINT)
        release.set()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "stopping after the current page is committed" in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: interrupted after 3 pages (150 new keys), all committed")
        command = last.split("resume with: ")[1]
        assert command == shlex.join(
            ["tracker", "--db", sqlite_url, "sync", f"s3://{bucket}",
             "--endpoint-url", proxy.endpoint_url, "--page-size", "50"]
        )  # fmt: skip
        assert keys_in(sqlite_url, bucket) == keys[:150]

        resumed = subprocess.run(
            [*TRACKER, *shlex.split(command)[1:]], capture_output=True, text=True, timeout=60
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "3 pages, 110 keys listed (110 new)" in resumed.stdout
    first_keys = [r.first_key for r in proxy.lists()]
    assert first_keys == [keys[0], keys[50], keys[100], keys[150], keys[200], keys[250]]
    assert keys_in(sqlite_url, bucket) == keys


def test_terminal_shows_a_live_display_and_keys_are_never_markup(sqlite_url, bucket, seaweedfs):
    """Proves the rich display on a terminal (a pseudo-terminal here), with a prefix that
    rich would read as markup if it were not printed as plain text."""
    prefix = "[bold]x[/bold]/"
    put_objects(seaweedfs.endpoint_url, bucket, [f"{prefix}{i}.jpg" for i in range(30)])
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*TRACKER, "--db", sqlite_url, "sync", f"s3://{bucket}/{prefix}", "--page-size", "10",
         "--endpoint-url", seaweedfs.endpoint_url],
        stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        env=dict(os.environ, COLUMNS="200", TERM="xterm"),
    )  # fmt: skip
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    os.close(leader)
    shown = output.decode("utf-8", "replace")
    assert f"s3://{bucket}/{prefix}: 3 pages, 30 keys listed (30 new)" in shown
    assert len(keys_in(sqlite_url, bucket, prefix)) == 30


def test_help_has_an_example(capsys):
    result = run_cli(capsys, "sync", "--help")
    assert result.code == 0 and "Example:" in result.out and "--from-start" in result.out
