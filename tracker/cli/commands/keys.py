"""`tracker keys`: stream a source's keys for scripts."""

from __future__ import annotations

import json

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import (
    answers_option,
    changed_option,
    dataset_option,
    deleted_option,
    match_option,
    source_argument,
    states_option,
)
from tracker.cli.output import item_json, print_keys, write_lines
from tracker.records import ItemFilter
from tracker.states import Answer, ItemState


@cli.command()
@source_argument
@dataset_option
@states_option
@answers_option
@match_option
@deleted_option
@changed_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text: one key per line; jsonl: one JSON object per key (exact for any key).",
)
@click.pass_obj
def keys(
    app: AppContext,
    source: str | None,
    dataset: str | None,
    states: tuple[str, ...],
    answers: tuple[str, ...],
    match: str | None,
    deleted: bool,
    changed: bool,
    fmt: str,
) -> None:
    """Print keys in listing order, streamed in constant memory.

    jsonl lines hold key, state, answer, session, owner, served_at and failure_reason, and
    can be fed back to `tracker reset --keys-from`. In text mode a key that contains a line
    break cannot be told apart from two keys: use jsonl for those (a warning says so).

    \b
    Example:
      tracker keys --state annotated --answer reject
      tracker keys s3://my-bucket/images/ --state failed --format jsonl > failed.jsonl
      tracker keys --deleted --state annotated
      tracker keys --changed
    """
    ref = app.dataset(source, dataset)
    where = ItemFilter(
        states=frozenset(ItemState(s) for s in states) if states else None,
        answers=frozenset(Answer(a) for a in answers) if answers else None,
        match=match,
        deleted=deleted,
        changed=changed,
    )
    rows = app.store.iter_items(ref, where)
    if fmt == "jsonl":
        write_lines(json.dumps(item_json(r), ensure_ascii=True) + "\n" for r in rows)
        return
    print_keys(row.key for row in rows)
