"""The pure rules of the parallel listing's split (`tracker.shards`): how a folder's
delimited LIST refines it, how a flat run's leaves are weighed, how leaves are cut. End
to end, against SeaweedFS and moto, in tests/integration/test_parallel_listing.py."""

from __future__ import annotations

from typing import Any

from tracker.shards import FOLDER_KEYS, _cut, _Leaf, _weighed, ranges, refine, run_weights, utf8


def answer(subs: list[str], keys: list[str], *, truncated: bool = False) -> dict[str, Any]:
    """A `Delimiter="/"` ListObjectsV2 answer as boto3 gives it."""
    return {
        "CommonPrefixes": [{"Prefix": p} for p in subs],
        "Contents": [{"Key": k} for k in keys],
        "IsTruncated": truncated,
    }


def test_a_truncated_folder_of_keys_only_is_a_flat_run_not_cut_among_its_first_page():
    """Seen to fail on the old rule, which made the page's 1,000 keys the folder's leaves."""
    group = _Leaf("images/", 1.0)
    page = [f"images/{i:06d}.jpg" for i in range(1000)]
    assert refine(group, answer([], page, truncated=True)) is None


def test_a_complete_folder_is_refined_into_its_prefixes_and_keys_sharing_its_weight():
    group = _Leaf("data/", 2.0)
    below = refine(group, answer(["data/a/", "data/b/"], ["data/x.jpg"]))
    assert below is not None
    assert [leaf.prefix for leaf in below] == ["data/a/", "data/b/", "data/x.jpg"]
    assert abs(sum(leaf.weight for leaf in below) - 2.0) < 1e-9
    assert abs(below[0].weight / below[2].weight - FOLDER_KEYS) < 1e-6
    # One entry, or none: nothing to split on.
    assert refine(group, answer(["data/a/"], [])) == [group]
    assert refine(group, answer([], [])) == [group]
    # A truncated answer with prefixes is taken as it shows.
    shown = refine(group, answer(["data/a/", "data/b/"], [], truncated=True))
    assert shown is not None and [leaf.prefix for leaf in shown] == ["data/a/", "data/b/"]


def test_leaves_the_first_page_passes_are_counted_and_the_rest_take_their_average():
    prefixes = [f"images/00{c}" for c in "0123"]
    # The page: 1,000 keys, all of images/000 and images/001 (500 each, say).
    page = [f"images/000{i:03d}" for i in range(500)] + [f"images/001{i:03d}" for i in range(500)]
    # images/001 holds the page's last key: not known complete, so it takes the average too.
    assert run_weights(prefixes, page) == [500.0, 500.0, 500.0, 500.0]
    uneven = [f"images/000{i:03d}" for i in range(900)] + [f"images/001{i:02d}" for i in range(99)]
    uneven.append("images/002000")
    assert run_weights(prefixes, uneven) == [900.0, 99.0, 499.5, 499.5]


def test_a_page_inside_the_first_leaf_weighs_every_leaf_alike():
    prefixes = ["run/0", "run/1", "run/2"]
    page = [f"run/0{i:04d}" for i in range(50)]
    assert run_weights(prefixes, page) == [50.0, 50.0, 50.0]


def test_leaves_are_weighed_in_utf8_order():
    """A character outside the BMP sorts after U+FFxx in UTF-8, before it in UTF-16."""
    prefixes = ["k/\U0001f600", "k/\uff21", "k/a"]
    page = ["k/a1", "k/a2", "k/\uff211", "k/\U0001f6001"]
    leaves = _weighed(prefixes, page)
    assert [leaf.prefix for leaf in leaves] == sorted(prefixes, key=utf8)
    assert [leaf.weight for leaf in leaves] == [2.0, 1.0, 1.5]


def test_a_flat_run_of_4000_keys_weighed_from_its_first_page_cuts_into_even_shards():
    """The layout of issue 20: one folder, 40 leaves of 100 keys, a page of 1,000."""
    keys = [f"images/{i:06d}.jpg" for i in range(4000)]
    prefixes = [f"images/00{i:02d}" for i in range(40)]
    points = _cut(_weighed(prefixes, keys[:1000]), 4)
    counts = [0] * 4
    for key in keys:
        shard = next(
            i
            for i, (start, end) in enumerate(ranges(points))
            if (start is None or utf8(key) > utf8(start))
            and (end is None or utf8(key) <= utf8(end))
        )
        counts[shard] += 1
    assert counts == [1000, 1000, 1000, 1000]
