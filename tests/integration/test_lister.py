"""The lister against real S3 servers on loopback.

SeaweedFS for plain listing and resumption; moto's server where a test needs AWS's key
rules (odd keys) or a fault (a restart kills continuation tokens; a proxy throttles and
drops connections). Each test says what it proves.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.faultproxy import FaultProxy, put_objects
from tracker.errors import S3Error
from tracker.filters import KeyFilter
from tracker.lister import MAX_EMPTY_PAGES, Lister
from tracker.models import Answer, ItemState, objects
from tracker.records import AnswerRecord, ListedObject
from tracker.s3 import make_client
from tracker.store import Store
from tracker.stream import S3Stream

EVERYTHING = KeyFilter.build(all_objects=True)


def stored_keys(store: Store, source: Any) -> list[str]:
    """The source's listed keys, in listing order (the listing is shared by every dataset
    and a lister creates none, so it is read from `objects`)."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(objects.c.key).where(objects.c.source_id == source.id).order_by(objects.c.id)
            ).scalars()
        )


def list_log(client: Any) -> list[dict[str, Any]]:
    """Every ListObjectsV2 call this client makes: its query, then the page's first key."""
    calls: list[dict[str, Any]] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        calls.append({"query": dict(params["query_string"])})

    def after(parsed: dict[str, Any], **_: Any) -> None:
        contents = parsed.get("Contents", [])
        calls[-1]["first_key"] = contents[0]["Key"] if contents else None

    client.meta.events.register("before-call.s3.ListObjectsV2", before)
    client.meta.events.register("after-call.s3.ListObjectsV2", after)
    return calls


@pytest.fixture
def moto(moto_server, s3_env):  # type: ignore[no-untyped-def]
    return moto_server


def new_bucket(server: Any, name: str = "odd-keys") -> Any:
    client = server.client()
    client.create_bucket(Bucket=name)
    return client


# -- resumption (SeaweedFS) ---------------------------------------------------------------


def test_resume_after_n_pages_makes_no_list_call_for_them(store, bucket, seaweedfs):
    """Proves the O(1) resume: after 3 committed pages, a new lister (a new process, in
    effect) makes its first LIST call for page 4, never for pages 1-3."""
    keys = [f"img/{i:04d}.jpg" for i in range(260)]  # 6 pages of 50 (the last one short)
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    source = store.source(bucket, "", create=True)
    first = Lister(store, source, make_client(seaweedfs.endpoint_url), page_size=50)
    assert first.run(max_pages=3) == 3
    assert first.list_calls == 3

    client = make_client(seaweedfs.endpoint_url)
    calls = list_log(client)
    second = Lister(store, source, client, page_size=50)
    assert second.run() == 3
    assert len(calls) == 3
    assert [c["first_key"] for c in calls] == [keys[150], keys[200], keys[250]]
    assert "continuation-token" in calls[0]["query"]
    assert stored_keys(store, source) == keys
    cursor = store.cursor(source)
    assert cursor.exhausted and cursor.last_key == keys[-1] and cursor.pages_listed == 6
    assert cursor.keys_listed == 260


def test_exhausted_listing_finds_later_keys_with_one_list_call(store, bucket, seaweedfs):
    """Proves that a finished listing continues after its last key: objects added since,
    sorting after it, cost exactly one LIST call (StartAfter=<last key>)."""
    keys = [f"a/{i:03d}.png" for i in range(120)]
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    lister = Lister.open(store, bucket, "", make_client(seaweedfs.endpoint_url), page_size=50)
    lister.run()
    assert lister.exhausted

    later = ["a/500.png", "b/000.png"]
    put_objects(seaweedfs.endpoint_url, bucket, later)
    client = make_client(seaweedfs.endpoint_url)
    calls = list_log(client)
    again = Lister.open(store, bucket, "", client, page_size=50)
    assert again.run() == 1
    assert len(calls) == 1
    assert calls[0]["query"].get("start-after") == keys[-1]
    assert stored_keys(store, again.source) == keys + later
    assert store.cursor(again.source).last_key == "b/000.png"


