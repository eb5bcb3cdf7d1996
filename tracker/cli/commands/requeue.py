"""`tracker requeue`: hand served keys back to the queue."""

from __future__ import annotations

import fnmatch
from datetime import timedelta

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import print_info, stdout
from tracker.cli.params import (
    DURATION,
    count_of,
    dry_run_option,
    key_option,
    match_option,
    print_keys,
    source_argument,
)
from tracker.models import ItemState, utcnow
from tracker.records import ItemFilter, ItemRow

_SEPARATORS = "@:/ "


def session_holds(session: str, owner: str | None) -> bool:
    """Whether a served key's lease `owner` belongs to the Prodigy `session`.

    The store records Prodigy's session only with an answer; a served key is held by the
    recipe process that claimed it (its lease owner), which serves every session of one
    dataset. So a session selects the keys of the process that serves it: the owner is the
    session itself, or starts with it followed by `@ : /` or a space, or the owner's first
    part (its dataset, e.g. `my_dataset` in `my_dataset@host:1234`) is the dataset of the
    session id, which Prodigy writes `<dataset>-<name>`.
    """
    if owner is None:
        return False
    if owner == session or (owner.startswith(session) and owner[len(session)] in _SEPARATORS):
        return True
    cut = min((owner.find(c) for c in _SEPARATORS if c in owner), default=-1)
    dataset = owner[:cut] if cut > 0 else owner
    return bool(dataset) and session.startswith(dataset + "-")


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


@cli.command()
@source_argument
@click.option(
    "--older-than",
    type=DURATION,
    metavar="DURATION",
    help="Only keys served at least this long ago (90s, 30m, 2h, 1d).",
)
@click.option(
    "--owner", metavar="OWNER", help="Only keys leased to this owner (a glob with * ? [...])."
)
@click.option(
    "--session",
    metavar="SESSION",
    help="Only keys held by the recipe process serving this Prodigy session or dataset.",
)
@key_option
@match_option
@dry_run_option
@click.pass_obj
def requeue(
    app: AppContext,
    source: str | None,
    older_than: timedelta | None,
    owner: str | None,
    session: str | None,
    keys: tuple[str, ...],
    match: str | None,
    dry_run: bool,
) -> None:
    """Move served keys back to pending, so that the next claim hands them out again.

    For a batch a browser dropped, or an annotator who left, without waiting for the lease
    to expire. An answer that still arrives for a requeued key is recorded all the same.

    Prodigy's session is stored only with an answer; a served key is held by the recipe
    process (its lease owner, which names the dataset). --session SESSION therefore selects
    the keys of the process serving SESSION: an owner equal to SESSION or starting with
    SESSION and one of `@ : /`, or an owner whose dataset part D makes SESSION read
    `D-<name>` (Prodigy's `<dataset>-<name>`).

    \b
    Example:
      tracker requeue --older-than 2h --dry-run
      tracker requeue s3://my-bucket/images/ --owner 'cats@laptop:*'
      tracker requeue --key images/0001.jpg --key images/0002.jpg
    """
    ref = app.source(source)
    where = ItemFilter(
        states=frozenset({ItemState.SERVED}),
        owner=owner if owner is not None and not _is_glob(owner) else None,
        served_before=utcnow() - older_than if older_than is not None else None,
        keys=frozenset(keys) if keys else None,
        match=match,
    )

    def selected(row: ItemRow) -> bool:
        if (
            owner is not None
            and _is_glob(owner)
            and (row.lease_owner is None or not fnmatch.fnmatchcase(row.lease_owner, owner))
        ):
            return False
        return session is None or session_holds(session, row.lease_owner)

    python_filter = session is not None or (owner is not None and _is_glob(owner))
    store = app.store
    if dry_run:
        count = print_keys(row.key for row in store.iter_items(ref, where) if selected(row))
        print_info(f"would requeue {count_of(count, 'served key')} of {ref.uri} (dry run)")
        return
    if python_filter:
        # Owners and sessions are matched here; the served-state condition is kept in the
        # update itself, so a key answered in between is left annotated.
        chosen = frozenset(row.key for row in store.iter_items(ref, where) if selected(row))
        where = ItemFilter(
            states=where.states, served_before=where.served_before, keys=chosen, match=match
        )
        moved = store.to_pending(ref, where) if chosen else 0
    else:
        moved = store.to_pending(ref, where)
    stdout.print(f"requeued {count_of(moved, 'served key')} of {ref.uri} (now pending)")
