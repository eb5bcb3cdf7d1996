"""`tracker watch`: S3 event notifications from SQS, end to end on moto's server (which
sends a bucket's notifications to its queue), on both databases.

Each test has its own bucket and queue on one moto server process for the module."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.cli_support import run, run_cli
from tests.faultproxy import FaultProxy
from tests.s3servers import MotoServer
from tracker.locals3 import ACCESS_KEY, SECRET_KEY, free_port
from tracker.records import AnswerRecord
from tracker.states import Answer
from tracker.store import Store
from tracker.watcher import setup_commands

ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


class Notified:
    """A moto bucket that notifies its own queue of every object created or removed."""

    def __init__(self, moto: MotoServer) -> None:
        self.endpoint = moto.endpoint_url
        self.s3 = moto.client()
        import boto3

        self.sqs = boto3.client("sqs", endpoint_url=self.endpoint, region_name="us-east-1")
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.bucket = name
        # A short visibility timeout: a message left in the queue is seen again quickly.
        self.queue = self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})[
            "QueueUrl"
        ]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.s3.create_bucket(Bucket=name)
        self.s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    }
                ]
            },
        )

    def put(self, key: str, body: bytes = b"image") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=body)

    def drain(self) -> list[str]:
        """Take every message out of the queue (their bodies, to send again)."""
        bodies: list[str] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                return bodies
            for message in got:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def messages_left(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


@pytest.fixture
def notified(moto, monkeypatch) -> Notified:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return Notified(moto)


def watch(capsys: Any, db_url: str, n: Notified, uri: str | None = None, *extra: str) -> Any:
    where = ["--queue-url", n.queue, "--endpoint-url", n.endpoint, "--once"]
    return run_cli(capsys, "--db", db_url, "watch", uri or f"s3://{n.bucket}", *where, *extra)


def key_states(db_url: str, bucket: str, prefix: str = "") -> dict[str, Any]:
    """key -> (size, etag, deleted?) for every object of the source."""
    with Store.open(db_url) as store:
        source = store.source(bucket, prefix)
        with store.engine.connect() as conn:
            from sqlalchemy import select

            from tracker.models import objects

            rows = conn.execute(
                select(objects.c.key, objects.c.size, objects.c.etag, objects.c.deleted_at).where(
                    objects.c.source_id == source.id
                )
            )
            return {r.key: (r.size, r.etag, r.deleted_at is not None) for r in rows}


def test_created_keys_become_pending_and_removed_ones_deleted(db_url, notified, capsys):
    """Keys decoded exactly (space, plus, percent, non-ASCII); other prefixes, filtered
    objects and the test event ignored; the queue empty afterwards."""
    n = notified
    odd = "img/a b+c%d é.jpg"
    for key in ("img/1.jpg", odd, "img/gone.jpg", "img/notes.txt", "other/x.jpg"):
        n.put(key)
    n.delete("img/gone.jpg")
    result = watch(capsys, db_url, n, f"s3://{n.bucket}/img/")
    assert result.code == 0, result.err
    assert "7 messages: 4 events applied, 2 ignored" in result.out  # test event, 5 puts, 1 delete
    stored = key_states(db_url, n.bucket, "img/")
    assert sorted(stored) == sorted(["img/1.jpg", odd, "img/gone.jpg"])
    assert stored["img/gone.jpg"][2] and not stored[odd][2]
    assert stored["img/1.jpg"][0] == len(b"image")
    assert n.messages_left() == 0
    status = json.loads(run(db_url, "status", "--json").output)["sources"][0]
    assert (status["deleted"], status["states"]["pending"]) == (1, 2)
    assert status["last_event_at"] is not None


def test_redelivered_duplicated_and_reordered_messages_change_nothing_twice(
    db_url, notified, capsys
):
    """Seen to fail when: `verdict` skips no older sequencer and `is_newer` takes every
    event as newer (b.jpg's put, received alone after its delete, revives it); before the
    one-message receives it passed (`in_order` sorts each batch back into order)."""
    n = notified
    n.put("a.jpg")
    n.put("b.jpg")
    n.delete("b.jpg")
    bodies = n.drain()
    for body in bodies:
        n.send(body)
    assert watch(capsys, db_url, n).code == 0
    once = key_states(db_url, n.bucket)
    for body in [*reversed(bodies), *bodies]:  # every message again, twice, out of order
        n.send(body)
    again = watch(capsys, db_url, n)
    assert again.code == 0 and key_states(db_url, n.bucket) == once
    assert once["b.jpg"][2] and not once["a.jpg"][2]
    # One message per receive, newest first: no batch to sort them back into order.
    for body in reversed(bodies):
        n.send(body)
        assert watch(capsys, db_url, n).code == 0
        assert key_states(db_url, n.bucket) == once


def record(name: str, key: str, sequencer: str, bucket: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": name,
                    "eventTime": "2026-11-24T12:00:00.000Z",
                    "s3": {
                        "bucket": {"name": bucket},
                        "object": {"key": key, "size": 9, "eTag": "e", "sequencer": sequencer},
                    },
                }
            ]
        }
    )


def test_a_create_and_delete_arriving_out_of_order_are_resolved_by_sequencer(
    db_url, notified, capsys
):
    """AWS sends a sequencer (moto does not): the delete came last, though it arrives first,
    and a redelivered create never revives the key."""
    n = notified
    n.send(record("ObjectRemoved:Delete", "k.jpg", "0000000000000000B2", n.bucket))
    n.send(record("ObjectCreated:Put", "k.jpg", "00000000000000000A1", n.bucket))
    n.send(record("ObjectCreated:Put", "live.jpg", "05", n.bucket))
    n.send(record("ObjectRemoved:Delete", "live.jpg", "04", n.bucket))
    assert watch(capsys, db_url, n).code == 0
    stored = key_states(db_url, n.bucket)
    assert stored["k.jpg"][2] is True
    assert stored["live.jpg"][2] is False


def test_sns_envelopes_and_eventbridge_events_are_read(db_url, notified, capsys):
    n = notified
    n.send(json.dumps({"Type": "Notification", "Message": record("ObjectCreated:Put", "s.jpg",
                                                                   "01", n.bucket)}))  # fmt: skip
    bridge = {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-24T12:00:00Z",
        "detail": {"bucket": {"name": n.bucket}, "object": {"key": "e.jpg", "size": 4}},
    }
    n.send(json.dumps(bridge))
    n.send(json.dumps(dict(bridge, detail={"bucket": {"name": "another-bucket"},
                                           "object": {"key": "x.jpg", "size": 4}})))  # fmt: skip
    result = watch(capsys, db_url, n)
    assert result.code == 0 and "2 events applied, 1 ignored" in result.out
    assert sorted(key_states(db_url, n.bucket)) == ["e.jpg", "s.jpg"]


def test_an_overwritten_annotated_object_is_flagged_changed(db_url, notified, capsys):
    n = notified
    n.put("a.jpg", b"first")
    n.put("b.jpg", b"first")
    assert watch(capsys, db_url, n).code == 0
    with Store.open(db_url) as store:
        ref = store.dataset(store.source(n.bucket), "ds", create=True)
        store.record_answers(ref, [AnswerRecord("a.jpg", Answer.ACCEPT, "s")])
    n.put("a.jpg", b"second version")
    n.put("b.jpg", b"second version")
    assert watch(capsys, db_url, n).code == 0
    assert run(db_url, "keys", "--changed").output.splitlines() == ["a.jpg"]
    assert key_states(db_url, n.bucket)["b.jpg"][0] == len(b"second version")


def test_a_malformed_message_is_logged_once_left_for_the_dlq_and_the_rest_applied(
    db_url, notified, capsys
):
    n = notified
    n.send("this is not an event")
    n.put("a.jpg")
    result = watch(capsys, db_url, n)
    assert result.code == 0
    warnings = [line for line in result.err_lines if "not an S3 event notification" in line]
    assert len(warnings) == 1 and "dead-letter" in warnings[0]
    assert "a.jpg" in key_states(db_url, n.bucket)
    time.sleep(1.2)  # its visibility timeout: then it is back in the queue, for the DLQ
    assert n.messages_left() == 1


def test_sigkill_between_commit_and_delete_then_redelivery_is_a_no_op(db_url, notified, tmp_path):
    """Seen to fail when: no mutation found: the redelivered put writes the state it
    already wrote (idempotent by construction); sequencers ignored in `verdict` and
    `is_newer` still pass (tests/unit/test_events.py fails on that).
    """
    n = notified
    n.put("a.jpg")
    n.drain()  # the test event and the put: send the put alone
    n.put("k.jpg")
    with FaultProxy(n.endpoint) as proxy:
        held, release = proxy.block_action("DeleteMessage")
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker", "--db", db_url, "watch", f"s3://{n.bucket}",
             "--queue-url", n.queue, "--endpoint-url", proxy.endpoint_url, "--once"],
            env={**_clean_env(), **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert held.wait(30)  # committed; the delete has not reached the queue
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        release.set()
    committed = key_states(db_url, n.bucket)
    assert list(committed) == ["k.jpg"]
    time.sleep(1.2)  # visibility timeout: the message comes back
    assert n.messages_left() == 1
    result = subprocess.run(
        [sys.executable, "-m", "tracker", "--db", db_url, "watch", f"s3://{n.bucket}",
         "--queue-url", n.queue, "--endpoint-url", n.endpoint, "--once"],
        env={**_clean_env(), **ENV}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 messages: 0 events applied, 1 ignored" in result.stdout
    assert key_states(db_url, n.bucket) == committed
    assert n.messages_left() == 0


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def test_an_unreachable_queue_is_retried_then_exit_3_in_one_line(tmp_path, capsys, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr("tracker.watcher.RECEIVE_BACKOFF_S", 0.05)
    dead = f"http://127.0.0.1:{free_port()}"
    db = tmp_path / "state.db"
    result = run_cli(capsys, "--db", f"sqlite:///{db}", "watch", "s3://some-bucket",
                     "--queue-url", f"{dead}/123456789012/q", "--endpoint-url", dead)  # fmt: skip
    assert result.code == 3
    assert len(result.err_lines) == 1 and "Traceback" not in result.err
    assert result.err_lines[0].startswith("error: cannot reach SQS queue")
    assert "after 4 tries" in result.err_lines[0]
    assert not db.exists()  # nothing written


def test_an_unknown_queue_is_one_line_exit_3_and_no_state_db(notified, tmp_path, capsys):
    db = tmp_path / "state.db"
    result = run_cli(capsys, "--db", f"sqlite:///{db}", "watch", f"s3://{notified.bucket}",
                     "--queue-url", f"{notified.endpoint}/123456789012/no-such-queue",
                     "--endpoint-url", notified.endpoint, "--once")  # fmt: skip
    assert result.code == 3 and len(result.err_lines) == 1
    assert result.err_lines[0].startswith("error: SQS queue")
    assert not db.exists()


def test_watch_help_prints_the_setup_commands(sqlite_url):
    output = run(sqlite_url, "watch", "--help").output
    for line in setup_commands().splitlines():
        assert line in output


def test_the_docs_print_the_same_setup_commands():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "keeping-up.md").read_text()
    for line in setup_commands().splitlines():
        assert line in page


# -- versioned buckets: what is current, when the event cannot tell (issue 20) -------------


def versioned_record(
    name: str, key: str, version: str, sequencer: str, bucket: str, **obj: Any
) -> str:
    """The record AWS sends for a versioned bucket's event (moto sends none for them)."""
    body = {"key": key, "versionId": version, "sequencer": sequencer, **obj}
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-24T12:00:00.000Z",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": body},
    }
    return json.dumps({"Records": [record]})


