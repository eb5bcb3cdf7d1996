"""Migration 0002 (datasets) on a DB filled the way the 0001 code filled it, on SQLite and
PostgreSQL: nothing lost, state attributed to the right dataset or the operator asked, a
downgrade that works for one dataset per source, and an upgrade that runs once.

Every check reads the tables with SQL, not through the store: the store follows the new
schema and must not be what proves the migration kept the old data.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine.processors import str_to_datetime

from tests.db_support import schema_revision, table_names
from tests.fixtures.build_0001_db import (
    BUCKET,
    DATASET,
    OTHER_OWNER,
    PENDING_ONLY_BUCKET,
    build_0001_db,
)
from tracker.cli import cli
from tracker.db import alembic_config, create_db_engine, ensure_schema, head_revision
from tracker.errors import StateDBError
from tracker.models import from_micros, unpack_etag

REPO = Path(__file__).resolve().parents[2]
ALEMBIC = str(Path(sys.executable).with_name("alembic"))
MIGRATION = REPO / "migrations" / "versions" / "0002_datasets.py"

#: What a key's row holds beyond its listing facts in 0001, and keeps in 0002.
STATE_FIELDS = (
    "state",
    "failure_reason",
    "lease_owner",
    "lease_token",
    "lease_expires_at",
    "session_id",
    "answer",
    "answer_count",
    "created_at",
    "updated_at",
    "served_at",
    "annotated_at",
)
LISTING_FIELDS = ("id", "size", "etag", "last_modified")
CURSOR_FIELDS = (
    "continuation_token",
    "last_key",
    "pages_listed",
    "keys_listed",
    "exhausted_at",
    "updated_at",
)


# -- helpers ----------------------------------------------------------------------------------


def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def moment(value: Any) -> datetime | None:
    """A time as stored, whatever the revision: SQLite text (0001 to 0006), integer
    microseconds (`objects` from 0009 on, SQLite), or PostgreSQL's timestamptz."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int):
        return from_micros(value)
    return str_to_datetime(value).replace(tzinfo=UTC)


def as_read(row: dict[str, Any], *times: str) -> dict[str, Any]:
    """A row with its ETag and the listed `times` as they read, whatever their storage: an
    ETag SQLite keeps as 16 bytes (0009) as its text, a time as a moment."""
    etag = row["etag"]
    return (
        row
        | {"etag": None if etag is None else unpack_etag(etag)}
        | {t: moment(row[t]) for t in times}
    )


