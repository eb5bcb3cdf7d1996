"""Errors the user can act on, each with its documented exit code.

Anything raised as a `TrackerError` is shown as one line on stderr (no traceback) and ends
the command with `exit_code`. Exit codes are part of the CLI's contract: docs/cli.md's "Exit
codes" and `tracker --help` list every code defined here (a test compares them).
"""

from __future__ import annotations


class TrackerError(Exception):
    """A failure with a one-line explanation for the user."""

    exit_code = 1


class UsageError(TrackerError):
    """Bad arguments: a malformed URL, duration, glob or file."""

    exit_code = 2


class S3Error(TrackerError):
    """S3 refused or could not be reached: unknown bucket, access denied, bad endpoint."""

    exit_code = 3


class StateDBError(TrackerError):
    """The state database cannot be used: bad URL, not a database, read-only, too new."""

    exit_code = 4
    #: The database's SQLSTATE for the error, when it gave one (PostgreSQL).
    sqlstate: str | None = None


class OwnerInUse(StateDBError):
    """Another live process serves under the same lease owner name."""

    def __init__(self, message: str, *, host: str = "", pid: int = 0) -> None:
        super().__init__(message)
        #: Where the registered process runs, so that a dead one on this host is known.
        self.host = host
        self.pid = pid


class SourceNotFound(TrackerError):
    """A command named a source that the state database does not know."""

    exit_code = 5


class DatasetNotFound(SourceNotFound):
    """A command named a dataset the source does not have, or needs one named."""


class Interrupted(TrackerError):
    """Ctrl-C: committed work is kept; the message says how to resume."""

    exit_code = 130


class InventoryError(UsageError):
    """An S3 Inventory report that cannot be read: no manifest, bad JSON, another bucket,
    an unsupported format, a data file whose checksum differs, pyarrow not installed."""


class TargetNotEmpty(TrackerError):
    """`tracker db copy` into a DB that holds state, without `--replace`."""

    exit_code = 6


class CountsDiffer(TrackerError):
    """`tracker db check` found counters that differ from the recount (see docs/cli.md)."""

    exit_code = 7
