"""The `stream_from_s3` recipe, minus the one Prodigy import.

`recipes/s3_loader.py` registers `recipe_function()` with `prodigy.recipe` under both
`RECIPE_NAMES`, with `RECIPE_ARGS` (plac-style annotations). Everything it does lives here
and in `tracker.stream`, and is tested without Prodigy.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

from tracker.errors import TrackerError, UsageError
from tracker.models import ItemState
from tracker.stream import DEFAULT_BATCH_SIZE, S3Stream, open_stream
from tracker.tasks import VIEW_IDS, parse_labels

#: The seed's README ran `stream_from_s3`; the seed's code registered `stream-from-s3`.
RECIPE_NAMES = ("stream_from_s3", "stream-from-s3")

#: Prodigy's plac-style argument annotations: (help, kind, shortcut, type).
RECIPE_ARGS: dict[str, tuple[str, str, str | None, type]] = {
    "dataset": ("Prodigy dataset to save annotations to", "positional", None, str),
    "bucket": ("S3 bucket to load images from", "positional", None, str),
    "prefix": ("Only keys that start with this prefix (optional)", "positional", None, str),
    "view_id": (
        f"Annotation interface: {', '.join(VIEW_IDS)} (default image_manual)",
        "option",
        None,
        str,
    ),
    "label": ("Label(s), comma-separated", "option", "l", str),
    "state_db": (
        "State DB as a SQLAlchemy URL (default: $TRACKER_DB_URL, else the tracker's SQLite file)",
        "option",
        None,
        str,
    ),
    "lease": ("How long a served image is reserved: 90s, 30m, 2h or seconds", "option", None, str),
    "presign": (
        "Serve presigned URLs valid this long (e.g. 1h) instead of inline base64 images",
        "option",
        None,
        str,
    ),
    "endpoint_url": ("S3 endpoint URL (S3-compatible servers)", "option", None, str),
    "owner": ("Lease owner (default: DATASET@HOSTNAME)", "option", None, str),
    "resend_after": (
        "Re-send an unanswered image after this long once nothing else is left (default 5m)",
        "option",
        None,
        str,
    ),
    "batch_size": ("Tasks per batch (default 10)", "option", None, int),
}


def build_components(
    dataset: str,
    bucket: str,
    prefix: str | None = None,
    *,
    view_id: str | None = None,
    label: str | Sequence[str] | None = None,
    state_db: str | None = None,
    lease: str | float | None = None,
    presign: str | float | None = None,
    endpoint_url: str | None = None,
    owner: str | None = None,
    resend_after: str | float | None = None,
    batch_size: int | None = None,
    **stream_options: Any,
) -> dict[str, Any]:
    """The recipe's components: dataset, view_id, stream, update, before_db, on_exit, config.

    Raises `TrackerError` (one line) for bad options, S3 or state-DB trouble.
    `stream_options` go to `S3Stream` (e.g. `poll_interval`, `client`, `store`).
    """
    if not dataset:
        raise UsageError("the dataset name must not be empty")
    view_id = view_id or "image_manual"
    if view_id not in VIEW_IDS:
        raise UsageError(f"unknown --view-id {view_id!r}; use one of {', '.join(VIEW_IDS)}")
    labels = parse_labels(label)
    if view_id == "image_manual" and not labels:
        raise UsageError("image_manual needs at least one --label (e.g. --label CAT,DOG)")
    if view_id == "classification" and len(labels) > 1:
        raise UsageError("classification takes one --label; use image_manual for several")
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    stream = open_stream(
        bucket,
        prefix or "",
        dataset=dataset,
        state_db=state_db,
        owner=owner,
        lease=lease if lease is not None else "30m",
        resend_after=resend_after,
        presign=presign,
        endpoint_url=endpoint_url,
        view_id=view_id,
        label=labels[0] if view_id == "classification" and labels else None,
        batch_size=batch_size,
        **stream_options,
    )
    config: dict[str, Any] = {"batch_size": batch_size}
    if view_id == "image_manual":
        config["labels"] = labels
    return components(dataset, view_id, stream, config)


def components(
    dataset: str, view_id: str, stream: S3Stream, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "view_id": view_id,
        "stream": iter(stream),
        "update": stream.update,
        "before_db": stream.before_db,
        "on_exit": stream.on_exit,
        "config": config,
    }


def stream_from_s3(
    dataset: str,
    bucket: str,
    prefix: str | None = None,
    view_id: str = "image_manual",
    label: str | None = None,
    state_db: str | None = None,
    lease: str = "30m",
    presign: str | None = None,
    endpoint_url: str | None = None,
    owner: str | None = None,
    resend_after: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Stream images from S3 for annotation, resumable, with leases in the state DB.

    The function Prodigy calls. A bad option, an unknown bucket or an unusable state DB
    ends the process with one line on stderr and the tracker's exit code, as Prodigy's own
    recipes do; call `build_components` to get the exception instead.
    """
    try:
        parts = build_components(
            dataset,
            bucket,
            prefix,
            view_id=view_id,
            label=label,
            state_db=state_db,
            lease=lease,
            presign=presign,
            endpoint_url=endpoint_url,
            owner=owner,
            resend_after=resend_after,
            batch_size=batch_size,
        )
    except TrackerError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    stream: S3Stream = parts["update"].__self__
    print(startup_line(stream), file=sys.stderr)
    return parts


def startup_line(stream: S3Stream) -> str:
    """One line for the terminal: where the stream reads and writes, and what is left."""
    counts = stream.store.counts(stream.source)
    cursor = stream.store.cursor(stream.source)
    listing = "listing exhausted" if cursor.exhausted else f"{cursor.pages_listed} pages listed"
    return (
        f"stream_from_s3: {stream.source.uri} (state DB {stream.store.url}, owner "
        f"{stream.owner}): {counts.total} keys known, {counts.state(ItemState.ANNOTATED)} "
        f"annotated, {counts.state(ItemState.FAILED)} failed, {listing}"
    )


def recipe_function() -> types.FunctionType:
    """A fresh copy of `stream_from_s3` for one `prodigy.recipe` registration.

    plac-style registration rewrites the function's `__annotations__`; a copy per name
    keeps the two registrations (and this module's function) independent.
    """
    original = stream_from_s3
    copy = types.FunctionType(
        original.__code__,
        original.__globals__,
        original.__name__,
        original.__defaults__,
        original.__closure__,
    )
    copy.__kwdefaults__ = original.__kwdefaults__
    copy.__doc__ = original.__doc__
    copy.__module__ = original.__module__
    copy.__qualname__ = original.__qualname__
    copy.__annotations__ = {}
    return copy
