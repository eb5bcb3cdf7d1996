"""Split points for a parallel listing, found from the bucket itself.

A shard holds the keys k with `start_after < k <= end_key` in S3's UTF-8 binary order (None
is unbounded): it is listed with `StartAfter=start_after` and stopped at its end key, and
its end key is the next shard's `start_after`, so the shards are disjoint and cover every
key whatever the split points are. The split points only decide how even the shards are.

They are found with a few rounds of small LIST calls sent side by side:

- a `Delimiter="/"` LIST gives the common prefixes: a nested layout splits on them, going
  one level down (in parallel) while there are too few, or where one prefix is alone; a
  folder whose LIST holds only keys and is truncated (a flat run longer than a page, e.g.
  one `images/` folder of 4,000 names) is not cut among the keys of that page, which say
  nothing of the rest: it is split by characters, as below (`refine`);
- a flat run (no common prefixes, e.g. `img/000000.png` ... `img/049999.png`) is split by
  characters: the first key's longest prefix that every key shares is found with one
  round of `StartAfter=<prefix><U+10FFFF>` probes along that key (each says whether any key
  follows that prefix's subtree), then the characters that follow it with one round of
  probes over the alphabet of the first page, each returning the first key of the next
  child; a third round finds the characters after the first and the last child (the last
  child of sequential names is the one partly filled; the others are taken to be like the
  first). Each grandchild is a leaf, weighed by the keys of the first page it holds; those
  past the page are taken to hold as many as the ones it counted (`run_weights`).

Leaves are then cut into runs of about equal weight. Every probe asks for one key
(MaxKeys=1); a split costs four rounds of round trips (a few dozen small LISTs sent side by
side), whatever the bucket's size; up to six when folders hold flat runs longer than a page
(their splits by characters run side by side, at most one per shard).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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

#: Keys a folder of unknown size is taken to hold: a loose key weighs 1/FOLDER_KEYS of a
#: folder beside it, and a flat run found to hold N keys N/FOLDER_KEYS folders.
FOLDER_KEYS = 1000


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


def refine(group: _Leaf, answer: Mapping[str, Any]) -> list[_Leaf] | None:
    """The leaves one level below a folder `group`, from its `Delimiter="/"` LIST `answer`.

    - `[group]` when the answer holds at most one entry (nothing to split on);
    - None when it is a flat run longer than its page (keys only, truncated): the page is
      the run's first 1,000 keys and says nothing of the keys after them, so cutting among
      them would leave one shard everything past the page. The caller splits such a run by
      characters (`Splitter._flat`);
    - else its common prefixes, sharing the group's weight, and its loose keys, each
      1/FOLDER_KEYS of a prefix. (A truncated answer with prefixes is taken as it shows:
      what follows its page goes with its last entry.)
    """
    subs = [str(p["Prefix"]) for p in answer.get("CommonPrefixes") or []]
    keys = [str(o["Key"]) for o in answer.get("Contents") or []]
    if answer.get("IsTruncated") and not subs and keys:
        return None
    if len(subs) + len(keys) <= 1:
        return [group]
    units = len(subs) + len(keys) / FOLDER_KEYS
    return [_Leaf(s, group.weight / units) for s in subs] + [
        _Leaf(k, group.weight / FOLDER_KEYS / units) for k in keys
    ]


def run_weights(prefixes: Sequence[str], page: Sequence[str]) -> list[float]:
    """Keys each leaf of a flat run holds, estimated from the run's first page.

    `prefixes`: the leaves, sorted (a leaf holds the keys from its prefix to the next
    one's); `page`: the run's first keys in order, a page that stops before its end. A
    leaf the page passes is counted exactly; the others are taken to hold as many as the
    counted ones on average (sequential names fill their leaves alike), or the whole page
    when it passes none (the first leaf alone holds more than a page).
    """
    bounds = [utf8(p) for p in prefixes]
    counts = [0] * len(prefixes)
    last = 0
    for key in page:
        raw = utf8(key)
        while last + 1 < len(bounds) and raw >= bounds[last + 1]:
            last += 1
        counts[last] += 1
    counted = counts[:last]  # leaves the page went past: their counts are exact
    guess = sum(counted) / len(counted) if counted else float(max(1, len(page)))
    return [float(c) if i < last else guess for i, c in enumerate(counts)]


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
        """Common prefixes, one level further down while there are too few of them; flat
        runs longer than a page among them split by characters."""
        level = [str(p["Prefix"]) for p in delimited.get("CommonPrefixes") or []]
        loose = [str(o["Key"]) for o in delimited.get("Contents") or []]
        if not level:
            return []
        leaves = [_Leaf(p, 1.0) for p in level] + [_Leaf(k, 1 / FOLDER_KEYS) for k in loose]
        #: Folders found to be flat runs longer than a page: {prefix: their first page}.
        runs: dict[str, list[str]] = {}
        depth = 1
        while len(leaves) < count * LEAVES_PER_SHARD and depth < MAX_DEPTH:
            groups = [
                leaf for leaf in leaves if leaf.prefix.endswith("/") and leaf.prefix not in runs
            ]
            if not groups:
                break
            answers = self._parallel([partial(self._delimited, g.prefix) for g in groups])
            asked = {g.prefix for g in groups}
            refined: list[_Leaf] = [leaf for leaf in leaves if leaf.prefix not in asked]
            grew = False
            for group, answer in zip(groups, answers, strict=True):
                below = refine(group, answer)
                if below is None:
                    runs[group.prefix] = [str(o["Key"]) for o in answer.get("Contents") or []]
                    refined.append(group)
                    continue
                grew = grew or below != [group]
                refined += below
            leaves = sorted(refined, key=lambda leaf: utf8(leaf.prefix))
            depth += 1
            if not grew:
                break
        return self._split_runs(leaves, runs, count)

    def _split_runs(
        self, leaves: list[_Leaf], runs: dict[str, list[str]], count: int
    ) -> list[_Leaf]:
        """Each run among `leaves` replaced by its leaves by characters (all runs side by
        side; at most `count` of them, the heaviest: the rest stay whole), which share the
        run's weight as a folder holding the keys they are estimated to hold."""
        chosen = sorted(
            (leaf for leaf in leaves if leaf.prefix in runs), key=lambda leaf: -leaf.weight
        )[:count]
        if not chosen:
            return leaves
        found = self._parallel(
            [partial(self._flat, leaf.prefix, runs[leaf.prefix], count) for leaf in chosen]
        )
        split = {
            leaf.prefix: (leaf.weight, below) for leaf, below in zip(chosen, found, strict=True)
        }
        result: list[_Leaf] = []
        for leaf in leaves:
            if leaf.prefix not in split:
                result.append(leaf)
                continue
            weight, below = split[leaf.prefix]
            result += [_Leaf(b.prefix, weight * b.weight / FOLDER_KEYS) for b in below]
        return sorted(result, key=lambda leaf: utf8(leaf.prefix))

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
            return [_Leaf(shared, float(max(1, len(page))))]
        if len(children) >= count * LEAVES_PER_SHARD:
            return _weighed([shared + c for c in children], page)
        # Round 3: the characters after the first and the last child (the last one of a run
        # of sequential names is the one partly filled); the others are taken to be like
        # the first.
        ends = sorted({children[0], children[-1]}, key=utf8)
        found = self._children([(shared + c, "") for c in ends], alphabet)
        below = dict(zip(ends, found, strict=True))
        prefixes: list[str] = []
        for child in children:
            grand = below.get(child, below[children[0]])
            if len(grand) < 2:
                prefixes.append(shared + child)
            else:
                prefixes += [shared + child + g for g in grand]
        return _weighed(prefixes, page)

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


def _weighed(prefixes: list[str], page: list[str]) -> list[_Leaf]:
    """A flat run's leaves, each weighing the keys it is estimated to hold."""
    prefixes = sorted(prefixes, key=utf8)
    return [_Leaf(p, w) for p, w in zip(prefixes, run_weights(prefixes, page), strict=True)]


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
