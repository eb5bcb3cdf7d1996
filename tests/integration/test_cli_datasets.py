"""Two Prodigy datasets over one source, side by side: each gets every key, and every
operator command acts on the dataset it names (both databases)."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.cli_support import build_state, run, states
from tracker.models import Answer
from tracker.records import AnswerRecord
from tracker.store import Store


def _second_dataset(url: str, name: str = "dogs_review") -> None:
    """`dogs_review` over the same keys: everything served to it, two keys answered."""
    with Store.open(url) as store:
        dogs = store.dataset(store.source("photos"), name, create=True)
        leases = store.claim(dogs, "dogs@host-c", 1000, timedelta(minutes=30))
        store.record_answers(
            dogs, [AnswerRecord(x.key, Answer.REJECT, f"{name}-bob") for x in leases[:2]]
        )


def test_a_second_dataset_gets_every_key_the_first_annotated(db_url):
    build_state(db_url)  # `ds`: 6 annotated, 4 served, 1 failed
    _second_dataset(db_url)
    dogs = states(db_url, dataset="dogs_review")
    assert len(dogs) == len(states(db_url)) == 26
    assert sorted(dogs.values()).count("annotated") == 2
    assert sorted(dogs.values()).count("served") == 24


def test_status_shows_one_entry_per_dataset_and_keeps_single_dataset_fields(db_url):
    build_state(db_url)
    single = json.loads(run(db_url, "status", "--json").stdout)["sources"][0]
    assert [d["name"] for d in single["datasets"]] == ["ds"]
    assert single["states"] == single["datasets"][0]["states"]  # as before datasets existed
    assert single["states"]["annotated"] == 6

    _second_dataset(db_url)
    both = json.loads(run(db_url, "status", "--json").stdout)["sources"][0]
    by_name = {d["name"]: d for d in both["datasets"]}
    assert by_name["ds"]["states"]["annotated"] == 6
    assert by_name["dogs_review"]["states"]["annotated"] == 2
    assert both["states"] is None  # several datasets: read `datasets`
    assert both["total"] == 26

    named = json.loads(run(db_url, "status", "--dataset", "dogs_review", "--json").stdout)
    assert named["sources"][0]["states"]["served"] == 24
    text = run(db_url, "status").stdout
    assert "dataset:" in text and "dogs_review" in text and "ds" in text


def test_commands_need_a_dataset_named_when_the_source_has_several(db_url):
    build_state(db_url)
    _second_dataset(db_url)
    for args in (["keys"], ["reset", "--all", "--yes"], ["requeue", "--all", "--yes"]):
        result = run(db_url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "--dataset" in result.stderr and "dogs_review" in result.stderr
    unknown = run(db_url, "keys", "--dataset", "nope")
    assert unknown.exit_code == 5 and "nope" in unknown.stderr


def test_keys_requeue_and_reset_act_on_the_named_dataset_only(db_url):
    build_state(db_url)
    _second_dataset(db_url)
    before = states(db_url)

    keys = run(db_url, "keys", "--dataset", "dogs_review", "--state", "annotated")
    assert keys.exit_code == 0 and keys.stdout == "img/0000.jpg\nimg/0001.jpg\n"

    requeued = run(db_url, "requeue", "--dataset", "dogs_review", "--all", "--yes")
    assert requeued.exit_code == 0, requeued.output
    assert "24 served keys of dogs_review" in requeued.stdout
    assert "served" not in states(db_url, dataset="dogs_review").values()
    assert states(db_url) == before  # `ds` untouched

    reset = run(db_url, "reset", "--dataset", "ds", "--state", "annotated", "--yes")
    assert reset.exit_code == 0, reset.output
    assert "annotated" not in states(db_url).values()
    assert list(states(db_url, dataset="dogs_review").values()).count("annotated") == 2


def test_import_answers_goes_to_the_named_dataset(db_url, tmp_path):
    build_state(db_url)
    _second_dataset(db_url)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        json.dumps({"image": "s3://photos/img/0015.jpg", "answer": "accept"}) + "\n",
        encoding="utf-8",
    )
    ambiguous = run(db_url, "import-answers", "s3://photos", str(answers))
    assert ambiguous.exit_code == 2 and "--dataset" in ambiguous.stderr
    result = run(db_url, "import-answers", "s3://photos", str(answers), "--dataset", "ds")
    assert result.exit_code == 0, result.output
    assert states(db_url)["img/0015.jpg"] == "annotated"
    assert states(db_url, dataset="dogs_review")["img/0015.jpg"] == "served"
