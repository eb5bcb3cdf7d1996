"""tracker/tasks.py: the task dicts Prodigy stores, their hashes, and keys read back out.

The hashes are golden values: every Prodigy dataset a user has was de-duplicated with
them, so a change to how they are computed (the URI, the separator, the serve salt, the
digest) must fail here, not in a user's dataset. Each literal below was computed once by
the code and is never to be recomputed; seen to fail on mutmut's `"\\n"` -> `"XX\\nXX"`,
`serve > 1` -> `serve >= 1` and `digest_size=4` -> `5` mutants.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracker.records import AnswerRecord
from tracker.states import Answer
from tracker.tasks import (
    MAX_SESSION_ID,
    AnswerError,
    answer_record,
    build_task,
    input_hash,
    key_from_example,
    parse_labels,
    s3_uri,
    session_id,
    stable_hash,
    strip_image,
    task_hash,
)

# --- golden values ----------------------------------------------------------------------


def test_input_hashes_of_fixed_keys_are_these_integers_forever() -> None:
    assert input_hash("my-bucket", "images/cat.jpg") == 2145916408
    assert input_hash("bücket", "фото/кот 1.jpg") == -161871566
    assert input_hash("b", "dir/été.png") == -857559098


def test_task_hashes_of_fixed_keys_are_these_integers_forever() -> None:
    assert task_hash("my-bucket", "images/cat.jpg", "image_manual") == -545091210
    assert task_hash("my-bucket", "images/cat.jpg", "classification", "cat") == 1567552422
    assert task_hash("bücket", "фото/кот 1.jpg", "image_manual") == 1338289173


def test_a_second_serve_has_its_own_task_hash_and_the_first_serve_keeps_the_old_one() -> None:
    first = task_hash("my-bucket", "images/cat.jpg", "image_manual")
    assert task_hash("my-bucket", "images/cat.jpg", "image_manual", serve=1) == first
    assert task_hash("my-bucket", "images/cat.jpg", "image_manual", serve=2) == -228277236
    assert task_hash("my-bucket", "images/cat.jpg", "classification", "cat", 3) == -1302073880


def test_stable_hash_is_a_signed_32_bit_blake2b_and_takes_lone_surrogates() -> None:
    assert stable_hash("") == 309448485
    assert stable_hash("\udc80") == 1303163085  # a key listed from S3 as undecodable bytes
    assert -(2**31) <= stable_hash("s3://my-bucket/images/cat.jpg") < 2**31


def test_a_task_carries_the_image_the_meta_and_both_hashes() -> None:
    assert build_task("b", "k", "img", size=3, view_id="classification", label="cat") == {
        "image": "img",
        "meta": {"bucket": "b", "key": "k", "size": 3},
        "_input_hash": 905371657,
        "_task_hash": 2014861107,
        "label": "cat",
    }


def test_a_task_defaults_to_image_manual_the_first_serve_and_no_size() -> None:
    task = build_task("my-bucket", "images/cat.jpg", "data:image/png;base64,AA==")
    assert task == {
        "image": "data:image/png;base64,AA==",
        "meta": {"bucket": "my-bucket", "key": "images/cat.jpg", "size": None},
        "_input_hash": 2145916408,
        "_task_hash": -545091210,
    }


def test_a_task_of_a_later_serve_has_that_serves_hash() -> None:
    task = build_task("my-bucket", "images/cat.jpg", "x", serve=2)
    assert task["_task_hash"] == -228277236
    assert task["_input_hash"] == 2145916408


def test_only_a_classification_task_carries_its_label() -> None:
    manual = build_task("my-bucket", "images/cat.jpg", "x", view_id="image_manual", label="cat")
    assert "label" not in manual
    assert manual["_task_hash"] == task_hash("my-bucket", "images/cat.jpg", "image_manual", "cat")
    no_label = build_task("my-bucket", "images/cat.jpg", "x", view_id="classification")
    assert "label" not in no_label


def test_an_s3_uri_keeps_the_key_verbatim() -> None:
    assert s3_uri("b", "a b/%20?#ü") == "s3://b/a b/%20?#ü"


# --- strip_image ------------------------------------------------------------------------


def test_strip_image_puts_the_s3_uri_in_place_of_the_image() -> None:
    example = {"image": "data:image/png;base64,AA==", "meta": {"key": "a/b.png"}, "x": 1}
    assert strip_image(example, "my-bucket") == {
        "image": "s3://my-bucket/a/b.png",
        "meta": {"key": "a/b.png"},
        "x": 1,
    }


def test_strip_image_prefers_the_bucket_the_meta_names() -> None:
    example = {"image": "https://signed", "meta": {"key": "k", "bucket": "theirs"}}
    assert strip_image(example, "mine")["image"] == "s3://theirs/k"
    assert strip_image({"image": "u", "meta": {"key": "k", "bucket": ""}}, "mine")["image"] == (
        "s3://mine/k"
    )


def test_strip_image_without_a_bucket_leaves_a_url_and_drops_a_data_uri() -> None:
    assert strip_image({"image": "https://x", "meta": {"key": "k"}}) == {
        "image": "https://x",
        "meta": {"key": "k"},
    }
    assert strip_image({"image": "data:image/png;base64,AA==", "meta": {"key": "k"}}) == {
        "meta": {"key": "k"}
    }


def test_strip_image_without_a_key_drops_only_a_data_uri() -> None:
    assert strip_image({"image": "data:x", "meta": {"key": 7}}, "b") == {"meta": {"key": 7}}
    assert strip_image({"image": "data:x", "meta": "k"}, "b") == {"meta": "k"}
    assert strip_image({"image": "https://x"}, "b") == {"image": "https://x"}
    assert strip_image({"image": ["data:x"]}, "b") == {"image": ["data:x"]}
    assert strip_image({"text": "no image"}, "b") == {"text": "no image"}


# --- key_from_example -------------------------------------------------------------------


def test_the_key_comes_from_meta_key_first() -> None:
    example = {"meta": {"key": "a/b.png", "bucket": "my-bucket"}, "image": "s3://x/y"}
    assert key_from_example(example, "my-bucket") == "a/b.png"
    assert key_from_example({"meta": {"key": "k", "bucket": ""}}, "my-bucket") == "k"
    assert key_from_example({"meta": {"key": "k", "bucket": 3}}, "my-bucket") == "k"


def test_a_meta_key_of_another_bucket_is_refused() -> None:
    with pytest.raises(AnswerError) as caught:
        key_from_example({"meta": {"key": "k", "bucket": "other"}}, "my-bucket")
    assert str(caught.value) == "meta.bucket is 'other', not 'my-bucket'"


def test_without_a_meta_key_the_key_comes_from_the_image() -> None:
    assert key_from_example({"meta": {"key": ""}, "image": "s3://b/a/k.png"}, "b") == "a/k.png"
    assert key_from_example({"meta": {"key": 5}, "image": "a/k.png"}, "b") == "a/k.png"
    assert key_from_example({"meta": "k", "image": "bare/key.png"}, "b") == "bare/key.png"


@pytest.mark.parametrize(
    "example,message",
    [
        ({}, "no meta.key and no image to take the key from"),
        ({"image": ""}, "no meta.key and no image to take the key from"),
        ({"image": 3}, "no meta.key and no image to take the key from"),
        (
            {"image": "data:image/png;base64,AA=="},
            "no meta.key, and image is a data URI, not a key",
        ),
        ({"image": "http://h/k"}, "no meta.key, and image is a URL, not a key"),
        ({"image": "https://h/k"}, "no meta.key, and image is a URL, not a key"),
        ({"image": "s3://other/k"}, "image names bucket 'other', not 'b'"),
        ({"image": "s3://b"}, "image 's3://b' names no key"),
        ({"image": "s3://b/"}, "image 's3://b/' names no key"),
    ],
)
def test_an_answer_naming_no_key_of_the_bucket_is_refused_with_why(
    example: dict[str, object], message: str
) -> None:
    with pytest.raises(AnswerError) as caught:
        key_from_example(example, "b")
    assert str(caught.value) == message


# --- session_id -------------------------------------------------------------------------


def test_a_session_id_that_fits_is_kept_as_it_is() -> None:
    assert session_id("data-alice") == "data-alice"
    assert session_id("x" * MAX_SESSION_ID) == "x" * MAX_SESSION_ID


@pytest.mark.parametrize("value", [None, "", 3, b"alice"])
def test_no_session_id_is_none(value: object) -> None:
    assert session_id(value) is None


def test_a_long_session_id_keeps_its_start_and_gains_a_hash_to_fit() -> None:
    fitted = session_id("x" * 300)
    assert fitted == "x" * 238 + "~12b539c1cad94615"
    assert fitted is not None and len(fitted) == MAX_SESSION_ID
    assert session_id("x" * 256) != session_id("x" * 257)


def test_a_session_id_with_a_nul_or_a_lone_surrogate_is_cleaned_and_hashed() -> None:
    assert session_id("a\x00b") == "ab~ffc151170352baa3"
    assert session_id("\udc80z") == "z~c7fdaf76aed0f0ac"
    assert session_id("ok\ud800") == "ok~3504d520bcaea7a4"


# --- answer_record ----------------------------------------------------------------------


def test_an_answer_record_has_the_key_answer_session_and_time() -> None:
    example = {
        "meta": {"key": "a/b.png"},
        "answer": "accept",
        "_session_id": "data-alice",
        "_timestamp": 1767225600,
    }
    assert answer_record(example, "b") == AnswerRecord(
        "a/b.png",
        Answer.ACCEPT,
        "data-alice",
        answered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_an_answer_record_without_a_session_or_a_time_has_none() -> None:
    record = answer_record({"image": "k", "answer": "ignore", "_timestamp": True}, "b")
    assert record == AnswerRecord("k", Answer.IGNORE, None, answered_at=None)
    assert answer_record({"image": "k", "answer": "reject", "_timestamp": 1e300}, "b") == (
        AnswerRecord("k", Answer.REJECT, None, answered_at=None)
    )
    assert answer_record({"image": "k", "answer": "reject", "_timestamp": "1"}, "b") == (
        AnswerRecord("k", Answer.REJECT, None, answered_at=None)
    )


@pytest.mark.parametrize("raw", [None, "ACCEPT", "yes", 1])
def test_an_answer_that_is_not_accept_reject_or_ignore_is_refused(raw: object) -> None:
    with pytest.raises(AnswerError) as caught:
        answer_record({"image": "k", "answer": raw}, "b")
    assert str(caught.value) == f"answer is {raw!r}, expected one of accept, reject, ignore"


def test_an_answer_about_a_key_s3_cannot_hold_is_refused() -> None:
    with pytest.raises(AnswerError) as caught:
        answer_record({"image": "a\x00b", "answer": "accept"}, "b")
    assert str(caught.value) == "key contains a NUL character"


# --- parse_labels -----------------------------------------------------------------------


def test_labels_are_split_stripped_and_kept_once_in_order() -> None:
    assert parse_labels(None) == []
    assert parse_labels("") == []
    assert parse_labels(" b , a,,b ,") == ["b", "a"]
    assert parse_labels(["x,y", " z ", "x", ""]) == ["x", "y", "z"]


def test_a_session_id_drops_every_surrogate_and_keeps_private_use_characters() -> None:
    assert session_id("\udfffz") == "z~af8fb417a0e29733"
    assert session_id("\ue000\x00") == "\ue000~83e5d0e9c12fe089"


def test_an_answer_naming_its_own_bucket_is_taken() -> None:
    example = {"meta": {"key": "k", "bucket": "b"}, "answer": "accept"}
    assert answer_record(example, "b").key == "k"


def test_a_single_label_string_is_split_on_commas_only() -> None:
    assert parse_labels("ab,c") == ["ab", "c"]
