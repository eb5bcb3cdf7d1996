"""`tracker import-answers`: bring answers from `prodigy db-out` into the state DB."""

from __future__ import annotations

import click

from tracker.answers_import import parse_db_out
from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import dataset_option, dry_run_option
from tracker.cli.output import count_of, print_info, print_keys, stdout
from tracker.cli.prompts import confirm_or_refuse, ensure_can_ask, one_transaction
from tracker.errors import UsageError
from tracker.records import DatasetRef, ItemFilter, SourceRef
from tracker.s3uri import parse_source_uri
from tracker.states import ItemState


@cli.command("import-answers")
@click.argument("source", metavar="SOURCE")
@click.argument("file", metavar="FILE.jsonl", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--requeue-missing",
    is_flag=True,
    help="Also put keys that the state DB calls annotated but FILE lacks back to pending "
    "(asks for confirmation on a terminal; elsewhere needs --yes).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@dry_run_option
@dataset_option
@click.pass_obj
def import_answers(
    app: AppContext,
    source: str,
    file: str,
    requeue_missing: bool,
    yes: bool,
    dry_run: bool,
    dataset: str | None,
) -> None:
    """Mark the keys answered in FILE.jsonl (`prodigy db-out DATASET`) as annotated.

    SOURCE is s3://BUCKET[/PREFIX] and must already be in the state DB (`s3://b/img` and
    `s3://b/img/` are the same source); this command never creates one. Each line's key
    comes from meta.key, else from image when it is s3://BUCKET/KEY or a bare key (what the
    seed's recipe stored). The whole file is checked first and recorded in one transaction:
    a bad line is reported with its number and nothing is written.

    --requeue-missing repairs a crash between the recipe's update and Prodigy's save:
    keys annotated in the state DB but absent from the dataset are served again. It asks
    for confirmation on a terminal and needs --yes elsewhere; --dry-run prints those keys.

    \b
    Example:
      prodigy db-out my_dataset > answers.jsonl     # needs Prodigy
      tracker import-answers s3://my-bucket/images/ answers.jsonl
      tracker import-answers s3://my-bucket/images/ answers.jsonl --requeue-missing --dry-run
    """
    bucket, prefix = parse_source_uri(source)
    name = "stdin" if file == "-" else file
    if requeue_missing and not (yes or dry_run):
        ensure_can_ask()  # before reading stdin or the file: refuse at once without a terminal
    try:
        with click.open_file(file, "rb") as handle:
            parsed = parse_db_out(handle, SourceRef(0, bucket, prefix), name=name)
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror or error}") from None
    if requeue_missing and not parsed.answers:
        raise UsageError(
            f"{name} holds no answers; refusing to requeue every annotated key of {source}"
        )
    # A repair never creates a source: a misspelt SOURCE is one line and exit 5, not
    # answers recorded into a new, empty copy of the real source. The dataset is never
    # guessed from `_session_id` (`DATASET-name` cannot be split safely): --dataset, or the
    # source's only dataset; a named new dataset is created (not by a dry run).
    ref = app.dataset(source, dataset, create=not dry_run)
    store = app.store
    named = frozenset(a.key for a in parsed.answers)
    if dry_run:
        _dry_run(app, ref, named, requeue_missing=requeue_missing, answers=len(parsed.answers))
        return
    if requeue_missing:
        missing = _missing(app, ref, named)
        if missing and not yes:
            confirm_or_refuse(
                f"Put {count_of(len(missing), 'annotated key')} of {ref.label} that {name} "
                "lacks back to pending (their recorded answers are cleared from the state DB)?",
                yes=yes,
            )
    with one_transaction():
        annotated, requeued = store.import_answers(
            ref, parsed.answers, requeue_missing=requeue_missing
        )
    message = (
        f"{ref.label}: read {len(parsed.answers)} answers for {parsed.keys} keys from {name}; "
        f"{annotated} keys newly annotated"
    )
    if requeue_missing:
        message += f", {requeued} annotated keys missing from the file put back to pending"
    stdout.print(message)


def _missing(app: AppContext, ref: DatasetRef, named: frozenset[str]) -> list[str]:
    """Annotated keys of `ref` that the file does not name (what --requeue-missing moves)."""
    where = ItemFilter(states=frozenset({ItemState.ANNOTATED}))
    return [row.key for row in app.store.iter_items(ref, where) if row.key not in named]


def _dry_run(
    app: AppContext, ref: DatasetRef, named: frozenset[str], *, requeue_missing: bool, answers: int
) -> None:
    """Say what the import would do; with --requeue-missing print the keys it would move."""
    annotated = sum(
        1
        for row in app.store.iter_items(ref, ItemFilter(keys=named))
        if row.state is ItemState.ANNOTATED
    )
    message = (
        f"would record {count_of(answers, 'answer')} for {count_of(len(named), 'key')} of "
        f"{ref.label} ({annotated:,} already annotated)"
    )
    if requeue_missing:
        count = print_keys(_missing(app, ref, named))
        missing = count_of(count, "annotated key")
        message += f" and put {missing} missing from the file back to pending"
    print_info(message + " (dry run)")
