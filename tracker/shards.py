"""Split points for a parallel listing, found from the bucket itself.

A shard holds the keys k with `start_after < k <= end_key` in S3's UTF-8 binary order (None
is unbounded): it is listed with `StartAfter=start_after` and stopped at its end key, and
its end key is the next shard's `start_after`, so the shards are disjoint and cover every
key whatever the split points are. The split points only decide how even the shards are.

They are found with a few rounds of small LIST calls sent side by side:

- a `Delimiter="/"` LIST gives the common prefixes: a nested layout splits on them, going
  one level down (in parallel) while there are too few, or where one prefix is alone;
- a flat run (no common prefixes, e.g. `img/000000.png` ... `img/049999.png`) is split by
  characters: the first key's longest prefix that every key shares is found with one
  round of `StartAfter=<prefix><U+10FFFF>` probes along that key (each says whether any key
  follows that prefix's subtree), then the characters that follow it with one round of
  probes over the alphabet of the first page, each returning the first key of the next
  child; a third round finds the characters after the first and the last child (the last
  child of sequential names is the one partly filled; the others are taken to be like the
  first). Each grandchild is a leaf of equal weight.

Leaves are then cut into runs of about equal weight. Every probe asks for one key
(MaxKeys=1); a split costs four rounds of round trips (a few dozen small LISTs sent side by
side), whatever the bucket's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import pairwise
from typing import Any

#: Sorts after every character of a key: `StartAfter=p + MAX_CHAR` skips p's subtree.
MAX_CHAR = "\U0010ffff"

#: Nested layouts: Delimiter levels explored at most.
MAX_DEPTH = 3

#: Leaves wanted per shard before the split stops refining.
LEAVES_PER_SHARD = 4


def utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class ShardCursor:
    """One shard of a plan and where its listing stands."""

    shard: int
    plan: int
    start_after: str | None
    end_key: str | None
    continuation_token: str | None = None
    last_key: str | None = None
    pages_listed: int = 0
    keys_listed: int = 0
    exhausted_at: datetime | None = None
    closed_at: datetime | None = None
    generation: int = 0

    @property
    def exhausted(self) -> bool:
        return self.exhausted_at is not None

    def contains(self, key: str) -> bool:
        """Whether `key` belongs to this shard (it may be beyond its end key)."""
        return self.end_key is None or utf8(key) <= utf8(self.end_key)


def ranges(boundaries: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(start_after, end_key) of each shard for sorted split points."""
    points: list[str | None] = [None, *boundaries, None]
    return list(pairwise(points))


@dataclass
class _Leaf:
    prefix: str
    weight: float


