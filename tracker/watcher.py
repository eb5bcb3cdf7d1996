"""`tracker watch`: apply a bucket's S3 event notifications, read from an SQS queue.

A thin loop: receive up to 10 messages, and for each one parse it (`tracker.events`, pure),
keep the events of this source's bucket and prefix, apply them in one transaction
(`Store.apply_events`), and only then delete the message. A crash between the commit and
the delete gets the message delivered again, and applying it again changes nothing (events
older than the last one applied to a key are skipped). A message that cannot be read is
logged in one line and left in the queue, whose redrive policy moves it to the dead-letter
queue after `maxReceiveCount` receives.

When an event leaves open what is current (`tracker.events.verdict`: a version removed in
a versioned bucket, an undelete, a removal of a key recorded by a listing), the watcher
asks S3 with one HEAD of the key (`current_object`) before the key is marked deleted.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tracker.errors import S3Error, UsageError
from tracker.events import Current, MalformedMessage, ObjectEvent, parse_message
from tracker.filters import KeyFilter
from tracker.records import SourceRef
from tracker.s3 import RETRIES, describe, error_code, is_throttling
from tracker.store import Store

log = logging.getLogger("tracker.watcher")

#: Long-poll wait of one ReceiveMessage (SQS's maximum); `--once` uses `DRAIN_WAIT_S`.
WAIT_S = 20
#: A short long-poll: it asks every SQS server, so an empty answer means an empty queue.
DRAIN_WAIT_S = 1
#: After botocore's own retries, an unreachable queue is asked again this many times.
RECEIVE_ROUNDS = 3
RECEIVE_BACKOFF_S = 1.0


def setup_commands(bucket: str = "BUCKET", region: str = "REGION", account: str = "ACCOUNT") -> str:
    """The AWS CLI commands that make a queue, let the bucket send to it, and notify it."""
    queue = f"tracker-{bucket}"
    queue_arn = f"arn:aws:sqs:{region}:{account}:{queue}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    notification = {
        "QueueConfigurations": [
            {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        ]
    }
    attributes = json.dumps({"Policy": json.dumps(policy)})
    return "\n".join(
        [
            f"aws sqs create-queue --queue-name {queue} --region {region}",
            f"aws sqs set-queue-attributes --queue-url "
            f"https://sqs.{region}.amazonaws.com/{account}/{queue} "
            f"--attributes {shlex.quote(attributes)}",
            f"aws s3api put-bucket-notification-configuration --bucket {bucket} "
            f"--notification-configuration {shlex.quote(json.dumps(notification))}",
        ]
    )


def make_sqs_client(
    endpoint_url: str | None = None, *, profile: str | None = None, region: str | None = None
) -> Any:
    """An SQS client from boto3's chain, with the S3 client's retries and timeouts."""
    try:
        core = botocore.session.Session(profile=profile)
        retries: dict[str, Any] = dict(RETRIES)
        configured_attempts = core.get_config_variable("max_attempts")
        if configured_attempts:  # AWS_MAX_ATTEMPTS or the profile's max_attempts
            retries["total_max_attempts"] = int(configured_attempts)
        config = Config(
            retries=retries,  # type: ignore[arg-type]  # a plain dict, as botocore takes it
            connect_timeout=10,
            read_timeout=WAIT_S + 10,  # longer than a long poll
        )
        session = boto3.session.Session(botocore_session=core, region_name=region)
        return session.client("sqs", endpoint_url=endpoint_url, config=config)
    except BotoCoreError as error:
        raise S3Error(f"cannot set up SQS: {error}") from None
    except ValueError as error:
        raise UsageError(f"bad SQS endpoint {endpoint_url!r}: {error}") from None


@dataclass
class WatchTally:
    """What a watch did so far."""

    messages: int = 0
    applied: int = 0
    ignored: int = 0
    skipped: int = 0
    malformed: int = 0

    def line(self) -> str:
        return (
            f"{self.messages:,} messages: {self.applied:,} events applied, "
            f"{self.ignored:,} ignored (other buckets or prefixes, filtered out, or older "
            f"than the state), {self.skipped:,} messages without object events, "
            f"{self.malformed:,} malformed (left for the dead-letter queue)"
        )


class Watcher:
    """Applies one queue's event notifications to one source."""

    def __init__(
        self,
        store: Store,
        source: SourceRef,
        sqs: Any,
        queue_url: str,
        key_filter: KeyFilter | None = None,
        *,
        warn: Callable[[str], None] = log.warning,
        backoff_s: float | None = None,
        s3: Any | None = None,
    ) -> None:
        """`s3`: the client that answers what is current when an event cannot tell
        (None: such events are skipped, and the next complete listing pass decides)."""
        self.store = store
        self.s3 = s3
        self.source = source
        self.sqs = sqs
        self.queue_url = queue_url
        self.key_filter = key_filter or KeyFilter()
        self.warn = warn
        self.backoff_s = RECEIVE_BACKOFF_S if backoff_s is None else backoff_s
        self.tally = WatchTally()

    def run(self, *, once: bool = False, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Receive and apply until `should_stop()`; with `once`, until the queue is empty."""
        # With `once`, a message seen before in this run (one left for the dead-letter
        # queue, back as soon as its visibility timeout ends, which may be under the
        # drain poll's 1 s) is not new: a receive with nothing new means drained.
        seen: set[str] | None = set() if once else None
        while not should_stop():
            received = self.poll(DRAIN_WAIT_S if once else WAIT_S, seen)
            if once and not received:
                return

    def poll(self, wait_s: int, seen: set[str] | None = None) -> int:
        """One ReceiveMessage and its messages, each applied then deleted; returns how
        many messages came (with `seen`, how many were not in it; they are added)."""
        messages = self._receive(wait_s)
        if seen is not None:
            messages = [m for m in messages if m.get("MessageId") not in seen]
            seen.update(str(m.get("MessageId")) for m in messages)
        for message in messages:
            self.handle(message)
        return len(messages)

    def handle(self, message: dict[str, Any]) -> None:
        self.tally.messages += 1
        try:
            parsed = parse_message(message.get("Body", ""))
        except MalformedMessage as error:
            self.tally.malformed += 1
            self.warn(
                f"message {message.get('MessageId', '?')}: not an S3 event notification "
                f"({error}); left in the queue for its dead-letter policy"
            )
            return
        if parsed.skipped is not None:
            self.tally.skipped += 1
        else:
            mine = [e for e in parsed.events if self._ours(e)]
            ask = self._current if self.s3 is not None else None
            applied = (
                self.store.apply_events(self.source, mine, self.key_filter.accepts, ask)
                if mine
                else 0
            )
            self.tally.applied += applied
            self.tally.ignored += len(parsed.events) - applied
        self._delete(message)

    def _current(self, key: str) -> Current | None:
        return current_object(self.s3, self.source.bucket, key)

    def _ours(self, event: ObjectEvent) -> bool:
        return event.bucket == self.source.bucket and event.key.startswith(self.source.prefix)

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        response = ask_sqs(
            lambda: self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
            ),
            self.queue_url,
            self.backoff_s,
        )
        return list(response.get("Messages", []))

    def _delete(self, message: dict[str, Any]) -> None:
        """Delete a message whose effect is committed. Should that fail, it comes back
        and applying it again is a no-op: say so and go on."""
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as error:
            self.warn(
                f"message {message.get('MessageId', '?')} applied but not deleted "
                f"({describe_sqs(error)}); its redelivery will change nothing"
            )


def current_object(s3: Any, bucket: str, key: str) -> Current | None:
    """What S3 holds now under `key`: one HEAD (its current version; a delete marker or no
    version at all is a 404: None). Any other answer is an `S3Error` (exit 3): the message
    stays in the queue, and nothing is marked on a guess."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if error_code(error) in {"404", "NoSuchKey"} or status == 404:
            return None
        raise S3Error(describe(error, bucket, key)) from None
    except BotoCoreError as error:
        raise S3Error(describe(error, bucket, key)) from None
    version = head.get("VersionId")
    etag = str(head.get("ETag") or "").strip('"')
    return Current(
        size=head.get("ContentLength"),
        etag=etag or None,
        version_id=version if version and version != "null" else None,
        last_modified=head.get("LastModified"),
    )


def check_queue(sqs: Any, queue_url: str, backoff_s: float | None = None) -> None:
    """Ask the queue for its ARN: an unknown or unreachable queue is one `S3Error` before
    the state DB is touched."""
    ask_sqs(
        lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]),
        queue_url,
        RECEIVE_BACKOFF_S if backoff_s is None else backoff_s,
    )


