"""`tracker db copy --to URL`: the whole state DB into another one, SQLite <-> PostgreSQL.

Real SQLite files and a real PostgreSQL schema per test. Content is compared table by
table, every row and column, as the store reads it (aware UTC times, enums, booleans).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.engine import make_url

import tracker.copy as copy_module
from tests.cli_support import build_state, listed, run
from tests.conftest import fresh_pg_schema
from tracker.copy import COUNTER_TABLES
from tracker.db import alembic_config, create_db_engine
from tracker.events import Change, ObjectEvent
from tracker.models import Answer, Base
from tracker.ordering import Order
from tracker.records import AnswerRecord, DatasetRef, ListedObject
from tracker.store import Store
from tracker.stream import S3Stream

pytestmark = pytest.mark.postgres


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the schema, in primary-key order, as SQLAlchemy reads
    them (so SQLite's naive text and PostgreSQL's timestamptz compare as the same time).
    A counter table as what it means (`counter_sums`): PostgreSQL's delta rows and
    SQLite's one row per source or dataset are the same counts."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: (
                    counter_sums(conn, table.name)
                    if table.name in COUNTER_TABLES
                    else [
                        tuple(row)
                        for row in conn.execute(
                            select(table).order_by(*(table.primary_key.columns or table.columns))
                        )
                    ]
                )
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def counter_sums(conn: Connection, name: str) -> list[tuple[Any, ...]]:
    """(source or dataset id, each count summed over its rows), for every one whose counts
    are not all zero (PostgreSQL has no row for a dataset without items; SQLite a row of
    zeros)."""
    table = Base.metadata.tables[name]
    key = COUNTER_TABLES[name][1]
    counts = [c for c in table.columns if not c.primary_key and c.name != key]
    rows = conn.execute(
        select(table.c[key], *(func.sum(c) for c in counts))
        .group_by(table.c[key])
        .order_by(table.c[key])
    )
    return [(row[0], *map(int, row[1:])) for row in rows if any(row[1:])]


def build_everything(url: str) -> None:
    """A state DB with a row in every table: `build_state`'s leases, answers and failed
    key (odd and unicode keys), plus an imported answer, a registered owner, priorities
    (one for a key not listed yet), a dataset in random order (float ranks), a parallel
    listing's shard plan, an inventory ingestion, and deleted keys from a complete pass."""
    ref = build_state(url)
    with Store.open(url) as store:
        source = store.source("photos", "")
        store.import_answers(
            ref,
            [
                AnswerRecord(
                    "img/0015.jpg",
                    Answer.ACCEPT,
                    "imported",
                    datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                )
            ],
        )
        store.register_owner("ds@host-a", stale_after=timedelta(minutes=5))
        store.set_priorities(source, {"img/0016.jpg": 2.5, "later/ünlisted.jpg": -1e-300})
        ranked = store.dataset(source, "ranked", create=True)
        store.set_order(ranked, Order("random", 7))
        store.claim(ranked, "ranked@host-c", 3, timedelta(minutes=30))

        other = store.source("other-bucket", "cats/", create=True)
        keys = [f"cats/{i:03d}.png" for i in range(30)]
        store.start_inventory(
            other,
            "s3://inventory/other-bucket/daily/manifest.json",
            snapshot_at=datetime(2026, 11, 1, 12, tzinfo=UTC),
            files=2,
        )
        store.record_inventory_batch(
            other,
            "s3://inventory/other-bucket/daily/manifest.json",
            listed(keys[:20]),
            file_index=0,
            row_offset=20,
            max_key=keys[19],
        )
        cursor = store.cursor(other)
        shards = store.plan_shards(
            other, [(None, "cats/015.png"), ("cats/015.png", None)], generation=cursor.generation
        )
        store.record_shard_page(
            other, shards[1], listed(keys[20:]), next_token="t2", last_key=keys[-1], exhausted=True
        )
        pass_id = store.begin_pass(other)
        store.record_page(
            other, listed(keys[5:]), next_token=None, last_key=keys[-1], exhausted=True
        )
        store.finish_pass(other, pass_id)  # keys 0-4 were not seen: deleted


def copy(source: str, target: str, *args: str):  # type: ignore[no-untyped-def]
    return run(source, "db", "copy", "--to", target, *args)


