"""Revision 0005 (bucket changes): an 0003 DB's answers get the ETag their object has, so
an overwrite from then on is detected; the downgrade drops the new columns and nothing
else (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from tests.integration.test_migrations import alembic, execute_sql
from tracker.records import ListedObject
from tracker.store import Store

#: An 0003 DB: one source, two objects, one dataset; a.jpg answered, b.jpg pending.
_0003_ROWS = (
    "INSERT INTO sources (id, bucket, prefix, created_at) VALUES (1, 'bkt', '', CURRENT_TIMESTAMP)",
    "INSERT INTO listing_cursors (source_id, updated_at) VALUES (1, CURRENT_TIMESTAMP)",
    "INSERT INTO objects (id, source_id, key, etag) "
    "VALUES (1, 1, 'a.jpg', 'old'), (2, 1, 'b.jpg', 'b')",
    "INSERT INTO datasets (id, source_id, name, frontier, created_at) "
    "VALUES (1, 1, 'ds', 2, CURRENT_TIMESTAMP)",
    "INSERT INTO items (dataset_id, object_id, state, answer) "
    "VALUES (1, 1, 'annotated', 'accept'), (1, 2, 'pending', NULL)",
)


def _insert_0003_rows(url: str) -> None:
    execute_sql(url, _0003_ROWS)


def test_answers_of_an_0003_db_take_their_objects_etag_and_an_overwrite_is_then_changed(db_url):
    alembic("upgrade", "0003", url=db_url)
    _insert_0003_rows(db_url)
    alembic("upgrade", "0005", url=db_url)
    with Store.open(db_url) as store:
        source = store.source("bkt")
        ref = store.dataset(source, "ds")
        assert store.bucket_changes(ref).changed == 0
        store.record_page(source, [ListedObject("a.jpg", 1, "new")], next_token=None,
                          last_key=None, exhausted=True)  # fmt: skip
        assert store.bucket_changes(ref).changed == 1


def test_the_downgrade_to_0003_keeps_every_row(db_url):
    alembic("upgrade", "0003", url=db_url)
    _insert_0003_rows(db_url)
    alembic("upgrade", "0005", url=db_url)
    alembic("downgrade", "0003", url=db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            answers = conn.execute(text("SELECT object_id, answer FROM items ORDER BY object_id"))
            assert [tuple(r) for r in answers] == [(1, "accept"), (2, None)]
            columns = conn.execute(text("SELECT * FROM objects")).keys()
            assert "deleted_at" not in columns
    finally:
        engine.dispose()
