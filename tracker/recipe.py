"""The `stream_from_s3` recipe, minus the one Prodigy import.

`recipes/s3_loader.py` registers `recipe_function()` with `prodigy.recipe` under both
`RECIPE_NAMES`, with `RECIPE_ARGS` (plac-style annotations). Everything it does lives here
and in `tracker.stream`, and is tested without Prodigy.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tracker.display import escape_key_logs
from tracker.errors import TrackerError, UsageError
from tracker.filters import KeyFilter, parse_extensions
from tracker.states import ItemState
from tracker.stream import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ATTEMPTS, S3Stream, open_stream
from tracker.tasks import VIEW_IDS, parse_labels

log = logging.getLogger("tracker.recipe")

# The stream's and the lister's log lines name keys, which whoever uploads an object
# chooses: they are made terminal-safe wherever Prodigy shows them.
escape_key_logs()

#: The seed's README ran `stream_from_s3`; the seed's code registered `stream-from-s3`.
RECIPE_NAMES = ("stream_from_s3", "stream-from-s3")

#: Prodigy's plac-style argument annotations: (help, kind, shortcut, type).
RECIPE_ARGS: dict[str, tuple[str, str, str | None, type]] = {
    "dataset": ("Prodigy dataset to save annotations to", "positional", None, str),
    "bucket": ("S3 bucket to load images from", "positional", None, str),
    "prefix": ("Only keys that start with this prefix (optional)", "positional", None, str),
    "view_id": (
        f"Annotation interface: {', '.join(VIEW_IDS)} "
        "(default: image_manual with --label, image without)",
        "option",
        None,
        str,
    ),
    "label": ("Label(s), comma-separated", "option", "l", str),
    "state_db": (
        "State DB: a SQLite or PostgreSQL URL (default: $TRACKER_DB_URL, else the tracker's "
        "SQLite file)",
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
    "owner": (
        "Lease owner, unique per live process (default: DATASET@HOSTNAME:PRODIGY_PORT)",
        "option",
        None,
        str,
    ),
    "max_attempts": (
        "Set a key aside as failed after this many unanswered serves (default 3)",
        "option",
        None,
        int,
    ),
    "batch_size": ("Tasks per batch (default 10)", "option", None, int),
    "ext": (
        "Take objects with these extensions, comma-separated (default: image extensions "
        "incl. heic/avif, and keys without an extension, judged by their bytes)",
        "option",
        None,
        str,
    ),
    "match": (
        "Take objects whose whole key matches this glob (* also matches /); "
        "without --ext only the glob decides",
        "option",
        None,
        str,
    ),
    "all_objects": (
        "Take every object under the prefix (never folder/ placeholders or empty objects)",
        "flag",
        None,
        bool,
    ),
    "order": (
        "Serving order: listing, random, priority (see `tracker priority`) or by-prefix; "
        "the dataset's for every process (default: keep the dataset's, listing when new)",
        "option",
        None,
        str,
    ),
    "seed": ("Seed of random and by-prefix order (default 0)", "option", None, int),
}

#: One line on stderr (the terminal Prodigy runs in), as for the startup line.
Say = Callable[[str], None]


def say_on_stderr(line: str) -> None:
    print(" ".join(line.split()), file=sys.stderr)


def choose_view(view_id: str | None, labels: Sequence[str]) -> tuple[str, str | None]:
    """The view to use and a note for the user when it was chosen for them.

    The seed's command line has no `--label`: rather than refuse it, show images in the
    `image` view (accept/reject, needs no labels). An explicit `--view-id image_manual`
    without labels is still an error (checked by the caller).
    """
    if view_id is not None:
        return view_id, None
    if labels:
        return "image_manual", None
    return "image", (
        "no --label given: using the 'image' view (accept / reject / ignore, no boxes); "
        "give --label A,B for image_manual"
    )


def recipe_filter(
    ext: str | Sequence[str] | None = None,
    match: str | Sequence[str] | None = None,
    all_objects: bool = False,
) -> KeyFilter:
    """The recipe's `--ext`, `--match` and `--all-objects`, with `tracker sync`'s rules."""
    ext_values = (ext,) if isinstance(ext, str) else tuple(ext or ())
    globs = (match,) if isinstance(match, str) else tuple(match or ())
    if all_objects and (ext_values or globs):
        raise UsageError("--all-objects takes every object: drop --ext / --match, or it")
    return KeyFilter.build(parse_extensions(ext_values), globs, all_objects=all_objects)


def check_feed_overlap(ctrl: Any) -> None:
    """Refuse `feed_overlap: true` (one lease per key means one annotator per key).

    The recipe's own config sets it false, but Prodigy's prodigy.json / overrides may win
    over a recipe's config; Prodigy's Controller is read as public recipes do, and a
    missing `config` (older versions, other harnesses) is no reason to refuse.
    """
    config = getattr(ctrl, "config", None)
    if isinstance(config, Mapping):
        overlap = config.get("feed_overlap")
    else:
        overlap = getattr(config, "feed_overlap", None)
    if overlap:
        raise UsageError(
            "feed_overlap is true in Prodigy's config, but this recipe leases each key to "
            'one annotator; set "feed_overlap": false (prodigy.json or '
            "PRODIGY_CONFIG_OVERRIDES)"
        )


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
    max_attempts: int | None = None,
    batch_size: int | None = None,
    ext: str | Sequence[str] | None = None,
    match: str | Sequence[str] | None = None,
    all_objects: bool = False,
    order: str | None = None,
    seed: int | None = None,
    say: Say = log.info,
    **stream_options: Any,
) -> dict[str, Any]:
    """The recipe's components: dataset, view_id, stream, update, before_db, on_load,
    on_exit, config.

    Raises `TrackerError` (one line) for bad options, S3 or state-DB trouble. `say` gets
    one line when the view was chosen for the user. `stream_options` go to `S3Stream`
    (e.g. `poll_interval`, `client`, `store`).
    """
    if not dataset:
        raise UsageError("the dataset name must not be empty")
    labels = parse_labels(label)
    view_id, note = choose_view(view_id, labels)
    if view_id not in VIEW_IDS:
        raise UsageError(f"unknown --view-id {view_id!r}; use one of {', '.join(VIEW_IDS)}")
    if view_id == "image_manual" and not labels:
        raise UsageError("image_manual needs at least one --label (e.g. --label CAT,DOG)")
    if view_id == "classification" and len(labels) > 1:
        raise UsageError("classification takes one --label; use image_manual for several")
    key_filter = recipe_filter(ext, match, all_objects)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    stream = open_stream(
        bucket,
        prefix or "",
        dataset=dataset,
        state_db=state_db,
        owner=owner,
        port=prodigy_port(),
        lease=lease if lease is not None else "30m",
        max_attempts=max_attempts or DEFAULT_MAX_ATTEMPTS,
        presign=presign,
        endpoint_url=endpoint_url,
        view_id=view_id,
        label=labels[0] if view_id == "classification" and labels else None,
        batch_size=batch_size,
        key_filter=key_filter,
        order=order,
        seed=seed,
        **stream_options,
    )
    if note:
        say(note)
    # feed_overlap true would hand one key to every session; a lease is for one annotator.
    config: dict[str, Any] = {"batch_size": batch_size, "feed_overlap": False}
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
        "on_load": check_feed_overlap,
        "on_exit": stream.on_exit,
        "config": config,
    }


def one_line_errors(tasks: Iterator[dict[str, Any]], say: Say) -> Iterator[dict[str, Any]]:
    """End the stream with one line when it stops for S3 or state-DB trouble (access
    denied, S3 unreachable): the stream has already put its batch back to pending."""
    try:
        yield from tasks
    except TrackerError as error:
        say(f"error: {error}; the stream stopped (restart once it is fixed)")


def refuse_in_one_line(check: Callable[[Any], None], stream: S3Stream) -> Callable[[Any], None]:
    """`on_load` for Prodigy: a refused config is one line on stderr and the exit code."""

    def on_load(ctrl: Any) -> None:
        try:
            check(ctrl)
        except TrackerError as error:
            stream.close()
            say_on_stderr(f"error: {error}")
            raise SystemExit(error.exit_code) from None

    return on_load


def stream_from_s3(
    dataset: str,
    bucket: str,
    prefix: str | None = None,
    view_id: str | None = None,
    label: str | None = None,
    state_db: str | None = None,
    lease: str = "30m",
    presign: str | None = None,
    endpoint_url: str | None = None,
    owner: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    ext: str | None = None,
    match: str | None = None,
    all_objects: bool = False,
    order: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Stream images from S3 for annotation, resumable, with leases in the state DB.

    The function Prodigy calls. A bad option, an unknown bucket or an unusable state DB
    ends the process with one line on stderr and the tracker's exit code, as Prodigy's own
    recipes do; call `build_components` to get the exception instead. Later on, S3 or
    state-DB trouble in the stream ends it with one line, and `feed_overlap: true` in
    Prodigy's config is refused at `on_load` with one line.
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
            max_attempts=max_attempts,
            batch_size=batch_size,
            ext=ext,
            match=match,
            all_objects=all_objects,
            order=order,
            seed=seed,
            say=lambda line: say_on_stderr(f"stream_from_s3: {line}"),
        )
    except TrackerError as error:
        say_on_stderr(f"error: {error}")
        raise SystemExit(error.exit_code) from None
    stream: S3Stream = parts["update"].__self__
    parts["stream"] = one_line_errors(parts["stream"], say_on_stderr)
    parts["on_load"] = refuse_in_one_line(parts["on_load"], stream)
    print(startup_line(stream), file=sys.stderr)
    return parts


def prodigy_port() -> str:
    """The port this Prodigy server listens on, for a lease owner that is unique on the
    host and stable across restarts: `PRODIGY_PORT`, else the port in Prodigy's own config
    when it can be read, else Prodigy's default, 8080. Wrong either way is safe: a second
    live process under the same owner is refused with one line naming `--owner`."""
    port = os.environ.get("PRODIGY_PORT", "").strip()
    if port:
        return port
    try:  # Prodigy's config helper; its name is not part of a documented API
        from prodigy.util import get_config

        found = get_config().get("port")
    except Exception:  # no Prodigy, another version, or a config it cannot read
        found = None
    return str(found) if found else "8080"


def startup_line(stream: S3Stream) -> str:
    """One line for the terminal: where the stream reads and writes, and what is left."""
    counts = stream.store.counts(stream.dataset)
    cursor = stream.store.cursor(stream.source)
    listing = "listing exhausted" if cursor.exhausted else f"{cursor.pages_listed} pages listed"
    return (
        f"stream_from_s3: {stream.dataset.label} (state DB {stream.store.url}, owner "
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