def pg_schema_tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                ).scalars()
            )
    finally:
        engine.dispose()


def file_fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# -- content ------------------------------------------------------------------------------


def test_every_table_round_trips_sqlite_to_postgresql_to_sqlite_with_identical_rows(
    tmp_path, pg_url
):
    laptop = f"sqlite:///{tmp_path / 'laptop.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    build_everything(laptop)
    original = table_rows(laptop)
    empty = [name for name, rows in original.items() if not rows]
    assert not empty, f"the fixture must put a row in every table, not in {empty}"

    to_pg = copy(laptop, pg_url)
    assert to_pg.exit_code == 0, to_pg.output
    assert table_rows(pg_url) == original
    to_file = copy(pg_url, back)
    assert to_file.exit_code == 0, to_file.output
    assert table_rows(back) == original

    # The summary: one line per table, all verified.
    for name in original:
        assert name in to_pg.output
    assert "DIFFERS" not in to_pg.output
    assert f"copied {sum(map(len, original.values())):,} rows" in to_pg.output
    assert "verified" in to_pg.output.splitlines()[-1]


def test_times_booleans_floats_nulls_and_unicode_keys_keep_their_exact_values(tmp_path, pg_url):
    """Values chosen to break a lossy copy: a time with microseconds and one before 1970,
    a float that is not a short decimal, the smallest float, NULL sizes, keys with
    newline, tab, NUL-free control characters, RTL marks and astral-plane characters."""
    laptop = f"sqlite:///{tmp_path / 'laptop.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    keys = ["a\nb.jpg", "tab\t.jpg", "\x1b[31mred.jpg", "\u202eevil.jpg", "😀/𝕏.jpg", "ü.jpg"]
    times = [
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, tzinfo=UTC),
    ]
    with Store.open(laptop) as store:
        source = store.source("b", "", create=True)
        page = [
            ListedObject(k, None if i % 2 else 2**40 + i, None, times[i % 2])
            for i, k in enumerate(keys)
        ]
        store.record_page(source, page, next_token=None, last_key=None, exhausted=False)
        store.set_priorities(source, {keys[0]: 0.1 + 0.2, keys[1]: 5e-324, keys[2]: -0.0})
        dataset = store.dataset(source, "d", create=True)
        store.set_order(dataset, Order("priority"))
        store.import_answers(dataset, [AnswerRecord(keys[3], Answer.REJECT, "s", times[1])])
    original = table_rows(laptop)

    assert copy(laptop, pg_url).exit_code == 0
    assert copy(pg_url, back).exit_code == 0
    for url in (pg_url, back):
        assert table_rows(url) == original
    with Store.open(back) as store:
        dataset = store.dataset(store.source("b", ""), "d")
        rows = {row.key: row for row in store.iter_items(dataset)}
    assert set(rows) == set(keys)
    assert rows[keys[3]].answer == Answer.REJECT
    priorities = dict((r[1], r[2]) for r in original["key_priorities"])
    assert priorities[keys[0]] == 0.1 + 0.2 and priorities[keys[1]] == 5e-324
    flag = list(Base.metadata.tables["items"].columns.keys()).index("imported")
    assert {row[flag] for row in table_rows(back)["items"]} == {True, False}


# -- the tracker works on the copy ------------------------------------------------------


