"""`tracker priority`'s file (tracker/priorities.py): CSV or JSON lines, checked whole, the
first bad line named. Every message is asserted word for word.

Seen to fail on `scripts/mutants`' mutants of `parse_priorities`, `_jsonl`, `_csv` and
`_number` (the format switch, the line numbers, `math.isfinite`, each message).
"""

from __future__ import annotations

import pytest

from tracker.errors import UsageError
from tracker.priorities import parse_priorities


def _refusal(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_priorities(text, "p.csv")
    return str(caught.value)


def test_a_csv_file_gives_each_keys_priority_by_its_header() -> None:
    text = "score,key,priority\r\n1,a.jpg,0.5\r\n2,b.jpg,-3\r\n,c d.jpg,1e3\r\n"
    assert parse_priorities(text, "p.csv") == {"a.jpg": 0.5, "b.jpg": -3.0, "c d.jpg": 1000.0}


def test_a_byte_order_mark_and_blank_leading_lines_do_not_hide_the_format() -> None:
    assert parse_priorities("\ufeffkey,priority\na,1\n", "p.csv") == {"a": 1.0}
    assert parse_priorities('\n  \n {"key": "a", "priority": 2}\n', "p.jsonl") == {"a": 2.0}


def test_json_lines_give_each_keys_priority_and_skip_blank_lines() -> None:
    text = '{"key": "a", "priority": 0.7}\n\n{"key": "b\\nc", "priority": 3, "x": 1}\n'
    assert parse_priorities(text, "p.jsonl") == {"a": 0.7, "b\nc": 3.0}


def test_a_quoted_csv_key_may_hold_a_comma_or_a_line_break() -> None:
    text = 'key,priority\n"a,b",1\n"c\nd",2\n'
    assert parse_priorities(text, "p.csv") == {"a,b": 1.0, "c\nd": 2.0}


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "p.csv line 1: expected a CSV header with the columns \"key\" and \"priority\", "
         'or JSON lines ({"key": ..., "priority": ...})'),
        ("key,score\na,1\n", "p.csv line 1: expected a CSV header with the columns \"key\" and "
         '"priority", or JSON lines ({"key": ..., "priority": ...})'),
        ("key,priority\n", "p.csv holds no priorities"),
        ("key,priority\na,1\nb,x\n", "p.csv line 3: priority 'x' is not a number"),
        ("key,priority\na,\n", "p.csv line 2: no priority (a number, e.g. 0.73)"),
        ("key,priority\na\n", "p.csv line 2: no priority (a number, e.g. 0.73)"),
        ("key,priority\na,nan\n", "p.csv line 2: priority 'nan' is not a finite number"),
        ("key,priority\na,inf\n", "p.csv line 2: priority 'inf' is not a finite number"),
        ("key,priority\n,1\n", "p.csv line 2: no key"),
        ("key,priority\na,1\nb,2\na,3\n", "p.csv line 4: key 'a' already given on line 2"),
        ('key,priority\n"a\x00",1\n', "p.csv line 2: key contains a NUL character"),
        ('{"key": "a", "priority": 1}\nnot json\n', "p.csv line 2: not a JSON object"),
        ('{"key": "a", "priority": 1}\n[1]\n', "p.csv line 2: not a JSON object"),
        ('{"priority": 1}\n', "p.csv line 1: no key"),
        ('{"key": 3, "priority": 1}\n', "p.csv line 1: no key"),
        ('{"key": "", "priority": 1}\n', "p.csv line 1: no key"),
        ('{"key": "a"}\n', "p.csv line 1: no priority (a number, e.g. 0.73)"),
        ('{"key": "a", "priority": true}\n', "p.csv line 1: no priority (a number, e.g. 0.73)"),
        ('{"key": "a", "priority": null}\n', "p.csv line 1: no priority (a number, e.g. 0.73)"),
        ('{"key": "a", "priority": [1]}\n', "p.csv line 1: priority [1] is not a number"),
        ('{"key": "a", "priority": "2"}\n{"key": "a", "priority": 1}',
         "p.csv line 2: key 'a' already given on line 1"),
        ('{"key": "a", "priority": 1e999}\n', "p.csv line 1: priority inf is not a finite number"),
        ("\n\n", "p.csv line 1: expected a CSV header with the columns \"key\" and \"priority\", "
         'or JSON lines ({"key": ..., "priority": ...})'),
    ],
)  # fmt: skip
def test_the_first_bad_line_is_named_with_why(text: str, message: str) -> None:
    assert _refusal(text) == message


def test_json_lines_with_only_blank_lines_after_the_first_hold_what_they_hold() -> None:
    assert parse_priorities('{"key": "a", "priority": "0.25"}\n\n\n', "p") == {"a": 0.25}


def test_a_csv_field_over_the_limit_names_the_line_it_is_on() -> None:
    """Seen to fail on the old message, which named the line before it."""
    long = "a" * 140_000
    assert _refusal(f"key,priority\na,1\n{long},1\n") == (
        "p.csv line 3: field larger than field limit (131072)"
    )


def test_a_quoted_csv_key_keeps_its_windows_line_break() -> None:
    assert parse_priorities('key,priority\r\n"a\r\nb",1\r\n', "p.csv") == {"a\r\nb": 1.0}
