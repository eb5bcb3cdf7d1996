"""Plain values passed between the store, the lister, the stream and the CLI. No I/O here."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from tracker.states import Answer, ItemState


@dataclass(frozen=True)
class SourceRef:
    """A source as stored: its id, bucket and prefix."""

    id: int
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class DatasetRef:
    """A Prodigy dataset annotating a source, as stored."""

    id: int
    name: str
    source: SourceRef

    @property
    def label(self) -> str:
        """How commands name it: `DATASET on s3://bucket/prefix`."""
        return f"{self.name} on {self.source.uri}"


@dataclass(frozen=True)
class Cursor:
    """Where the listing of a source stands."""

    continuation_token: str | None
    last_key: str | None
    pages_listed: int
    keys_listed: int
    exhausted_at: datetime | None
    updated_at: datetime | None
    #: Grows on every `reset --listing`; a lister records its pages under the one it read.
    generation: int = 0
    #: The last complete-pass id handed out (`Store.begin_pass`).
    pass_seq: int = 0
    #: When `tracker watch` last applied an event to the source.
    last_event_at: datetime | None = None

    @property
    def exhausted(self) -> bool:
        return self.exhausted_at is not None


@dataclass(frozen=True)
class ListedObject:
    """One object from a ListObjectsV2 page."""

    key: str
    size: int | None = None
    etag: str | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True)
class InventoryProgress:
    """How far an S3 Inventory report has been read into a source (`sync --inventory`)."""

    manifest: str
    snapshot_at: datetime | None
    files: int
    #: The data file being read (its index in the manifest) and its rows recorded so far.
    file_index: int
    row_offset: int
    keys_recorded: int
    max_key: str | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class Lease:
    """A key handed to one owner until `expires_at`; `token` fences what the owner may do
    with it (hand it over, release it) once someone else could hold it."""

    key: str
    size: int | None
    etag: str | None
    token: str
    expires_at: datetime
    #: The item row of this (dataset, key).
    item_id: int = 0
    #: Leases ever granted on this item, this one included: each serve is a new task.
    serves: int = 1


@dataclass(frozen=True)
class AnswerRecord:
    """One answer from Prodigy (or from `prodigy db-out`), reduced to what we keep."""

    key: str
    answer: Answer
    session_id: str | None = None
    #: When the annotator answered (Prodigy's `_timestamp`), if known.
    answered_at: datetime | None = None


@dataclass(frozen=True)
class ItemRow:
    """One item as shown by `tracker keys` and the dry runs."""

    id: int
    key: str
    state: ItemState
    answer: Answer | None
    session_id: str | None
    lease_owner: str | None
    served_at: datetime | None
    failure_reason: str | None
    attempts: int = 0
    #: Its priority from `tracker priority` (None: none set).
    priority: float | None = None


@dataclass(frozen=True)
class AnnotatorStats:
    """One Prodigy session's work on a dataset (`tracker status`'s annotator table)."""

    session_id: str
    by_answer: dict[Answer, int]
    last_hour: int
    #: Median seconds from hand-over to answer, over its latest answers (None: none timed).
    median_seconds: float | None
    last_answer_at: datetime | None
    #: The lease owner its latest answer came through, and the keys leased to it now.
    owner: str | None
    leased: int

    @property
    def answers(self) -> int:
        return sum(self.by_answer.values())


@dataclass(frozen=True)
class ItemFilter:
    """Which items an operator command acts on; every field given must match."""

    states: frozenset[ItemState] | None = None
    answers: frozenset[Answer] | None = None
    owner: str | None = None
    session: str | None = None
    keys: frozenset[str] | None = None
    #: A shell glob over the whole key; `*` also matches `/`.
    match: str | None = None
    served_before: datetime | None = None
    #: Only keys whose object is gone from the bucket.
    deleted: bool = False
    #: Only annotated keys whose object was overwritten since the answer.
    changed: bool = False

    def matches_key(self, key: str) -> bool:
        return self.match is None or fnmatch.fnmatchcase(key, self.match)


@dataclass
class Counts:
    """A source's numbers for `tracker status`."""

    by_state: dict[ItemState, int] = field(default_factory=dict)
    by_answer: dict[Answer, int] = field(default_factory=dict)
    expired_leases: int = 0
    annotated_last_hour: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def state(self, state: ItemState) -> int:
        return self.by_state.get(state, 0)


