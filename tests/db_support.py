"""Helpers for the schema and migration tests: what a database holds, read without the store."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database is at (None before any migration)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
