"""Revision 0007 (counters): an 0006 DB's counters are filled from its rows, so that
`status` reads the same numbers as the COUNT(*) oracle, and the triggers keep them from
there; the downgrade drops the counter tables, triggers and functions and nothing else
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import create_engine, inspect, text

from tests.integration.test_migrations import alembic, execute_sql
from tracker.records import AnswerRecord, ListedObject
from tracker.states import Answer
from tracker.store import Store

#: An 0006 DB (ids from 1, as a new schema's sequences give them): one source of four
#: objects (d.jpg deleted, a.jpg overwritten since its answer), two datasets: ds answered
#: a.jpg and d.jpg, holds b.jpg, has c.jpg past its frontier; other failed b.jpg only.
_0006_ROWS = (
    "INSERT INTO sources (bucket, prefix, created_at) VALUES ('bkt', '', CURRENT_TIMESTAMP)",
    "INSERT INTO listing_cursors (source_id, updated_at) VALUES (1, CURRENT_TIMESTAMP)",
    "INSERT INTO objects (source_id, key, etag, deleted_at) VALUES "
    "(1, 'a.jpg', 'new', NULL), (1, 'b.jpg', 'b', NULL), (1, 'd.jpg', 'd', "
    "CURRENT_TIMESTAMP), (1, 'c.jpg', 'c', NULL)",
    "INSERT INTO datasets (source_id, name, frontier, created_at) "
    "VALUES (1, 'ds', 3, CURRENT_TIMESTAMP), (1, 'other', 2, CURRENT_TIMESTAMP)",
    "INSERT INTO items (dataset_id, object_id, state, answer, answer_etag, lease_owner, "
    "lease_expires_at) VALUES "
    "(1, 1, 'annotated', 'accept', 'old', NULL, NULL), "
    "(1, 2, 'served', NULL, NULL, 'o', CURRENT_TIMESTAMP), "
    "(1, 3, 'annotated', 'reject', 'd', NULL, NULL), "
    "(2, 1, 'pending', NULL, NULL, NULL, NULL), (2, 2, 'failed', NULL, NULL, NULL, NULL)",
)


def _filled_0006(url: str) -> None:
    alembic("upgrade", "0006", url=url)
    execute_sql(url, _0006_ROWS)


def test_the_upgrade_fills_the_counters_of_an_0006_db_from_its_rows(db_url):
    _filled_0006(db_url)
    alembic("upgrade", "0007", url=db_url)
    with Store.open(db_url) as store:
        source = store.source("bkt")
        assert store.source_numbers(source) == store.recount_source(source) == (4, 1)
        for dataset in store.datasets(source):
            assert store.numbers(dataset) == store.recount_numbers(dataset)
            assert store.counts(dataset).by_state == store.recount(dataset).by_state
        ds = store.dataset(source, "ds")
        numbers = store.numbers(ds)
        assert (numbers.pending, numbers.changed, numbers.deleted_annotated) == (1, 1, 1)
        # The triggers carry on from the filled counters.
        store.record_page(source, [ListedObject("e.jpg")], next_token=None, last_key=None,
                          exhausted=False)  # fmt: skip
        leases = store.claim(ds, "o2", 5, timedelta(minutes=5))
        store.record_answers(ds, [AnswerRecord(x.key, Answer.IGNORE, "s") for x in leases])
        assert store.numbers(ds) == store.recount_numbers(ds)


def test_the_downgrade_to_0006_drops_the_counters_and_keeps_every_row(db_url):
    _filled_0006(db_url)
    alembic("upgrade", "0007", url=db_url)
    alembic("downgrade", "0006", url=db_url)
    engine = create_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert not {"source_counts", "dataset_counts"} & tables
        with engine.begin() as conn:
            # No trigger is left to write to the dropped tables.
            conn.execute(text("UPDATE items SET state = 'pending' WHERE dataset_id = 2"))
            conn.execute(text("INSERT INTO objects (source_id, key) VALUES (1, 'f.jpg')"))
            assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 5
    finally:
        engine.dispose()
    alembic("upgrade", "head", url=db_url)
    with Store.open(db_url) as store:
        source = store.source("bkt")
        for dataset in store.datasets(source):
            assert store.numbers(dataset) == store.recount_numbers(dataset)
