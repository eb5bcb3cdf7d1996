"""`tracker sync --parallel N`: shards found from the bucket, listed side by side, each with
its own cursor committed with its pages, on SeaweedFS and moto, SQLite and PostgreSQL.

What must hold whatever the split points are: every key of the source recorded exactly
once, shards disjoint and covering the key space, the source's cursor exhausted only when
every shard is (and then standing after the overall last key), and no page lost to a stop,
a dead token or throttling.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from sqlalchemy import create_engine, text

from tests.faultproxy import FaultProxy, put_objects
from tracker import parallel
from tracker.errors import S3Error
from tracker.filters import KeyFilter
from tracker.lister import Lister
from tracker.locals3 import loopback_client
from tracker.parallel import ParallelLister
from tracker.shards import Splitter, ranges, utf8
from tracker.store import Store

EVERY = KeyFilter.build(None, (), all_objects=True)

#: Keys whose UTF-8 order differs from code point order and from Python's str order.
ODD_KEYS = [
    "odd/a b.jpg",
    "odd/ä.jpg",
    "odd/z.jpg",
    "odd/\u00e9t\u00e9/1.jpg",
    "odd/\uff21wide.jpg",
    "odd/\U0001f600smile.jpg",
    "odd/\ue000private.jpg",
    "odd/100%.jpg",
    "odd/q?x=1&y=2.jpg",
    "odd/+plus.jpg",
] + [f"odd/n{i:04d}.jpg" for i in range(300)]


def layout(name: str) -> list[str]:
    if name == "flat":  # one prefix of sequential names
        return [f"flat/{i:05d}.jpg" for i in range(1_200)]
    if name == "nested":  # 12 folders of 100
        return [f"nested/d{d:02d}/{i:03d}.jpg" for d in range(12) for i in range(100)]
    if name == "skewed":  # one folder holds almost everything
        return [f"skewed/big/{i:05d}.jpg" for i in range(1_000)] + [
            f"skewed/s{d}/{i}.jpg" for d in range(10) for i in range(5)
        ]
    if name == "folders":  # one folder's flat run longer than a LIST page, beside a small one
        return [f"folders/images/{i:06d}.jpg" for i in range(3_000)] + [
            f"folders/labels/{i}.json" for i in range(10)
        ]
    if name == "odd":
        return ODD_KEYS
    assert name == "empty"
    return []


def fill(endpoint_url: str, client, bucket: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    plain = [k for k in keys if k.isascii() and not set(k) & set("%?&+ ")]
    put_objects(endpoint_url, bucket, plain)
    for key in set(keys) - set(plain):  # odd keys through boto3's own encoding
        client.put_object(Bucket=bucket, Key=key, Body=b"x")


def stored_keys(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT key FROM objects"))]
    finally:
        engine.dispose()


def run_parallel(store: Store, bucket: str, prefix: str, client, **options):  # type: ignore[no-untyped-def]
    options.setdefault("chains", 4)
    options.setdefault("page_size", 50)
    lister = ParallelLister(store, bucket, prefix, [client], EVERY, **options)
    return lister, lister.run()


@pytest.mark.parametrize("name", ["flat", "nested", "skewed", "folders", "odd", "empty"])
def test_parallel_sync_records_every_key_of_each_layout_exactly_once(
    name, seaweedfs, bucket, db_url
):
    client = seaweedfs.client()
    keys = layout(name)
    fill(seaweedfs.endpoint_url, client, bucket, keys)
    with Store.open(db_url) as store:
        _, result = run_parallel(store, bucket, f"{name}/", client)
        source = store.source(bucket, f"{name}/")
        cursor = store.cursor(source)
        shards = store.shards(source)
    found = stored_keys(db_url)
    assert Counter(found) == Counter(keys)  # every key, none twice
    assert result.exhausted and cursor.exhausted
    # The source's cursor stands after the overall last key: the recipe goes on with one LIST.
    assert cursor.last_key == (max(keys, key=utf8) if keys else None)
    assert cursor.continuation_token is None
    assert sum(s.keys_listed for s in shards) == len(keys)
    # Shards are contiguous: each starts after the previous one's end key.
    assert shards[0].start_after is None and shards[-1].end_key is None
    for before, after in pairwise(shards):
        assert after.start_after == before.end_key
    if name in {"flat", "nested", "folders"}:
        # "folders" was seen to fail on the old split: [501, 2500, 5, 4] (cut among the
        # first page of images/ only).
        assert len(shards) == 4, "a flat run must split as well as a nested one"
        assert max(s.keys_listed for s in shards) <= 2 * len(keys) / 4, [
            s.keys_listed for s in shards
        ]


def test_split_points_cut_the_key_space_into_disjoint_ranges_in_utf8_order(seaweedfs, bucket):
    client = seaweedfs.client()
    fill(seaweedfs.endpoint_url, client, bucket, ODD_KEYS)
    points = Splitter(client, bucket, "odd/", page_size=50).split(6)
    assert points == sorted(points, key=utf8)
    assert len(set(points)) == len(points)
    bounds = ranges(points)
    for key in ODD_KEYS:
        holders = [
            i
            for i, (start, end) in enumerate(bounds)
            if (start is None or utf8(key) > utf8(start))
            and (end is None or utf8(key) <= utf8(end))
        ]
        assert len(holders) == 1, (key, holders)


def test_a_stopped_parallel_sync_keeps_every_shard_cursor_and_the_next_run_resumes_them(
    seaweedfs, bucket, db_url
):
    client = seaweedfs.client()
    keys = layout("flat")
    fill(seaweedfs.endpoint_url, client, bucket, keys)
    pages = Counter[int]()
    with Store.open(db_url) as store:
        # Ctrl-C after a few pages: every chain stops after its page in flight.
        lister = ParallelLister(store, bucket, "flat/", [client], EVERY, chains=4, page_size=50)
        first = lister.run(
            should_stop=lambda: sum(pages.values()) >= 6,
            on_page=lambda page: pages.update([1]),
        )
        source = store.source(bucket, "flat/")
        assert not first.exhausted
        assert not store.cursor(source).exhausted  # not every shard is done
        listed = store.object_count(source)
        assert 6 * 50 <= listed <= (6 + 4) * 50  # at most one page in flight per chain
        shards = store.shards(source)
        assert sum(s.keys_listed for s in shards) == listed
        # A plain sync (one chain) resumes the same plan.
        again = ParallelLister(store, bucket, "flat/", [client], EVERY, chains=1, page_size=50)
        second = again.run()
        assert second.resumed and second.exhausted
        assert second.keys == len(keys) - listed, "no shard read a committed page again"
    assert Counter(stored_keys(db_url)) == Counter(keys)


def test_the_source_cursor_is_exhausted_only_when_every_shard_is(seaweedfs, bucket, db_url):
    client = seaweedfs.client()
    keys = layout("nested")
    fill(seaweedfs.endpoint_url, client, bucket, keys)
    with Store.open(db_url) as store:
        lister = ParallelLister(store, bucket, "nested/", [client], EVERY, chains=4, page_size=50)
        plan = lister.plan()
        # Only shard 0 is listed: the others are still open.
        lister.chains = 1
        lister.run(plan=[plan[0]])
        source = store.source(bucket, "nested/")
        assert store.shards(source)[0].exhausted
        assert not store.cursor(source).exhausted
        assert store.finish_shards(source, plan[0].plan) is False
        ParallelLister(store, bucket, "nested/", [client], EVERY, chains=4, page_size=50).run()
        cursor = store.cursor(source)
        assert cursor.exhausted and cursor.last_key == keys[-1]
        # The recipe's lister goes on from there with one LIST, which finds nothing new.
        after = Lister(store, source, client, EVERY)
        assert after.list_page().new_keys == 0 and after.list_calls == 1


def test_from_start_lists_every_shard_again_and_keeps_known_keys(seaweedfs, bucket, db_url):
    client = seaweedfs.client()
    keys = layout("flat")
    fill(seaweedfs.endpoint_url, client, bucket, keys)
    with Store.open(db_url) as store:
        run_parallel(store, bucket, "flat/", client)
        # An object added before the cursor's last key is only found by a pass from the start.
        client.put_object(Bucket=bucket, Key="flat/00000a.jpg", Body=b"x")
        _, again = run_parallel(store, bucket, "flat/", client, from_start=True)
        assert again.new == 1 and again.exhausted
        assert store.cursor(store.source(bucket, "flat/")).last_key == keys[-1]
    assert Counter(stored_keys(db_url)) == Counter([*keys, "flat/00000a.jpg"])


def test_a_dead_token_in_one_shard_falls_back_to_start_after_its_last_key(moto_server, db_url):
    client = moto_server.client()
    client.create_bucket(Bucket="dead-token")
    keys = layout("flat")
    put_objects(moto_server.endpoint_url, "dead-token", keys)
    warnings: list[str] = []
    with Store.open(db_url) as store:
        lister = ParallelLister(
            store,
            "dead-token",
            "flat/",
            [client],
            EVERY,
            chains=2,
            page_size=50,
            warn=warnings.append,
        )
        pages = Counter[int]()
        lister.run(
            should_stop=lambda: sum(pages.values()) >= 4, on_page=lambda p: pages.update([1])
        )
        source = store.source("dead-token", "flat/")
        with_token = [s for s in store.shards(source) if s.continuation_token]
        assert with_token, "a stopped shard keeps its token"
        # moto forgets every token when restarted; the same keys come back.
        moto_server.restart()
        client = moto_server.client()
        client.create_bucket(Bucket="dead-token")
        put_objects(moto_server.endpoint_url, "dead-token", keys)
        result = ParallelLister(
            store,
            "dead-token",
            "flat/",
            [client],
            EVERY,
            chains=2,
            page_size=50,
            warn=warnings.append,
        ).run()
        assert result.exhausted
    assert len([w for w in warnings if "rejected the saved continuation token" in w]) == len(
        with_token
    )
    assert Counter(stored_keys(db_url)) == Counter(keys)


def test_a_throttled_shard_backs_off_and_loses_no_page(moto_server, sqlite_url, monkeypatch):
    monkeypatch.setattr(parallel, "THROTTLE_BASE_S", 0.01)
    upstream = moto_server.client()
    upstream.create_bucket(Bucket="throttled")
    keys = layout("flat")
    put_objects(moto_server.endpoint_url, "throttled", keys)

    with FaultProxy(moto_server.endpoint_url) as proxy, Store.open(sqlite_url) as store:
        # No botocore retries: every 503 reaches the shard's own back-off.
        client = loopback_client(proxy.endpoint_url, max_attempts=0)
        lister = ParallelLister(
            store, "throttled", "flat/", [client], EVERY, chains=4, page_size=50
        )
        plan = lister.plan()
        # 503 SlowDown for the next 7 LISTs: more than botocore's 2 attempts of one request,
        # so a shard has to back off on its own and ask again.
        proxy.slow_down(7)
        result = lister.run(plan=plan)
        assert result.throttled == 7 and result.exhausted
        served = [r for r in proxy.lists() if r.status == 200]
        slowed = [r for r in proxy.lists() if r.status == 503]
    assert len(slowed) == 7
    assert Counter(stored_keys(sqlite_url)) == Counter(keys)
    # Each 503 was asked again, not skipped: the pages served add up to the whole listing.
    assert sum(r.key_count or 0 for r in served) >= len(keys)


def test_a_throttled_shard_that_never_recovers_stops_the_sync_with_an_s3_error(
    moto_server, sqlite_url, monkeypatch
):
    monkeypatch.setattr(parallel, "THROTTLE_BASE_S", 0.001)
    monkeypatch.setattr(parallel, "THROTTLE_ROUNDS", 2)
    upstream = moto_server.client()
    upstream.create_bucket(Bucket="throttled")
    put_objects(moto_server.endpoint_url, "throttled", layout("flat"))

    with FaultProxy(moto_server.endpoint_url) as proxy, Store.open(sqlite_url) as store:
        client = loopback_client(proxy.endpoint_url, max_attempts=0)
        lister = ParallelLister(
            store, "throttled", "flat/", [client], EVERY, chains=2, page_size=50
        )
        plan = lister.plan()
        proxy.slow_down(1_000)
        with pytest.raises(S3Error, match="SlowDown"):
            lister.run(plan=plan)
        assert S3Error.exit_code == 3


def test_fast_timestamps_read_s3s_iso_dates_as_botocore_does_and_fall_back_otherwise():
    """The chains' parser is swapped for speed (see `fast_timestamps`): same instants."""
    import boto3
    from botocore.utils import parse_timestamp

    client = boto3.session.Session().client("s3", region_name="us-east-1")
    parallel.fast_timestamps(client)
    parse = client._endpoint._response_parser_factory._defaults["timestamp_parser"]
    for value in (
        "2026-11-24T14:39:02.453Z",
        "2026-11-24T14:39:02Z",
        "Tue, 24 Nov 2026 14:39:02 GMT",
    ):
        assert parse(value) == parse_timestamp(value)
        assert parse(value).tzinfo is not None


