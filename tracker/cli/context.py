"""What every command shares: the state DB (opened on first use) and source resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tracker.errors import DatasetNotFound, SourceNotFound, UsageError
from tracker.records import DatasetRef, SourceRef
from tracker.s3uri import parse_source_uri

if TYPE_CHECKING:
    # Imported when the DB is first opened: SQLAlchemy is most of the start-up time of
    # a command, and `tracker --help` builds this context too.
    from tracker.store import Store


@dataclass
class AppContext:
    db_url: str | None = None
    verbose: int = 0
    #: Whether this command may create the state DB (sync, `db upgrade`); the others only
    #: read or repair one, and a missing SQLite file is an error (exit 4), not a new DB.
    creates_db: bool = False
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        """The state DB, upgraded on first use (and created when `creates_db`)."""
        if self._store is None:
            from tracker.db import require_existing
            from tracker.store import Store

            if not self.creates_db:
                require_existing(self.db_url)
            self._store = Store.open(self.db_url)
        return self._store

    def source(self, uri: str | None, *, create: bool = False) -> SourceRef:
        """The source named by `s3://BUCKET[/PREFIX]` (prefix normalised), or the only one
        the DB holds."""
        if uri is not None:
            bucket, prefix = parse_source_uri(uri)
            return self.store.source(bucket, prefix, create=create)
        known = self.store.sources()
        if len(known) == 1:
            return known[0]
        if not known:
            raise SourceNotFound("the state DB holds no source yet: run `tracker sync s3://...`")
        names = ", ".join(s.uri for s in known)
        raise UsageError(f"the state DB holds several sources; name one of: {names}")

    def dataset(self, uri: str | None, name: str | None, *, create: bool = False) -> DatasetRef:
        """The dataset `name` of the source named by `uri` (see `source`); without a name,
        the source's only dataset. `create` makes a named dataset that does not exist yet
        (the source must)."""
        source = self.source(uri)
        if name is not None:
            return self.store.dataset(source, name, create=create)
        known = self.store.datasets(source)
        if len(known) == 1:
            return known[0]
        if not known:
            raise DatasetNotFound(
                f"{source.uri} has no dataset yet: the recipe creates one, or give --dataset"
            )
        names = ", ".join(repr(d.name) for d in known)
        raise UsageError(f"{source.uri} has several datasets; name one with --dataset: {names}")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