def test_from_start_finds_earlier_keys_and_keeps_every_state(store, bucket, seaweedfs):
    """Proves `--from-start`: a key added before the cursor is found; served, annotated and
    failed keys keep their state; the stored cursor does not move back."""
    keys = [f"k/{i:03d}.jpg" for i in range(100)]
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    client = make_client(seaweedfs.endpoint_url)
    Lister.open(store, bucket, "", client, page_size=40).run()
    source = store.source(bucket)
    dataset = store.dataset(source, "ds", create=True)
    served = store.claim(dataset, "alice", 5, timedelta(minutes=10))
    store.record_answers(dataset, [AnswerRecord(served[0].key, Answer.ACCEPT, "s1")])
    store.mark_failed(dataset, "k/099.jpg", "not an image")
    before = {r.key: (r.state, r.answer, r.lease_owner) for r in store.iter_items(dataset)}
    cursor = store.cursor(source)

    put_objects(seaweedfs.endpoint_url, bucket, ["k/000a.jpg"])
    plain = Lister.open(store, bucket, "", client, page_size=40)
    plain.run()
    assert "k/000a.jpg" not in stored_keys(store, source)  # after the cursor only

    Lister.open(store, bucket, "", client, page_size=40, from_start=True).run()
    after = {r.key: (r.state, r.answer, r.lease_owner) for r in store.iter_items(dataset)}
    assert after.pop("k/000a.jpg") == (ItemState.PENDING, None, None)
    assert after == before
    assert before[served[0].key] == (ItemState.ANNOTATED, Answer.ACCEPT, None)
    assert before[served[1].key] == (ItemState.SERVED, None, "alice")
    assert before["k/099.jpg"][0] is ItemState.FAILED
    assert store.cursor(source).last_key == cursor.last_key


def test_new_source_is_created_only_when_s3_answers(store, seaweedfs, s3_env):
    """Proves that listing a bucket that does not exist leaves the state DB without a
    source row: the row is created with the first page S3 returns."""
    lister = Lister.open(store, "no-such-bucket-xyz", "", make_client(seaweedfs.endpoint_url))
    with pytest.raises(S3Error, match="does not exist"):
        lister.run()
    assert store.sources() == []


# -- dead tokens (moto restart) -----------------------------------------------------------


