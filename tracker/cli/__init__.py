"""The `tracker` command line: a thin click layer over the library.

Every command module registers itself on `cli` (`@cli.command()`), and this module imports
them all at its end, so importing `tracker.cli` gives the complete CLI. It holds the global
options, the shared context, and the one place where errors become a line on stderr and an
exit code (`TrackerGroup.invoke`, so that click's test runner sees exactly what a shell sees).
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from tracker import __version__
from tracker.cli.context import AppContext
from tracker.cli.output import print_error
from tracker.errors import TrackerError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class TrackerGroup(click.Group):
    """A click group that turns `TrackerError`s and Ctrl-C into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TrackerError as error:
            print_error(str(error))
            raise click.exceptions.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise click.exceptions.Exit(130) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            # `tracker keys | head`: the reader left. Handled here, not in `main`: click's
            # own `main` turns an EPIPE that reaches it into exit 1.
            _quiet_broken_pipe()
        except Exception as error:  # a bug or a failure we did not foresee: still one line
            logging.getLogger("tracker").debug("unexpected error", exc_info=True)
            print_error(
                f"unexpected {type(error).__name__}: {error} (run with -vv for the traceback)"
            )
            raise click.exceptions.Exit(1) from None


def _configure_logging(verbose: int) -> None:
    if verbose <= 0:
        return
    from tracker.redact import RedactSecrets

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())  # botocore's DEBUG logs print the session token
    from tracker.display import escape_key_logs

    escape_key_logs()  # log lines about keys (sync's lister) reach this terminal too
    logging.basicConfig(
        handlers=[handler],
        level=logging.DEBUG if verbose > 1 else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if verbose > 1:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    else:
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=TrackerGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--db",
    "db_url",
    envvar="TRACKER_DB_URL",
    metavar="URL",
    help="State DB, a SQLite or PostgreSQL URL [env TRACKER_DB_URL; default: a SQLite file under "
    "~/.local/share/s3-annotation-tracker].",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: SQL too).")
@click.version_option(__version__, "--version", prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, verbose: int) -> None:
    """Track which S3 keys are pending, served and annotated for Prodigy.

    A source is written s3://BUCKET[/PREFIX]; commands that take one may omit it when the
    state DB holds a single source. Exit codes: 0 ok, 1 failure, 2 bad usage, 3 S3 error,
    4 state DB error, 5 unknown source, 6 `db copy` target not empty, 130 interrupted.

    \b
    Example:
      tracker demo
      tracker sync s3://my-bucket/images/
      tracker status
    """
    _configure_logging(verbose)
    ctx.obj = AppContext(db_url=db_url, verbose=verbose)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning known failures into one line and an exit code."""
    try:
        # standalone_mode=False returns the code of a `click.exceptions.Exit` (our errors).
        code = cli.main(args=argv, prog_name="tracker", standalone_mode=False)
    except TrackerError as error:
        print_error(str(error))
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        print_error("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print_error("interrupted")
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except BrokenPipeError:
        try:
            _quiet_broken_pipe()
        except click.exceptions.Exit:
            sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


def _quiet_broken_pipe() -> NoReturn:
    """`tracker keys | head`: the reader left; exit 0 quietly like other Unix tools.

    stdout is pointed at /dev/null first, so that the flush at interpreter exit does not
    fail on the closed pipe again (Python would print a warning and exit 120).
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise click.exceptions.Exit(0)


# Last, once `cli` exists: each command module decorates its commands onto it, so that
# `from tracker.cli import cli` is the whole CLI.
from tracker.cli import commands  # noqa: E402, F401