def versioned_bucket(n: Notified) -> str:
    name = f"v-{uuid.uuid4().hex[:12]}"
    n.s3.create_bucket(Bucket=name)
    n.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_removing_an_old_version_of_a_listed_key_leaves_it_live(db_url, notified, capsys):
    """Repro r3/watch_old_version_delete_marks_live_key_deleted.py. Seen to fail on the old
    rule (a listed key's unknown version taken as the removed one: marked deleted)."""
    n = notified
    bucket = versioned_bucket(n)
    v1 = n.s3.put_object(Bucket=bucket, Key="img/a.jpg", Body=b"version one")["VersionId"]
    v2 = n.s3.put_object(Bucket=bucket, Key="img/a.jpg", Body=b"version two!")["VersionId"]
    sync = run_cli(capsys, "--db", db_url, "sync", f"s3://{bucket}/img/", "--endpoint-url",
                   n.endpoint)  # fmt: skip
    assert sync.code == 0, sync.err
    n.s3.delete_object(Bucket=bucket, Key="img/a.jpg", VersionId=v1)
    n.drain()
    n.send(versioned_record("ObjectRemoved:Delete", "img/a.jpg", v1, "0065A1B2C3D4E5F601", bucket))
    assert watch(capsys, db_url, n, f"s3://{bucket}/img/").code == 0
    assert key_states(db_url, bucket, "img/")["img/a.jpg"] == (12, _etag(n, bucket, "img/a.jpg"),
                                                               False)  # fmt: skip
    with Store.open(db_url) as store:
        ref = store.dataset(store.source(bucket, "img/"), "ds", create=True)
        leases = store.claim(ref, "me@host", 10, timedelta(minutes=5))
        assert [lease.key for lease in leases] == ["img/a.jpg"]  # servable
    # The current version's removal makes no key deleted either: v1 went, v2 goes, none is
    # left; S3 (asked) says so, and then the key is deleted.
    n.s3.delete_object(Bucket=bucket, Key="img/a.jpg", VersionId=v2)
    n.send(versioned_record("ObjectRemoved:Delete", "img/a.jpg", v2, "0065A1B2C3D4E5F602", bucket))
    assert watch(capsys, db_url, n, f"s3://{bucket}/img/").code == 0
    assert key_states(db_url, bucket, "img/")["img/a.jpg"][2] is True


