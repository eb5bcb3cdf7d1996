"""Revision 0009 (smaller rows): every value of an 0006 DB reads the same after the upgrade
and after the downgrade; on SQLite MD5 ETags become 16-byte BLOBs and the objects' times
integers, and the downgrade writes the old text back (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, create_engine, select, text

from tests.integration.test_migration_0002 import upgrade_cli
from tests.integration.test_migrations import alembic
from tracker.db import alembic_config
from tracker.events import Change, ObjectEvent
from tracker.models import Answer, CompactUTCDateTime, ETag, UTCDateTime, items, objects
from tracker.records import AnswerRecord, ListedObject
from tracker.store import Store

#: The revision 0009 follows (0006 when it was written; whatever it is rechained after).
BEFORE = str(ScriptDirectory.from_config(alembic_config()).get_revision("0009").down_revision)

ETAGS = [
    "d41d8cd98f00b204e9800998ecf8427e",  # a plain MD5, S3's quotes stripped: packed
    "D41D8CD98F00B204E9800998ECF8427E",  # uppercase: kept as text
    "d41d8cd98f00b204e9800998ecf8427e-12",  # multipart
    '"d41d8cd98f00b204e9800998ecf8427e"',  # quoted
    "zz1d8cd98f00b204e9800998ecf8427e",  # 32 characters, not hex
    "0" * 32,
    '"é"',
    "",
    None,
]
TIMES = [
    datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
    datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    None,
]


#: Columns that revisions after 0009 add: a DB at 0009 has none of them.
LATER_COLUMNS = {"later_answers"}


def _at_0009(table: Table, *, before: bool = False) -> Table:
    """`table` as the 0009 code declared it (no column of a later revision); with `before`,
    as the 0006 code did: ETags as strings, times as text on SQLite."""

    def type_of(column: Column[Any]) -> Any:
        if before and isinstance(column.type, CompactUTCDateTime):
            return UTCDateTime()
        if before and isinstance(column.type, ETag):
            return String(255)
        return column.type.copy()

    columns = [c for c in table.columns if c.name not in LATER_COLUMNS]
    return Table(table.name, MetaData(), *(Column(c.name, type_of(c)) for c in columns))


OLD_OBJECTS, OLD_ITEMS = _at_0009(objects, before=True), _at_0009(items, before=True)
OBJECTS, ITEMS = _at_0009(objects), _at_0009(items)


def _fill_0006(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sources (id, bucket, prefix, created_at) "
                    "VALUES (1, 'bkt', '', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO datasets (id, source_id, name, frontier, created_at) "
                    "VALUES (1, 1, 'ds', 0, CURRENT_TIMESTAMP)"
                )
            )
            rows = []
            for i, etag in enumerate(ETAGS * len(TIMES)):
                row = {"id": i + 1, "source_id": 1, "key": f"k{i:03d}.jpg", "size": i}
                row |= {"etag": etag, "last_modified": TIMES[i % len(TIMES)]}
                if i % 2:  # the others keep the DDL default, CURRENT_TIMESTAMP as text
                    row["created_at"] = TIMES[(i + 1) % len(TIMES) - 1] or TIMES[0]
                rows.append(row)
            for row in rows:
                conn.execute(OLD_OBJECTS.insert().values(**row))
            answers = [
                {"dataset_id": 1, "object_id": r["id"], "state": "annotated", "answer": "accept"}
                | {"answer_etag": ETAGS[(i + 3) % len(ETAGS)] if i % 3 else r["etag"]}
                for i, r in enumerate(rows)
            ]
            conn.execute(OLD_ITEMS.insert(), answers)
    finally:
        engine.dispose()


def _read(url: str, *tables: Table) -> list[list[dict[str, Any]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))] for t in tables
            ]
    finally:
        engine.dispose()


def _storage_classes(url: str, column: str, table: str = "objects") -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = f"SELECT DISTINCT typeof({column}) FROM {table}"
            return set(conn.execute(text(query)).scalars())
    finally:
        engine.dispose()


def test_every_value_of_an_0006_db_reads_the_same_after_the_upgrade_and_the_downgrade(db_url):
    alembic("upgrade", BEFORE, url=db_url)
    _fill_0006(db_url)
    before = _read(db_url, OLD_OBJECTS, OLD_ITEMS)
    alembic("upgrade", "0009", url=db_url)
    assert _read(db_url, OBJECTS, ITEMS) == before
    alembic("downgrade", BEFORE, url=db_url)
    assert _read(db_url, OLD_OBJECTS, OLD_ITEMS) == before
    alembic("upgrade", "0009", url=db_url)
    assert _read(db_url, OBJECTS, ITEMS) == before


def test_on_sqlite_md5_etags_become_blobs_and_times_integers_and_the_downgrade_text(sqlite_url):
    alembic("upgrade", BEFORE, url=sqlite_url)
    _fill_0006(sqlite_url)
    alembic("upgrade", "0009", url=sqlite_url)
    assert _storage_classes(sqlite_url, "etag") == {"blob", "text", "null"}
    assert _storage_classes(sqlite_url, "answer_etag", "items") == {"blob", "text", "null"}
    assert _storage_classes(sqlite_url, "last_modified") == {"integer", "null"}
    assert _storage_classes(sqlite_url, "created_at") == {"integer"}
    alembic("downgrade", BEFORE, url=sqlite_url)
    assert _storage_classes(sqlite_url, "etag") == {"text", "null"}
    assert _storage_classes(sqlite_url, "answer_etag", "items") == {"text", "null"}
    assert _storage_classes(sqlite_url, "last_modified") == {"text", "null"}
    assert _storage_classes(sqlite_url, "created_at") == {"text"}


def test_answers_of_an_upgraded_db_are_changed_exactly_where_the_etag_differs(db_url):
    alembic("upgrade", BEFORE, url=db_url)
    _fill_0006(db_url)
    [old_objects, old_items] = _read(db_url, OLD_OBJECTS, OLD_ITEMS)
    etags = {o["id"]: o["etag"] for o in old_objects}
    changed = sum(
        1
        for i in old_items
        if i["answer_etag"] is not None
        and etags[i["object_id"]] is not None
        and etags[i["object_id"]] != i["answer_etag"]
    )
    assert 0 < changed < len(old_items)
    with Store.open(db_url) as store:  # upgrades to head
        assert store.bucket_changes(store.dataset(store.source("bkt"), "ds")).changed == changed


def test_db_upgrade_of_an_0006_sqlite_file_says_how_to_give_the_space_back(db_url):
    alembic("upgrade", BEFORE, url=db_url)
    _fill_0006(db_url)
    done = upgrade_cli(db_url)
    assert done.exit_code == 0, done.output
    assert ("VACUUM" in done.output) == db_url.startswith("sqlite")
    again = upgrade_cli(db_url)
    assert again.exit_code == 0 and "VACUUM" not in again.output


def test_on_sqlite_every_path_that_writes_objects_stores_the_compact_form(sqlite_url):
    """A listing page (set-based and row by row), an S3 event, an answer for a key never
    listed: an MD5 ETag as 16 bytes, times as integers, and no CURRENT_TIMESTAMP text; every
    value reads back exactly."""
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    when = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with Store.open(sqlite_url) as store:
        source = store.source("bkt", create=True)
        for bulk, key in ((True, "a.jpg"), (False, "b.jpg")):
            store.bulk_insert = bulk
            page = [ListedObject(key, 1, md5, when), ListedObject(key + "-2", 2, "x-2", when)]
            store.record_page(source, page, next_token=None, last_key=page[-1].key,
                              exhausted=False)  # fmt: skip
        event = ObjectEvent("bkt", "c.jpg", Change.CREATED, when, 3, md5)
        store.apply_events(source, [event], lambda key, size: True)
        store.record_answers(
            store.dataset(source, "ds", create=True), [AnswerRecord("d.jpg", Answer.ACCEPT, "s")]
        )
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text(
                    "SELECT key, typeof(etag), typeof(last_modified), typeof(created_at) "
                    "FROM objects ORDER BY key"
                )
            ).all()
            read = {r.key: r for r in conn.execute(select(objects))}
    finally:
        engine.dispose()
    assert [tuple(r) for r in stored] == [
        ("a.jpg", "blob", "integer", "integer"),
        ("a.jpg-2", "text", "integer", "integer"),
        ("b.jpg", "blob", "integer", "integer"),
        ("b.jpg-2", "text", "integer", "integer"),
        ("c.jpg", "blob", "integer", "integer"),
        ("d.jpg", "null", "null", "integer"),
    ]
    assert {k: (r.etag, r.last_modified) for k, r in read.items() if k != "d.jpg"} == {
        "a.jpg": (md5, when),
        "a.jpg-2": ("x-2", when),
        "b.jpg": (md5, when),
        "b.jpg-2": ("x-2", when),
        "c.jpg": (md5, when),
    }
    assert all(r.created_at.tzinfo is UTC for r in read.values())


def test_the_counters_still_equal_the_recount_after_the_upgrade_and_the_downgrade(db_url):
    """Rewriting an ETag in its compact form is no overwrite: no key counts as changed, on
    the way up or down (revision 0007's triggers must not see the rewrite as one)."""
    from tracker.dbcheck import check
    from tracker.store import Store

    alembic("upgrade", "0006", url=db_url)
    _fill_0006(db_url)
    alembic("upgrade", "head", url=db_url)
    with Store.open(db_url) as store:
        (dataset,) = store.datasets(store.sources()[0])
        assert store.bucket_changes(dataset).changed > 0  # some answers predate an overwrite
        assert check(store).differences == []
    alembic("downgrade", BEFORE, url=db_url)
    alembic("upgrade", "head", url=db_url)
    with Store.open(db_url) as store:
        assert check(store).differences == []
