"""The bucket's side, as a property: whatever is done to a bucket's objects, the state DB
ends true to it, on both databases.

Hypothesis draws a sequence of puts, overwrites, deletes (delete markers, on a versioned
bucket), removals of one version (delete markers among them: undeletes), and syncs (plain,
or a complete pass), done to a real bucket on moto's server, on a versioned and an
unversioned bucket. Each change sends the event AWS sends to a real SQS queue (moto sends
none for versioned buckets, so the test writes the records, with AWS's URL-encoded keys
and increasing sequencers); the events reach `tracker watch` late, in any order, some
twice, some before a sync and some after. Then the oracle is the bucket itself, listed
(list_objects_v2): every key in it is live in the state DB and served by a claim; every
other key is deleted (or was never recorded).

Seen to fail on the old rules: a version removal taken as the removal of the key (a live
key marked deleted), and the removal of a delete marker skipped (an undeleted key left
deleted); and on the shortcut that skipped the removal of a version other than the one
recorded as current (reordered: a deleted key left live).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.s3servers import MotoServer
from tracker.filters import KeyFilter
from tracker.lister import Lister
from tracker.locals3 import ACCESS_KEY, SECRET_KEY
from tracker.models import objects
from tracker.s3 import make_client
from tracker.store import Store
from tracker.watcher import Watcher, make_sqs_client

ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: Keys that need URL-encoding in S3's records (space, `+`, `%`, non-ASCII), and one
#: without an extension (taken by the default filter).
KEYS = ["a b+c%41.jpg", "é/雪.png", "noext"]

# Profiles as in test_store_properties: `dev` keeps a local run short, `ci` (CI=true)
# explores more; PostgreSQL runs half the examples (a round trip per statement).
settings.register_profile(
    "bucket-dev",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "bucket-ci",
    max_examples=32,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = "bucket-ci" if os.environ.get("CI", "").lower() == "true" else "bucket-dev"

PUT = st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(1, 40))
OPERATION = st.one_of(
    PUT,
    PUT,  # twice as likely: keys with several versions
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("remove version"), st.sampled_from(KEYS), st.integers(0, 5)),
    st.tuples(st.sampled_from(["sync", "sync --from-start"]), st.just(""), st.just(0)),
)


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


class Bucket:
    """A bucket on moto and the events AWS would send for what is done to it."""

    def __init__(self, moto: MotoServer, versioned: bool) -> None:
        self.endpoint = moto.endpoint_url
        self.s3 = moto.client()
        self.name = f"p-{uuid.uuid4().hex[:12]}"
        self.versioned = versioned
        self.s3.create_bucket(Bucket=self.name)
        if versioned:
            self.s3.put_bucket_versioning(
                Bucket=self.name, VersioningConfiguration={"Status": "Enabled"}
            )
        self.pending: list[str] = []  # event bodies not delivered yet
        self._sequence = count(1)
        self._at = datetime(2026, 11, 24, 12, tzinfo=UTC)

    def put(self, key: str, size: int) -> None:
        response = self.s3.put_object(Bucket=self.name, Key=key, Body=os.urandom(size))
        self._event("ObjectCreated:Put", key, response.get("VersionId"), size=size,
                    eTag=response["ETag"].strip('"'))  # fmt: skip

    def delete(self, key: str) -> None:
        response = self.s3.delete_object(Bucket=self.name, Key=key)
        if response.get("DeleteMarker"):
            self._event("ObjectRemoved:DeleteMarkerCreated", key, response.get("VersionId"))
        else:
            self._event("ObjectRemoved:Delete", key, None)

    def remove_version(self, key: str, which: int) -> None:
        """Permanently delete one of the key's versions or delete markers (versioned)."""
        if not self.versioned:
            return
        listed = self.s3.list_object_versions(Bucket=self.name, Prefix=key)
        versions = [
            v["VersionId"]
            for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
            if v["Key"] == key
        ]
        if not versions:
            return
        version = sorted(versions)[which % len(versions)]
        self.s3.delete_object(Bucket=self.name, Key=key, VersionId=version)
        self._event("ObjectRemoved:Delete", key, version)

    def _event(self, name: str, key: str, version: str | None, **extra: Any) -> None:
        # AWS's sequencers grow per key; right-padded hex, as AWS documents them.
        obj: dict[str, Any] = {"key": quote_plus(key), "sequencer": f"{next(self._sequence):018X}"}
        if version is not None and version != "null":
            obj["versionId"] = version
        obj.update(extra)
        self._at += timedelta(milliseconds=1)
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventTime": self._at.isoformat().replace("+00:00", "Z"),
            "eventName": name,
            "s3": {"bucket": {"name": self.name}, "object": obj},
        }
        self.pending.append(json.dumps({"Records": [record]}))

    def keys(self) -> set[str]:
        """The oracle: the bucket's live keys, listed."""
        found: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            found.update(o["Key"] for o in page.get("Contents", []))
        return found