def _etag(n: Notified, bucket: str, key: str) -> str:
    return str(n.s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def test_removing_a_delete_marker_brings_the_key_back(db_url, notified, capsys):
    """Repro r3/watch_undelete_leaves_key_deleted.py: put, delete marker, the marker's
    removal (undelete), by events alone. Seen to fail on the old rule (the marker's
    removal taken as another version's: the key left deleted)."""
    n = notified
    bucket = versioned_bucket(n)
    put = n.s3.put_object(Bucket=bucket, Key="img/a.jpg", Body=b"image bytes")
    marker = n.s3.delete_object(Bucket=bucket, Key="img/a.jpg")["VersionId"]
    n.s3.delete_object(Bucket=bucket, Key="img/a.jpg", VersionId=marker)
    etag = put["ETag"].strip('"')
    for body in (
        versioned_record("ObjectCreated:Put", "img/a.jpg", put["VersionId"], "0065A1B2C3D4E5F601",
                         bucket, size=11, eTag=etag),
        versioned_record("ObjectRemoved:DeleteMarkerCreated", "img/a.jpg", marker,
                         "0065A1B2C3D4E5F602", bucket),
        versioned_record("ObjectRemoved:Delete", "img/a.jpg", marker, "0065A1B2C3D4E5F603", bucket),
    ):  # fmt: skip
        n.send(body)
    assert watch(capsys, db_url, n, f"s3://{bucket}/img/").code == 0
    assert key_states(db_url, bucket, "img/")["img/a.jpg"] == (11, etag, False)


def test_without_an_answer_from_s3_nothing_is_marked_and_the_message_stays(
    db_url, notified, capsys, monkeypatch
):
    """S3 refusing the HEAD: exit 3 in one line, the key left live, the message kept."""
    n = notified
    bucket = versioned_bucket(n)
    v1 = n.s3.put_object(Bucket=bucket, Key="a.jpg", Body=b"one")["VersionId"]
    n.s3.put_object(Bucket=bucket, Key="a.jpg", Body=b"two")
    sync = run_cli(capsys, "--db", db_url, "sync", f"s3://{bucket}", "--endpoint-url",
                   n.endpoint)  # fmt: skip
    assert sync.code == 0, sync.err
    n.drain()
    n.send(versioned_record("ObjectRemoved:Delete", "a.jpg", v1, "0065A1B2C3D4E5F601", bucket))
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = watch(capsys, db_url, n, f"s3://{bucket}", "--s3-endpoint-url", dead)
    assert result.code == 3 and len(result.err_lines) == 1, result.err
    assert "Traceback" not in result.err
    assert key_states(db_url, bucket)["a.jpg"][2] is False
    time.sleep(1.2)
    assert n.messages_left() == 1


# -- messages the database cannot store; --once and short visibility timeouts -------------


def created(bucket: str, key: str, size: int = 5, time_: str = "2026-11-24T12:00:00.000Z") -> str:
    obj = {"key": key, "size": size, "eTag": "0" * 32}
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": time_,
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }
    return json.dumps({"Records": [record]})


