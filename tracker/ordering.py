"""Serving orders: which pending key a claim takes next. Plain values and pure rules.

Listing order needs no rank: claims walk the dataset's frontier in object-id order. The
other orders give each pending `items` row a rank (lowest served first), computed here
when the row is written, so that a claim stays an index range read on
`(dataset_id, state, rank, object_id)` whatever the size of the source:

- `random`: a hash of (seed, key), so `--seed` reproduces the order and a key listed later
  falls at a uniform place among the keys still pending;
- `priority`: minus the key's priority (highest first); keys without one come after every
  key with one; ties fall back to listing order (the object id, the index's last column);
- `by-prefix`: round robin over the first path segment under the source's prefix, random
  (seeded) within each segment and in the order the segments take turns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tracker.errors import UsageError

ORDERS = ("listing", "random", "priority", "by-prefix")

#: The rank of a key without a priority: after every key that has one.
NO_PRIORITY = 1e300

#: Ranks are exact integers in a double below this (and so are hashes cut to 52 bits).
_HASH_BITS = 52


@dataclass(frozen=True)
class Order:
    """A serving order and its seed (used by `random` and `by-prefix`)."""

    kind: str = "listing"
    seed: int = 0

    @classmethod
    def parse(cls, kind: str | None, seed: int | None = None) -> Order:
        """The order named on a command line or in the Python API; one-line errors."""
        kind = (kind or "listing").strip().lower()
        if kind not in ORDERS:
            raise UsageError(f"unknown order {kind!r}; use one of {', '.join(ORDERS)}")
        if seed is not None and kind not in ("random", "by-prefix"):
            raise UsageError(f"--seed applies to random and by-prefix order, not {kind}")
        return cls(kind, seed or 0)

    @classmethod
    def from_label(cls, label: str | None) -> Order:
        """The order a dataset's `ranked_as` column names (NULL: listing order)."""
        if label is None:
            return cls()
        kind, _, seed = label.partition(":")
        return cls(kind, int(seed) if seed else 0)

    @property
    def ranked(self) -> bool:
        return self.kind != "listing"

    @property
    def label(self) -> str | None:
        """What `datasets.ranked_as` stores: None for listing order, the seed where used."""
        if not self.ranked:
            return None
        return self.kind if self.kind == "priority" else f"{self.kind}:{self.seed}"

    def __str__(self) -> str:
        return self.label or "listing"


@dataclass(frozen=True)
class Unranked:
    """A pending row (or a key about to get one) that needs a rank."""

    object_id: int
    key: str
    priority: float | None = None


def seeded_hash(seed: int, text: str) -> int:
    """A stable 52-bit hash of (seed, text): the same on every host and Python run."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> (64 - _HASH_BITS)


def first_segment(key: str, prefix: str) -> str:
    """The first path segment of `key` under the source's `prefix` ('' for a key directly
    under it): `cam1` for `images/cam1/0001.jpg` under `images/`."""
    rest = key[len(prefix) :] if key.startswith(prefix) else key
    segment, slash, _ = rest.partition("/")
    return segment if slash else ""


def ranks(order: Order, rows: Sequence[Unranked], *, prefix: str, after: float) -> list[float]:
    """Ranks for `rows`, in their order.

    `after` is the highest rank among the dataset's pending rows (0 when none): by-prefix
    ranks of a batch come after it, so keys listed later take their turns after the keys
    already queued (a `tracker sync` first makes one batch, an exact round robin). Random
    and priority ranks depend on the key alone and need no `after`.
    """
    if order.kind == "random":
        return [float(seeded_hash(order.seed, r.key)) for r in rows]
    if order.kind == "priority":
        return [NO_PRIORITY if r.priority is None else -r.priority for r in rows]
    if order.kind == "by-prefix":
        return _round_robin(order.seed, rows, prefix, after)
    raise ValueError(f"listing order has no ranks (asked for {order})")


def _round_robin(seed: int, rows: Sequence[Unranked], prefix: str, after: float) -> list[float]:
    lanes: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        lanes.setdefault(first_segment(row.key, prefix), []).append(index)
    turns = sorted(lanes, key=lambda segment: (seeded_hash(seed, segment), segment))
    base = float(int(after)) + 1
    result = [0.0] * len(rows)
    for turn, segment in enumerate(turns):
        shuffled = sorted(lanes[segment], key=lambda i: (seeded_hash(seed, rows[i].key), i))
        for position, index in enumerate(shuffled):
            result[index] = base + position * len(turns) + turn
    return result
