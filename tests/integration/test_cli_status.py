"""`tracker status` and `tracker sources`: numbers straight from the DB, stable JSON."""

from __future__ import annotations

import json

from sqlalchemy.engine import make_url

from tests.cli_support import build_state, run, run_process
from tracker.store import Store


def test_status_json_shape_and_numbers(db_url):
    build_state(db_url)
    result = run(db_url, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"format", "database", "generated_at", "sources"}
    assert report["format"] == 1
    (status,) = report["sources"]
    # Per-dataset state lives in `datasets`; with a single dataset the top-level state
    # fields keep their meaning from before datasets existed, so old readers still work.
    per_dataset = {
        "states", "answers", "expired_leases", "annotated_last_hour", "remaining",
        "eta_seconds", "eta_is_lower_bound", "annotators",
    }  # fmt: skip
    # Bucket changes (issue 14): per source, and per dataset what it annotated.
    changes = {"deleted", "changed", "last_event_at"}
    assert set(status) == {"source", "bucket", "prefix", "total", "listing", "datasets"} | (
        per_dataset | changes
    )
    assert (status["deleted"], status["changed"], status["last_event_at"]) == (0, 0, None)
    (dataset,) = status["datasets"]
    assert set(dataset) == {"name", "deleted_annotated", "changed"} | per_dataset
    assert dataset["name"] == "ds"
    assert {field: status[field] for field in per_dataset} == {
        field: dataset[field] for field in per_dataset
    }
    assert status["source"] == "s3://photos"
    assert status["total"] == 26
    assert status["states"] == {"pending": 15, "served": 4, "annotated": 6, "failed": 1}
    assert status["answers"] == {"accept": 2, "reject": 2, "ignore": 2}
    assert status["expired_leases"] == 2
    assert status["annotated_last_hour"] == 6
    assert status["remaining"] == 19
    assert status["eta_seconds"] == round(19 / 6 * 3600, 1)
    assert status["eta_is_lower_bound"] is True
    assert status["listing"] == {
        "pages_listed": 1,
        "keys_listed": 26,
        "token_saved": True,
        "exhausted": False,
        "exhausted_at": None,
        "last_key": "star*glob?.jpg",
        "updated_at": status["listing"]["updated_at"],
    }


def test_status_plain_text_shows_every_part(db_url):
    build_state(db_url, prefix="raw/")
    result = run(db_url, "status", "s3://photos/raw/")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "source: s3://photos/raw/" in lines
    # Listing facts belong to the source; state rows sit indented under their dataset.
    for expected in [
        "  keys:         26",
        "  listing:      1 pages, 26 keys added by listing, token saved, not exhausted",
        "  last key:     star*glob?.jpg",
        "  dataset:      ds",
        "    pending:    15 (57.7%)",
        "    served:     4 (15.4%), 2 with an expired lease",
        "    annotated:  6 (23.1%): 2 accept, 2 reject, 2 ignore",
        "    failed:     1",
    ]:
        assert expected in lines, (expected, result.stdout)
    assert any(
        line.startswith("    progress:")
        and "6 annotated in the last hour; time left: at least 3h 10m" in line
        for line in lines
    ), result.stdout
    # Every state row comes after the dataset line it belongs to.
    assert lines.index("  dataset:      ds") < lines.index("    pending:    15 (57.7%)")


def test_status_of_every_source_and_of_an_empty_db(sqlite_url):
    assert run(sqlite_url, "db", "upgrade").exit_code == 0  # status alone creates no DB
    result = run(sqlite_url, "status")
    assert result.exit_code == 0
    assert "no source yet" in result.stdout
    assert json.loads(run(sqlite_url, "status", "--json").stdout)["sources"] == []
    build_state(sqlite_url, bucket="one")
    build_state(sqlite_url, bucket="two", prefix="p/")
    report = json.loads(run(sqlite_url, "status", "--json").stdout)
    assert [s["source"] for s in report["sources"]] == ["s3://one", "s3://two/p/"]


def test_status_shows_a_markup_key_literally(sqlite_url):
    with Store.open(sqlite_url) as store:
        source = store.source("photos", "", create=True)
        from tests.cli_support import listed

        store.record_page(
            source, listed(["[bold red]x[/bold red]"]), next_token=None,
            last_key="[bold red]x[/bold red]", exhausted=True,
        )  # fmt: skip
    result = run(sqlite_url, "status")
    assert "last key:     [bold red]x[/bold red]" in result.stdout
    assert "exhausted" in result.stdout and "nothing left" not in result.stdout


def test_status_last_key_with_a_newline_stays_on_one_line(sqlite_url):
    with Store.open(sqlite_url) as store:
        source = store.source("photos", "", create=True)
        from tests.cli_support import listed

        store.record_page(source, listed(["a\nb"]), next_token=None, last_key="a\nb",
                          exhausted=True)  # fmt: skip
    result = run(sqlite_url, "status")
    assert "last key:     a\\nb" in result.stdout
    assert (
        json.loads(run(sqlite_url, "status", "--json").stdout)["sources"][0]["listing"]["last_key"]
        == "a\nb"
    )


def test_status_masks_the_password_in_output(pg_url):
    url = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    build_state(url)
    for args in (["status"], ["status", "--json"], ["db", "current"]):
        result = run(url, *args)
        assert result.exit_code == 0, result.output
        assert "s3cret-pw" not in result.output
        assert "***" in result.output


def test_a_db_error_masks_the_password_too():
    result = run_process("postgresql://me:s3cret-pw@127.0.0.1:1/nope", "status")
    assert result.returncode == 4
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_unknown_source_and_several_sources(sqlite_url):
    build_state(sqlite_url, bucket="one")
    result = run(sqlite_url, "status", "s3://nope")
    assert result.exit_code == 5
    assert "no source s3://nope" in result.stderr
    build_state(sqlite_url, bucket="two")
    result = run(sqlite_url, "keys")
    assert result.exit_code == 2
    assert "several sources" in result.stderr and "s3://one" in result.stderr
    result = run(sqlite_url, "keys", "not-a-url")
    assert result.exit_code == 2


def test_sources_lists_every_source(sqlite_url):
    assert run(sqlite_url, "sources").stdout == ""
    build_state(sqlite_url, bucket="one")
    build_state(sqlite_url, bucket="two", prefix="a b/")
    assert run(sqlite_url, "sources").stdout == "s3://one\ns3://two/a b/\n"
    lines = [json.loads(x) for x in run(sqlite_url, "sources", "--json").stdout.splitlines()]
    assert lines[1] == {"uri": "s3://two/a b/", "bucket": "two", "prefix": "a b/"}
