"""The Prodigy harness itself, against plain generators: each feed rule does what the
harness's docstring says, so that the stream tests that use it mean what they claim."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from tests.prodigy_harness import App, Feed, StreamBlocked, StreamEndless, keys_of


def task(key: str, *, task_hash: int | None = None, input_hash: int | None = None) -> dict:
    number = int(key[1:])
    return {
        "image": f"s3://b/{key}",
        "meta": {"bucket": "b", "key": key},
        "_input_hash": number if input_hash is None else input_hash,
        "_task_hash": 1000 + number if task_hash is None else task_hash,
    }


def tasks(count: int) -> list[dict]:
    return [task(f"k{i:02d}") for i in range(count)]


class Recorder:
    """`update` and `before_db` that remember what they saw, and in which order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.updated: list[str] = []

    def update(self, answers: list[dict]) -> None:
        self.calls.append("update")
        self.updated.extend(keys_of(answers))

    def before_db(self, examples: list[dict]) -> list[dict]:
        self.calls.append("before_db")
        return [dict(eg, saved=True) for eg in examples]

    def on_exit(self, ctrl: Any) -> str:
        return f"exit {ctrl.dataset} {len(ctrl.db)}"


def app(
    stream: Iterable[dict], feed: Feed | None = None, *, batch_size: int = 10, **kwargs: Any
) -> tuple[App, Recorder]:
    recorder = Recorder()
    components = {
        "dataset": "ds",
        "view_id": "image",
        "stream": stream,
        "update": recorder.update,
        "before_db": recorder.before_db,
        "on_exit": recorder.on_exit,
        "config": {"batch_size": batch_size},
    }
    return App(components, feed=feed, **kwargs), recorder


def test_batches_are_the_recipes_batch_size_unless_prodigys_is_set() -> None:
    recipe_sized, _ = app(tasks(25), batch_size=10)
    assert [len(recipe_sized.next_batch()) for _ in range(3)] == [10, 10, 5]
    assert recipe_sized.exhausted and recipe_sized.next_batch() == []
    prodigy_sized, _ = app(tasks(25), Feed(batch_size=3), batch_size=10)
    assert len(prodigy_sized.next_batch()) == 3


def test_exclude_by_task_skips_dataset_task_hashes_and_the_batch_is_filled_from_the_stream() -> (
    None
):
    dataset = [task("k01"), {**task("k99"), "_task_hash": 1003}]
    server, _ = app(tasks(12), dataset_db=dataset, batch_size=5)
    assert keys_of(server.next_batch()) == ["k00", "k02", "k04", "k05", "k06"]


def test_exclude_by_input_compares_input_hashes_only() -> None:
    dataset = [task("k01", task_hash=-1), task("k50", input_hash=2)]
    server, _ = app(tasks(6), Feed(exclude_by="input"), dataset_db=dataset, batch_size=3)
    assert keys_of(server.next_batch()) == ["k00", "k03", "k04"]


def test_no_exclusion_when_it_is_off() -> None:
    server, _ = app(tasks(3), Feed(exclude_by=None), dataset_db=[task("k01")])
    assert keys_of(server.next_batch()) == ["k00", "k01", "k02"]


def test_the_duplicate_filter_drops_a_hash_already_pulled_in_this_process_only() -> None:
    stream = [*tasks(3), task("k01"), task("k03")]
    deduped, _ = app(list(stream), Feed(dedupe=True), batch_size=2)
    assert keys_of(deduped.next_batch()) == ["k00", "k01"]
    assert keys_of(deduped.next_batch()) == ["k02", "k03"]  # the re-sent k01 never shows
    assert deduped.pulls == 5
    plain, _ = app(list(stream), batch_size=2)
    assert keys_of(plain.next_batch()) + keys_of(plain.next_batch()) == ["k00", "k01", "k02", "k01"]
    restarted, _ = app([task("k01")], Feed(dedupe=True))  # a new process forgets
    assert keys_of(restarted.next_batch()) == ["k01"]


def test_answers_carry_the_named_session_and_go_through_both_callbacks_in_either_order() -> None:
    for order, expected in [
        ("update_first", ["update", "before_db"]),
        ("before_db_first", ["before_db", "update"]),
    ]:
        server, recorder = app(tasks(2), Feed(order=order))
        bob = server.session("bob")
        saved = bob.answer(bob.next_batch(), "reject")
        assert recorder.calls == expected
        assert recorder.updated == ["k00", "k01"]
        assert [eg["_session_id"] for eg in saved] == ["ds-bob", "ds-bob"]
        assert [eg["_annotator_id"] for eg in saved] == ["ds-bob", "ds-bob"]
        assert all(eg["saved"] and eg["answer"] == "reject" for eg in server.dataset_db)


def test_what_before_db_returns_is_saved_in_a_dataset_shared_across_restarts() -> None:
    dataset: list[dict] = []
    first, _ = app(tasks(4), dataset_db=dataset, batch_size=2)
    first.answer(first.next_batch())
    assert first.exit() == "exit ds 2"
    again, _ = app(tasks(4), dataset_db=dataset, batch_size=2)  # the recipe starts over
    assert keys_of(again.next_batch()) == ["k02", "k03"]


