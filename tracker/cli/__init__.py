"""The `tracker` command line: a thin click layer over the library.

Every command module registers itself on `main`; this module holds the global options, the
shared context, and the one place where errors become a line on stderr and an exit code.
"""

from __future__ import annotations

import sys

import click

from tracker import __version__
from tracker.cli.context import AppContext
from tracker.cli.output import print_error
from tracker.errors import TrackerError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--db",
    "db_url",
    envvar="TRACKER_DB_URL",
    metavar="URL",
    help="State DB as a SQLAlchemy URL [env TRACKER_DB_URL; default: a SQLite file under "
    "~/.local/share/s3-annotation-tracker].",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: SQL too).")
@click.version_option(__version__, "--version", prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, verbose: int) -> None:
    """Track which S3 keys are pending, served and annotated for Prodigy.

    \b
    Example:
      tracker sync s3://my-bucket/images/
      tracker status
    """
    ctx.obj = AppContext(db_url=db_url, verbose=verbose)
    ctx.call_on_close(ctx.obj.close)


def _register_commands() -> None:
    from tracker.cli import commands  # noqa: F401  (each module adds itself to `cli`)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning known failures into one line and an exit code."""
    _register_commands()
    try:
        cli.main(args=argv, prog_name="tracker", standalone_mode=False)
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
    sys.exit(0)
