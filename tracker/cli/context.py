"""What every command shares: the state DB (opened on first use) and source resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.errors import SourceNotFound, UsageError
from tracker.records import SourceRef
from tracker.s3uri import parse_s3_uri
from tracker.store import Store


@dataclass
class AppContext:
    db_url: str | None = None
    verbose: int = 0
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        """The state DB, created or upgraded on first use."""
        if self._store is None:
            self._store = Store.open(self.db_url)
        return self._store

    def source(self, uri: str | None, *, create: bool = False) -> SourceRef:
        """The source named by `s3://BUCKET[/PREFIX]`, or the only one the DB holds."""
        if uri is not None:
            bucket, prefix = parse_s3_uri(uri)
            return self.store.source(bucket, prefix, create=create)
        known = self.store.sources()
        if len(known) == 1:
            return known[0]
        if not known:
            raise SourceNotFound("the state DB holds no source yet: run `tracker sync s3://...`")
        names = ", ".join(s.uri for s in known)
        raise UsageError(f"the state DB holds several sources; name one of: {names}")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
