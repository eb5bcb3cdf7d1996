"""`tracker reset`: put keys (or the listing) back to the start."""

from __future__ import annotations

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.keyfiles import read_keys_file
from tracker.cli.options import (
    answers_option,
    changed_option,
    check_keys,
    dataset_option,
    dry_run_option,
    key_option,
    match_option,
    source_argument,
    states_option,
)
from tracker.cli.output import count_of, escape_controls, print_info, print_keys, stdout
from tracker.cli.prompts import confirm_or_refuse, ensure_can_ask, one_transaction
from tracker.errors import UsageError
from tracker.records import ItemFilter
from tracker.states import Answer, ItemState


@cli.command()
@source_argument
@dataset_option
@states_option
@answers_option
@match_option
@key_option
@changed_option
@click.option(
    "--keys-from",
    metavar="FILE",
    help='Only the keys in FILE (- for stdin): one per line, or JSON lines with a "key" '
    "field such as `tracker keys --format jsonl` writes (exact for any key).",
)
@click.option("--all", "everything", is_flag=True, help="Every key of the source.")
@click.option(
    "--listing",
    is_flag=True,
    help="Clear the listing cursor instead: the next sync lists from the first page; known "
    "keys keep their state.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@dry_run_option
@click.pass_obj
def reset(
    app: AppContext,
    source: str | None,
    dataset: str | None,
    states: tuple[str, ...],
    answers: tuple[str, ...],
    match: str | None,
    keys: tuple[str, ...],
    changed: bool,
    keys_from: str | None,
    everything: bool,
    listing: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Move keys in any state back to pending, to be served and answered again.

    Clears their lease, recorded answer and failure reason in the state DB (the answers
    themselves stay in the Prodigy dataset). Name what to reset with filters, which must all
    match, or pass --all. Asks for confirmation on a terminal; elsewhere needs --yes.

    \b
    Example:
      tracker reset --state failed --dry-run
      tracker reset --answer ignore --match 'images/2024/*' --yes
      tracker keys --state failed --format jsonl > retry.jsonl
      tracker reset --keys-from retry.jsonl --yes
      tracker reset --listing --yes
      tracker reset --changed --yes
    """
    filtered = bool(states or answers or match or keys or keys_from or changed)
    if listing:
        if filtered or everything:
            raise UsageError("--listing resets the listing cursor only; it takes no key filter")
        _reset_listing(app, source, yes=yes, dry_run=dry_run)
        return
    if not filtered and not everything:
        raise UsageError(
            "name the keys to reset (--state, --answer, --match, --key, --keys-from, "
            "--changed) or pass --all"
        )
    check_keys(keys, "--key")
    selected_keys = set(keys)
    if keys_from is not None:
        selected_keys |= read_keys_file(keys_from)
    ref = app.dataset(source, dataset)
    # Keys already pending have nothing to reset: the dry run, the prompt and the result
    # count the same keys.
    wanted = {ItemState(s) for s in states} if states else set(ItemState)
    where = ItemFilter(
        states=frozenset(wanted - {ItemState.PENDING}),
        answers=frozenset(Answer(a) for a in answers) if answers else None,
        keys=frozenset(selected_keys) if (keys or keys_from is not None) else None,
        match=match,
        changed=changed,
    )
    store = app.store
    if dry_run:
        count = print_keys(row.key for row in store.iter_items(ref, where))
        print_info(f"would reset {count_of(count, 'key')} of {ref.label} to pending (dry run)")
        return
    if not yes:
        ensure_can_ask()
        count = sum(1 for _ in store.iter_items(ref, where))
        if count == 0:
            stdout.print(f"no key of {ref.label} matches; nothing changed")
            return
        confirm_or_refuse(
            f"Reset {count_of(count, 'key')} of {ref.label} to pending (their recorded answers are "
            "cleared from the state DB)?",
            yes=yes,
        )
    with one_transaction():
        moved = store.to_pending(ref, where)
    stdout.print(f"reset {count_of(moved, 'key')} of {ref.label} to pending")
    if moved:
        print_info(PRODIGY_SKIPS)


#: Said after every reset: Prodigy, not the tracker, decides what reaches a browser.
PRODIGY_SKIPS = (
    "note: Prodigy skips a task whose hash is already in its dataset. Each serve of a key "
    "gets its own _task_hash, so with Prodigy's default exclude_by 'task' these keys are "
    "shown again; with exclude_by 'input', annotate them into a new dataset (or remove their "
    "answers from this one) first. A key Prodigy keeps skipping ends as failed after "
    "--max-attempts serves."
)


def _reset_listing(app: AppContext, source: str | None, *, yes: bool, dry_run: bool) -> None:
    ref = app.source(source)
    cursor = app.store.cursor(ref)
    where = f"after {escape_controls(cursor.last_key)!s}" if cursor.last_key else "at the start"
    summary = (
        f"the listing of {ref.uri} stands {where} "
        f"({'token saved' if cursor.continuation_token else 'no token'}, "
        f"{'exhausted' if cursor.exhausted else 'not exhausted'})"
    )
    if dry_run:
        print_info(f"would clear the listing cursor: {summary} (dry run)")
        return
    confirm_or_refuse(
        f"Clear the listing cursor? {summary}; the next sync lists from the first page.",
        yes=yes,
    )
    with one_transaction():
        app.store.reset_cursor(ref)
    stdout.print(f"cleared the listing cursor of {ref.uri}; the next sync starts from the start")