def test_a_message_the_database_cannot_store_is_left_for_the_dlq_and_the_rest_applied(
    db_url, notified, capsys
):
    """Repro r3/watch_unstorable_message_stops_the_watcher.py: a size past BIGINT, a lone
    surrogate in a key, a year-1 time east of UTC. Seen to fail without the checks at
    parse (exit 1 or 4 at the first, the messages after it not applied)."""
    n = notified
    n.drain()
    n.send(created(n.bucket, "first.jpg"))
    n.send(created(n.bucket, "size.jpg", size=2**70))
    n.send(created(n.bucket, "surrogate-\ud800.jpg"))  # JSON's escape: "\\ud800"
    n.send(created(n.bucket, "year.jpg", time_="0001-01-01T00:30:00+01:00"))
    for i in range(3):
        n.send(created(n.bucket, f"after-{i}.jpg"))
    result = watch(capsys, db_url, n)
    assert result.code == 0, result.err
    warnings = [line for line in result.err_lines if "not an S3 event notification" in line]
    assert len(warnings) == 3 and all("dead-letter" in w for w in warnings)
    assert sorted(key_states(db_url, n.bucket)) == ["after-0.jpg", "after-1.jpg", "after-2.jpg",
                                                     "first.jpg"]  # fmt: skip
    time.sleep(1.2)
    assert n.messages_left() == 3


