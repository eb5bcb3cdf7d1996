"""The stream through the Prodigy harness, against SeaweedFS (a real S3 server process) and
the state DB on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.cli_support import served_times, states
from tests.images_fixtures import image_bytes, put_images
from tests.prodigy_harness import App, load_recipes
from tracker.models import Answer, ItemState, items, objects, utcnow
from tracker.records import ItemFilter
from tracker.store import Store
from tracker.stream import open_stream
from tracker.tasks import input_hash, s3_uri, task_hash

DATASET = "ds"


@pytest.fixture
def s3(seaweedfs, bucket):
    return seaweedfs.client()


@pytest.fixture
def start(seaweedfs, bucket, db_url):
    """Start the registered recipe as Prodigy would; returns an `App`."""
    recipe, _ = load_recipes()["stream_from_s3"]
    dataset_db: list[dict] = []
    apps: list[App] = []

    def run(*args, order: str = "update_first", **kwargs) -> App:
        kwargs.setdefault("label", "CAT")
        kwargs.setdefault("state_db", db_url)
        kwargs.setdefault("endpoint_url", seaweedfs.endpoint_url)
        app = App(recipe(DATASET, bucket, *args, **kwargs), dataset_db, order=order)
        apps.append(app)
        return app

    yield run
    for app in apps:
        app.components["update"].__self__.close()


def stored_item(db_url: str, bucket: str, key: str) -> Any:
    """The dataset's raw `items` row for `key`: what other processes see (lease expiry,
    answer count), not what `iter_items` chooses to show."""
    with Store.open(db_url) as store:
        dataset = store.dataset(store.source(bucket), DATASET)
        with store.engine.connect() as conn:
            return conn.execute(
                select(items)
                .join(objects, objects.c.id == items.c.object_id)
                .where(items.c.dataset_id == dataset.id, objects.c.key == key)
            ).one()


@pytest.mark.parametrize("order", ["update_first", "before_db_first"])
def test_every_key_is_served_once_answered_and_the_stream_ends(
    start, s3, bucket, db_url, order
) -> None:
    keys = put_images(s3, bucket, [f"img/{i:03d}.png" for i in range(25)])
    app = start(order=order)
    answered = app.annotate_all()
    assert sorted(answered) == keys
    assert len(app.served) == 25
    assert set(states(db_url, bucket).values()) == {ItemState.ANNOTATED}
    saved = {eg["meta"]["key"]: eg for eg in app.dataset_db}
    assert set(saved) == set(keys)
    for key, example in saved.items():
        assert example["image"] == s3_uri(bucket, key)
        assert example["_input_hash"] == input_hash(bucket, key)


def test_tasks_carry_real_mime_meta_and_hashes(start, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="a.jpg", Body=image_bytes("a.jpg"), ContentType="image/jpg")
    s3.put_object(Bucket=bucket, Key="b.png", Body=image_bytes("b.png"))  # no Content-Type
    batch = start().next_batch()
    by_key = {t["meta"]["key"]: t for t in batch}
    assert by_key["a.jpg"]["image"].startswith("data:image/jpeg;base64,")
    assert by_key["b.png"]["image"].startswith("data:image/png;base64,")
    assert by_key["a.jpg"]["meta"] == {
        "bucket": bucket,
        "key": "a.jpg",
        "size": len(image_bytes("a.jpg")),
    }
    for key, task in by_key.items():
        assert -(2**31) <= task["_input_hash"] < 2**31
        assert -(2**31) <= task["_task_hash"] < 2**31
        assert task["_input_hash"] == input_hash(bucket, key)


def test_reload_drops_a_batch_which_comes_back_only_after_its_lease_expired(
    start, s3, bucket, db_url
) -> None:
    # Replaces "comes back once nothing else is left" (`resend_after`): a live lease is
    # never re-sent, so a dropped batch waits for its lease to run out and be claimed again.
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(20)])
    lease = 2.0
    app = start(lease=f"{lease:g}s")
    first = app.next_batch()
    served = time.monotonic()
    dropped = sorted(t["meta"]["key"] for t in first)  # the browser reloads
    first_serve = served_times(db_url, bucket)
    rest = app.next_batch()
    assert len(rest) == 10 and not set(dropped) & {t["meta"]["key"] for t in rest}
    app.answer(rest)
    again: list[dict] = []  # nothing else left: waits until the dropped leases expired
    second_serve: dict[str, datetime | None] = {}
    back_after: float | None = None
    while batch := app.next_batch():
        back_after = back_after or time.monotonic() - served
        second_serve.update(served_times(db_url, bucket))  # before the answer
        again += batch
        app.answer(batch)
    assert sorted(t["meta"]["key"] for t in again) == dropped  # each once
    # None came back inside its lease, timed from its own serve by the DB's clock (leases
    # are granted and expire by it); and none waited much longer.
    # Mutation seen to fail: `S3Stream`'s lease cut to 0.6 of `--lease`.
    for key in dropped:
        first_at, again_at = first_serve[key], second_serve[key]
        assert first_at is not None and again_at is not None
        assert again_at - first_at >= timedelta(seconds=lease), key
    assert back_after is not None and back_after < lease + 10
    # A second serve is a new task to Prodigy (its dedupe and dataset filters would drop
    # the first serve's hash), of the same input.
    by_key = {t["meta"]["key"]: t for t in first}
    for task in again:
        old = by_key[task["meta"]["key"]]
        assert task["_input_hash"] == old["_input_hash"]
        assert task["_task_hash"] != old["_task_hash"]
    assert app.exhausted
    assert set(states(db_url, bucket).values()) == {ItemState.ANNOTATED}


def test_a_partial_last_batch_ends_the_stream_when_only_its_own_keys_are_out(
    start, s3, bucket
) -> None:
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(13)])
    # A long lease: the stream must end on its own (partial_wait), not wait for the lease.
    app = start(lease="1h")
    app.answer(app.next_batch())
    began = time.monotonic()
    last = app.next_batch()
    assert len(last) == 3 and app.exhausted
    assert time.monotonic() - began < 5


def test_a_partial_batch_reaches_the_browser_before_its_short_lease_runs_out(
    start, s3, bucket, db_url
) -> None:
    # A 2 s lease bounds the partial wait to 0.5 s while the poll interval stays at its
    # 2 s default: the stream must not sleep past the bound, or the key's own lease runs
    # out and it is claimed again into the batch Prodigy is still filling.
    put_images(s3, bucket, ["only.png"])
    app = start(lease="2s")
    batch = app.next_batch()
    delivered = time.monotonic()
    assert [t["meta"]["key"] for t in batch] == ["only.png"]
    (shown,) = app.shown
    assert delivered - shown.at < 2.0  # reached the browser while its lease held
    row = stored_item(db_url, bucket, "only.png")
    assert (row.state, row.serves) == (ItemState.SERVED, 1)


def test_a_partial_batch_waits_only_briefly_for_other_owners(s3, bucket, db_url) -> None:
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(12)])
    common = {"state_db": db_url, "client": s3, "lease": "1h", "dataset": DATASET}
    with (
        open_stream(bucket, owner="bob", **common) as bob,
        open_stream(bucket, owner="alice", partial_wait=0.5, poll_interval=0.1, **common) as alice,
    ):
        bob_app, alice_app = (
            App({"dataset": DATASET, "view_id": "image", "stream": bob}),
            App({"dataset": DATASET, "view_id": "image", "stream": alice}),
        )
        assert len(bob_app.next_batch()) == 10
        began = time.monotonic()
        assert len(alice_app.next_batch()) == 2 and alice_app.exhausted
        assert 0.4 <= time.monotonic() - began < 5


def test_restart_serves_this_owners_keys_first_without_waiting_for_the_lease(
    start, s3, bucket
) -> None:
    """Seen to fail when: `tasks` skips `reclaim` (the restart serves new keys first)."""
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(30)])
    first = start(lease="2h")
    held = [t["meta"]["key"] for t in first.next_batch()]
    first.components["update"].__self__.close()  # a crash: no on_exit
    began = time.monotonic()
    again = start(lease="2h").next_batch()
    assert [t["meta"]["key"] for t in again] == held
    assert time.monotonic() - began < 5


def test_on_exit_releases_unanswered_keys_only(start, s3, bucket, db_url) -> None:
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(20)])
    app = start()
    answered = app.next_batch()
    app.answer(answered[:4])
    assert app.exit() == 6
    by_state = states(db_url, bucket)
    assert sum(s == ItemState.ANNOTATED for s in by_state.values()) == 4
    assert sum(s == ItemState.SERVED for s in by_state.values()) == 0


@pytest.mark.alone
def test_waits_for_other_owners_live_leases_then_serves_them_after_expiry(
    start, s3, bucket, db_url
) -> None:
    """Seen to fail when: `_claim_expired` also takes other owners' live leases (the
    second stream gets the first's 10 keys at once).
    """
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(20)])
    other = start(owner="bob", lease="2s")
    bob_batch = other.next_batch()  # bob goes quiet
    theirs = [t["meta"]["key"] for t in bob_batch]
    bob_serve = served_times(db_url, bucket)
    mine = start(owner="alice", lease="1h")
    first = mine.next_batch()
    assert len(first) == 10 and not {t["meta"]["key"] for t in first} & set(theirs)
    mine.answer(first)
    second = mine.next_batch()  # nothing claimable; bob's leases are live: wait
    assert sorted(t["meta"]["key"] for t in second) == sorted(theirs)
    # Each of bob's keys reached alice only after its 2 s lease ran out, timed from bob's
    # serve by the DB's clock (a test's own clock would start after it, by the time alice's
    # stream took to start under load).
    alice_serve = served_times(db_url, bucket)
    for key in theirs:
        bob_at, alice_at = bob_serve[key], alice_serve[key]
        assert bob_at is not None and alice_at is not None
        assert alice_at - bob_at >= timedelta(seconds=2), key
    mine.answer(second, "accept")
    assert mine.next_batch() == [] and mine.exhausted
    # Bob comes back and answers his own (expired) task late: the first answer stays, and
    # his is counted on the key, not dropped and not double-counted as a new annotation.
    late_key = theirs[0]
    bob_task = next(t for t in bob_batch if t["meta"]["key"] == late_key)
    other.answer([bob_task], "reject", session="bob")
    with Store.open(db_url) as store:
        dataset = store.dataset(store.source(bucket), DATASET)
        row = next(store.iter_items(dataset, ItemFilter(keys=frozenset([late_key]))))
        counts = store.counts(dataset)
    assert counts.state(ItemState.ANNOTATED) == 20
    assert row.state == ItemState.ANNOTATED and row.answer is Answer.ACCEPT
    assert stored_item(db_url, bucket, late_key).answer_count == 2
    other.exit()


def test_an_answer_after_the_lease_expired_still_annotates(start, s3, bucket, db_url) -> None:
    put_images(s3, bucket, ["only.png"])
    app = start(lease="1s")
    batch = app.next_batch()
    time.sleep(1.2)
    app.answer(batch, "reject")
    with Store.open(db_url) as store:
        row = next(store.iter_items(store.dataset(store.source(bucket), DATASET)))
    assert row.state == ItemState.ANNOTATED and row.answer is Answer.REJECT
    assert row.session_id == "ds-alice"
    assert stored_item(db_url, bucket, "only.png").answer_count == 1


def test_vanished_and_non_image_objects_fail_with_a_reason_and_the_stream_goes_on(
    start, s3, bucket, db_url
) -> None:
    put_images(s3, bucket, ["a.png", "b.png", "gone.png"])
    s3.put_object(
        Bucket=bucket, Key="text.png", Body=b"hello, not an image", ContentType="text/plain"
    )
    with (
        Store.open(db_url) as store,  # list first, then delete: the key vanished
        open_stream(
            bucket, dataset=DATASET, store=store, owner="x", client=s3, endpoint_url=None
        ) as stream,
    ):
        stream._list_one_page()
    s3.delete_object(Bucket=bucket, Key="gone.png")
    app = start()
    assert sorted(app.annotate_all()) == ["a.png", "b.png"]
    with Store.open(db_url) as store:
        failed = {
            r.key: r.failure_reason
            for r in store.iter_items(
                store.dataset(store.source(bucket), DATASET),
                ItemFilter(states=frozenset([ItemState.FAILED])),
            )
        }
    assert set(failed) == {"gone.png", "text.png"}
    assert failed["gone.png"].startswith("vanished")
    assert failed["text.png"].startswith("not an image")


def test_lists_one_page_only_when_nothing_is_claimable(s3, bucket, db_url) -> None:
    put_images(s3, bucket, [f"k{i:02d}.png" for i in range(20)])
    with open_stream(
        bucket, dataset=DATASET, state_db=db_url, owner="o", client=s3, page_size=5, batch_size=5
    ) as stream:
        tasks = iter(stream)
        for expected_calls in (1, 2, 3, 4):
            for _ in range(5):
                next(tasks)
            assert stream.stats.list_calls == expected_calls
        stream.record([{"meta": {"key": k}, "answer": "accept"} for k in stream.held])
        assert next(tasks, None) is None
        assert stream.stats.list_calls == 4  # the 4th page said "no more": no extra call


def test_presigned_urls_carry_the_configured_expiry_and_serve_the_object(start, s3, bucket) -> None:
    import urllib.parse
    import urllib.request

    put_images(s3, bucket, ["p.png"])
    first = start(lease="1h")
    inline = first.next_batch()[0]
    first.exit()
    app = start(presign="15m")
    task = app.next_batch()[0]
    url = task["image"]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert query["X-Amz-Expires"] == ["900"]
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == image_bytes("p.png")
    # Presigning changes neither hash; the task hash is the 2nd serve's (released at exit,
    # claimed again), the inline task's was the 1st serve's.
    assert task["_input_hash"] == inline["_input_hash"]
    assert inline["_task_hash"] == task_hash(bucket, "p.png", "image_manual", None, serve=1)
    assert task["_task_hash"] == task_hash(bucket, "p.png", "image_manual", None, serve=2)
    saved = app.answer([task])
    assert saved[0]["image"] == s3_uri(bucket, "p.png")


def test_inline_mode_writes_no_image_bytes_to_disk(start, s3, bucket, sqlite_url, tmp_path) -> None:
    import sys

    keys = put_images(s3, bucket, [f"k{i}.png" for i in range(12)])
    writes: list[str] = []
    watching = True

    def hook(event: str, args: tuple) -> None:
        mode = args[1] if event == "open" and len(args) > 1 else None
        if watching and isinstance(mode, str) and any(c in mode for c in "wax+"):
            writes.append(str(args[0]))

    sys.addaudithook(hook)
    try:
        app = start(state_db=sqlite_url)
        app.annotate_all()
        app.exit()
    finally:
        watching = False
    assert writes == []
    for path in tmp_path.glob("state.db*"):
        data = path.read_bytes()
        for key in keys:
            assert image_bytes(key) not in data
            assert b"payload:" + key.encode() not in data


def test_input_hash_is_stable_and_task_hash_changes_only_with_the_serve_number(
    start, s3, bucket
) -> None:
    # Replaces "hashes are stable across serves": each serve is now a new task to Prodigy
    # (so its filters do not drop a key that came back), while presigning and restarts
    # change nothing: the task hash is a function of the serve number alone.
    put_images(s3, bucket, ["h.png"])
    seen = []
    for presign in (None, "1h", "2h", None):
        app = start(presign=presign, lease="1h")
        task = app.next_batch()[0]
        seen.append((task["_input_hash"], task["_task_hash"]))
        app.exit()  # releases the key: the next restart serves it again
    assert {input for input, _ in seen} == {input_hash(bucket, "h.png")}
    assert [task for _, task in seen] == [
        task_hash(bucket, "h.png", "image_manual", None, serve=n) for n in (1, 2, 3, 4)
    ]
    assert len({task for _, task in seen}) == 4


def test_classification_and_image_views(start, s3, bucket) -> None:
    put_images(s3, bucket, ["c.png"])
    app = start(view_id="classification", label="DOG", owner="c1")
    task = app.next_batch()[0]
    assert app.components["view_id"] == "classification"
    assert task["label"] == "DOG"
    app.exit()
    plain = start(view_id="image", label=None, owner="c2").next_batch()[0]
    assert "label" not in plain
    # The view and label make a different task of the same input, whatever the serve.
    assert task["_task_hash"] == task_hash(bucket, "c.png", "classification", "DOG", serve=1)
    assert plain["_task_hash"] == task_hash(bucket, "c.png", "image", None, serve=2)
    assert task_hash(bucket, "c.png", "image", None, serve=2) != task_hash(
        bucket, "c.png", "classification", "DOG", serve=2
    )
    assert plain["_input_hash"] == task["_input_hash"]


def test_lease_option_sets_the_lease(start, s3, bucket, db_url) -> None:
    put_images(s3, bucket, ["l.png"])
    app = start(lease="90s")
    before = utcnow()
    app.next_batch()
    after = utcnow()
    with Store.open(db_url) as store:
        counts = store.counts(store.dataset(store.source(bucket), DATASET))
    expires = stored_item(db_url, bucket, "l.png").lease_expires_at
    assert counts.state(ItemState.SERVED) == 1
    # What the state DB holds is what fences other processes, not the Python attribute.
    expires = expires if expires.tzinfo else expires.replace(tzinfo=before.tzinfo)
    lease = timedelta(seconds=90)
    assert before + lease - timedelta(seconds=1) <= expires <= after + lease + timedelta(seconds=1)