class Tracker:
    """The tracker's side, made once per test: the state DB, S3 and SQS clients, a queue."""

    def __init__(self, store: Store, endpoint: str) -> None:
        self.store = store
        self.s3 = make_client(endpoint, region="us-east-1")
        self.sqs = make_sqs_client(endpoint, region="us-east-1")
        self.queue = self.sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"]

    def deliver(self, bucket: str, bodies: list[str]) -> None:
        """Send `bodies` to the queue and let a watcher apply them all (short polls: an
        empty queue costs no wait)."""
        for start in range(0, len(bodies), 10):
            batch = bodies[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
            self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries)
        source = self.store.source(bucket, create=True)
        watcher = Watcher(self.store, source, self.sqs, self.queue, s3=self.s3)
        while watcher.poll(0):
            pass
        assert watcher.tally.malformed == 0
        assert watcher.tally.messages == len(bodies)

    def sync(self, bucket: str, from_start: bool) -> None:
        """`tracker sync` (plain, or a complete pass with --from-start), in process, two
        keys a page."""
        lister = Lister.open(self.store, bucket, "", self.s3, KeyFilter(), page_size=2,
                             from_start=from_start)  # fmt: skip
        lister.run()
        assert lister.exhausted


def some(rnd: random.Random, bodies: list[str]) -> tuple[list[str], list[str]]:
    """Some of `bodies`, shuffled, a few twice; and the others."""
    chosen = [b for b in bodies if rnd.random() < 0.5]
    rest = [b for b in bodies if b not in chosen]
    return shuffled(rnd, chosen), rest


def shuffled(rnd: random.Random, bodies: list[str]) -> list[str]:
    again = [b for b in bodies if rnd.random() < 0.2]
    out = [*bodies, *again]
    rnd.shuffle(out)
    return out


#: The reproductions of issue 20, as explicit examples (run in two drawn orders each).
PUT_PUT = [("put", KEYS[0], 3), ("put", KEYS[0], 4)]
EXAMPLES = [
    # An old version of a listed key removed: the key stays live.
    [*PUT_PUT, ("sync", "", 0), ("remove version", KEYS[0], 0)],
    [*PUT_PUT, ("sync", "", 0), ("remove version", KEYS[0], 1)],
    # Put, delete marker, the marker's removal (undelete).
    [("put", KEYS[1], 5), ("delete", KEYS[1], 0), ("remove version", KEYS[1], 0)],
    [("put", KEYS[1], 5), ("delete", KEYS[1], 0), ("remove version", KEYS[1], 1)],
    # Put, delete marker, put, that put's version removed: deleted in the end.
    [
        ("put", KEYS[2], 1),
        ("delete", KEYS[2], 0),
        ("put", KEYS[2], 2),
        ("remove version", KEYS[2], 9),
    ],
]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_the_state_db_ends_true_to_the_bucket_whatever_is_done_to_it(
    db_url, moto, monkeypatch, request
):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    profile = settings.get_profile(PROFILE)
    examples = profile.max_examples
    if request.node.callspec.params["db_url"] == "postgresql":
        examples //= 2

    def check(versioned: bool, operations: list[tuple[str, str, int]], rnd: random.Random) -> None:
        bucket = Bucket(moto, versioned)
        for kind, key, n in operations:
            if kind == "put":
                bucket.put(key, n)
            elif kind == "delete":
                bucket.delete(key)
            elif kind == "remove version":
                bucket.remove_version(key, n)
            else:
                # Some events arrive before the sync, the others after it.
                now, bucket.pending = some(rnd, bucket.pending)
                tracker.deliver(bucket.name, now)
                tracker.sync(bucket.name, from_start=kind == "sync --from-start")
        tracker.deliver(bucket.name, shuffled(rnd, bucket.pending))
        expect = bucket.keys()
        source = store.source(bucket.name, create=True)
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(objects.c.key, objects.c.deleted_at).where(objects.c.source_id == source.id)
            ).all()
        live = {r.key for r in rows if r.deleted_at is None}
        assert live == expect, f"live in the DB {sorted(live)}, in the bucket {sorted(expect)}"
        dataset = store.dataset(source, "ds", create=True)
        leases = store.claim(dataset, "me@host", 100, timedelta(hours=1))
        assert {lease.key for lease in leases} == expect  # every live key servable, no other

    drawn = given(
        versioned=st.booleans(),
        operations=st.lists(OPERATION, min_size=3, max_size=14),
        rnd=st.randoms(use_true_random=False),
    )(check)
    for operations in EXAMPLES:  # the reproductions first, each in two drawn orders
        for seed in range(2):
            drawn = example(versioned=True, operations=operations, rnd=random.Random(seed))(drawn)
    with Store.open(db_url) as store:
        tracker = Tracker(store, moto.endpoint_url)
        settings(profile, max_examples=examples)(drawn)()