def test_one_folder_holding_a_flat_run_longer_than_a_page_is_split_evenly(
    seaweedfs, bucket, db_url, capsys
):
    """Proves issue 20's parallel-listing case: `tracker sync s3://BUCKET --parallel 4` of a
    bucket whose 4,000 keys sit in one folder (`images/000000.jpg` ...) lists each key once,
    in four shards none over twice its share; every key of the bucket, listed by boto3 at
    the end, is in the state DB. Seen to fail on the old split: shards [251, 250, 250,
    3249], split points only among the first 1,000 keys (the folder's truncated LIST)."""
    from tests.cli_support import run_cli

    client = seaweedfs.client()
    keys = [f"images/{i:06d}.jpg" for i in range(4_000)]
    put_objects(seaweedfs.endpoint_url, bucket, keys)
    done = run_cli(capsys, "--db", db_url, "sync", f"s3://{bucket}", "--parallel", "4",
                   "--endpoint-url", seaweedfs.endpoint_url, "--all-objects")  # fmt: skip
    assert done.code == 0, done.err
    with Store.open(db_url) as store:
        shards = store.shards(store.source(bucket, ""))
    sizes = [s.keys_listed for s in shards]
    assert len(shards) == 4 and max(sizes) <= 2 * len(keys) / 4, sizes
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    on_s3 = [o["Key"] for page in pages for o in page.get("Contents") or []]
    assert Counter(stored_keys(db_url)) == Counter(on_s3) == Counter(keys)