def execute(url: str, sql: str, **params: Any) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def old_keys(url: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every 0001 item by (bucket, prefix, key): listing facts and state."""
    rows = query(
        url, "SELECT s.bucket, s.prefix, i.* FROM items i JOIN sources s ON s.id = i.source_id"
    )
    return {(r["bucket"], r["prefix"], r["key"]): as_read(r, "last_modified") for r in rows}


def new_keys(url: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every 0002 object by (bucket, prefix, key), with its dataset's row if it has one."""
    rows = query(
        url,
        "SELECT s.bucket, s.prefix, o.id, o.key, o.size, o.etag, o.last_modified, "
        "o.created_at AS object_created_at, d.name AS dataset, d.frontier, i.id AS item_id, "
        "i.state, i.failure_reason, i.lease_owner, i.lease_token, i.lease_expires_at, "
        "i.session_id, i.answer, i.answer_count, i.created_at, i.updated_at, i.served_at, "
        "i.annotated_at, i.attempts, i.serves, i.imported "
        "FROM objects o JOIN sources s ON s.id = o.source_id "
        "LEFT JOIN items i ON i.object_id = o.id "
        "LEFT JOIN datasets d ON d.id = i.dataset_id",
    )
    return {
        (r["bucket"], r["prefix"], r["key"]): as_read(r, "last_modified", "object_created_at")
        for r in rows
    }


def cursors(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = query(
        url,
        "SELECT s.bucket, s.prefix, c.* FROM listing_cursors c "
        "JOIN sources s ON s.id = c.source_id",
    )
    return {(r["bucket"], r["prefix"]): {f: r[f] for f in CURSOR_FIELDS} for r in rows}


def upgrade_cli(url: str, *args: str):  # type: ignore[no-untyped-def]
    """`tracker --db URL db upgrade ARGS...` as a shell would see it (stdout, stderr, code)."""
    return CliRunner().invoke(cli, ["--db", url, "db", "upgrade", *args])


def alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `alembic` command from the repository root."""
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_DB_URL"}
    return subprocess.run(
        [ALEMBIC, "-x", f"db={url}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_nothing_changed(url: str, before: dict, cursors_before: dict) -> None:
    assert schema_revision(url) == "0001"
    assert not table_names(url) & {"objects", "datasets", "owners", "items_0001_copy"}
    assert old_keys(url) == before
    assert cursors(url) == cursors_before


def migration_module():  # type: ignore[no-untyped-def]
    """The 0002 script as a module, for its attribution rules (not importable by name)."""
    spec = importlib.util.spec_from_file_location("migration_0002", MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- upgrade without loss ---------------------------------------------------------------------


def test_upgrade_keeps_every_key_cursor_lease_answer_and_session(db_url):
    build_0001_db(db_url)
    before, cursors_before = old_keys(db_url), cursors(db_url)

    result = upgrade_cli(db_url)

    assert result.exit_code == 0, result.output
    assert schema_revision(db_url) == head_revision()
    after = new_keys(db_url)
    assert after.keys() == before.keys()  # every key of every source, odd ones included
    for name, old in before.items():
        new = after[name]
        # Objects keep the old ids: listing order (id order) and anything citing an id.
        assert {f: new[f] for f in LISTING_FIELDS} == {f: old[f] for f in LISTING_FIELDS}
        assert new["object_created_at"] == moment(old["created_at"])
        if old["state"] == "pending":
            # Implicitly pending (frontier 0): no row, so no claim has to skip one.
            assert new["item_id"] is None, name
            continue
        assert {f: new[f] for f in STATE_FIELDS} == {f: old[f] for f in STATE_FIELDS}, name
        assert new["dataset"] == DATASET and new["frontier"] == 0
        assert new["item_id"] == old["id"]
        assert not new["imported"]  # 0001 never recorded which answers were imported
        served = old["state"] == "served"
        assert new["attempts"] == (1 if served else 0)
        assert new["serves"] == (1 if served or old["served_at"] is not None else 0)
    assert cursors(db_url) == cursors_before
    assert {r["generation"] for r in query(db_url, "SELECT generation FROM listing_cursors")} == {0}
    # The source that was only listed needs no dataset: a new one starts at frontier 0.
    datasets = query(
        db_url, "SELECT s.bucket, d.name FROM datasets d JOIN sources s ON s.id = d.source_id"
    )
    assert datasets == [{"bucket": BUCKET, "name": DATASET}]
    states = {r["state"] for r in after.values() if r["item_id"] is not None}
    assert states == {"annotated", "served", "failed"}  # the fixture covers each
    two = [r for r in after.values() if r["answer_count"] == 2]
    assert len(two) == 1 and two[0]["answer"] == "accept"


def test_rows_inserted_after_the_upgrade_get_ids_past_the_copied_ones(db_url):
    # PostgreSQL's sequences do not see explicit ids: the migration must move them on.
    build_0001_db(db_url)
    assert upgrade_cli(db_url).exit_code == 0
    top = query(db_url, "SELECT MAX(id) AS m FROM objects")[0]["m"]
    execute(
        db_url,
        "INSERT INTO objects (source_id, key) SELECT id, 'new/after-upgrade.jpg' FROM sources "
        "WHERE bucket = :b",
        b=BUCKET,
    )
    new_id = query(db_url, "SELECT id FROM objects WHERE key = 'new/after-upgrade.jpg'")[0]["id"]
    assert new_id > top
    top_item = query(db_url, "SELECT MAX(id) AS m FROM items")[0]["m"]
    execute(
        db_url,
        "INSERT INTO items (dataset_id, object_id, state) "
        "SELECT d.id, :o, 'pending' FROM datasets d",
        o=new_id,
    )
    assert query(db_url, "SELECT MAX(id) AS m FROM items")[0]["m"] > top_item


def test_a_db_with_only_pending_keys_upgrades_without_a_dataset(db_url):
    build_0001_db(db_url)
    execute(
        db_url,
        "DELETE FROM items WHERE state <> 'pending' "
        "OR source_id <> (SELECT id FROM sources WHERE bucket = :b)",
        b=PENDING_ONLY_BUCKET,
    )
    before = old_keys(db_url)

    result = upgrade_cli(db_url)

    assert result.exit_code == 0, result.output
    assert query(db_url, "SELECT * FROM datasets") == []
    assert query(db_url, "SELECT * FROM items") == []
    assert new_keys(db_url).keys() == before.keys()


# -- attribution: ask when the DB cannot say --------------------------------------------------


def test_ambiguous_state_stops_the_upgrade_with_one_line_exit_4_and_the_db_untouched(db_url):
    build_0001_db(db_url, ambiguous=True)
    before, cursors_before = old_keys(db_url), cursors(db_url)

    result = upgrade_cli(db_url)

    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert DATASET in lines[0] and OTHER_OWNER.split("@")[0] in lines[0]  # the candidates
    assert "tracker db upgrade --dataset NAME" in lines[0]
    assert f"s3://{BUCKET}/images/" in lines[0]
    assert_nothing_changed(db_url, before, cursors_before)


def test_the_automatic_upgrade_on_first_use_refuses_with_the_same_line(db_url):
    # Store.open runs ensure_schema: any command on an ambiguous DB says the same, exit 4.
    build_0001_db(db_url, ambiguous=True)
    before, cursors_before = old_keys(db_url), cursors(db_url)
    cli_line = upgrade_cli(db_url).output.strip()

    engine = create_db_engine(db_url)
    try:
        with pytest.raises(StateDBError) as error:
            ensure_schema(engine)
    finally:
        engine.dispose()

    assert str(error.value) == cli_line.removeprefix("error: ").removeprefix("Error: ")
    assert error.value.exit_code == 4
    assert_nothing_changed(db_url, before, cursors_before)


def test_dataset_given_on_the_cli_takes_the_ambiguous_state(db_url):
    build_0001_db(db_url, ambiguous=True)
    before = old_keys(db_url)

    result = upgrade_cli(db_url, "--dataset", "dogs_review")

    assert result.exit_code == 0, result.output
    after = new_keys(db_url)
    held = [r for r in after.values() if r["item_id"] is not None]
    # Every row with state, the other owner's lease included, belongs to the named dataset.
    assert {r["dataset"] for r in held} == {"dogs_review"}
    assert len(held) == sum(1 for r in before.values() if r["state"] != "pending")
    assert {r["lease_owner"] for r in held} >= {OTHER_OWNER, f"{DATASET}@host-a"}


def test_state_that_no_owner_or_session_names_asks_for_a_dataset(db_url):
    # Failed keys carry neither: guessing would put them under a dataset nobody named.
    build_0001_db(db_url)
    execute(db_url, "DELETE FROM items WHERE state IN ('served', 'annotated')")
    before, cursors_before = old_keys(db_url), cursors(db_url)

    result = upgrade_cli(db_url)

    assert result.exit_code == 4
    assert "no lease owner or session names one" in result.output
    assert_nothing_changed(db_url, before, cursors_before)
    assert upgrade_cli(db_url, "--dataset", "cats_v1").exit_code == 0
    assert query(db_url, "SELECT name FROM datasets") == [{"name": "cats_v1"}]


def test_alembic_from_the_repo_root_takes_the_dataset_as_an_x_argument(db_url):
    build_0001_db(db_url, ambiguous=True)

    refused = alembic(db_url, "upgrade", "head")
    assert refused.returncode != 0
    failed = [line for line in refused.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "tracker db upgrade --dataset NAME" in failed[0]
    assert "Traceback" not in refused.stderr  # one FAILED: line, not a stack
    assert schema_revision(db_url) == "0001"

    done = alembic(db_url, "-x", "dataset=cats_v1", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert query(db_url, "SELECT name FROM datasets") == [{"name": "cats_v1"}]


@pytest.mark.parametrize(
    ("owners", "sessions", "expected"),
    [
        # The 0001 default owner is DATASET@HOST: the part before the last @.
        (["cats@host-a", "cats@host-b"], [], "cats"),
        (["team@corp@host"], [], "team@corp"),
        # Sessions are DATASET or DATASET-NAME; together with an owner they agree on one.
        (["cats-v2@host"], ["cats-v2-alice", "cats-v2"], "cats-v2"),
        ([], ["cats-alice", "cats-bob"], "cats"),
        ([], ["cats"], "cats"),
        # A custom owner (no @) says nothing; the session decides.
        (["worker-1"], ["cats"], "cats"),
        # Ambiguous: two owners' datasets; a lone named session (cats or cats-alice?).
        (["cats@h", "dogs@h"], [], None),
        ([], ["cats-alice"], None),
        (["worker-1"], [], None),
    ],
)
def test_attribution_rules_for_owners_and_sessions(owners, sessions, expected):
    module = migration_module()
    evidence = [module.names_from_owner(o) for o in owners]
    evidence += [module.names_from_session(s) for s in sessions]
    name, candidates = module.attribute([e for e in evidence if e])
    assert name == expected
    if expected is None and owners and "@" in owners[0]:
        assert candidates == sorted({o.rsplit("@", 1)[0] for o in owners})


# -- downgrade and idempotence ----------------------------------------------------------------


def test_downgrade_with_one_dataset_per_source_gives_back_the_0001_rows(db_url):
    build_0001_db(db_url)
    before, cursors_before = old_keys(db_url), cursors(db_url)
    assert upgrade_cli(db_url).exit_code == 0

    done = alembic(db_url, "downgrade", "0001")

    assert done.returncode == 0, done.stderr
    assert schema_revision(db_url) == "0001"
    assert not table_names(db_url) & {"objects", "datasets", "owners"}
    after = old_keys(db_url)
    assert after.keys() == before.keys()
    for name, old in before.items():
        new = after[name]
        assert {f: new[f] for f in LISTING_FIELDS} == {f: old[f] for f in LISTING_FIELDS}
        if old["state"] == "pending":
            # What 0002 keeps of a pending key: its listing facts (served_at is not kept).
            assert new["state"] == "pending" and new["answer_count"] == 0
        else:
            assert {f: new[f] for f in STATE_FIELDS} == {f: old[f] for f in STATE_FIELDS}
    assert cursors(db_url) == cursors_before
    # And up again: the owners and sessions still name the dataset.
    assert upgrade_cli(db_url).exit_code == 0
    assert query(db_url, "SELECT name FROM datasets") == [{"name": DATASET}]


def test_downgrade_with_two_datasets_on_a_source_is_refused_with_one_line(db_url):
    # 0001 holds one state per key: merging two datasets' answers would lose one of them.
    build_0001_db(db_url)
    assert upgrade_cli(db_url).exit_code == 0
    execute(
        db_url,
        "INSERT INTO datasets (source_id, name, frontier, created_at) "
        "SELECT source_id, 'dogs_review', 0, created_at FROM datasets",
    )
    before = new_keys(db_url)

    refused = alembic(db_url, "downgrade", "0001")

    assert refused.returncode != 0
    # Alembic prints its FAILED: line on stdout, its log on stderr.
    failed = [line for line in refused.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "2 datasets" in failed[0] and "nothing was changed" in failed[0]
    assert "Traceback" not in refused.stderr
    # The revisions above 0002 (0003: shard cursors, empty here) may already have been
    # downgraded before 0002 refused: PostgreSQL rolls the whole run back, SQLite keeps them.
    assert schema_revision(db_url) in {"0002", head_revision()}
    assert new_keys(db_url) == before


def test_upgrading_an_upgraded_db_is_a_no_op(db_url):
    build_0001_db(db_url)
    assert upgrade_cli(db_url).exit_code == 0
    snapshot, cursors_after = new_keys(db_url), cursors(db_url)
    datasets = query(db_url, "SELECT * FROM datasets")

    again = upgrade_cli(db_url)
    named = upgrade_cli(db_url, "--dataset", "something_else")  # nothing left to attribute

    assert again.exit_code == 0 and named.exit_code == 0
    assert schema_revision(db_url) == head_revision()
    assert new_keys(db_url) == snapshot
    assert cursors(db_url) == cursors_after
    assert query(db_url, "SELECT * FROM datasets") == datasets
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:  # Alembic itself: head to head runs nothing
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    assert new_keys(db_url) == snapshot


def test_fixture_script_builds_a_0001_db_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/fixtures/build_0001_db.py"), url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert schema_revision(url) == "0001"
    assert len(old_keys(url)) > 10


def test_an_offline_sql_upgrade_needs_the_dataset_and_renders_the_copy(sqlite_url):
    # `alembic upgrade --sql` reads no data: it cannot attribute, so it must be told.
    refused = alembic(sqlite_url, "upgrade", "0001:0002", "--sql")
    assert refused.returncode != 0 and "-x dataset=NAME" in refused.stdout

    rendered = alembic(sqlite_url, "-x", "dataset=cats_v1", "upgrade", "0001:0002", "--sql")

    assert rendered.returncode == 0, rendered.stderr
    assert "INSERT INTO objects" in rendered.stdout
    assert "'cats_v1'" in rendered.stdout and "INSERT INTO items" in rendered.stdout
