"""`tracker reset`: put keys (or the listing) back to the start."""

from __future__ import annotations

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import print_info, stdout
from tracker.cli.params import (
    answers_option,
    confirm_or_refuse,
    count_of,
    dry_run_option,
    ensure_can_ask,
    escape_controls,
    key_option,
    match_option,
    print_keys,
    read_keys_file,
    source_argument,
    states_option,
)
from tracker.errors import UsageError
from tracker.models import Answer, ItemState
from tracker.records import ItemFilter


@cli.command()
@source_argument
@states_option
@answers_option
@match_option
@key_option
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
    states: tuple[str, ...],
    answers: tuple[str, ...],
    match: str | None,
    keys: tuple[str, ...],
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
    """
    filtered = bool(states or answers or match or keys or keys_from)
    if listing:
        if filtered or everything:
            raise UsageError("--listing resets the listing cursor only; it takes no key filter")
        _reset_listing(app, source, yes=yes, dry_run=dry_run)
        return
    if not filtered and not everything:
        raise UsageError(
            "name the keys to reset (--state, --answer, --match, --key, --keys-from) or pass --all"
        )
    selected_keys = set(keys)
    if keys_from is not None:
        selected_keys |= read_keys_file(keys_from)
    ref = app.source(source)
    where = ItemFilter(
        states=frozenset(ItemState(s) for s in states) if states else None,
        answers=frozenset(Answer(a) for a in answers) if answers else None,
        keys=frozenset(selected_keys) if (keys or keys_from is not None) else None,
        match=match,
    )
    store = app.store
    if dry_run:
        count = print_keys(row.key for row in store.iter_items(ref, where))
        print_info(f"would reset {count_of(count, 'key')} of {ref.uri} to pending (dry run)")
        return
    if not yes:
        ensure_can_ask()
        count = sum(1 for _ in store.iter_items(ref, where))
        if count == 0:
            stdout.print(f"no key of {ref.uri} matches; nothing changed")
            return
        confirm_or_refuse(
            f"Reset {count_of(count, 'key')} of {ref.uri} to pending (their recorded answers are "
            "cleared from the state DB)?",
            yes=yes,
        )
    moved = store.to_pending(ref, where)
    stdout.print(f"reset {count_of(moved, 'key')} of {ref.uri} to pending")


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
    app.store.reset_cursor(ref)
    stdout.print(f"cleared the listing cursor of {ref.uri}; the next sync starts from the start")
