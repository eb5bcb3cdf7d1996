"""The `tracker` command line: a thin click layer over the library.

Every command module registers itself on `cli` (`@cli.command()`), but only when it is
imported: `COMMANDS` names each command's module, and `TrackerGroup` imports the module the
first time its command is asked for. So `tracker status` imports neither boto3 nor Alembic,
and `tracker --help` / `--version` not even SQLAlchemy or rich (see `COMMANDS`). This module
holds the global options, the shared context, and the one place where errors become a line
on stderr and an exit code (`TrackerGroup.invoke`, so that click's test runner sees exactly
what a shell sees).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, NoReturn

import click

from tracker.cli.context import AppContext
from tracker.errors import TrackerError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Each command's module and its short help (what click derives from the docstring: the
#: first sentence), which `tracker --help` shows, shortened alike, without importing it.
#:
#: The trade: commands are still registered where they are defined (`@cli.command()` in
#: their module), but a command module only runs when its command is used, so this table
#: must name every command, and it repeats each short help. Importing them all up front
#: cost 0.5 s per run (SQLAlchemy, Alembic, boto3, rich); a test
#: (tests/integration/test_cli_startup.py) checks the table against the real commands so
#: that it cannot drift.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("tracker.cli.commands.db", "Upgrade, check or copy the state DB."),
    "demo": (
        "tracker.cli.commands.demo",
        "Run the whole job on a throw-away local S3 server, in one command.",
    ),
    "import-answers": (
        "tracker.cli.commands.answers",
        "Mark the keys answered in FILE.jsonl (`prodigy db-out DATASET`) as annotated.",
    ),
    "keys": (
        "tracker.cli.commands.keys",
        "Print keys in listing order, streamed in constant memory.",
    ),
    "priority": (
        "tracker.cli.commands.priority",
        'Set a priority per key from FILE (CSV with columns key,priority, or JSON lines with "key" '
        'and "priority"; - for stdin): the recipe\'s `--order priority` serves the highest '
        "first, ties and keys without one in listing order.",
    ),
    "requeue": (
        "tracker.cli.commands.requeue",
        "Move served keys back to pending, so that the next claim hands them out again.",
    ),
    "reset": (
        "tracker.cli.commands.reset",
        "Move keys in any state back to pending, to be served and answered again.",
    ),
    "sources": (
        "tracker.cli.commands.sources",
        "List the sources (s3://BUCKET[/PREFIX]) in the state DB, one per line.",
    ),
    "status": (
        "tracker.cli.commands.status",
        "Show keys by state, answers, expired leases, listing progress and time left, for each "
        "dataset of each source (--dataset: that one only).",
    ),
    "sync": (
        "tracker.cli.commands.sync",
        "List s3://BUCKET[/PREFIX] into the state DB, continuing where the last sync stopped.",
    ),
    "watch": (
        "tracker.cli.commands.watch",
        "Keep the state DB true to the bucket from its S3 event notifications.",
    ),
}


class TrackerGroup(click.Group):
    """A click group that turns `TrackerError`s and Ctrl-C into one line and an exit code,
    and imports a command's module when that command is first asked for (`COMMANDS`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loaded: dict[str, click.Command] = {}
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:
        """Every command, each module imported. click reads the whole set only to suggest a
        name for a typo; code that walks the CLI (tests, docs) sees every command too."""
        for name in COMMANDS:
            self.loaded(name)
        return self._loaded

    @commands.setter
    def commands(self, value: MutableMapping[str, click.Command]) -> None:
        # click's __init__ assigns its (empty) initial mapping here.
        self._loaded.update(value)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self._loaded[name] = cmd

    def loaded(self, name: str) -> click.Command | None:
        """The command `name`, importing its module (which registers it) if need be."""
        if name not in self._loaded and name in COMMANDS:
            importlib.import_module(COMMANDS[name][0])
        return self._loaded.get(name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.loaded(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self._loaded})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`Commands:` as click writes it, from `COMMANDS` for modules not imported yet."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self._loaded.get(name)
            if command is None:
                # A stand-in with the same help shortens it exactly as the command would.
                stand_in = click.Command(name, help=COMMANDS[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def print_error(message: str) -> None:
    """`tracker.cli.output.print_error`, imported only when there is an error: rich costs
    a tenth of a second to import, which `--help` and `--version` need not pay."""
    from tracker.cli.output import print_error as print_one_line

    print_one_line(message)


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
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, verbose: int) -> None:
    """Track which S3 keys are pending, served and annotated for Prodigy.

    A source is written s3://BUCKET[/PREFIX]; commands that take one may omit it when the
    state DB holds a single source. Exit codes: 0 ok, 1 failure, 2 bad usage, 3 S3 error,
    4 state DB error, 5 unknown source, 6 `db copy` target not empty, 7 `db check` found a
    counter that differs from its recount, 130 interrupted.

    \b
    Example:
      tracker demo
      tracker sync s3://my-bucket/images/
      tracker status
    """
    _configure_logging(verbose)
    ctx.obj = AppContext(db_url=db_url, verbose=verbose)
    ctx.call_on_close(ctx.obj.close)


def _print_version(ctx: click.Context) -> None:
    """`--version`, as click's `version_option` prints it, with the version looked up
    only when asked for (see `tracker.__version__`)."""
    import tracker

    click.echo(f"tracker, version {tracker.__version__}", color=ctx.color)
    ctx.exit()


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
