"""Deleted and changed objects found by listing: complete passes on SeaweedFS, the store's
claims, counts and filters, on both databases.

A complete pass (`sync --from-start`, a new parallel plan run to its end) marks deleted the
keys it did not see; a deleted key is never served again, an annotated one keeps its answer;
a key listed again is live again. A listing that shows another ETag updates the key, and an
answered key is then "changed"."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta

import boto3
import pytest

from tests.cli_support import listed, run, run_cli
from tests.faultproxy import FaultProxy, put_objects
from tests.integration.test_sync_crash import subprocess_env
from tracker.records import AnswerRecord, ItemFilter, ListedObject
from tracker.states import Answer, ItemState
from tracker.store import Store

LEASE = timedelta(minutes=30)


def sync(capsys, db_url, bucket, endpoint, *extra):
    result = run_cli(capsys, "--db", db_url, "sync", f"s3://{bucket}", "--endpoint-url",
                     endpoint, *extra)  # fmt: skip
    assert result.code == 0, result.err
    return result


def status_json(db_url):
    result = run(db_url, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["sources"][0]


def keys_of(db_url, *args):
    result = run(db_url, "keys", *args)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def claim_all(store, ref):
    return [lease.key for lease in store.claim(ref, "me@host", 100, LEASE)]


# -- store: passes, claims and counts --------------------------------------------------------


def test_a_complete_pass_marks_unseen_keys_deleted_and_claims_never_serve_them(store):
    """Every claim path skips a deleted key: new keys past the frontier, handed-back keys,
    expired leases; the counts say no work is left, and an annotated key keeps its answer."""
    source = store.source("bkt", create=True)
    keys = [f"k{i}.jpg" for i in range(8)]
    store.record_page(source, listed(keys), next_token=None, last_key=keys[-1], exhausted=True)
    ref = store.dataset(source, "ds", create=True)
    assert claim_all(store, ref)[:3] == keys[:3]  # everything is served
    store.record_answers(ref, [AnswerRecord("k0.jpg", Answer.ACCEPT, "s")])
    store.release(ref, "me@host", None)  # k1..k7 handed back: pending rows
    store.claim(ref, "me@host", 1, timedelta(seconds=-1))  # k1 served, lease already expired
    store.dataset(source, "fresh", create=True)  # k* all past its frontier
    pass_id = store.begin_pass(source)
    seen = ["k3.jpg", "k5.jpg", "k7.jpg"]
    store.record_page(source, listed(seen), next_token=None, last_key=None, exhausted=True)
    assert store.finish_pass(source, pass_id) == 5
    assert store.deleted_count(source) == 5

    counts = store.counts(ref)  # the served deleted key (k1) is no longer out
    assert (counts.state(ItemState.SERVED), counts.state(ItemState.PENDING)) == (0, 3)
    assert sorted(claim_all(store, ref)) == seen
    fresh = store.dataset(source, "fresh")
    assert claim_all(store, fresh) == seen
    for dataset in (ref, fresh):
        store.release(dataset, "me@host", None)
        work = store.open_work(dataset)
        assert (work.pending, work.served) == (3, 0)
    gone = {r.key: r for r in store.iter_items(ref, ItemFilter(deleted=True))}
    assert sorted(gone) == ["k0.jpg", "k1.jpg", "k2.jpg", "k4.jpg", "k6.jpg"]
    assert gone["k0.jpg"].answer is Answer.ACCEPT  # kept
    assert store.bucket_changes(ref).deleted_annotated == 1


def test_a_key_that_comes_back_is_pending_again_even_past_the_frontier(store):
    source = store.source("bkt", create=True)
    store.record_page(source, listed(["a.jpg", "b.jpg"]), next_token=None, last_key=None,
                      exhausted=True)  # fmt: skip
    ref = store.dataset(source, "ds", create=True)
    pass_id = store.begin_pass(source)
    store.record_page(source, listed(["b.jpg"]), next_token=None, last_key=None, exhausted=True)
    store.finish_pass(source, pass_id)
    assert claim_all(store, ref) == ["b.jpg"]  # the frontier walked past the deleted a.jpg
    store.record_page(source, listed(["a.jpg"]), next_token=None, last_key=None, exhausted=True)
    assert store.deleted_count(source) == 0
    assert claim_all(store, ref) == ["a.jpg"]


def test_keys_recorded_after_a_pass_began_are_not_marked_by_it(store):
    """Another lister or an event recording a key while a pass runs: the key exists."""
    source = store.source("bkt", create=True)
    store.record_page(source, listed(["a.jpg"]), next_token=None, last_key=None, exhausted=True)
    pass_id = store.begin_pass(source)
    store.record_page(source, listed(["z.jpg"]), next_token=None, last_key=None, exhausted=True)
    assert store.finish_pass(source, pass_id) == 1  # a.jpg only
    assert [r.key for r in store.iter_items(store.dataset(source, "d", create=True),
                                            ItemFilter(deleted=True))] == ["a.jpg"]  # fmt: skip


def test_a_new_etag_updates_pending_keys_and_flags_answered_ones_changed(store):
    source = store.source("bkt", create=True)
    store.record_page(source, listed(["a.jpg", "b.jpg"]), next_token=None, last_key=None,
                      exhausted=True)  # fmt: skip
    ref = store.dataset(source, "ds", create=True)
    store.record_answers(ref, [AnswerRecord("a.jpg", Answer.REJECT, "s")])
    page = [ListedObject("a.jpg", 5, "new-a"), ListedObject("b.jpg", 6, "new-b")]
    store.record_page(source, page, next_token=None, last_key=None, exhausted=True)
    assert store.bucket_changes(ref).changed == 1
    assert [r.key for r in store.iter_items(ref, ItemFilter(changed=True))] == ["a.jpg"]
    (lease,) = store.claim(ref, "me@host", 5, LEASE)
    assert (lease.key, lease.size, lease.etag) == ("b.jpg", 6, "new-b")
    assert store.to_pending(ref, ItemFilter(changed=True, states=frozenset({ItemState.ANNOTATED})))
    assert store.bucket_changes(ref).changed == 0
    store.record_answers(ref, [AnswerRecord("a.jpg", Answer.ACCEPT, "s")])
    assert store.bucket_changes(ref).changed == 0  # answered for the ETag it has now


# -- the CLI on SeaweedFS ----------------------------------------------------------------


def test_sync_from_start_finds_deletions_and_overwrites_and_the_cli_shows_them(
    db_url, bucket, seaweedfs, capsys
):
    endpoint = seaweedfs.endpoint_url
    keys = [f"img/{i}.jpg" for i in range(6)]
    put_objects(endpoint, bucket, keys)
    sync(capsys, db_url, bucket, endpoint, "--page-size", "2")
    with Store.open(db_url) as store:
        ref = store.dataset(store.source(bucket), "ds", create=True)
        store.record_answers(ref, [AnswerRecord(k, Answer.ACCEPT, "s") for k in keys[:3]])
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": keys[0]}, {"Key": keys[3]}]})
    put_objects(endpoint, bucket, [keys[1], keys[4]], body=b"overwritten")

    plain = sync(capsys, db_url, bucket, endpoint)  # continues after the last key: no pass
    assert "deleted" not in plain.out and status_json(db_url)["deleted"] == 0
    full = sync(capsys, db_url, bucket, endpoint, "--from-start", "--page-size", "2")
    assert "2 keys no longer in the bucket, marked deleted" in full.out

    status = status_json(db_url)
    assert (status["deleted"], status["changed"]) == (2, 1)
    assert status["datasets"][0]["deleted_annotated"] == 1
    assert status["states"]["pending"] == 2  # img/4 (overwritten: new values) and img/5
    assert keys_of(db_url, "--deleted") == [keys[0], keys[3]]
    assert keys_of(db_url, "--deleted", "--state", "annotated") == [keys[0]]
    assert keys_of(db_url, "--changed") == [keys[1]]
    table = run(db_url, "status")
    assert "2 deleted, 1 changed since answered" in table.output

    result = run(db_url, "reset", "--changed", "--yes")
    assert result.exit_code == 0 and "reset 1 key" in result.output
    assert keys_of(db_url, "--changed") == []
    with Store.open(db_url) as store:
        ref = store.dataset(store.source(bucket), "ds")
        served = sorted(lease.key for lease in store.claim(ref, "o@h", 10, LEASE))
    assert served == [keys[1], keys[4], keys[5]]

    put_objects(endpoint, bucket, [keys[3]])  # comes back
    sync(capsys, db_url, bucket, endpoint, "--from-start")
    assert keys_of(db_url, "--deleted") == [keys[0]]


def test_a_completed_parallel_pass_marks_deletions(db_url, bucket, seaweedfs, capsys):
    endpoint = seaweedfs.endpoint_url
    keys = [f"{c}/{i}.jpg" for c in "abcd" for i in range(5)]
    put_objects(endpoint, bucket, keys)
    sync(capsys, db_url, bucket, endpoint, "--parallel", "3")
    boto3.client("s3", endpoint_url=endpoint).delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a/0.jpg"}, {"Key": "d/4.jpg"}]}
    )
    result = sync(capsys, db_url, bucket, endpoint, "--parallel", "3", "--from-start")
    assert "2 keys no longer in the bucket" in result.out
    assert status_json(db_url)["deleted"] == 2


def test_a_parallel_pass_stopped_midway_marks_nothing_until_it_is_finished(
    db_url, bucket, seaweedfs, capsys
):
    """A parallel plan is a pass even over several runs: stopped after a page it marks
    nothing; the plain sync that finishes it marks what it did not see."""
    endpoint = seaweedfs.endpoint_url
    keys = [f"{c}/{i}.jpg" for c in "ab" for i in range(6)]
    put_objects(endpoint, bucket, keys)
    sync(capsys, db_url, bucket, endpoint)
    boto3.client("s3", endpoint_url=endpoint).delete_object(Bucket=bucket, Key="b/5.jpg")
    sync(capsys, db_url, bucket, endpoint, "--parallel", "2", "--from-start",
         "--page-size", "2", "--max-pages", "1")  # fmt: skip
    assert status_json(db_url)["deleted"] == 0
    finished = sync(capsys, db_url, bucket, endpoint, "--page-size", "2")
    assert "1 keys no longer in the bucket" in finished.out
    assert status_json(db_url)["deleted"] == 1


def test_a_pass_killed_midway_marks_nothing(db_url, bucket, seaweedfs, tmp_path):
    """SIGKILL while the 3rd page of a --from-start pass is in flight: pages 1-2 are
    committed, the pass is not complete, so no key is marked; the next full pass is.
    Seen to fail when: the lister calls `finish_pass` after every page, not only the
    last (6 keys marked deleted after the kill)."""
    endpoint = seaweedfs.endpoint_url
    keys = [f"{i:02d}.jpg" for i in range(10)]
    put_objects(endpoint, bucket, keys)
    args = ["--db", db_url, "sync", f"s3://{bucket}", "--page-size", "2"]
    with FaultProxy(endpoint) as proxy:
        first = subprocess.run(
            [sys.executable, "-m", "tracker", *args, "--endpoint-url", proxy.endpoint_url],
            env=subprocess_env(), capture_output=True, timeout=60,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        boto3.client("s3", endpoint_url=endpoint).delete_object(Bucket=bucket, Key=keys[-1])
        held, release = proxy.hold_list(after=2)
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker", *args, "--from-start",
             "--endpoint-url", proxy.endpoint_url],
            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert held.wait(30)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        release.set()
    assert status_json(db_url)["deleted"] == 0
    done = subprocess.run(
        [sys.executable, "-m", "tracker", *args, "--from-start", "--endpoint-url", endpoint],
        env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert status_json(db_url)["deleted"] == 1


@pytest.mark.parametrize("flag", ["--deleted", "--changed"])
def test_keys_filters_on_a_source_with_no_change_print_nothing(sqlite_url, flag):
    with Store.open(sqlite_url) as store:
        source = store.source("bkt", create=True)
        store.record_page(source, listed(["a.jpg"]), next_token=None, last_key=None,
                          exhausted=True)  # fmt: skip
        store.dataset(source, "ds", create=True)
    assert keys_of(sqlite_url, flag) == []


def test_an_answer_keeps_the_etag_and_version_it_was_given_for(store):
    """Versioned buckets: an event names the version; the answer records it with the ETag,
    and a later overwrite (a new version) makes the answer "changed"."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from tracker.events import Change, ObjectEvent
    from tracker.models import items

    source = store.source("bkt", create=True)
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    first = ObjectEvent("bkt", "a.jpg", Change.CREATED, at, 5, "e1", "v1")
    assert store.apply_events(source, [first], lambda key, size: True) == 1
    ref = store.dataset(source, "ds", create=True)
    store.record_answers(ref, [AnswerRecord("a.jpg", Answer.ACCEPT, "s")])
    with store.engine.connect() as conn:
        row = conn.execute(select(items.c.answer_etag, items.c.answer_version_id)).one()
    assert tuple(row) == ("e1", "v1")
    second = ObjectEvent("bkt", "a.jpg", Change.CREATED, at + timedelta(seconds=1), 6, "e2", "v2")
    store.apply_events(source, [second], lambda key, size: True)
    assert [r.key for r in store.iter_items(ref, ItemFilter(changed=True))] == ["a.jpg"]


