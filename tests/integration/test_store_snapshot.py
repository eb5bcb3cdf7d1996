"""`Store.snapshot()`: every read of a block from one point in time (what `tracker db
check` compares counters and recount in), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from tests.cli_support import listed
from tracker.store import Store


def test_reads_in_a_snapshot_do_not_see_a_later_commit_and_other_threads_do(store, db_url):
    """Seen failing with `_read` ignoring the snapshot (the second read saw 5 keys).
    Seen to fail when: `Store.snapshot` no longer gives its reads one connection."""
    source = store.source("bkt", "", create=True)
    store.record_page(source, listed(["a", "b"]), next_token=None, last_key=None, exhausted=False)
    seen_by_thread: list[tuple[int, int]] = []
    with Store.open(db_url) as writer, store.snapshot():
        assert store.source_numbers(source) == (2, 0)
        writer.record_page(
            writer.source("bkt", ""),
            listed(["c", "d", "e"]),
            next_token=None,
            last_key=None,
            exhausted=False,
        )
        assert store.source_numbers(source) == (2, 0)
        assert store.recount_source(source) == (2, 0)
        with store.snapshot():  # nested: the same snapshot
            assert store.recount_source(source) == (2, 0)
        # Another thread of the same store reads the DB as it is now.
        thread = threading.Thread(
            target=lambda: seen_by_thread.append(store.recount_source(source))
        )
        thread.start()
        thread.join()
    assert seen_by_thread == [(5, 0)]
    assert store.source_numbers(source) == (5, 0)