def test_dead_token_falls_back_to_start_after(sqlite_url, moto, monkeypatch):
    """Proves the token-death invariant: moto forgets its tokens on restart; the saved one
    is rejected, the lister warns once, continues with StartAfter=<last key>, and the
    result is exactly the bucket's keys, none twice, none lost."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # moto answers a dead token with a 500
    keys = [f"photos/{i:04d}.jpg" for i in range(230)]
    new_bucket(moto, "tokens")
    put_objects(moto.endpoint_url, "tokens", keys)
    with Store.open(sqlite_url) as store:
        first = Lister.open(store, "tokens", "", make_client(moto.endpoint_url), page_size=50)
        first.run(max_pages=2)
        assert store.cursor(first.source).continuation_token

        moto.restart()  # every token is gone, and so is every object: put them back
        new_bucket(moto, "tokens")
        put_objects(moto.endpoint_url, "tokens", keys)

        warnings: list[str] = []
        client = make_client(moto.endpoint_url)
        calls = list_log(client)
        second = Lister.open(store, "tokens", "", client, page_size=50, warn=warnings.append)
        assert second.run() == 3
        assert len(warnings) == 1 and "continuation token" in warnings[0]
        # The rejected call (with its retry), then StartAfter from the last key listed.
        resumed = [c for c in calls if "continuation-token" not in c["query"]]
        assert resumed[0]["query"]["start-after"] == keys[99]
        assert resumed[0]["first_key"] == keys[100]
        assert stored_keys(store, second.source) == keys
        assert store.cursor(second.source).exhausted


def test_fatal_error_on_a_saved_token_is_not_taken_for_a_dead_token(sqlite_url, moto):
    """Proves that a refused request (here: the bucket is gone) is an error, not a token
    fallback: no warning, and the saved token is kept for when the bucket is back."""
    new_bucket(moto, "gone")
    put_objects(moto.endpoint_url, "gone", ["a.jpg", "b.jpg"])
    with Store.open(sqlite_url) as store:
        client = make_client(moto.endpoint_url)
        Lister.open(store, "gone", "", client, page_size=1).run(max_pages=1)
        source = store.source("gone")
        token = store.cursor(source).continuation_token
        assert token
        client.delete_object(Bucket="gone", Key="a.jpg")
        client.delete_object(Bucket="gone", Key="b.jpg")
        client.delete_bucket(Bucket="gone")
        warnings: list[str] = []
        with pytest.raises(S3Error, match="'gone' does not exist"):
            Lister(store, source, client, warn=warnings.append).run()
        assert warnings == []
        assert store.cursor(source).continuation_token == token


# -- odd keys (moto keeps AWS's key rules) ------------------------------------------------

NFC = unicodedata.normalize("NFC", "café/crème.jpg")
NFD = unicodedata.normalize("NFD", "café/crème.jpg")
ODD_KEYS = [
    "with space.jpg",
    "  leading and trailing  .jpg",
    "ünïcødé/日本語の写真.jpg",
    "emoji/😀 smile.jpg",  # 4-byte UTF-8: sorts after every BMP character, as S3 lists
    "[red]markup[/red] [bold].jpg",
    "100%.jpg",
    "a%2Fb.jpg",
    "%%%41.jpg",
    "plus+sign=equals&amp.jpg",
    "question?hash#.jpg",
    "double//slash.jpg",
    "back\\slash.jpg",
    "../dot-dot.jpg",
    "tab\there.jpg",
    "quote\"apostrophe'.jpg",
    "<xml>&entities;.jpg",
    NFC,
    NFD,
    "x" * 1020 + ".jpg",  # 1024 bytes: S3's longest key
    "é" * 510 + ".jpg",  # 1024 bytes in UTF-8, 514 characters
]


def test_odd_keys_round_trip_exactly(db_url, moto):
    """Proves that keys with any UTF-8 come back byte for byte, through pages of 3 (so
    odd keys are also the continuation point) and through a StartAfter fallback with an
    odd last key. NFC and NFD twins are two keys. Newlines: see the next test."""
    assert NFC != NFD
    client = new_bucket(moto)
    for key in ODD_KEYS:
        client.put_object(Bucket="odd-keys", Key=key, Body=b"img")
    expected = sorted(ODD_KEYS, key=lambda k: k.encode("utf-8"))
    with Store.open(db_url) as store:
        lister = Lister.open(store, "odd-keys", "", make_client(moto.endpoint_url), page_size=3)
        lister.run(max_pages=3)
        assert store.cursor(lister.source).last_key == expected[8]

        moto.restart()  # kill the token: the rest is listed with StartAfter=<odd key>
        client = new_bucket(moto)
        for key in ODD_KEYS:
            client.put_object(Bucket="odd-keys", Key=key, Body=b"img")
        warnings: list[str] = []
        Lister.open(
            store, "odd-keys", "", make_client(moto.endpoint_url, max_attempts=1),
            page_size=3, warn=warnings.append,
        ).run()  # fmt: skip
        assert len(warnings) == 1
        assert stored_keys(store, lister.source) == expected
        assert store.cursor(lister.source).last_key == expected[-1]


def test_newline_keys_round_trip_in_the_store(store):
    """moto refuses a key with a newline (DESIGN.md), so the S3 half cannot be shown on
    loopback; this proves the state DB half: keys and the cursor's last key keep their
    newlines and carriage returns exactly."""
    source = store.source("newlines", "", create=True)
    keys = ["line\nbreak.jpg", "crlf\r\n.jpg", "\nleading.jpg", "trailing.jpg\n"]
    store.record_page(
        source, [ListedObject(k, 3) for k in keys], next_token="t", last_key=keys[-1],
        exhausted=False,
    )  # fmt: skip
    assert sorted(stored_keys(store, source)) == sorted(keys)
    assert store.cursor(source).last_key == "trailing.jpg\n"


# -- throttling and dropped connections (moto behind a fault proxy) -----------------------


def test_throttling_and_dropped_connections_are_retried(sqlite_url, moto):
    """Proves that 503 SlowDown answers and connections closed without an answer are
    retried by botocore (standard mode) and that nothing is lost or listed twice."""
    keys = [f"t/{i:03d}.jpg" for i in range(200)]
    new_bucket(moto, "faults")
    put_objects(moto.endpoint_url, "faults", keys)
    with FaultProxy(moto.endpoint_url) as proxy, Store.open(sqlite_url) as store:
        proxy.slow_down(2)  # page 1: two 503s, then an answer
        lister = Lister.open(store, "faults", "", make_client(proxy.endpoint_url), page_size=50)
        lister.run(max_pages=2)
        proxy.drop(2)  # page 3: two dropped connections
        lister.run()
        assert [r.fault for r in proxy.requests if r.fault] == ["slowdown"] * 2 + ["drop"] * 2
        assert stored_keys(store, lister.source) == keys
        answered = [r.first_key for r in proxy.lists() if r.status == 200]
        assert answered == [keys[0], keys[50], keys[100], keys[150]]
        assert store.cursor(lister.source).pages_listed == 4


def test_throttling_beyond_the_retries_is_one_error_and_no_change(sqlite_url, moto):
    """Proves that when every retry is throttled the lister stops with an S3Error and
    the cursor stays where it was."""
    new_bucket(moto, "busy")
    put_objects(moto.endpoint_url, "busy", ["a.jpg", "b.jpg"])
    with FaultProxy(moto.endpoint_url) as proxy, Store.open(sqlite_url) as store:
        client = make_client(proxy.endpoint_url, max_attempts=2)
        lister = Lister.open(store, "busy", "", client, page_size=1)
        lister.run(max_pages=1)
        cursor = store.cursor(lister.source)
        proxy.slow_down(10)
        with pytest.raises(S3Error, match="SlowDown"):
            lister.run()
        assert store.cursor(lister.source) == cursor


# -- empty pages that say more follows (delete markers) -----------------------------------


class EmptyRunClient:
    """ListObjectsV2 faithful to its tokens: `empty` empty truncated pages (T1, T2, ...),
    then one page holding `keys`, the last. Fails loudly when one LIST is sent again, so
    that a stream looping on the same page ends the test instead of hanging it."""

    def __init__(self, empty: int, keys: list[str]) -> None:
        self.empty, self.keys = empty, keys
        self.sent: list[str | None] = []

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        token = params.get("ContinuationToken")
        if len(self.sent) >= 3 * (self.empty + 1):
            raise AssertionError(f"LIST repeated: tokens sent {self.sent[-5:]}")
        self.sent.append(token)
        page = 0 if token is None else int(token[1:])
        if page < self.empty:
            return {"IsTruncated": True, "NextContinuationToken": f"T{page + 1}", "KeyCount": 0}
        contents = [{"Key": k, "Size": 5, "ETag": '"e"'} for k in self.keys]
        return {"IsTruncated": False, "KeyCount": len(contents), "Contents": contents}


def test_an_empty_truncated_page_saves_its_token_and_a_run_is_bounded_per_call(store):
    """Proves the delete-marker fix in the store and the lister: an empty page's token is
    committed (last key untouched), so a new lister continues after it; one `list_page`
    call follows at most MAX_EMPTY_PAGES empty pages, then returns, not exhausted."""
    client = EmptyRunClient(empty=MAX_EMPTY_PAGES + 5, keys=["a.jpg"])
    first = Lister.open(store, "bkt", "", client)
    page = first.list_page()
    assert (page.pages, page.keys_seen, page.exhausted) == (MAX_EMPTY_PAGES, 0, False)
    cursor = store.cursor(first.source)
    assert cursor.continuation_token == f"T{MAX_EMPTY_PAGES}" and cursor.last_key is None
    second = Lister(store, first.source, client)  # a restart: the position comes from the DB
    assert second.run() == 6
    assert client.sent == [None] + [f"T{i}" for i in range(1, MAX_EMPTY_PAGES + 6)]
    assert stored_keys(store, first.source) == ["a.jpg"]
    assert store.cursor(first.source).exhausted


def test_the_stream_walks_a_run_of_empty_pages_instead_of_repeating_one(sqlite_url):
    """The reproduction `empty_page_loop.py`: an empty page with IsTruncated made the
    stream send the same LIST forever. Now every LIST carries the next token and the key
    after the run is served."""
    client = EmptyRunClient(empty=30, keys=["after/the-run.png"])

    class Loader:
        def load(self, key: str, size: int | None = None) -> str:
            return "data:image/png;base64,AA=="

    with Store.open(sqlite_url) as store:
        dataset = store.dataset(store.source("bkt", create=True), "ds", create=True)
        with S3Stream(store, dataset, client=client, owner="o", loader=Loader()) as stream:
            task = next(iter(stream))
    assert task["meta"]["key"] == "after/the-run.png"
    assert client.sent == [None] + [f"T{i}" for i in range(1, 31)]
    assert stream.stats.list_calls == 31


def test_an_empty_truncated_page_without_a_new_token_is_one_error(store):
    """Proves that a server answering an empty page with the token it was sent (or none)
    stops the listing with an S3Error instead of sending that LIST forever."""

    class StuckClient:
        calls = 0

        def list_objects_v2(self, **params: Any) -> dict[str, Any]:
            StuckClient.calls += 1
            token = params.get("ContinuationToken")
            return {"IsTruncated": True, "NextContinuationToken": token or "T1", "KeyCount": 0}

    lister = Lister.open(store, "bkt", "", StuckClient())
    with pytest.raises(S3Error, match="cannot advance"):
        lister.run()
    assert StuckClient.calls == 2
    assert store.cursor(lister.source).continuation_token == "T1"


def test_a_server_sending_empty_pages_first_is_listed_through(db_url, moto):
    """Proves the fix against a real server: the fault proxy answers the listing's start
    with 12 empty truncated pages (its own tokens), then moto's pages. The lister sends
    each token once and stores every key; nothing is listed twice."""
    keys = [f"k{i:03d}.jpg" for i in range(120)]
    new_bucket(moto, "markers")
    put_objects(moto.endpoint_url, "markers", keys)
    with FaultProxy(moto.endpoint_url) as proxy, Store.open(db_url) as store:
        proxy.empty_pages(12)
        lister = Lister.open(store, "markers", "", make_client(proxy.endpoint_url), page_size=50)
        pages = lister.run()
        assert stored_keys(store, lister.source) == keys
        assert pages == 12 + 3 and lister.list_calls == 15
        tokens = [r.query.get("continuation-token", [None])[0] for r in proxy.lists()]
        assert len(tokens) == len(set(tokens)) == 15
        assert [r.key_count for r in proxy.lists()] == [0] * 12 + [50, 50, 20]


def test_a_page_the_filter_takes_nothing_from_is_one_warning_with_counts(store):
    """Proves that a listed page of objects that are all filtered out is reported: one
    line with the page's count and the filter, instead of a silent empty stream."""
    warnings: list[str] = []
    client = EmptyRunClient(empty=0, keys=["notes.txt", "data.csv", "b.png"])
    lister = Lister.open(store, "bkt", "", client, KeyFilter.build(["jpg"]), warn=warnings.append)
    page = lister.list_page()
    assert (page.keys_seen, page.keys_taken, page.new_keys) == (3, 0, 0)
    assert len(warnings) == 1
    assert "page of 3 objects had 0 the filter takes (extensions jpg)" in warnings[0]