def test_removing_an_old_version_leaves_the_key_live_a_delete_marker_does_not(store):
    from datetime import UTC, datetime

    from tracker.events import Change, ObjectEvent, normalize_sequencer

    source = store.source("bkt", create=True)
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    every = lambda key, size: True  # noqa: E731
    put = ObjectEvent("bkt", "a.jpg", Change.CREATED, at, 5, "e2", "v2", normalize_sequencer("01"))
    store.apply_events(source, [put], every)
    old = ObjectEvent("bkt", "a.jpg", Change.REMOVED, at + timedelta(seconds=1), None, None, "v1",
                      normalize_sequencer("02"), one_version=True)  # fmt: skip
    assert store.apply_events(source, [old], every) == 0
    assert store.deleted_count(source) == 0
    marker = ObjectEvent("bkt", "a.jpg", Change.REMOVED, at + timedelta(seconds=2), None, None,
                         "m1", normalize_sequencer("03"))  # fmt: skip
    assert store.apply_events(source, [marker], every) == 1
    assert store.deleted_count(source) == 1


def test_an_event_that_cannot_tell_what_is_current_asks_and_records_the_answer(store):
    """A version removal of a listed key (no version recorded): skipped without `ask`,
    never marked deleted on a guess; recorded as S3 answers with it. Seen to fail on the
    old rule (marked deleted)."""
    from datetime import UTC, datetime

    from tracker.events import Change, Current, ObjectEvent, normalize_sequencer

    source = store.source("bkt", create=True)
    store.record_page(source, listed(["a.jpg"]), next_token=None, last_key="a.jpg",
                      exhausted=False)  # fmt: skip
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    every = lambda key, size: True  # noqa: E731
    gone = ObjectEvent("bkt", "a.jpg", Change.REMOVED, at, None, None, "v1",
                       normalize_sequencer("02"), one_version=True)  # fmt: skip
    assert store.apply_events(source, [gone], every) == 0
    assert store.deleted_count(source) == 0
    asked: list[str] = []
    live = Current(7, "e7", "v2", at)
    assert store.apply_events(source, [gone], every, lambda key: asked.append(key) or live) == 1
    assert asked == ["a.jpg"] and store.deleted_count(source) == 0
    last = ObjectEvent("bkt", "a.jpg", Change.REMOVED, at, None, None, "v2",
                       normalize_sequencer("03"), one_version=True)  # fmt: skip
    assert store.apply_events(source, [last], every, lambda key: None) == 1
    assert store.deleted_count(source) == 1


def test_s3_is_asked_before_the_write_transaction_a_writer_beside_it_does_not_wait(store, db_url):
    """A slow S3 holds no lock: another process's listing page commits while the HEAD is
    in flight. Seen to fail (the writer still waiting after 10 s) with the question asked
    inside the transaction."""
    import threading
    from datetime import UTC, datetime

    from tracker.events import Change, Current, ObjectEvent, normalize_sequencer

    source = store.source("bkt", create=True)
    store.record_page(source, listed(["a.jpg"]), next_token=None, last_key="a.jpg",
                      exhausted=False)  # fmt: skip
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    gone = ObjectEvent("bkt", "a.jpg", Change.REMOVED, at, None, None, "v1",
                       normalize_sequencer("02"), one_version=True)  # fmt: skip

    def ask(key: str) -> Current | None:
        def write() -> None:
            with Store.open(db_url) as other:
                theirs = other.source("bkt")
                other.record_page(theirs, listed(["b.jpg"]), next_token=None, last_key="b.jpg",
                                  exhausted=False)  # fmt: skip

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "a writer waited on the question to S3"
        return Current(7, "e7", "v2", at)

    assert store.apply_events(source, [gone], lambda key, size: True, ask) == 1
    assert store.deleted_count(source) == 0