@dataclass(frozen=True)
class BucketChanges:
    """What changed in the bucket under a dataset: `status`'s `deleted` and `changed`."""

    #: Keys of the source marked deleted.
    deleted: int = 0
    #: Of them, keys this dataset annotated (their answers are kept).
    deleted_annotated: int = 0
    #: Annotated keys whose object has another ETag than the one answered.
    changed: int = 0


#: One distinct answer for a key: what was answered, and by which Prodigy session.
AnswerPair = tuple[Answer, str | None]


@dataclass(frozen=True)
class ExistingAnswer:
    """What the store already holds for a key that an answer names."""

    id: int
    state: ItemState
    answer: Answer | None
    session_id: str | None
    #: The later answers already counted for it, as (answer, session) pairs.
    later: frozenset[AnswerPair] = frozenset()


def later_answers_text(pairs: Iterable[AnswerPair]) -> str | None:
    """`items.later_answers` for a set of counted later answers: a JSON list, sorted so the
    same set is always the same text; None for none."""
    listed = sorted(([a.value, s] for a, s in pairs), key=lambda p: (p[0], p[1] or ""))
    return json.dumps(listed, separators=(",", ":"), ensure_ascii=False) if listed else None


def later_answers_of(text: str | None) -> frozenset[AnswerPair]:
    """The counted later answers that `later_answers_text` wrote."""
    if not text:
        return frozenset()
    return frozenset((Answer(a), s) for a, s in json.loads(text))


@dataclass
class AnswerPlan:
    """What recording a batch of answers must write, decided without touching the DB."""

    #: item id -> the answer that annotates it first.
    first: dict[int, AnswerRecord] = field(default_factory=dict)
    #: item id -> how many more distinct answers arrived for an annotated key.
    extra: dict[int, int] = field(default_factory=dict)
    #: item id -> every later answer counted for it now (those of `extra`'s items).
    later: dict[int, frozenset[AnswerPair]] = field(default_factory=dict)


def plan_answers(
    answers: Iterable[AnswerRecord], existing: dict[str, ExistingAnswer]
) -> AnswerPlan:
    """Decide how each answer changes the store.

    The first answer for a key sets its state and answer; a later, different answer (another
    session, or the same session changing its mind) only counts, once: every distinct
    (answer, session) pair a key was given is remembered (`ExistingAnswer.later`), so an
    answer seen before, first or later, is a no-op and replaying any batch, or importing
    one file twice, is idempotent. (A session changing its mind back to an answer it gave
    before cannot be told from a replay: it is not counted again.) Every answered key must
    have a row in `existing` (the store inserts never-listed keys first).
    """
    plan = AnswerPlan()
    first: dict[str, AnswerPair] = {}
    later: dict[str, set[AnswerPair]] = {}
    for key, row in existing.items():
        if row.state is ItemState.ANNOTATED and row.answer is not None:
            first[key] = (row.answer, row.session_id)
            later[key] = set(row.later)
    for record in answers:
        pair = (record.answer, record.session_id)
        row = existing[record.key]
        if record.key not in first:
            first[record.key] = pair
            later[record.key] = set()
            plan.first[row.id] = record
        elif pair != first[record.key] and pair not in later[record.key]:
            later[record.key].add(pair)
            plan.extra[row.id] = plan.extra.get(row.id, 0) + 1
            plan.later[row.id] = frozenset(later[record.key])
    return plan


@dataclass(frozen=True)
class OpenWork:
    """What a source still needs: keys pending, keys served, and the earliest lease expiry."""

    pending: int
    served: int
    next_expiry: datetime | None
    #: Served keys held by the owner asked about (0 when none was named).
    served_by_owner: int = 0
    #: Seconds until `next_expiry` by the state DB's clock (None when nothing is out).
    next_expiry_in: float | None = None

    @property
    def done(self) -> bool:
        """Every key is annotated or failed (as far as the listing has got)."""
        return self.pending == 0 and self.served == 0