def _status(url: str) -> dict[str, Any]:
    result = run(url, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    report.pop("database", None)
    report.pop("generated_at", None)
    return report


@pytest.mark.parametrize("direction", ["sqlite->postgresql", "postgresql->sqlite"])
def test_the_copy_serves_on_where_the_source_stood_and_new_rows_get_fresh_ids(
    tmp_path, pg_url, direction
):
    """`status` is the same; a claim on the copy hands out exactly the keys a claim on the
    source hands out (expired leases, then the frontier); an answer is recorded; a new
    source, key and item get the next ids (PostgreSQL sequences were moved on)."""
    sqlite_url = f"sqlite:///{tmp_path / 'state.db'}"
    source_url, target_url = (
        (sqlite_url, pg_url) if direction == "sqlite->postgresql" else (pg_url, sqlite_url)
    )
    build_everything(source_url)
    assert copy(source_url, target_url).exit_code == 0
    assert _status(target_url) == _status(source_url)
    before = table_rows(target_url)

    claimed = {}
    for url in (source_url, target_url):
        with Store.open(url) as store:
            dataset = store.dataset(store.source("photos", ""), "ds")
            leases = store.claim(dataset, "ds@host-a", 8, timedelta(minutes=30))
            claimed[url] = [lease.key for lease in leases]
            store.record_answers(dataset, [AnswerRecord(leases[0].key, Answer.ACCEPT, "ds-carol")])
    assert claimed[target_url] == claimed[source_url]
    assert len(claimed[target_url]) == 8

    with Store.open(target_url) as store:
        new_source = store.source("new-bucket", "", create=True)
        assert new_source.id == max(r[0] for r in before["sources"]) + 1
        store.record_page(
            new_source, listed(["fresh.jpg"]), next_token=None, last_key="fresh.jpg", exhausted=True
        )
        dataset = store.dataset(new_source, "fresh", create=True)
        assert dataset.id == max(r[0] for r in before["datasets"]) + 1
        store.claim(dataset, "fresh@host", 1, timedelta(minutes=5))
    after = table_rows(target_url)
    new_object = next(r for r in after["objects"] if r[2] == "fresh.jpg")
    assert new_object[0] == max(r[0] for r in before["objects"]) + 1
    assert max(r[0] for r in after["items"]) > max(r[0] for r in before["items"])


# -- counters arrive in the target's form (issue 20, item 4) ------------------------------

DIRECTIONS = [
    "sqlite->sqlite",
    "sqlite->postgresql",
    "postgresql->sqlite",
    "postgresql->postgresql",
]


@pytest.fixture
def second_pg_url() -> Iterator[str]:
    """Another fresh PostgreSQL schema (`pg_url`'s twin): a PostgreSQL -> PostgreSQL copy."""
    yield from fresh_pg_schema()


def _direction_urls(direction: str, tmp_path: Path, request: Any) -> tuple[str, str]:
    kinds = direction.split("->")
    urls = []
    for index, kind in enumerate(kinds):
        if kind == "sqlite":
            urls.append(f"sqlite:///{tmp_path / f'state{index}.db'}")
        else:
            urls.append(request.getfixturevalue("pg_url" if index == 0 else "second_pg_url"))
    return urls[0], urls[1]


def _build_with_deltas(url: str) -> None:
    """Counters as each database keeps them, several rows per source and dataset on
    PostgreSQL: pages recorded one by one, claims, answers, a failure, a key deleted and an
    annotated key overwritten by events, and a dataset that never claimed (PostgreSQL has
    no counter row for it at all)."""
    with Store.open(url) as store:
        source = store.source("bkt", "img/", create=True)
        for page in range(3):
            keys = [f"img/{page}-{i:02d}.jpg" for i in range(8)]
            store.record_page(
                source, listed(keys), next_token=None, last_key=keys[-1], exhausted=page == 2
            )
        cats = store.dataset(source, "cats", create=True)
        store.dataset(source, "dogs", create=True)  # never claims before the copy
        for _ in range(3):
            leases = store.claim(cats, "cats@host:1", 3, timedelta(minutes=30))
            store.record_answers(cats, [AnswerRecord(leases[0].key, Answer.ACCEPT, "cats-a")])
        store.mark_failed(cats, "img/0-02.jpg", "not an image")
        at = datetime(2026, 11, 2, tzinfo=UTC)
        store.apply_events(
            source,
            [
                ObjectEvent("bkt", "img/2-07.jpg", Change.REMOVED, at),
                ObjectEvent("bkt", "img/0-00.jpg", Change.CREATED, at, 5, "overwritten"),
            ],
            lambda key, size: True,
            ask=lambda key: None,  # S3 says: nothing live (the removals are applied)
        )
        other = store.source("other", "", create=True)
        store.record_page(other, listed(["x.jpg"]), next_token=None, last_key=None, exhausted=True)


def _counter_rows(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in COUNTER_TABLES
            }
    finally:
        engine.dispose()


def _assert_checked(url: str, after: str) -> None:
    result = run(url, "db", "check", "--json")
    assert result.exit_code == 0, f"after {after}: {result.output}"
    assert json.loads(result.stdout)["differences"] == []


def _stream_ends(store: Store, dataset: DatasetRef) -> bool:
    """The recipe's stream over a finished dataset: True when it ends at once with no
    task, False when it would poll (its `sleep` is asked for)."""

    def polls(_seconds: float) -> None:
        raise AssertionError("polled")

    stream = S3Stream(store, dataset, None, owner=f"{dataset.name}@end:1", sleep=polls)
    try:
        return list(stream.tasks()) == []
    except AssertionError:
        return False
    finally:
        stream.close()


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_counters_arrive_in_the_targets_form_and_stay_exact_through_writes_on_the_copy(
    tmp_path, request, direction
):
    """Issue 20, item 4: one counter row per source and per dataset on the target, so that
    SQLite's in-place triggers add each change once. After every kind of write on the copy
    (claims, answers, a listed page, events, a dataset's first claim) `db check` finds no
    difference, and once every key is annotated the stream ends with no task.
    Seen failing on the old copy (delta rows copied as they were) for postgresql->sqlite:
    `db check` exit 7 after the first claim, and a stream that polls for ever."""
    source_url, target_url = _direction_urls(direction, tmp_path, request)
    _build_with_deltas(source_url)
    if direction.startswith("postgresql"):
        rows = _counter_rows(source_url)
        assert rows["source_counts"] > 2 and rows["dataset_counts"] > 2, rows
    assert copy(source_url, target_url).exit_code == 0
    # Two sources, two datasets: one row each, the dataset that never claimed included.
    assert _counter_rows(target_url) == {"source_counts": 2, "dataset_counts": 2}
    assert table_rows(target_url) == table_rows(source_url)
    _assert_checked(target_url, "the copy")

    with Store.open(target_url) as store:
        source = store.source("bkt", "img/")
        cats, dogs = store.dataset(source, "cats"), store.dataset(source, "dogs")
        leases = store.claim(cats, "cats@host:1", 4, timedelta(minutes=30))
        _assert_checked(target_url, "a claim")
        store.record_answers(
            cats, [AnswerRecord(lease.key, Answer.REJECT, "cats-b") for lease in leases]
        )
        _assert_checked(target_url, "answers")
        keys = [f"img/3-{i:02d}.jpg" for i in range(5)]
        store.record_page(source, listed(keys), next_token=None, last_key=keys[-1], exhausted=True)
        _assert_checked(target_url, "a listed page")
        at = datetime(2026, 11, 3, tzinfo=UTC)
        store.apply_events(
            source,
            [
                ObjectEvent("bkt", leases[0].key, Change.CREATED, at, 7, "changed-again"),
                ObjectEvent("bkt", "img/1-05.jpg", Change.REMOVED, at),
                ObjectEvent("bkt", "img/2-07.jpg", Change.CREATED, at, 9, "back"),
                ObjectEvent("bkt", "img/4-00.jpg", Change.CREATED, at, 3, "new"),
            ],
            lambda key, size: True,
            ask=lambda key: None,  # S3 says: nothing live (the removals are applied)
        )
        _assert_checked(target_url, "events")
        store.claim(dogs, "dogs@host:1", 2, timedelta(minutes=30))
        _assert_checked(target_url, "the first claim of a dataset that had none")

        for dataset in (cats, dogs):
            store.release(dataset, f"{dataset.name}@host:1")
            while leases := store.claim(dataset, f"{dataset.name}@host:1", 7, timedelta(hours=1)):
                store.record_answers(
                    dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "s") for lease in leases]
                )
            _assert_checked(target_url, f"every key of {dataset.name} annotated")
            assert store.open_work(dataset).done, store.open_work(dataset)
            assert _stream_ends(store, dataset), f"the stream of {dataset.name} polls"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_dataset_finished_on_the_copy_ends_its_stream(tmp_path, request, direction):
    """Issue 20, item 4 (`copy_pg_to_sqlite_stream_never_done.py`): every key answered on
    the copy, nothing else written: the counters say done and the stream ends with no task.
    Seen failing on the old copy for postgresql->sqlite (pending -6, served -4: it polls)."""
    source_url, target_url = _direction_urls(direction, tmp_path, request)
    with Store.open(source_url) as store:
        source = store.source("bkt", "img/", create=True)
        for page in range(2):
            keys = [f"img/{page}-{i:03d}.jpg" for i in range(5)]
            store.record_page(
                source, listed(keys), next_token=None, last_key=keys[-1], exhausted=page == 1
            )
        dataset = store.dataset(source, "cats", create=True)
        store.claim(dataset, "cats@host:1", 2, timedelta(minutes=30))
        store.claim(dataset, "cats@host:1", 2, timedelta(minutes=30))
    assert copy(source_url, target_url).exit_code == 0
    with Store.open(target_url) as store:
        dataset = store.dataset(store.source("bkt", "img/"), "cats")
        store.release(dataset, "cats@host:1")
        while leases := store.claim(dataset, "cats@host:1", 3, timedelta(minutes=30)):
            store.record_answers(
                dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "cats-a") for lease in leases]
            )
        work = store.open_work(dataset)
        assert (work.pending, work.served) == (0, 0)
        assert _stream_ends(store, dataset)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_non_empty_target_is_refused_with_exit_6_and_left_unchanged(tmp_path, pg_url, kind):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    target = pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'target.db'}"
    build_state(source)
    build_state(target, bucket="elsewhere", regular=12, odd=False)
    held = table_rows(target)

    result = copy(source, target)
    assert result.exit_code == 6
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the target ")
    assert "already holds state" in lines[0] and "--replace" in lines[0]
    assert table_rows(target) == held


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_replace_empties_the_target_and_copies_in_one_transaction(tmp_path, pg_url, kind):
    source = f"sqlite:///{tmp_path / 'source.db'}" if kind == "postgresql" else pg_url
    target = pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'target.db'}"
    build_everything(source)
    build_state(target, bucket="elsewhere", regular=300, odd=False)

    result = copy(source, target, "--replace")
    assert result.exit_code == 0, result.output
    assert "target emptied first" in result.output
    assert table_rows(target) == table_rows(source)


