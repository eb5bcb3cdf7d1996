"""`tracker watch s3://BUCKET[/PREFIX] --queue-url URL`: apply S3 event notifications."""

from __future__ import annotations

import inspect
import os
from typing import Any

import click

from tracker.cli import cli
from tracker.cli.context import AppContext
from tracker.cli.options import aws_options, filter_options, key_filter_from
from tracker.cli.output import print_info, print_warning, stdout
from tracker.cli.stopping import StopRequest
from tracker.s3 import make_client
from tracker.s3uri import parse_source_uri
from tracker.watcher import Watcher, check_queue, make_sqs_client, setup_commands

MESSAGE_STOP = "stopping after the messages in hand (press Ctrl-C again to stop now)"


@cli.command()
@click.argument("uri", metavar="s3://BUCKET[/PREFIX]")
@click.option("--queue-url", required=True, metavar="URL", help="The SQS queue S3 notifies.")
@click.option(
    "--once",
    is_flag=True,
    help="Apply what the queue holds now, then exit (for cron) [default: watch until Ctrl-C].",
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="SQS-compatible server [boto3 also reads AWS_ENDPOINT_URL_SQS]; S3's too, unless "
    "--s3-endpoint-url or AWS_ENDPOINT_URL_S3 is set (one local server, such as moto, "
    "serves both).",
)
@click.option(
    "--s3-endpoint-url",
    metavar="URL",
    help="S3-compatible server asked (one HEAD of the key) when an event cannot tell "
    "what is current [default: AWS_ENDPOINT_URL_S3, else --endpoint-url, else AWS].",
)
@aws_options
@filter_options
@click.pass_context
def watch(ctx: click.Context, /, uri: str, **options: Any) -> None:
    """Keep the state DB true to the bucket from its S3 event notifications.

    Reads the SQS queue the bucket notifies: an object created under the source (and
    taken by the same filters as `tracker sync`) is recorded as pending, or, when known,
    takes its new size and ETag (an annotated key whose object was overwritten is then
    "changed": `tracker keys --changed`); an object removed is marked deleted and never
    served again. When an event cannot tell what is current (a version removed from a
    versioned bucket, a delete marker removed, a removal of a key a listing recorded),
    one HEAD of the key asks S3 first: a key is never marked deleted on a guess. Events
    for other buckets or prefixes are ignored, s3:TestEvent is skipped. Messages wrapped
    by SNS and EventBridge's "Object Created" / "Object Deleted" events are read too.

    Each message is deleted only once its effect is committed; a message delivered again
    changes nothing twice (events are ordered per key by S3's sequencer, else by time). A
    message that is not an S3 notification is logged and left for the queue's
    dead-letter policy. An unreachable queue is asked again, then: exit 3.

    \b
    Example:
      tracker watch s3://my-bucket/images/ --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/tracker-my-bucket
      tracker watch s3://my-bucket/images/ --queue-url "$QUEUE_URL" --once   # from cron
    """
    app: AppContext = ctx.obj
    app.creates_db = True
    bucket, prefix = parse_source_uri(uri)
    key_filter = key_filter_from(options)
    sqs = make_sqs_client(
        options["endpoint_url"], profile=options["profile"], region=options["region"]
    )
    check_queue(sqs, options["queue_url"])  # before the state DB is touched
    s3_endpoint = options["s3_endpoint_url"] or (
        None if os.environ.get("AWS_ENDPOINT_URL_S3") else options["endpoint_url"]
    )
    s3 = make_client(s3_endpoint, profile=options["profile"], region=options["region"])
    source = app.store.source(bucket, prefix, create=True)
    watcher = Watcher(
        app.store, source, sqs, options["queue_url"], key_filter, warn=print_warning, s3=s3
    )
    # Each message is committed on its own: a second Ctrl-C, stopping at once, loses nothing.
    with StopRequest(MESSAGE_STOP).installed() as stop:
        if not options["once"]:
            print_info(f"{source.uri}: watching {options['queue_url']} (Ctrl-C to stop)")
        watcher.run(once=options["once"], should_stop=lambda: stop.requested)
    stdout.print(f"{source.uri}: {watcher.tally.line()}")


# The set-up commands, generated (so their JSON is quoted right), after the docstring.
watch.help = (
    inspect.cleandoc(watch.help or "")
    + "\n\n\b\nSet up (once; BUCKET, REGION and ACCOUNT are yours):\n"
    + ("\n".join(f"  {line}" for line in setup_commands().splitlines()))
)
