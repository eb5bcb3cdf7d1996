"""`tracker requeue`: served keys back to pending, by age, owner, session, key or glob."""

from __future__ import annotations

import pytest

from tests.cli_support import build_state, run, states
from tracker.cli.commands.requeue import session_holds


def served(url: str) -> list[str]:
    return sorted(k for k, s in states(url).items() if s == "served")


def test_requeue_everything_served(db_url):
    build_state(db_url)
    result = run(db_url, "requeue", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "requeued 4 served keys of ds on s3://photos (now pending)\n"
    after = states(db_url)
    assert served(db_url) == []
    assert after["img/0000.jpg"] == "annotated"  # other states untouched
    assert after["img/0010.jpg"] == "failed"


def test_requeue_older_than(db_url):
    build_state(db_url)
    assert run(db_url, "requeue", "--older-than", "1h", "--yes").exit_code == 0
    assert served(db_url) == ["img/0006.jpg", "img/0007.jpg"]  # served just now: kept


def test_requeue_dry_run_changes_nothing(db_url):
    build_state(db_url)
    before = states(db_url)
    result = run(db_url, "requeue", "--older-than", "90m", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout == "img/0008.jpg\nimg/0009.jpg\n"
    assert "would requeue 2 served keys" in result.stderr
    assert states(db_url) == before


def test_requeue_by_owner_exact_and_glob(db_url):
    build_state(db_url)
    run(db_url, "requeue", "--owner", "other@host-b", "--yes")
    assert served(db_url) == ["img/0008.jpg", "img/0009.jpg"]
    run(db_url, "requeue", "--owner", "ds@*", "--yes")
    assert served(db_url) == []


@pytest.mark.parametrize(
    "session,expected_left",
    [
        ("ds-alice", ["img/0006.jpg", "img/0007.jpg"]),  # Prodigy's <dataset>-<name>
        ("ds", ["img/0006.jpg", "img/0007.jpg"]),  # the dataset itself
        ("other-x", ["img/0008.jpg", "img/0009.jpg"]),
        ("nobody", ["img/0006.jpg", "img/0007.jpg", "img/0008.jpg", "img/0009.jpg"]),
    ],
)
def test_requeue_by_session_matches_the_owner_serving_it(sqlite_url, session, expected_left):
    build_state(sqlite_url)
    result = run(sqlite_url, "requeue", "--session", session, "--yes")
    assert result.exit_code == 0
    assert served(sqlite_url) == expected_left


def test_session_holds():
    assert session_holds("cats-alice", "cats@laptop")
    assert session_holds("cats", "cats@laptop")
    assert session_holds("cats@laptop", "cats@laptop")
    assert not session_holds("dogs-alice", "cats@laptop")
    assert not session_holds("cat", "cats@laptop")
    assert not session_holds("cats", None)


def test_requeue_by_key_and_glob_never_touches_other_states(db_url):
    build_state(db_url)
    # img/0000 is annotated: naming it does not requeue it.
    run(db_url, "requeue", "--key", "img/0006.jpg", "--key", "img/0000.jpg", "--yes")
    assert served(db_url) == ["img/0007.jpg", "img/0008.jpg", "img/0009.jpg"]
    assert states(db_url)["img/0000.jpg"] == "annotated"
    run(db_url, "requeue", "--match", "img/000[89].jpg", "--yes")
    assert served(db_url) == ["img/0007.jpg"]


def test_requeue_rejects_a_bad_duration(sqlite_url):
    build_state(sqlite_url)
    result = run(sqlite_url, "requeue", "--older-than", "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.output