def test_replace_that_fails_midway_leaves_the_old_target_whole(tmp_path, pg_url, monkeypatch):
    """Emptying and copying are one transaction: a failure after the target was emptied
    (here: while copying `items`) rolls the emptying back too."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_everything(source)
    build_state(pg_url, bucket="elsewhere", regular=30, odd=False)
    held = table_rows(pg_url)
    real = copy_module._copy_table

    def failing(src, dst, table, *args):  # type: ignore[no-untyped-def]
        if table.name == "items":
            raise RuntimeError("the network went away")
        return real(src, dst, table, *args)

    monkeypatch.setattr(copy_module, "_copy_table", failing)
    result = copy(source, pg_url, "--replace")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: unexpected RuntimeError: the network went away (run with -vv for the traceback)"
    ]
    assert table_rows(pg_url) == held


def test_a_failed_copy_into_a_new_target_leaves_nothing_behind(tmp_path, pg_url, monkeypatch):
    """No half-written target: the PostgreSQL schema holds no table afterwards (even the
    migration is rolled back), and a SQLite file the copy created is removed."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_state(source)

    def failing(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(copy_module, "_copy_table", failing)
    assert copy(source, pg_url).exit_code == 1
    assert pg_schema_tables(pg_url) == []
    target = tmp_path / "new" / "laptop.db"
    target.parent.mkdir()
    assert copy(pg_url, f"sqlite:///{target}").exit_code == 4  # pg_url holds no schema
    assert copy(source, f"sqlite:///{target}").exit_code == 1
    assert list(target.parent.iterdir()) == []


def test_a_count_that_differs_exits_1_with_the_table_and_rolls_back(tmp_path, pg_url, monkeypatch):
    """Verification: one row of `objects` lost on the way (planted) is found by the
    counts, shown in the summary as DIFFERS, and nothing is committed."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_state(source)
    real = copy_module._source_rows

    def losing(src, table, **options):  # type: ignore[no-untyped-def]
        context = real(src, table, **options)

        class Lossy:
            def __enter__(self):  # type: ignore[no-untyped-def]
                codes, chunks = context.__enter__()
                if table.name != "objects":
                    return codes, chunks
                return codes, (chunk[:-1] for chunk in chunks)

            def __exit__(self, *exc):  # type: ignore[no-untyped-def]
                return context.__exit__(*exc)

        return Lossy()

    monkeypatch.setattr(copy_module, "_source_rows", losing)
    result = copy(source, pg_url)
    assert result.exit_code == 1
    assert "DIFFERS" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the copy differs from the source in objects: rolled back, the target is unchanged"
    ]
    assert pg_schema_tables(pg_url) == []


def test_the_same_db_as_source_and_target_is_refused(tmp_path, pg_url):
    path = tmp_path / "state.db"
    build_state(f"sqlite:///{path}")
    fingerprint = file_fingerprint(path)
    (tmp_path / "link.db").symlink_to(path)
    (tmp_path / "sub").mkdir()
    for spelling in (str(path), f"{tmp_path}/sub/../state.db", str(tmp_path / "link.db")):
        result = copy(f"sqlite:///{path}", f"sqlite:///{spelling}", "--replace")
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: the source and the target are the same DB")
    assert file_fingerprint(path) == fingerprint

    build_state(pg_url)
    held = table_rows(pg_url)
    other_spelling = make_url(pg_url).set(host="localhost").render_as_string(hide_password=False)
    for target in (pg_url, other_spelling):
        result = copy(pg_url, target, "--replace")
        assert result.exit_code == 2, result.output
        assert "same DB" in result.output
    assert table_rows(pg_url) == held


def test_the_source_is_left_untouched(tmp_path, pg_url):
    """The SQLite source file's bytes and modification time are the same after a copy
    (no -wal either); the PostgreSQL source's rows too, copied back into it."""
    path = tmp_path / "source.db"
    build_everything(f"sqlite:///{path}")
    fingerprint = file_fingerprint(path)
    time.sleep(0.01)
    assert copy(f"sqlite:///{path}", pg_url).exit_code == 0
    assert file_fingerprint(path) == fingerprint
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    held = table_rows(pg_url)
    assert copy(pg_url, f"sqlite:///{tmp_path / 'back.db'}").exit_code == 0
    assert table_rows(pg_url) == held


def test_a_source_not_at_the_schema_head_is_refused_with_the_command_that_fixes_it(tmp_path):
    old = tmp_path / "old.db"
    engine = create_db_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    engine.dispose()
    target = tmp_path / "target.db"
    result = copy(f"sqlite:///{old}", f"sqlite:///{target}")
    assert result.exit_code == 4
    (line,) = result.output.strip().splitlines()
    assert "schema revision 0005" in line and "db upgrade" in line
    assert not target.exists()


@pytest.mark.parametrize(
    "target,message",
    [
        ("mysql://user@db/tracker", "unsupported database URL"),
        ("postgresql://postgres@127.0.0.1:1/test", "connection"),
        ("not a url", "not a valid database URL"),
    ],
)
def test_a_bad_target_is_one_line_exit_4_and_writes_nothing(tmp_path, target, message):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_state(source)
    result = copy(source, target)
    assert result.exit_code == 4
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_a_target_file_that_is_not_a_database_is_refused_and_kept(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_state(source)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 100)
    result = copy(source, f"sqlite:///{notes}")
    assert result.exit_code == 4
    assert len(result.output.strip().splitlines()) == 1
    assert notes.read_text() == "my notes, not a database\n" * 100


def test_a_missing_source_file_is_refused_and_not_created(tmp_path, pg_url):
    result = copy(f"sqlite:///{tmp_path / 'typo.db'}", pg_url)
    assert result.exit_code == 4
    assert not (tmp_path / "typo.db").exists()


# -- triggers (a counters table kept by triggers must not count twice) ------------------

_PG_TRIGGER = """
CREATE FUNCTION count_listed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE listing_cursors SET keys_listed = keys_listed + 1 WHERE source_id = NEW.source_id;
  RETURN NEW;
END $$;
CREATE TRIGGER objects_counted AFTER INSERT ON objects
  FOR EACH ROW EXECUTE FUNCTION count_listed();
"""

_SQLITE_TRIGGER = """
CREATE TRIGGER objects_counted AFTER INSERT ON objects BEGIN
  UPDATE listing_cursors SET keys_listed = keys_listed + 1 WHERE source_id = NEW.source_id;
END
"""


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_target_triggers_do_not_fire_during_the_copy_and_work_after_it(tmp_path, pg_url, kind):
    """A derived count kept by a trigger on the target (as a counters table may be) is
    copied as the source has it, not counted again as rows arrive; the trigger is back
    and enabled afterwards."""
    source = f"sqlite:///{tmp_path / 'source.db'}" if kind == "postgresql" else pg_url
    target = pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'target.db'}"
    build_state(source)
    assert run(target, "db", "upgrade").exit_code == 0
    engine = create_db_engine(target)
    with engine.begin() as conn:
        if kind == "postgresql":
            conn.exec_driver_sql(_PG_TRIGGER)
        else:
            conn.exec_driver_sql(_SQLITE_TRIGGER)
    engine.dispose()

    assert copy(source, target).exit_code == 0
    assert table_rows(target) == table_rows(source)
    with Store.open(target) as store:
        ref = store.source("photos", "")
        listed_before = store.cursor(ref).keys_listed
        store.record_page(ref, listed(["new.jpg"]), next_token=None, last_key=None, exhausted=False)
        # +1 by the store, +1 by the trigger: it is there and enabled.
        assert store.cursor(ref).keys_listed == listed_before + 2