class Splitter:
    """Finds up to `count - 1` split points of bucket + prefix with parallel probes."""

    def __init__(
        self, client: Any, bucket: str, prefix: str, *, workers: int = 16, page_size: int = 1000
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.workers = max(1, workers)
        self.page_size = page_size
        #: LIST calls sent (the cost of splitting).
        self.calls = 0

    def _list(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        return self.client.list_objects_v2(Bucket=self.bucket, **params)  # type: ignore[no-any-return]

    def _parallel(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        if len(calls) <= 1:
            return [call() for call in calls]
        with ThreadPoolExecutor(min(self.workers, len(calls))) as pool:
            return list(pool.map(lambda call: call(), calls))

    def _delimited(self, prefix: str) -> dict[str, Any]:
        return self._list(Prefix=prefix, Delimiter="/", MaxKeys=1000)

    def _next_key(self, under: str, after: str) -> str | None:
        """The first key under `under` that sorts after `after`, or None."""
        page = self._list(Prefix=under, StartAfter=after, MaxKeys=1)
        contents = page.get("Contents") or []
        return str(contents[0]["Key"]) if contents else None

    def split(self, count: int) -> list[str]:
        """Sorted split points (at most `count - 1`); [] when the source fits one page."""
        if count <= 1:
            return []
        first, delimited = self._parallel(
            [
                lambda: self._list(Prefix=self.prefix, MaxKeys=self.page_size),
                lambda: self._list(Prefix=self.prefix, Delimiter="/", MaxKeys=1000),
            ]
        )
        keys = [str(o["Key"]) for o in first.get("Contents") or []]
        if not first.get("IsTruncated") or not keys:
            return []
        leaves = self._nested(self.prefix, delimited, count)
        if len(leaves) < 2:
            leaves = self._flat(leaves[0].prefix if leaves else self.prefix, keys, count)
        return _cut(leaves, count)

    def _nested(self, prefix: str, delimited: dict[str, Any], count: int) -> list[_Leaf]:
        """Common prefixes, one level further down while there are too few of them."""
        level = [str(p["Prefix"]) for p in delimited.get("CommonPrefixes") or []]
        loose = [str(o["Key"]) for o in delimited.get("Contents") or []]
        if not level:
            return []
        leaves = [_Leaf(p, 1.0) for p in level] + [_Leaf(k, 0.001) for k in loose]
        depth = 1
        while len(leaves) < count * LEAVES_PER_SHARD and depth < MAX_DEPTH:
            groups = [leaf for leaf in leaves if leaf.prefix.endswith("/")]
            if not groups:
                break
            answers = self._parallel([partial(self._delimited, g.prefix) for g in groups])
            refined: list[_Leaf] = [leaf for leaf in leaves if not leaf.prefix.endswith("/")]
            grew = False
            for group, answer in zip(groups, answers, strict=True):
                subs = [str(p["Prefix"]) for p in answer.get("CommonPrefixes") or []]
                subkeys = [str(o["Key"]) for o in answer.get("Contents") or []]
                if len(subs) + len(subkeys) <= 1:
                    refined.append(group)
                    continue
                grew = True
                units = len(subs) + 0.001 * len(subkeys)
                refined += [_Leaf(s, group.weight / units) for s in subs]
                refined += [_Leaf(k, group.weight * 0.001 / units) for k in subkeys]
            leaves = sorted(refined, key=lambda leaf: utf8(leaf.prefix))
            depth += 1
            if not grew:
                break
        if len(leaves) == 1 and leaves[0].prefix.endswith("/"):
            return leaves  # one prefix holds everything: split inside it, flat
        return leaves

    def _flat(self, under: str, page: list[str], count: int) -> list[_Leaf]:
        """Leaves of a run without common prefixes, by characters (see the module)."""
        page = [k for k in page if k.startswith(under)] or page
        first = page[0]
        # Round 1: the longest prefix of the first key that every key under `under` shares.
        candidates = [first[:j] for j in range(len(under) + 1, len(first))]
        nexts = self._parallel([partial(self._next_key, under, c + MAX_CHAR) for c in candidates])
        shared = under
        for candidate, after in zip(candidates, nexts, strict=True):
            if after is not None:
                break
            shared = candidate
        # Round 2: the characters that follow the shared prefix.
        alphabet = sorted({c for k in page for c in k[len(shared) :]}, key=utf8)
        first_child = first[len(shared)] if len(first) > len(shared) else ""
        children = self._children([(shared, first_child)], alphabet)[0]
        if not children:
            return [_Leaf(shared, 1.0)]
        if len(children) >= count * LEAVES_PER_SHARD:
            return [_Leaf(shared + c, 1.0) for c in children]
        # Round 3: the characters after the first and the last child (the last one of a run
        # of sequential names is the one partly filled); the others are taken to be like
        # the first. Each grandchild weighs the same.
        ends = sorted({children[0], children[-1]}, key=utf8)
        found = self._children([(shared + c, "") for c in ends], alphabet)
        below = dict(zip(ends, found, strict=True))
        leaves = []
        for child in children:
            grand = below.get(child, below[children[0]])
            if len(grand) < 2:
                leaves.append(_Leaf(shared + child, max(1, len(grand))))
            else:
                leaves += [_Leaf(shared + child + g, 1.0) for g in grand]
        return leaves

    def _children(self, groups: list[tuple[str, str]], alphabet: list[str]) -> list[list[str]]:
        """For each (prefix, first child or ""), the sorted characters that follow the
        prefix in some key: probes after `prefix + c + MAX_CHAR` for c in the alphabet,
        all groups in one parallel round."""
        calls = []
        for prefix, first_child in groups:
            calls.append(partial(self._next_key, prefix, prefix))
            calls += [
                partial(self._next_key, prefix, prefix + c + MAX_CHAR)
                for c in alphabet
                if utf8(c) >= utf8(first_child)
            ]
        answers = iter(self._parallel(calls))
        result = []
        for prefix, first_child in groups:
            probes = 1 + sum(1 for c in alphabet if utf8(c) >= utf8(first_child))
            keys = [next(answers) for _ in range(probes)]
            chars = {k[len(prefix)] for k in keys if k and len(k) > len(prefix)}
            if first_child:
                chars.add(first_child)
            result.append(sorted(chars, key=utf8))
        return result


def _cut(leaves: list[_Leaf], count: int) -> list[str]:
    """Split points that cut the sorted leaves into `count` runs of about equal weight:
    each point is the prefix of the leaf that starts a run (keys up to it go before)."""
    leaves = sorted(leaves, key=lambda leaf: utf8(leaf.prefix))
    total = sum(leaf.weight for leaf in leaves)
    if total <= 0 or len(leaves) < 2:
        return []
    points: list[str] = []
    running = 0.0
    for leaf in leaves:
        due = running >= total * (len(points) + 1) / count - 1e-9 and len(points) < count - 1
        if due and running > 0 and (not points or points[-1] != leaf.prefix):
            points.append(leaf.prefix)
        running += leaf.weight
    return points
