"""`tracker db check`: the counters recounted, and PostgreSQL's table statistics.

Gathers, for every source and dataset, the numbers the counters stand for beside the same
numbers from COUNT(*)s (`Store.recount_numbers`), and each tracker table's statistics
with the command that fixes stale ones or bloat (`tracker.counters.health_advice`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tracker.counters import Difference, Numbers, TableHealth, differences, health_advice

if TYPE_CHECKING:  # the store (SQLAlchemy) is the caller's: importing this costs nothing
    from tracker.store import Store


@dataclass
class CheckReport:
    differences: list[Difference] = field(default_factory=list)
    tables: list[TableHealth] = field(default_factory=list)
    #: (table, problem, command) for every table whose statistics need a hand.
    advice: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "differences": [asdict(d) for d in self.differences],
            "tables": [
                dict(
                    asdict(t),
                    problems=[{"problem": p, "fix": c} for n, p, c in self.advice if n == t.table],
                )
                for t in self.tables
            ],
        }


def check(store: Store) -> CheckReport:
    """Recount every source and dataset; read the tables' statistics (PostgreSQL).

    Counters and recounts are read from one snapshot (`Store.snapshot`): read apart, a
    writer between the two (a sync, recipes claiming) would show as a difference.
    """
    with store.snapshot():
        return _check(store)


def _check(store: Store) -> CheckReport:
    report = CheckReport()
    for source in store.sources():
        listed, deleted = store.source_numbers(source)
        counted_listed, counted_deleted = store.recount_source(source)
        report.differences += differences(
            source.uri,
            None,
            Numbers(listed=listed, deleted=deleted),
            Numbers(listed=counted_listed, deleted=counted_deleted),
        )
        for dataset in store.datasets(source):
            report.differences += differences(
                source.uri, dataset.name, store.numbers(dataset), store.recount_numbers(dataset)
            )
    report.tables = store.table_health()
    report.advice = [
        (t.table, problem, command) for t in report.tables for problem, command in health_advice(t)
    ]
    return report
