"""The small pure modules' rules, each with its exact output and error message.

s3uri, durations, display, errors, batching, filters and ordering: every message here is
one a user reads, so it is asserted word for word. Written against `scripts/mutants`: each
test was seen to fail on the mutmut mutants of the lines it names (a changed literal, a
flipped comparison, a dropped branch).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tracker import errors
from tracker.batching import FILL_LOOP_GAP, mid_batch
from tracker.display import KEY_LOGGERS, EscapeControls, escape_key_logs, printable
from tracker.durations import format_duration, parse_duration
from tracker.errors import UsageError
from tracker.filters import IMAGE_EXTENSIONS, KeyFilter, parse_extensions
from tracker.ordering import Order, Unranked, first_segment, ranks, seeded_hash
from tracker.s3uri import (
    format_s3_uri,
    key_problem,
    normalize_prefix,
    parse_s3_uri,
    parse_source_uri,
    utf8_after,
    validate_bucket,
)


def _message(error: pytest.ExceptionInfo[BaseException]) -> str:
    return str(error.value)


# --- s3uri ------------------------------------------------------------------------------


def test_an_s3_url_splits_into_bucket_and_verbatim_prefix() -> None:
    assert parse_s3_uri("s3://my-bucket/some/prefix") == ("my-bucket", "some/prefix")
    assert parse_s3_uri("S3://my-bucket") == ("my-bucket", "")
    assert parse_s3_uri("s3://my-bucket//a/") == ("my-bucket", "/a/")


@pytest.mark.parametrize("uri", ["my-bucket/x", "http://my-bucket/x", "s3:/my-bucket", "s4://b1c"])
def test_a_url_that_is_not_s3_is_refused(uri: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_s3_uri(uri)
    assert _message(caught) == f"not an S3 URL (expected s3://BUCKET[/PREFIX]): {uri!r}"


@pytest.mark.parametrize("bucket", ["ab", "-abc", "abc-", "a" * 64, "a b", "ab/", ""])
def test_a_bucket_name_s3_cannot_have_is_refused(bucket: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_bucket(bucket)
    assert _message(caught) == f"not a valid S3 bucket name: {bucket!r}"


@pytest.mark.parametrize("bucket", ["abc", "a" * 63, "My_Old.Bucket-1", "9.9"])
def test_a_bucket_name_s3_allows_or_allowed_is_taken(bucket: str) -> None:
    assert validate_bucket(bucket) == bucket


def test_a_source_url_stores_its_prefix_as_a_folder() -> None:
    assert parse_source_uri("s3://b12/img") == ("b12", "img/")
    assert parse_source_uri("s3://b12/img/") == ("b12", "img/")
    assert parse_source_uri("s3://b12//img") == ("b12", "img/")
    assert parse_source_uri("s3://b12") == ("b12", "")
    assert normalize_prefix("/") == ""


def test_a_uri_is_formatted_without_a_trailing_slash_for_the_whole_bucket() -> None:
    assert format_s3_uri("b") == "s3://b"
    assert format_s3_uri("b", "") == "s3://b"
    assert format_s3_uri("b", "img/") == "s3://b/img/"


@pytest.mark.parametrize(
    "key,problem",
    [
        ("", "empty key"),
        ("a\x00b", "key contains a NUL character"),
        ("a\udc80", "key is not valid Unicode (a lone surrogate)"),
        ("é" * 513, "key is 1026 bytes of UTF-8, over S3's 1024"),
        ("a" * 1025, "key is 1025 bytes of UTF-8, over S3's 1024"),
        ("a" * 1024, None),
        ("é" * 512, None),
        ("k", None),
    ],
)
def test_a_key_s3_cannot_hold_is_named_with_why(key: str, problem: str | None) -> None:
    assert key_problem(key) == problem


def test_listing_order_is_utf8_byte_order() -> None:
    assert utf8_after("b", "a") is True
    assert utf8_after("a", "a") is False
    assert utf8_after("a", "b") is False
    assert utf8_after("a", None) is True
    assert utf8_after(None, "a") is False
    assert utf8_after(None, None) is False
    # U+FF61 sorts after U+10000 in UTF-16 code units but before it in UTF-8 bytes
    assert utf8_after("\U00010000", "\uff61") is True
    assert utf8_after("\udc80", "\x7f") is True  # listed undecodable bytes still compare


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("90s", 90),
        ("90", 90),
        (" 30 M ", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5m", 90),
        ("0.5", 0.5),
        (45, 45),
        (2.5, 2.5),
        (timedelta(minutes=2), 120),
    ],
)
def test_a_duration_reads_as_people_write_it(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "s", "1w", "-5s", "1.s", "5 5", "1e3"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert _message(caught) == f"not a duration (use e.g. 90s, 30m, 2h or seconds): {text!r}"


@pytest.mark.parametrize("text", ["0", "0s", 0, -1, timedelta(0), timedelta(seconds=-1)])
def test_a_duration_must_be_positive(text: str | float | timedelta) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert _message(caught) == f"a duration must be positive: {text!r}"


def test_a_zero_duration_is_taken_where_allowed_and_a_negative_one_never() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    assert parse_duration(0, allow_zero=True) == timedelta(0)
    with pytest.raises(UsageError) as caught:
        parse_duration(-1, allow_zero=True)
    assert _message(caught) == "a duration must be positive: -1"


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3600, "1h"),
        (3725, "1h 2m 5s"),
        (86400, "1d"),
        (90061, "1d 1h 1m 1s"),
        (172800 + 59, "2d 59s"),
        (0.9, "0s"),
    ],
)
def test_a_duration_is_shown_short_and_exact(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


# --- display ----------------------------------------------------------------------------


def test_printable_text_is_kept_and_controls_are_escaped() -> None:
    assert printable("a [b] é 文") == "a [b] é 文"
    assert printable("a\x1b]52;c;x\x07 b") == "a\\x1b]52;c;x\\x07 b"
    assert printable("\r\n\t") == "\\r\\n\\t"
    assert printable("x\u202ey z") == "x\\u202ey z"
    assert printable("\x7f\x85") == "\\x7f\\x85"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("tracker.stream", logging.INFO, __file__, 1, msg, args, None)


def test_a_log_line_naming_a_key_with_controls_is_escaped_once_formatted() -> None:
    record = _record("served %s of %d", "evil\x1b[2J", 3)
    assert EscapeControls().filter(record) is True
    assert record.msg == "served evil\\x1b[2J of 3"
    assert record.args is None
    assert record.getMessage() == "served evil\\x1b[2J of 3"


def test_a_printable_log_line_is_left_as_it_is() -> None:
    record = _record("served %s", "ok")
    assert EscapeControls().filter(record) is True
    assert record.msg == "served %s"
    assert record.args == ("ok",)


def test_the_key_loggers_get_the_filter_once() -> None:
    names = ("tracker.test-display-a", "tracker.test-display-b")
    escape_key_logs(names)
    escape_key_logs(names)
    for name in names:
        found = [f for f in logging.getLogger(name).filters if isinstance(f, EscapeControls)]
        assert len(found) == 1
        logging.getLogger(name).filters.clear()
    assert KEY_LOGGERS == ("tracker.stream", "tracker.lister", "tracker.recipe")


def test_the_key_loggers_are_the_default() -> None:
    saved = {name: list(logging.getLogger(name).filters) for name in KEY_LOGGERS}
    try:
        escape_key_logs()
        for name in KEY_LOGGERS:
            assert any(isinstance(f, EscapeControls) for f in logging.getLogger(name).filters)
    finally:
        for name, filters in saved.items():
            logging.getLogger(name).filters[:] = filters


# --- errors -----------------------------------------------------------------------------


def test_each_error_has_its_documented_exit_code() -> None:
    assert errors.TrackerError.exit_code == 1
    assert errors.UsageError.exit_code == 2
    assert errors.S3Error.exit_code == 3
    assert errors.StateDBError.exit_code == 4
    assert errors.OwnerInUse.exit_code == 4
    assert errors.SourceNotFound.exit_code == 5
    assert errors.DatasetNotFound.exit_code == 5
    assert errors.CountsDiffer.exit_code == 7
    assert errors.Interrupted.exit_code == 130
    assert errors.InventoryError.exit_code == 2
    assert errors.StateDBError.sqlstate is None


def test_owner_in_use_names_where_the_other_process_runs() -> None:
    error = errors.OwnerInUse("owner alice is serving", host="h1", pid=42)
    assert str(error) == "owner alice is serving"
    assert (error.host, error.pid) == ("h1", 42)
    bare = errors.OwnerInUse("x")
    assert (bare.host, bare.pid) == ("", 0)


# --- batching ---------------------------------------------------------------------------


def test_a_resume_within_the_fill_loop_gap_is_mid_batch_even_after_an_answer() -> None:
    assert FILL_LOOP_GAP == 0.002
    assert mid_batch(10.0, 10.001, 10.0005, batch_gap=0.0) is True
    assert mid_batch(10.0, 10.0025, None, batch_gap=0.0) is False


def test_a_resume_within_the_batch_gap_is_mid_batch_unless_an_answer_came_between() -> None:
    assert mid_batch(10.0, 10.5, None, batch_gap=1.0) is True
    assert mid_batch(10.0, 10.5, 9.9, batch_gap=1.0) is True  # answered before the handover
    assert mid_batch(10.0, 10.5, 10.6, batch_gap=1.0) is True  # (a clock after the resume)
    assert mid_batch(10.0, 10.5, 10.0, batch_gap=1.0) is False  # the bounds count
    assert mid_batch(10.0, 10.5, 10.5, batch_gap=1.0) is False
    assert mid_batch(10.0, 11.0, None, batch_gap=1.0) is False  # the gap is exclusive


# --- filters ----------------------------------------------------------------------------


def test_extensions_are_split_on_commas_and_stripped() -> None:
    assert parse_extensions([]) is None
    assert parse_extensions(["jpg, png", " .TIF"]) == ["jpg", "png", ".TIF"]


@pytest.mark.parametrize("values", [["jpg,"], [" "], ["jpg", "."], [",png"]])
def test_an_empty_extension_is_refused(values: list[str]) -> None:
    with pytest.raises(UsageError) as caught:
        parse_extensions(values)
    assert _message(caught) == f"empty extension in --ext {','.join(values)!r}"


def test_the_default_filter_takes_images_and_keys_without_an_extension() -> None:
    default = KeyFilter.build()
    assert default == KeyFilter(IMAGE_EXTENSIONS, (), True)
    assert default.accepts("a/b.JPG", 10)
    assert default.accepts("a/b.heic", None)
    assert default.accepts("ab/cdef0123", 10)
    assert not default.accepts("a/b.txt", 10)
    assert default.accepts("a.d/readme", 10)  # the dot is in a folder
    assert not default.accepts("a/b.jpg/", 0)
    assert not default.accepts("a/", None)
    assert not default.accepts("a/b.jpg", 0)
    assert default.accepts("a/jpg", 10)
    assert not default.accepts("a.jpg/b.txt", 10)
    assert "jpeg" in IMAGE_EXTENSIONS and "avif" in IMAGE_EXTENSIONS


def test_explicit_extensions_replace_the_default_and_the_no_extension_rule() -> None:
    chosen = KeyFilter.build([" .TIF", "png", " "])
    assert chosen == KeyFilter(frozenset({"tif", "png"}), (), False)
    assert chosen.accepts("x.tif", 1) and chosen.accepts("x.PNG", 1)
    assert not chosen.accepts("x.jpg", 1)
    assert not chosen.accepts("noext", 1)
    with_globs = KeyFilter.build(["png"], ["*.raw"])
    assert with_globs == KeyFilter(frozenset({"png"}), ("*.raw",), False)
    assert with_globs.accepts("a.raw", 1) and with_globs.accepts("a.png", 1)


def test_globs_alone_take_only_what_they_match_case_sensitively() -> None:
    globbed = KeyFilter.build(None, ["cam1/*"])
    assert globbed == KeyFilter(None, ("cam1/*",), False)
    assert globbed.accepts("cam1/x.txt", 1)
    assert not globbed.accepts("CAM1/x.txt", 1)
    assert not globbed.accepts("cam2/x.jpg", 1)


def test_all_objects_takes_every_object_but_placeholders() -> None:
    every = KeyFilter.build(["png"], ["x*"], all_objects=True)
    assert every == KeyFilter(None, (), True)
    assert every.accepts("x.txt", 1) and every.accepts("y", None)
    assert not every.accepts("dir/", 5) and not every.accepts("empty", 0)


def test_a_filter_describes_itself_in_the_users_terms() -> None:
    assert KeyFilter.build(all_objects=True).describe() == "every object"
    assert KeyFilter.build(["png", "jpg"]).describe() == "extensions jpg,png"
    assert KeyFilter(frozenset({"png"}), (), True).describe() == (
        "extensions png or keys without an extension"
    )
    assert KeyFilter.build(None, ["a*", "b?"]).describe() == (
        "keys matching 'a*' or keys matching 'b?'"
    )
    assert KeyFilter.build(["png"], ["a*"]).describe() == "extensions png or keys matching 'a*'"
    assert KeyFilter.build(["png"]).nothing_taken("s3://b/p/", 7) == (
        "s3://b/p/: a listed page of 7 objects had 0 the filter takes (extensions png); "
        "to take others use --ext, --match or --all-objects"
    )


# --- ordering ---------------------------------------------------------------------------


def test_an_order_is_parsed_from_its_name() -> None:
    assert Order.parse(None) == Order("listing", 0)
    assert Order.parse(" Random ", 5) == Order("random", 5)
    assert Order.parse("by-prefix", 7) == Order("by-prefix", 7)
    assert Order.parse("random") == Order("random", 0)
    assert Order.parse("priority") == Order("priority", 0)


def test_an_unknown_order_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        Order.parse("shuffled")
    assert _message(caught) == (
        "unknown order 'shuffled'; use one of listing, random, priority, by-prefix"
    )


@pytest.mark.parametrize("kind", ["listing", "priority"])
def test_a_seed_applies_only_to_random_and_by_prefix(kind: str) -> None:
    with pytest.raises(UsageError) as caught:
        Order.parse(kind, 0)
    assert _message(caught) == f"--seed applies to random and by-prefix order, not {kind}"


def test_an_order_is_labelled_as_the_state_db_stores_it() -> None:
    assert Order.from_label(None) == Order()
    assert Order.from_label("random:12") == Order("random", 12)
    assert Order.from_label("random") == Order("random", 0)
    assert Order("priority", 3).label == "priority"
    assert Order("by-prefix", 3).label == "by-prefix:3"
    assert str(Order()) == "listing"
    assert str(Order("by-prefix", 2)) == "by-prefix:2"
    assert Order("random").ranked and not Order().ranked


def test_seeded_hashes_are_these_52_bit_integers_forever() -> None:
    assert seeded_hash(0, "a") == 384337136396910
    assert seeded_hash(7, "images/x.jpg") == 4350726076093277
    assert seeded_hash(0, "\udc80") == 4168265718969770
    assert ranks(Order("random", 3), [Unranked(1, "p/a/1"), Unranked(2, "p/b/1")], prefix="p/",
                 after=0) == [117482572946604.0, 1795991186034570.0]  # fmt: skip


def test_by_prefix_ranks_are_an_exact_round_robin_after_the_last_rank() -> None:
    keys = ["p/a/1", "p/b/1", "p/a/2", "p/top", "p/b/2", "p/a/3"]
    rows = [Unranked(i, k) for i, k in enumerate(keys, start=1)]
    assert ranks(Order("by-prefix", 3), rows, prefix="p/", after=10.7) == [
        12.0, 11.0, 15.0, 13.0, 14.0, 18.0,
    ]  # fmt: skip


def test_listing_order_has_no_ranks() -> None:
    with pytest.raises(ValueError) as caught:
        ranks(Order(), [], prefix="", after=0)
    assert _message(caught) == "listing order has no ranks (asked for listing)"


def test_a_key_outside_the_prefix_takes_its_own_first_segment() -> None:
    assert first_segment("other/x/y", "images/") == "other"
    assert first_segment("images", "images/") == ""


# --- the mutants the tests above left alive (scripts/mutants) ----------------------------


def test_the_scheme_ends_at_the_first_separator_and_a_prefix_keeps_its_xs() -> None:
    assert parse_s3_uri("s3://b12/a://b") == ("b12", "a://b")
    assert normalize_prefix("Xa") == "Xa/"


def test_a_lone_surrogate_compares_on_either_side() -> None:
    assert utf8_after("\U0010ffff", "\udc80") is True
    assert utf8_after("a", "\udc80") is False


def test_an_extension_of_xs_is_an_extension() -> None:
    assert parse_extensions(["X"]) == ["X"]
    assert KeyFilter.build([".Xyz"]).extensions == frozenset({"xyz"})


def test_the_extension_is_after_the_last_dot_of_the_last_segment() -> None:
    assert KeyFilter.build(["jpg"]).accepts("a.b.jpg", 1)
    assert not KeyFilter.build(["d/jpg"]).accepts("x.d/jpg", 1)
    assert KeyFilter.build().accepts("a/b.d/c", 1)


def test_a_resume_exactly_at_the_fill_loop_gap_is_not_the_fill_loop() -> None:
    assert mid_batch(0.0, 0.002, 0.001, batch_gap=1.0) is False


def test_printable_text_beside_a_control_is_kept_literally() -> None:
    assert printable("é \x1b") == "é \\x1b"


def test_a_duration_unit_is_read_in_either_case() -> None:
    assert parse_duration("2H") == timedelta(hours=2)


def test_by_prefix_order_is_random_within_a_lane() -> None:
    keys = [f"p/a/{i}" for i in range(6)] + ["p/b/1", "p/b/2"]
    rows = [Unranked(i, k) for i, k in enumerate(keys, start=1)]
    assert ranks(Order("by-prefix", 3), rows, prefix="p/", after=0) == [
        8.0, 2.0, 10.0, 12.0, 6.0, 4.0, 1.0, 3.0,
    ]  # fmt: skip