def test_once_ends_on_a_malformed_message_whose_visibility_timeout_is_zero(
    db_url, notified, capsys
):
    """Repro r3/watch_once_never_ends_on_a_malformed_message.py. Seen to fail (to run
    until the timeout) without the run's memory of messages seen."""
    n = notified
    queue = n.sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}",
                               Attributes={"VisibilityTimeout": "0"})["QueueUrl"]  # fmt: skip
    n.sqs.send_message(QueueUrl=queue, MessageBody="not an event")
    n.sqs.send_message(QueueUrl=queue, MessageBody=created(n.bucket, "a.jpg"))
    process = subprocess.run(
        [sys.executable, "-m", "tracker", "--db", db_url, "watch", f"s3://{n.bucket}",
         "--queue-url", queue, "--endpoint-url", n.endpoint, "--once"],
        env={**_clean_env(), **ENV}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert process.stderr.count("not an S3 event notification") == 1
    assert "a.jpg" in key_states(db_url, n.bucket)


def test_eventbridge_keys_are_recorded_raw_and_s3_notification_keys_decoded(
    db_url, notified, capsys
):
    """The same odd keys (`+`, `%`, spaces, non-ASCII) by both paths: EventBridge's raw,
    S3's URL-encoded (moto's own notifications). Seen to fail with EventBridge keys
    URL-decoded (`a+b%41.png` recorded as `a bA.png`)."""
    n = notified
    odd = ["eb/a+b%41.png", "eb/Screenshot from 2026-03-11 18-23-57.png", "eb/100% é.jpg"]
    for key in odd:
        n.send(json.dumps({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "time": "2026-11-24T12:00:00Z",
            "detail": {"bucket": {"name": n.bucket},
                       "object": {"key": key, "size": 4, "sequencer": "0065A1B2C3D4E5F601"}},
        }))  # fmt: skip
        n.put(key.replace("eb/", "s3/"))
    assert watch(capsys, db_url, n).code == 0
    stored = key_states(db_url, n.bucket)
    assert sorted(stored) == sorted([*odd, *(k.replace("eb/", "s3/") for k in odd)])
