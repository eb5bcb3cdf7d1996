"""PostgreSQL that stays fast without help (issue 12, part 7): key lookups whose plan does
not depend on statistics, and per-table autovacuum settings for the queue tables.

The tables here are never analyzed (the test server runs with autovacuum off), which is
exactly the state a big sync or import leaves a busy server in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store

KEYS = 60_000


@contextmanager
def unanalyzed(pg_url: str, items_select: str) -> Iterator[tuple[Store, Any, Any]]:
    """A source of KEYS keys (`images/000000001.jpg`..., ids 1..KEYS) and a dataset whose
    rows `items_select` makes (`:d` is the dataset's id), inserted set-based, never
    analyzed."""
    with Store.open(pg_url) as store:
        source = store.source("bucket", "", create=True)
        dataset = store.dataset(source, "ds", create=True)
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO objects (source_id, key, size) "
                    "SELECT :s, 'images/' || lpad(i::text, 9, '0') || '.jpg', 1 "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"s": source.id, "n": KEYS},
            )
            conn.execute(
                text(
                    "INSERT INTO items (dataset_id, object_id, state, answer, serves, attempts, "
                    "answer_count, updated_at) " + items_select
                ),
                {"d": dataset.id},
            )
            analyzed = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = "
                    "current_schema() AND (last_analyze IS NOT NULL "
                    "OR last_autoanalyze IS NOT NULL)"
                )
            ).scalar_one()
        assert analyzed == 0
        yield store, source, dataset


@pytest.fixture
def big(pg_url) -> Iterator[tuple[Store, Any, Any]]:
    """Every key pending, with a row."""
    with unanalyzed(pg_url, "SELECT :d, id, 'pending', NULL, 0, 0, 0, now() FROM objects") as made:
        yield made


@contextmanager
def plans_of(store: Store, table: str) -> Iterator[list[str]]:
    """The EXPLAIN of every statement that reads `table` inside the block."""
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if f"FROM {table}" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    plans: list[str] = []
    try:
        yield plans
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars()
            plans.append("\n".join(rows))


def keys(n: int, step: int = 97) -> list[str]:
    return [f"images/{i:09d}.jpg" for i in range(1, n * step, step)]


def assert_index_lookups(plans: list[str], index: str) -> None:
    assert plans
    for plan in plans:
        assert f"Index Scan using {index}" in plan, plan
        assert "Seq Scan on" not in plan and "Hash Join" not in plan, plan


@pytest.mark.postgres
def test_the_answer_path_looks_keys_up_in_the_unique_index_without_statistics(big):
    store, _, dataset = big
    answers = [AnswerRecord(k, Answer.ACCEPT, "s") for k in keys(500)]
    with plans_of(store, "objects") as object_plans:
        assert store.record_answers(dataset, answers) == 500
    assert_index_lookups(object_plans, "uq_objects_source_id_key")


@pytest.mark.postgres
def test_the_answered_rows_are_locked_through_the_unique_index_without_statistics(big):
    store, _, dataset = big
    answers = [AnswerRecord(k, Answer.REJECT, "s") for k in keys(500, step=89)]
    with plans_of(store, "items") as item_plans:
        store.record_answers(dataset, answers)
    assert_index_lookups(
        [p for p in item_plans if "LockRows" in p], "uq_items_dataset_id_object_id"
    )


@pytest.mark.postgres
def test_the_frontier_walk_reads_a_window_of_objects_without_statistics(pg_url):
    """Answers imported ahead of the frontier (rows for the first keys) are passed by an
    index range read and a lookup per object, not by reading every object past it."""
    from datetime import timedelta

    imported = "SELECT :d, id, 'annotated', 'accept', 0, 0, 1, now() FROM objects WHERE id <= 5000"
    with unanalyzed(pg_url, imported) as (store, _, dataset):
        store.claim(dataset, "o", 10, timedelta(minutes=5))  # passes the 5,000 imported
        with plans_of(store, "objects") as plans:
            leases = store.claim(dataset, "o", 10, timedelta(minutes=5))
        assert [lease.key for lease in leases] == [f"images/{i:09d}.jpg" for i in range(5011, 5021)]
    walk = [p for p in plans if "LEFT JOIN" in p.upper() or "Left Join" in p]
    assert walk, "\n---\n".join(plans)
    for plan in walk:
        assert "Index Cond: ((dataset_id = '1'::bigint) AND (object_id = objects.id))" in plan
        assert "Sort" not in plan and "Hash" not in plan and "Seq Scan" not in plan, plan


def reloptions(url: str) -> dict[str, set[str]]:
    with Store.open(url, migrate=False) as store, store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, reloptions FROM pg_class WHERE relnamespace = "
                "current_schema()::regnamespace AND relname IN ('items', 'objects', 'owners')"
            )
        ).all()
    return {name: set(options or ()) for name, options in rows}


@pytest.mark.postgres
def test_the_queue_tables_get_aggressive_autovacuum_settings_and_lose_them_on_downgrade(pg_url):
    from tracker.db import alembic_config

    Store.open(pg_url).close()
    options = reloptions(pg_url)
    assert "autovacuum_vacuum_scale_factor=0.01" in options["items"]
    assert "autovacuum_analyze_scale_factor=0.02" in options["items"]
    assert "autovacuum_analyze_scale_factor=0.02" in options["objects"]
    assert options["owners"] == set()

    from alembic import command

    config = alembic_config(pg_url)
    command.downgrade(config, "0007")
    assert reloptions(pg_url) == {"items": set(), "objects": set(), "owners": set()}
    command.upgrade(config, "head")
    assert "autovacuum_vacuum_scale_factor=0.01" in reloptions(pg_url)["items"]


def test_the_autovacuum_migration_changes_nothing_on_sqlite(sqlite_url):
    from alembic import command

    from tracker.db import alembic_config

    Store.open(sqlite_url).close()
    config = alembic_config(sqlite_url)
    command.downgrade(config, "0007")
    command.upgrade(config, "head")
    with Store.open(sqlite_url) as store:
        assert store.sources() == []


def test_claims_walk_past_other_sources_ids_to_every_key_in_listing_order(store, monkeypatch):
    """The frontier walk reads windows of ids: keys of another source recorded in between
    (ids it must pass, more than the largest window) neither hide nor reorder this source's
    keys."""
    from datetime import timedelta

    from tests.cli_support import listed
    from tracker import store as store_module

    monkeypatch.setattr(store_module, "_CHUNK", 2)  # windows of at most 200 ids

    mine = store.source("mine", "", create=True)
    other = store.source("other", "", create=True)
    expected = []
    for part in range(3):
        page = listed([f"{part}/{i}.jpg" for i in range(5)])
        store.record_page(mine, page, next_token=None, last_key=page[-1].key, exhausted=False)
        expected += [o.key for o in page]
        noise = listed([f"{part}/{i:05d}.jpg" for i in range(700)])
        store.record_page(other, noise, next_token=None, last_key=noise[-1].key, exhausted=False)
    dataset = store.dataset(mine, "ds", create=True)
    claimed = []
    while leases := store.claim(dataset, "o", 4, timedelta(minutes=5)):
        claimed += [lease.key for lease in leases]
    assert claimed == expected