# -- scale ----------------------------------------------------------------------------------

SCALE_KEYS = 1_000_000


def _keys_in_order(url: str) -> list[tuple[int, str]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.exec_driver_sql("SELECT id, key FROM objects ORDER BY id")
            ]  # type: ignore[misc]
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.alone
def test_scale_a_million_keys_copy_both_ways_within_a_minute(tmp_path, pg_url):
    """The scale test (runs in CI, not skipped): 1,000,000 keys recorded through the store's
    bulk path in big pages, a dataset with 3,000 items (leases and answers), copied SQLite
    -> PostgreSQL -> SQLite: every id and key in order, every item row, the same status."""
    started = time.monotonic()
    laptop = f"sqlite:///{tmp_path / 'laptop.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with Store.open(laptop) as store:
        source = store.source("big", "images/", create=True)
        step = 100_000
        for start in range(0, SCALE_KEYS, step):
            page = [
                ListedObject(f"images/{i:09d}.jpg", 1000 + i % 5000, f"{i:032x}", now)
                for i in range(start, start + step)
            ]
            store.record_page(source, page, next_token=None, last_key=page[-1].key, exhausted=False)
        dataset = store.dataset(source, "ds", create=True)
        leases = store.claim(dataset, "ds@host", 3_000, timedelta(minutes=30))
        store.record_answers(
            dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "ds-a") for lease in leases[:2_000]]
        )
    built = time.monotonic()

    there = copy(laptop, pg_url)
    assert there.exit_code == 0, there.output
    back_again = copy(pg_url, back)
    assert back_again.exit_code == 0, back_again.output
    copied = time.monotonic()

    keys = _keys_in_order(laptop)
    assert len(keys) == SCALE_KEYS
    assert _keys_in_order(pg_url) == keys
    assert _keys_in_order(back) == keys
    for url in (pg_url, back):
        assert _status(url) == _status(laptop)
        assert table_rows_of(url, "items") == table_rows_of(laptop, "items")
    print(
        f"\nbuild {built - started:.1f} s, copy both ways {copied - built:.1f} s, "
        f"checks {time.monotonic() - copied:.1f} s"
    )
    assert time.monotonic() - started < 120  # the target is ~60 s on 2 shared cores


def table_rows_of(url: str, name: str) -> list[tuple[Any, ...]]:
    table = Base.metadata.tables[name]
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]
    finally:
        engine.dispose()


def test_progress_is_quiet_without_a_terminal(tmp_path, pg_url):
    """Not a terminal (a pipe, CI): no progress lines on stderr, only the summary on
    stdout."""
    from tests.cli_support import run_process

    source = f"sqlite:///{tmp_path / 'source.db'}"
    build_state(source)
    done = run_process(source, "db", "copy", "--to", pg_url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip().splitlines()[-1].startswith("copied ")
    assert os.path.exists(tmp_path / "source.db")
