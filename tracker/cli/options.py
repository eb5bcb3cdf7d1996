"""Options and arguments shared by the commands: click decorators and parameter types."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from tracker.display import printable
from tracker.durations import parse_duration
from tracker.errors import UsageError
from tracker.filters import KeyFilter, parse_extensions
from tracker.s3uri import key_problem
from tracker.states import Answer, ItemState

if TYPE_CHECKING:  # click >= 8.3 types a parameter by the value it converts to
    _ParamType = click.ParamType[timedelta, Any]
else:  # older clicks' ParamType is not generic
    _ParamType = click.ParamType

STATES = [s.value for s in ItemState]
ANSWERS = [a.value for a in Answer]


def source_argument(function: Callable[..., Any]) -> Callable[..., Any]:
    """`[SOURCE]`: s3://BUCKET[/PREFIX], optional when the state DB holds one source."""
    return click.argument("source", required=False, metavar="[SOURCE]")(function)


def dataset_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--dataset NAME`: the Prodigy dataset acted on, optional when the source has one."""
    return click.option(
        "--dataset",
        "-d",
        metavar="NAME",
        help="Prodigy dataset (may be left out when the source has only one).",
    )(function)


def dry_run_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dry-run", "-n", is_flag=True, help="Print the keys that would move; change nothing."
    )(function)


def match_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--match",
        metavar="GLOB",
        help="Only keys matching this shell glob (over the whole key; * also matches /).",
    )(function)


def states_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--state",
        "states",
        multiple=True,
        type=click.Choice(STATES),
        help="Only keys in this state (repeatable).",
    )(function)


def answers_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--answer",
        "answers",
        multiple=True,
        type=click.Choice(ANSWERS),
        help="Only keys with this answer (repeatable).",
    )(function)


def key_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--key", "keys", multiple=True, metavar="KEY", help="Only this key (repeatable)."
    )(function)


class DurationType(_ParamType):
    """`90s`, `30m`, `2h`, `1d` or seconds."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value, allow_zero=self.allow_zero)
        except UsageError as error:
            self.fail(str(error), param, ctx)


DURATION = DurationType()
#: For filters where "at least 0s ago" is meaningful: `requeue --older-than 0s`.
DURATION_OR_ZERO = DurationType(allow_zero=True)


def check_keys(keys: Iterable[str], option: str) -> None:
    """Refuse (exit 2) a key given on the command line that S3 cannot hold."""
    for key in keys:
        problem = key_problem(key)
        if problem is not None:
            raise UsageError(f"{option} {printable(key)[:80]!r}: {problem}")


def deleted_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--deleted",
        is_flag=True,
        help="Only keys whose object is gone from the bucket (found by a complete sync "
        "pass or `tracker watch`).",
    )(function)


def changed_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--changed",
        is_flag=True,
        help="Only annotated keys whose object was overwritten since the answer (another ETag).",
    )(function)


def aws_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--profile`, `--region`: which of boto3's configurations (sync, watch)."""
    function = click.option(
        "--region", metavar="NAME", help="AWS region [default: boto3's chain]."
    )(function)
    return click.option("--profile", metavar="NAME", help="AWS profile [default: boto3's chain].")(
        function
    )


def filter_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--ext`, `--match`, `--all-objects`: which objects become keys (sync, watch)."""
    options = [
        click.option(
            "--ext",
            multiple=True,
            metavar="EXT[,EXT...]",
            help="Take objects with these extensions, any case (repeatable) "
            "[default: jpg jpeg png gif webp bmp tif tiff heic heif avif, and keys without "
            "an extension, whose bytes decide when served].",
        ),
        click.option(
            "--match",
            multiple=True,
            metavar="GLOB",
            help="Take objects whose whole key matches GLOB (`*` also matches `/`; "
            "repeatable). Without --ext, only the globs decide.",
        ),
        click.option(
            "--all-objects",
            is_flag=True,
            help="Take every object (still never `folder/` placeholders or zero-byte objects).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def key_filter_from(options: dict[str, Any]) -> KeyFilter:
    """The key filter `filter_options` describe."""
    if options["all_objects"] and (options["ext"] or options["match"]):
        raise UsageError("--all-objects takes every object: drop --ext / --match, or it")
    return KeyFilter.build(
        parse_extensions(options["ext"]), options["match"], all_objects=options["all_objects"]
    )
