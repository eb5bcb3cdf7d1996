"""`tracker requeue`: hand served keys back to the queue."""

from __future__ import annotations

import fnmatch
from datetime import timedelta

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import (
    DURATION_OR_ZERO,
    check_keys,
    dataset_option,
    dry_run_option,
    key_option,
    match_option,
    source_argument,
)
from tracker.cli.output import count_of, print_info, print_keys, stdout
from tracker.cli.prompts import confirm_or_refuse, ensure_can_ask, one_transaction
from tracker.errors import Interrupted, UsageError
from tracker.models import utcnow
from tracker.records import ItemFilter, ItemRow
from tracker.states import ItemState

_SEPARATORS = "@:/ "


def owner_dataset(owner: str) -> str:
    """The dataset part of a lease owner: `cats` in `cats@host:1234`."""
    cut = min((owner.find(c) for c in _SEPARATORS if c in owner), default=-1)
    return owner[:cut] if cut > 0 else owner


def session_dataset(session: str) -> str:
    """The dataset of a Prodigy session id `<dataset>-<name>`, split at the LAST `-`.

    Dataset names may hold `-` (`cats-v2`), so the split is at the last one: a name
    given with `?session=` rarely holds one, and if it does the session selects nothing
    rather than another dataset's keys.
    """
    return session.rpartition("-")[0]


def session_holds(session: str, owner: str | None) -> bool:
    """Whether a served key's lease `owner` belongs to the Prodigy `session`.

    The store records Prodigy's session only with an answer; a served key is held by the
    recipe process that claimed it (its lease owner), which serves every session of one
    dataset. So a session selects the keys of the process that serves it, compared
    exactly, never as a prefix: the owner is the session itself, or the owner's dataset
    part (`my_dataset` in `my_dataset@host:1234`) equals the session, or equals the
    session id's dataset (`cats-v2` in `cats-v2-alice`; `cats@...` is not selected).
    """
    if owner is None:
        return False
    if owner == session:
        return True
    dataset = owner_dataset(owner)
    return bool(dataset) and dataset in (session, session_dataset(session))


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


@cli.command()
@source_argument
@dataset_option
@click.option(
    "--older-than",
    type=DURATION_OR_ZERO,
    metavar="DURATION",
    help="Only keys served at least this long ago (90s, 30m, 2h, 1d; 0s: every served key).",
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
@click.option("--all", "everything", is_flag=True, help="Every served key of the source.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@dry_run_option
@click.pass_obj
def requeue(
    app: AppContext,
    source: str | None,
    dataset: str | None,
    older_than: timedelta | None,
    owner: str | None,
    session: str | None,
    keys: tuple[str, ...],
    match: str | None,
    everything: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Move served keys back to pending, so that the next claim hands them out again.

    For a batch a browser dropped, or an annotator who left, without waiting for the lease
    to expire. An answer that still arrives for a requeued key is recorded all the same.

    Prodigy's session is stored only with an answer; a served key is held by the recipe
    process (its lease owner, which names the dataset). --session SESSION therefore selects
    the keys of the process serving SESSION: an owner equal to SESSION or starting with
    SESSION and one of `@ : /`, or an owner whose dataset part D makes SESSION read
    `D-<name>` (Prodigy's `<dataset>-<name>`, split at the last `-`). Matching is exact:
    `--session cats-v2-alice` does not select the keys of `cats@host`.

    A live lease is an annotator's work in progress: name the keys with a filter
    (--older-than 0s means every served key), or pass --all. Asks for confirmation on a
    terminal; elsewhere needs --yes.

    \b
    Example:
      tracker requeue --older-than 2h --dry-run
      tracker requeue s3://my-bucket/images/ --owner 'cats@laptop:*' --yes
      tracker requeue --key images/0001.jpg --key images/0002.jpg --yes
    """
    filtered = older_than is not None or bool(owner or session or keys or match)
    if not filtered and not everything:
        raise UsageError(
            "name the served keys to requeue (--older-than, --owner, --session, --key, "
            "--match) or pass --all"
        )
    check_keys(keys, "--key")
    if not (yes or dry_run):
        ensure_can_ask()
    ref = app.dataset(source, dataset)
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
        print_info(f"would requeue {count_of(count, 'served key')} of {ref.label} (dry run)")
        return
    if not yes:
        count = sum(1 for row in store.iter_items(ref, where) if selected(row))
        if count == 0:
            stdout.print(f"no served key of {ref.label} matches; nothing changed")
            return
        confirm_or_refuse(
            f"Requeue {count_of(count, 'served key')} of {ref.label} (their leases are taken "
            "back; an annotator may still be working on them)?",
            yes=yes,
        )
    if python_filter:
        # Owners and sessions are matched here, then each owner's keys are moved by a
        # statement that repeats `lease_owner = owner` and the served-state condition: a key
        # answered or re-claimed by someone else in between is left alone.
        chosen: dict[str, set[str]] = {}
        for row in store.iter_items(ref, where):
            if selected(row) and row.lease_owner is not None:
                chosen.setdefault(row.lease_owner, set()).add(row.key)
        moved = 0
        try:
            for held_by, held in sorted(chosen.items()):
                narrowed = ItemFilter(
                    states=where.states,
                    owner=held_by,
                    served_before=where.served_before,
                    keys=frozenset(held),
                    match=match,
                )
                moved += store.to_pending(ref, narrowed)  # one transaction per owner
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted after requeueing {count_of(moved, 'served key')}; "
                "the same command requeues the rest"
            ) from None
    else:
        with one_transaction():
            moved = store.to_pending(ref, where)
    stdout.print(f"requeued {count_of(moved, 'served key')} of {ref.label} (now pending)")
