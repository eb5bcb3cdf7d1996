"""`tracker status`'s numbers, gathered once: a plain dict, shown by the CLI as JSON, a rich
table or plain text (`tracker.cli.tables`), and read by the demo.

The JSON shape is part of the CLI's contract (documented in docs/cli.md, checked by
`tests/integration/test_cli_status.py`); new fields may be added, existing ones keep their meaning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tracker.models import utcnow
from tracker.records import AnnotatorStats, DatasetRef, SourceRef
from tracker.states import Answer, ItemState
from tracker.store import Store

#: Version of `tracker status --json`'s shape.
STATUS_FORMAT = 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dataset_status(store: Store, dataset: DatasetRef, exhausted: bool) -> dict[str, Any]:
    """One dataset's numbers: a handful of indexed count queries."""
    counts = store.counts(dataset)
    changes = store.bucket_changes(dataset)
    states = {state.value: counts.state(state) for state in ItemState}
    answers = {answer.value: counts.by_answer.get(answer, 0) for answer in Answer}
    remaining = states["pending"] + states["served"]
    rate = counts.annotated_last_hour
    eta = remaining / rate * 3600 if rate and remaining else (0.0 if not remaining else None)
    return {
        "name": dataset.name,
        "states": states,
        "answers": answers,
        "expired_leases": counts.expired_leases,
        "annotated_last_hour": rate,
        "remaining": remaining,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        # Until the listing is exhausted, more keys may come: the estimate is a lower bound.
        "eta_is_lower_bound": not exhausted,
        # Keys of the source gone from the bucket that this dataset annotated (kept), and
        # annotated keys whose object was overwritten since the answer.
        "deleted_annotated": changes.deleted_annotated,
        "changed": changes.changed,
        "annotators": [annotator_status(a) for a in store.annotators(dataset)],
    }


def annotator_status(stats: AnnotatorStats) -> dict[str, Any]:
    """One Prodigy session's numbers (`annotators` in `tracker status --json`)."""
    return {
        "session": stats.session_id,
        "answers": {answer.value: stats.by_answer.get(answer, 0) for answer in Answer},
        "answered": stats.answers,
        "answered_last_hour": stats.last_hour,
        "median_seconds_to_answer": (
            round(stats.median_seconds, 1) if stats.median_seconds is not None else None
        ),
        "last_answer_at": _iso(stats.last_answer_at),
        "owner": stats.owner,
        "leased_to_owner": stats.leased,
        # The same two under their old names, kept for `format` 1's readers.
        "process": stats.owner,
        "leased_to_process": stats.leased,
    }


#: The per-dataset fields that a source's JSON also carries at its top level.
_DATASET_FIELDS = (
    "states",
    "answers",
    "expired_leases",
    "annotated_last_hour",
    "remaining",
    "eta_seconds",
    "eta_is_lower_bound",
    "annotators",
)


def source_status(store: Store, source: SourceRef, dataset: str | None = None) -> dict[str, Any]:
    """One source's numbers, one entry per dataset in `datasets` (only `dataset` when
    named). The top-level state fields describe the source's single dataset, as before
    datasets existed; with several they are null (read `datasets`); with none yet, every
    key is pending."""
    cursor = store.cursor(source)
    chosen = [d for d in store.datasets(source) if dataset is None or d.name == dataset]
    per = [dataset_status(store, d, cursor.exhausted) for d in chosen]
    total = store.object_count(source)
    deleted = store.deleted_count(source)
    status: dict[str, Any] = {
        "source": source.uri,
        "bucket": source.bucket,
        "prefix": source.prefix,
        "total": total,
        # Keys gone from the bucket (in `total`, never served), and annotated keys of any
        # dataset whose object changed since the answer.
        "deleted": deleted,
        "changed": sum(d["changed"] for d in per),
        # When `tracker watch` last applied an event (None: never).
        "last_event_at": _iso(cursor.last_event_at),
        "listing": {
            "pages_listed": cursor.pages_listed,
            "keys_listed": cursor.keys_listed,
            "token_saved": cursor.continuation_token is not None,
            "exhausted": cursor.exhausted,
            "exhausted_at": _iso(cursor.exhausted_at),
            "last_key": cursor.last_key,
            "updated_at": _iso(cursor.updated_at),
        },
        "datasets": per,
    }
    if len(per) == 1:
        status.update({name: per[0][name] for name in _DATASET_FIELDS})
    elif not per:
        untouched = {"name": None, **untouched_status(total - deleted, cursor.exhausted)}
        status.update({name: untouched[name] for name in _DATASET_FIELDS})
    else:
        status.update(dict.fromkeys(_DATASET_FIELDS))
    # Only for a source read from an S3 Inventory (`sync --inventory`): its latest report.
    inventory = store.inventory(source)
    if inventory is not None:
        status["listing"]["inventory"] = {
            "manifest": inventory.manifest,
            "snapshot_at": _iso(inventory.snapshot_at),
            "files": inventory.files,
            "files_read": inventory.file_index,
            "keys_recorded": inventory.keys_recorded,
            "finished": inventory.finished,
            "finished_at": _iso(inventory.finished_at),
        }
    # Only for a source listed in parallel (`sync --parallel N`): its shards done / total.
    shards = _shards(store, source)
    if shards is not None:
        status["listing"]["shards"] = shards
    return status


def untouched_status(total: int, exhausted: bool) -> dict[str, Any]:
    """What a source no dataset has started looks like: every key pending."""
    return {
        "states": {state.value: total if state is ItemState.PENDING else 0 for state in ItemState},
        "answers": {answer.value: 0 for answer in Answer},
        "expired_leases": 0,
        "annotated_last_hour": 0,
        "remaining": total,
        "eta_seconds": None if total else 0.0,
        "eta_is_lower_bound": not exhausted,
        "annotators": [],
    }


def status_report(
    store: Store, sources: list[SourceRef], dataset: str | None = None
) -> dict[str, Any]:
    return {
        "format": STATUS_FORMAT,
        "database": store.url,
        "generated_at": utcnow().isoformat(),
        "sources": [source_status(store, source, dataset) for source in sources],
    }


def _shards(store: Store, source: SourceRef) -> dict[str, Any] | None:
    shards = store.shards(source)
    if not shards:
        return None
    return {
        "done": sum(1 for s in shards if s.exhausted),
        "total": len(shards),
        "pages_listed": sum(s.pages_listed for s in shards),
        "keys_listed": sum(s.keys_listed for s in shards),
        "finished": shards[0].closed_at is not None,
    }
