"""scripts/check_doc_citations.py: a doc that cites a test that does not exist fails
`scripts/check`. Seen to fail with the README citing `test_keys_text_prints_odd_keys_literally`
(a prefix of the real name) before that citation was fixed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "check_doc_citations", ROOT / "scripts" / "check_doc_citations.py"
)
assert _spec is not None and _spec.loader is not None
citations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(citations)

TESTS = {
    "tests/integration/test_a.py": {"test_one", "test_two"},
    "tests/faultproxy.py": set(),
}


def test_citations_of_existing_tests_and_files_pass() -> None:
    text = (
        "| x | y | `tests/integration/test_a.py::test_one`, `::test_two` |\n"
        "see `test_two`, the module `test_a` and `tests/faultproxy.py`; pytest_timeout\n"
    )
    assert citations.wrong_citations(text, "R.md", TESTS) == []


def test_a_missing_file_a_missing_test_and_an_unknown_name_are_each_named() -> None:
    text = (
        "`tests/integration/test_b.py::test_one`\n"
        "`tests/integration/test_a.py::test_one`, `::test_three`\n"
        "\n"
        "`::test_one` alone, and `test_one_more`\n"
        "| row | `tests/integration/test_a.py::test_one` |\n"
        "| next row | `::test_two` |\n"
    )
    assert citations.wrong_citations(text, "R.md", TESTS) == [
        "R.md:1: tests/integration/test_b.py does not exist",
        "R.md:2: tests/integration/test_a.py defines no test_three",
        "R.md:4: ::test_one follows no test file",
        "R.md:4: no test is named test_one_more",
        "R.md:6: ::test_two follows no test file",
    ]


def test_the_shorthand_follows_the_file_named_earlier_in_its_paragraph() -> None:
    text = (
        "both lists are checked (`tests/integration/test_a.py::test_one`,\n"
        "`::test_two`) and `::test_three`.\n"
    )
    assert citations.wrong_citations(text, "R.md", TESTS) == [
        "R.md:2: tests/integration/test_a.py defines no test_three"
    ]