def test_a_reload_in_older_versions_asks_for_a_new_batch_and_the_old_one_is_gone() -> None:
    server, _ = app(tasks(6), Feed(), batch_size=2)
    alice = server.session("alice")
    assert keys_of(alice.next_batch()) == ["k00", "k01"]
    assert keys_of(alice.reload()) == ["k02", "k03"]
    assert alice.open == server.session("alice").open and keys_of(alice.open) == ["k02", "k03"]


def test_a_reload_from_1_12_reoffers_the_sessions_open_tasks() -> None:
    server, _ = app(tasks(6), Feed(reload="reoffer"), batch_size=2)
    alice = server.session("alice")
    first = alice.next_batch()
    assert keys_of(alice.reload()) == keys_of(first)
    alice.answer(first)
    assert keys_of(alice.reload()) == ["k02", "k03"]  # nothing open: a new batch
    assert [s.via for s in server.shown] == ["stream"] * 2 + ["reoffer"] * 2 + ["stream"] * 2


def test_from_1_12_an_idle_session_steals_open_tasks_once_the_stream_is_exhausted() -> None:
    server, _ = app(tasks(3), Feed(reload="reoffer"), batch_size=2)
    alice, bob = server.session("alice"), server.session("bob")
    alice.next_batch()
    bob.answer(bob.next_batch())
    assert keys_of(bob.next_batch()) == ["k00", "k01"]  # alice's, stolen
    assert alice.open == [] and [s.via for s in server.shown][-2:] == ["steal", "steal"]
    older, _ = app(tasks(3), Feed(), batch_size=2)
    older.next_batch("alice")
    older.next_batch("bob")
    assert older.next_batch("bob") == []


def test_sessions_pull_from_one_generator_from_several_threads_one_next_at_a_time() -> None:
    inside = threading.Semaphore(1)
    overlaps: list[str] = []

    def slow() -> Iterator[dict]:
        for item in tasks(30):
            if not inside.acquire(blocking=False):
                overlaps.append(item["meta"]["key"])
            time.sleep(0.002)
            inside.release()
            yield item

    server, _ = app(slow(), batch_size=5)
    batches = server.pull_concurrently("alice", "bob", "carol")
    assert not overlaps
    shown = [k for batch in batches.values() for k in keys_of(batch)]
    assert sorted(shown) == [f"k{i:02d}" for i in range(15)]
    assert {s.session for s in server.shown} == {"alice", "bob", "carol"}


def test_a_stream_that_blocks_longer_than_the_bound_fails_with_a_clear_message() -> None:
    release = threading.Event()

    def stuck() -> Iterator[dict]:
        yield task("k00")
        release.wait(30)
        yield task("k01")

    server, _ = app(stuck(), Feed(pull_timeout=0.3), batch_size=2)
    began = time.monotonic()
    with pytest.raises(StreamBlocked, match=r"blocked for more than 0.3s"):
        server.next_batch()
    assert time.monotonic() - began < 2
    with pytest.raises(StreamBlocked, match="still blocked"):
        server.next_batch()
    release.set()


def test_a_stream_that_never_ends_fails_after_a_bounded_number_of_pulls() -> None:
    def forever(same_key: bool = False) -> Iterator[dict]:
        for number in itertools.count():
            yield task("k00" if same_key else f"k{number:02d}")

    server, _ = app(forever(), Feed(max_pulls=50), batch_size=5)
    with pytest.raises(StreamEndless, match="50 pulls"):
        server.annotate_all()
    dropped, _ = app(forever(same_key=True), Feed(dedupe=True, max_pulls=50), batch_size=5)
    with pytest.raises(StreamEndless):  # every pull filtered: the batch never fills
        dropped.next_batch()


def test_after_pull_runs_between_two_pulls_of_one_batch() -> None:
    seen: list[str] = []
    server, _ = app(tasks(3), after_pull=lambda t: seen.append(t["meta"]["key"]), batch_size=2)
    server.next_batch()
    assert seen == ["k00", "k01"]


def test_errors_raised_by_the_stream_reach_the_test() -> None:
    def broken() -> Iterator[dict]:
        yield task("k00")
        raise RuntimeError("boom")

    server, _ = app(broken(), batch_size=2)
    with pytest.raises(RuntimeError, match="boom"):
        server.next_batch()


def test_every_pull_of_one_fill_loop_runs_on_one_request_thread() -> None:
    threads: list[int] = []

    def recording() -> Iterator[dict]:
        for item in tasks(6):
            threads.append(threading.get_ident())
            yield item

    server, _ = app(recording(), Feed(batch_size=3))
    server.next_batch()
    first = set(threads)
    server.next_batch()
    assert len(first) == 1 and len(set(threads[3:])) == 1


def test_a_browsers_next_request_reaches_the_server_a_round_trip_after_its_last_response() -> None:
    pulled_at: list[float] = []

    def timed() -> Iterator[dict]:
        for item in tasks(4):
            pulled_at.append(time.monotonic())
            yield item

    server, _ = app(timed(), Feed(batch_size=2, round_trip=0.05))
    alice = server.session("alice")
    alice.answer(alice.next_batch())
    alice.next_batch()
    # Two requests (the answer, then the next batch) each a round trip after a response.
    assert pulled_at[2] - pulled_at[1] >= 2 * 0.05
