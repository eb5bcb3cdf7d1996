"""`tracker import-answers`: bring answers from `prodigy db-out` into the state DB."""

from __future__ import annotations

import click

from tracker.answers_import import parse_db_out
from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.output import stdout
from tracker.errors import UsageError
from tracker.records import SourceRef
from tracker.s3uri import parse_s3_uri


@cli.command("import-answers")
@click.argument("source", metavar="SOURCE")
@click.argument("file", metavar="FILE.jsonl", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--requeue-missing",
    is_flag=True,
    help="Also put keys that the state DB calls annotated but FILE lacks back to pending.",
)
@click.pass_obj
def import_answers(app: AppContext, source: str, file: str, requeue_missing: bool) -> None:
    """Mark the keys answered in FILE.jsonl (`prodigy db-out DATASET`) as annotated.

    SOURCE is s3://BUCKET[/PREFIX] (created in the state DB if new). Each line's key comes
    from meta.key, else from image when it is s3://BUCKET/KEY or a bare key (what the seed's
    recipe stored). The whole file is checked first and recorded in one transaction: a bad
    line is reported with its number and nothing is written.

    --requeue-missing repairs a crash between the recipe's update and Prodigy's save:
    keys annotated in the state DB but absent from the dataset are served again.

    \b
    Example:
      prodigy db-out my_dataset > answers.jsonl
      tracker import-answers s3://my-bucket/images answers.jsonl
      tracker import-answers s3://my-bucket/images answers.jsonl --requeue-missing
    """
    bucket, prefix = parse_s3_uri(source)
    name = "stdin" if file == "-" else file
    try:
        with click.open_file(file, "rb") as handle:
            parsed = parse_db_out(handle, SourceRef(0, bucket, prefix), name=name)
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror or error}") from None
    if requeue_missing and not parsed.answers:
        raise UsageError(
            f"{name} holds no answers; refusing to requeue every annotated key of {source}"
        )
    ref = app.store.source(bucket, prefix, create=True)
    annotated, requeued = app.store.import_answers(
        ref, parsed.answers, requeue_missing=requeue_missing
    )
    message = (
        f"{ref.uri}: read {len(parsed.answers)} answers for {parsed.keys} keys from {name}; "
        f"{annotated} keys newly annotated"
    )
    if requeue_missing:
        message += f", {requeued} annotated keys missing from the file put back to pending"
    stdout.print(message)
