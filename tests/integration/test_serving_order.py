"""Serving order on both databases: random (seeded, uniform over the keys listed, keys
listed later mixed in), priority (highest first, ties and unprioritised keys in listing
order, priorities for keys not listed yet), and by-prefix (round robin over the first path
segment). Each claim reads the rank index; a claim never hands one key out twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tracker.errors import UsageError
from tracker.models import Answer, ItemState
from tracker.ordering import Order
from tracker.records import AnswerRecord, ItemFilter, ListedObject
from tracker.store import Store

LEASE = timedelta(hours=1)


def record(store: Store, source, keys: list[str], *, exhausted: bool = True) -> None:  # type: ignore[no-untyped-def]
    store.record_page(
        source,
        [ListedObject(k) for k in keys],
        next_token=None,
        last_key=max(keys),
        exhausted=exhausted,
    )


def claim_all(store: Store, dataset, batch: int = 7) -> list[str]:  # type: ignore[no-untyped-def]
    served: list[str] = []
    while leases := store.claim(dataset, "me", batch, LEASE):
        served += [lease.key for lease in leases]
    return served


@pytest.fixture
def store(db_url):  # type: ignore[no-untyped-def]
    with Store.open(db_url) as opened:
        yield opened


def ordered(store: Store, name: str, order: Order, keys: list[str]):  # type: ignore[no-untyped-def]
    source = store.source("bucket", create=True)
    if not store.object_count(source):
        record(store, source, keys)
    dataset = store.dataset(source, name, create=True)
    store.set_order(dataset, order)
    return dataset


KEYS = [f"img/{i:05}.jpg" for i in range(1000)]


def test_random_order_is_reproducible_with_its_seed_and_differs_by_seed(store):
    first = claim_all(store, ordered(store, "a", Order("random", 7), KEYS))
    again = claim_all(store, ordered(store, "b", Order("random", 7), KEYS))
    other = claim_all(store, ordered(store, "c", Order("random", 8), KEYS))
    assert first == again
    assert sorted(first) == KEYS  # every key once
    assert first != other and first != KEYS


def test_the_first_percent_of_random_claims_hits_every_decile_of_the_keys(store):
    keys = [f"img/{i:06}.jpg" for i in range(10_000)]
    dataset = ordered(store, "ds", Order("random", 1), keys)
    first = [lease.key for lease in store.claim(dataset, "me", 100, LEASE)]
    deciles = {keys.index(k) * 10 // len(keys) for k in first}
    assert deciles == set(range(10))


def test_keys_listed_after_random_claims_began_are_mixed_in_and_all_served_once(store):
    source = store.source("bucket", create=True)
    record(store, source, KEYS[:500], exhausted=False)
    dataset = store.dataset(source, "ds", create=True)
    store.set_order(dataset, Order("random", 3))
    early = [lease.key for lease in store.claim(dataset, "me", 100, LEASE)]
    record(store, source, KEYS[500:])
    rest = claim_all(store, dataset)
    assert sorted(early + rest) == KEYS
    late = set(KEYS[500:])
    # the later half is spread among the remaining keys, not appended after them (the
    # late keys ranked below the first claims' ranks come first: uniform among pending)
    assert late & set(rest[:300]) and set(rest[:300]) - late and late & set(rest[-100:])


def test_handed_back_and_requeued_keys_are_served_again_in_random_order(store):
    dataset = ordered(store, "ds", Order("random", 5), KEYS[:50])
    leases = store.claim(dataset, "me", 10, LEASE)
    store.release(dataset, "me", leases[:5])
    store.record_answers(
        dataset, [AnswerRecord(lease.key, Answer.ACCEPT, "s") for lease in leases[5:]]
    )
    store.to_pending(dataset, ItemFilter(keys=frozenset(lease.key for lease in leases[5:])))
    rest = claim_all(store, dataset)
    assert sorted(rest) == sorted(
        set(KEYS[:50]) - {lease.key for lease in leases[:5]} | {lease.key for lease in leases}
    )


def test_priority_order_serves_the_highest_first_with_ties_then_the_rest_in_listing_order(store):
    source = store.source("bucket", create=True)
    record(store, source, KEYS[:10])
    known = store.set_priorities(
        source, {KEYS[7]: 0.9, KEYS[2]: 0.5, KEYS[5]: 0.5, KEYS[3]: -1.0, "img/later.jpg": 2.0}
    )
    assert known == 4
    dataset = store.dataset(source, "ds", create=True)
    store.set_order(dataset, Order("priority"))
    first = [lease.key for lease in store.claim(dataset, "me", 3, LEASE)]
    assert first == [KEYS[7], KEYS[2], KEYS[5]]
    # a key with a priority that is listed only now is ranked with it at once
    record(store, source, ["img/later.jpg"])
    rest = claim_all(store, dataset)
    unprioritised = [k for k in KEYS[:10] if k not in (KEYS[7], KEYS[2], KEYS[5], KEYS[3])]
    assert rest == ["img/later.jpg", KEYS[3], *unprioritised]


def test_new_priorities_reorder_the_pending_keys_of_a_dataset_in_priority_order(store):
    dataset = ordered(store, "ds", Order("priority"), KEYS[:10])
    assert [lease.key for lease in store.claim(dataset, "me", 2, LEASE)] == KEYS[:2]
    store.set_priorities(dataset.source, {KEYS[9]: 1.0, KEYS[8]: 2.0})
    assert [lease.key for lease in store.claim(dataset, "me", 3, LEASE)] == [
        KEYS[8],
        KEYS[9],
        KEYS[2],
    ]


def test_by_prefix_order_takes_turns_over_the_first_segment_random_within_each(store):
    cams = {"cam1": 6, "cam2": 2, "cam3": 4}
    keys = sorted(f"{cam}/{i:03}.jpg" for cam, n in cams.items() for i in range(n))
    dataset = ordered(store, "ds", Order("by-prefix", 4), keys)
    served = claim_all(store, dataset, batch=3)
    lanes = [k.split("/")[0] for k in served]
    assert set(lanes[:3]) == set(cams)  # one of each
    assert set(lanes[3:6]) == set(cams)
    assert set(lanes[6:10]) == {"cam1", "cam3"}  # cam2 ran out
    assert lanes[10:] == ["cam1", "cam1"]
    within = [k for k in served if k.startswith("cam1/")]
    assert within != sorted(within) and sorted(within) == [k for k in keys if k.startswith("cam1/")]
    again = claim_all(store, ordered(store, "ds2", Order("by-prefix", 4), keys), batch=3)
    assert again == served


def test_back_to_listing_order_serves_the_remaining_keys_in_listing_order(store):
    dataset = ordered(store, "ds", Order("random", 2), KEYS[:20])
    first = [lease.key for lease in store.claim(dataset, "me", 5, LEASE)]
    assert store.set_order(dataset, Order()) is True
    assert store.order(dataset) == Order()
    rest = claim_all(store, dataset)
    assert rest == [k for k in KEYS[:20] if k not in first]


def test_an_unknown_order_or_a_seed_for_an_unseeded_order_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown order 'shuffle'"):
        Order.parse("shuffle")
    with pytest.raises(UsageError, match="--seed applies to random"):
        Order.parse("priority", 3)
    assert Order.parse("RANDOM", 9) == Order("random", 9)


def test_changing_from_priority_to_by_prefix_re_ranks_every_pending_key(store):
    keys = sorted(f"{cam}/{i:02}.jpg" for cam in ("cam1", "cam2") for i in range(6))
    dataset = ordered(store, "ds", Order("priority"), keys)
    store.set_priorities(dataset.source, {"cam1/00.jpg": 1.0})
    assert store.set_order(dataset, Order("by-prefix", 1)) is True
    lanes = [k.split("/")[0] for k in claim_all(store, dataset, batch=4)]
    assert all(lanes[i] != lanes[i + 1] for i in range(len(lanes) - 1)), lanes


def test_downgrading_to_0003_and_back_keeps_the_state_and_serves_in_listing_order(db_url):
    from tests.integration.test_migrations import alembic

    with Store.open(db_url) as opened:
        dataset = ordered(opened, "ds", Order("random", 1), KEYS[:30])
        opened.set_priorities(dataset.source, {KEYS[0]: 1.0})
        first = opened.claim(dataset, "me", 5, LEASE)
        opened.record_answers(dataset, [AnswerRecord(first[0].key, Answer.ACCEPT, "s")])
    alembic("downgrade", "0003", url=db_url)
    alembic("upgrade", "head", url=db_url)
    with Store.open(db_url) as opened:
        dataset = opened.dataset(opened.source("bucket"), "ds")
        assert opened.order(dataset) == Order()
        counts = opened.counts(dataset)
        assert (counts.state(ItemState.ANNOTATED), counts.state(ItemState.SERVED)) == (1, 4)
        rest = claim_all(opened, dataset)
        assert rest == [k for k in KEYS[:30] if k not in {lease.key for lease in first}]
