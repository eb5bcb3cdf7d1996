"""The serving orders' pure rules: seeded ranks, priority ranks, the by-prefix round robin."""

from __future__ import annotations

from tracker.ordering import NO_PRIORITY, Order, Unranked, first_segment, ranks, seeded_hash


def rows(*keys: str) -> list[Unranked]:
    return [Unranked(i, k) for i, k in enumerate(keys, start=1)]


def test_a_random_rank_depends_on_seed_and_key_only_and_is_an_exact_double():
    first = ranks(Order("random", 1), rows("a", "b"), prefix="", after=0)
    again = ranks(Order("random", 1), rows("x", "a", "b")[1:], prefix="", after=99)
    assert first == again
    assert ranks(Order("random", 2), rows("a", "b"), prefix="", after=0) != first
    assert all(r == int(r) and 0 <= r < 2**52 for r in first)
    assert seeded_hash(7, "img/0001.jpg") == seeded_hash(7, "img/0001.jpg")


def test_priority_ranks_put_the_highest_first_and_keys_without_one_last():
    keyed = [Unranked(1, "a", 0.5), Unranked(2, "b", None), Unranked(3, "c", 2.0)]
    assert ranks(Order("priority"), keyed, prefix="", after=0) == [-0.5, NO_PRIORITY, -2.0]


def test_by_prefix_ranks_take_turns_after_the_last_rank_given():
    keyed = rows("p/a/1", "p/a/2", "p/a/3", "p/b/1", "p/top.jpg")
    given = ranks(Order("by-prefix", 3), keyed, prefix="p/", after=10.0)
    by_rank = [k.key for _, k in sorted(zip(given, keyed, strict=True), key=lambda p: p[0])]
    lanes = [first_segment(k, "p/") for k in by_rank]
    assert min(given) >= 11
    assert sorted(lanes[:3]) == ["", "a", "b"] and lanes[3:] == ["a", "a"]


def test_the_first_segment_is_the_folder_under_the_prefix():
    assert first_segment("images/cam1/0001.jpg", "images/") == "cam1"
    assert first_segment("images/0001.jpg", "images/") == ""
    assert first_segment("cam2/x/y.jpg", "") == "cam2"


def test_an_order_survives_its_label_in_the_state_db():
    for order in (Order(), Order("random", 42), Order("priority"), Order("by-prefix", 3)):
        assert Order.from_label(order.label) == order
    assert Order().label is None and str(Order("random", 4)) == "random:4"
