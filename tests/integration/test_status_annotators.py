"""`tracker status`'s annotator table: per Prodigy session, the answers by answer, the
last hour's, the median seconds from hand-over to answer, the last answer, and the keys
leased now to the owner (recipe process) the session answers through; numbers match the
answers given."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.cli_support import listed, run
from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store

LEASE = timedelta(minutes=30)
KEYS = [f"img/{i:03}.jpg" for i in range(20)]


def answer_after(store, dataset, lease, answer, session, seconds):  # type: ignore[no-untyped-def]
    served = lease.expires_at - LEASE  # the lease starts when the key is handed over
    record = AnswerRecord(lease.key, answer, session, served + timedelta(seconds=seconds))
    assert store.record_answers(dataset, [record]) == 1


def annotated(db_url: str) -> None:
    """alice answers through p1 (three keys after 10, 20 and 40 s; two more leased to p1),
    bob through p2 (one key after 5 s) plus one answer imported from three hours ago."""
    with Store.open(db_url) as store:
        source = store.source("photos", create=True)
        store.record_page(source, listed(KEYS), next_token=None, last_key=KEYS[-1], exhausted=True)
        dataset = store.dataset(source, "ds", create=True)
        leases = store.claim(dataset, "p1@host:8080", 3, LEASE)
        for lease, answer, seconds in zip(
            leases, [Answer.ACCEPT, Answer.ACCEPT, Answer.REJECT], [10, 40, 20], strict=True
        ):
            answer_after(store, dataset, lease, answer, "ds-alice", seconds)
        store.claim(dataset, "p1@host:8080", 2, LEASE)
        (lease,) = store.claim(dataset, "p2@host:8081", 1, LEASE)
        answer_after(store, dataset, lease, Answer.IGNORE, "ds-bob", 5)
        old = lease.expires_at - timedelta(hours=3)
        store.import_answers(dataset, [AnswerRecord(KEYS[19], Answer.ACCEPT, "ds-bob", old)])


def test_status_json_reports_each_session_with_numbers_matching_the_answers(db_url):
    annotated(db_url)
    result = run(db_url, "status", "--json")
    assert result.exit_code == 0, result.output
    (status,) = json.loads(result.stdout)["sources"]
    alice, bob = status["datasets"][0]["annotators"]
    assert status["annotators"] == [alice, bob]
    assert alice == {
        "session": "ds-alice",
        "answers": {"accept": 2, "reject": 1, "ignore": 0},
        "answered": 3,
        "answered_last_hour": 3,
        "median_seconds_to_answer": 20.0,
        "last_answer_at": alice["last_answer_at"],
        "owner": "p1@host:8080",
        "leased_to_owner": 2,
        "process": "p1@host:8080",  # the old names, kept
        "leased_to_process": 2,
    }
    assert bob["answers"] == {"accept": 1, "reject": 0, "ignore": 1}
    # the imported answer counts, but is neither timed nor "in the last hour"
    assert (bob["answered"], bob["answered_last_hour"]) == (2, 1)
    assert bob["median_seconds_to_answer"] == 5.0
    assert (bob["owner"], bob["leased_to_owner"]) == ("p2@host:8081", 0)
    # each session's latest answer: alice's 40 s after hand-over, bob's 5 s (not the import)
    assert alice["last_answer_at"] > bob["last_answer_at"] > status["listing"]["updated_at"]


def test_status_text_has_one_annotator_line_per_session(db_url):
    annotated(db_url)
    result = run(db_url, "status")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "annotator:" in line]
    assert len(lines) == 2
    assert lines[0].startswith("  annotator:    ds ds-alice: accept 2, reject 1, ignore 0, ")
    assert "last hour 3, median s 20.0" in lines[0]
    assert lines[0].endswith("owner p1@host:8080, leased 2")
    assert lines[1].endswith("owner p2@host:8081, leased 0")


def test_a_dataset_without_answers_has_no_annotators(db_url):
    with Store.open(db_url) as store:
        source = store.source("photos", create=True)
        store.record_page(source, listed(KEYS), next_token=None, last_key=KEYS[-1], exhausted=True)
        store.claim(store.dataset(source, "ds", create=True), "p1", 3, LEASE)
    (status,) = json.loads(run(db_url, "status", "--json").stdout)["sources"]
    assert status["annotators"] == []
    assert "annotator" not in run(db_url, "status").stdout