def ask_sqs(call: Callable[[], Any], queue_url: str, backoff_s: float) -> Any:
    """`call()`, asked again `RECEIVE_ROUNDS` times (waits doubling from `backoff_s`) while
    SQS is unreachable or answers 5xx / throttles, after botocore's own retries; then,
    or at once for a refusal (unknown queue, access denied), one `S3Error` (exit 3)."""
    wait = backoff_s
    for round_ in range(RECEIVE_ROUNDS + 1):
        try:
            return call()
        except ClientError as error:
            if not is_throttling(error) and _status(error) < 500:
                raise S3Error(f"SQS queue {queue_url}: {describe_sqs(error)}") from None
            last: Exception = error
        except BotoCoreError as error:
            last = error
        if round_ < RECEIVE_ROUNDS:
            log.info("SQS unreachable (%s); asking again in %.1f s", last, wait)
            time.sleep(wait)
            wait *= 2
    raise S3Error(
        f"cannot reach SQS queue {queue_url} after {RECEIVE_ROUNDS + 1} tries: {describe_sqs(last)}"
    )


def describe_sqs(error: Exception) -> str:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message") or ""
        return f"SQS error {error_code(error) or _status(error)}: {message}".rstrip(": ")
    return f"{type(error).__name__}: {error}".replace("\n", " ")


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
