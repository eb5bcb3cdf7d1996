"""`tracker db check [--repair] [--json]`: the counters behind `status` recounted, a
difference reported per source and dataset (exit 7) and repaired; on PostgreSQL, tables
with stale statistics or dead tuples reported with the command that fixes them."""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.cli_support import build_state, run
from tracker.store import Store


def _corrupt(db_url: str, name: str, by: int) -> None:
    """Add `by` to one of the dataset's counters behind the triggers' back (a delta row
    on PostgreSQL, the one row on SQLite)."""
    with Store.open(db_url) as store, store.engine.begin() as conn:
        dataset = store.dataset(store.source("photos"), "ds")
        if conn.dialect.name == "postgresql":
            statement = f"INSERT INTO dataset_counts (dataset_id, {name}) VALUES (:d, :by)"
        else:
            statement = f"UPDATE dataset_counts SET {name} = {name} + :by WHERE dataset_id = :d"
        conn.execute(text(statement), {"d": dataset.id, "by": by})


def test_db_check_finds_nothing_on_a_db_the_triggers_kept(db_url):
    build_state(db_url)
    result = run(db_url, "db", "check")
    assert result.exit_code == 0, result.output
    assert "every number equals its recount" in result.stdout


def test_a_corrupted_counter_is_reported_with_exit_6_then_repaired(db_url):
    build_state(db_url)
    _corrupt(db_url, "live_served", 5)

    result = run(db_url, "db", "check", "--json")
    assert result.exit_code == 7
    report = json.loads(result.stdout)
    by_name = {d["name"]: d for d in report["differences"]}
    assert set(by_name) == {"pending", "open_served"}
    assert by_name["pending"]["source"] == "s3://photos"
    assert by_name["pending"]["dataset"] == "ds"
    assert by_name["pending"]["kept"] == by_name["pending"]["recounted"] - 5
    assert "--repair" in result.stderr

    table = run(db_url, "db", "check")
    assert table.exit_code == 7
    assert "open_served" in table.stdout and "pending" in table.stdout

    repaired = run(db_url, "db", "check", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: counters rewritten from the recount" in repaired.stdout
    assert run(db_url, "db", "check").exit_code == 0
    with Store.open(db_url) as store:
        dataset = store.dataset(store.source("photos"), "ds")
        assert store.counts(dataset) == store.recount(dataset)


def test_stale_statistics_and_dead_tuples_are_reported_with_the_command_that_fixes_them(
    pg_url,
):
    build_state(pg_url, regular=1500)
    with Store.open(pg_url) as store, store.engine.begin() as conn:
        # Rows rewritten without a VACUUM (autovacuum is off here): dead tuples.
        conn.execute(text("UPDATE objects SET size = size + 1"))
        conn.execute(text("UPDATE objects SET size = size + 1"))
    report = json.loads(run(pg_url, "db", "check", "--json").stdout)
    tables = {t["table"]: t for t in report["tables"]}
    fixes = {p["fix"] for p in tables["objects"]["problems"]}
    assert fixes == {"VACUUM (ANALYZE) objects"}
    assert tables["objects"]["dead"] >= 1500

    text_report = run(pg_url, "db", "check").stdout
    assert "VACUUM (ANALYZE) objects" in text_report


def test_repair_analyzes_tables_without_statistics_and_says_so(pg_url):
    build_state(pg_url, regular=1500)
    before = json.loads(run(pg_url, "db", "check", "--json").stdout)
    stale = {
        t["table"]
        for t in before["tables"]
        for p in t["problems"]
        if p["fix"].startswith("ANALYZE")
    }
    result = run(pg_url, "db", "check", "--repair", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "objects" in stale  # 1,500 rows, never analyzed
    assert any(line.startswith("ran ANALYZE") and "objects" in line for line in report["repaired"])
    after = {t["table"]: t for t in report["tables"]}
    assert all(after[t]["analyzed"] for t in stale)


def test_db_check_on_sqlite_reports_no_table_statistics(sqlite_url):
    build_state(sqlite_url)
    report = json.loads(run(sqlite_url, "db", "check", "--json").stdout)
    assert report["tables"] == [] and report["differences"] == []
