"""The gallery's SQLite database: schema and migrations, one connection shared under a lock, the size cap."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 2: genomes.pool (where the genome pools: [[position, weight], ...])
MAX_LIST = 1000  # listings are paged; one page never loads the whole gallery
_SCHEMA = """
CREATE TABLE IF NOT EXISTS genomes (
    id TEXT PRIMARY KEY, prompt TEXT, parents TEXT NOT NULL, seed INTEGER,
    mutation REAL NOT NULL, created REAL NOT NULL, length INTEGER NOT NULL,
    widths TEXT NOT NULL, thumbnail BLOB, pool TEXT);
CREATE INDEX IF NOT EXISTS genomes_created ON genomes (created DESC, id);
CREATE INDEX IF NOT EXISTS genomes_prompt ON genomes (prompt);
-- one row per (child, parent): indexed child lookup; rows outlive a deleted parent (history)
CREATE TABLE IF NOT EXISTS lineage (child TEXT NOT NULL, parent TEXT NOT NULL,
    PRIMARY KEY (child, parent));
CREATE INDEX IF NOT EXISTS lineage_parent ON lineage (parent);
-- how far down a line a genome is (0: no parents; else 1 + its parents' highest), and, for a
-- brood's child, origin "evolve" and its index in the brood (genomes.seed is the brood's seed)
CREATE TABLE IF NOT EXISTS genealogy (id TEXT PRIMARY KEY, generation INTEGER NOT NULL,
    origin TEXT, child INTEGER);
CREATE TABLE IF NOT EXISTS walks (
    id TEXT PRIMARY KEY, name TEXT, source TEXT NOT NULL, created REAL NOT NULL,
    points INTEGER NOT NULL, seconds REAL NOT NULL, walk TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS walks_created ON walks (created DESC, id);
"""


class StoreFull(RuntimeError):
    """The data folder holds `max_bytes` or more: new genomes and walks are refused."""


class NotFound(KeyError):
    """No such genome or walk (or an id that cannot name one); str() is the plain message."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message, quotes and all
        return str(self.args[0]) if self.args else "not found"


def _page(limit: int, offset: int) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    return min(limit, MAX_LIST), offset


class Database:
    """One SQLite connection shared by the event loop and worker threads, under one lock."""

    def __init__(self, data_dir: Path, *, max_bytes: int | None = None) -> None:
        self.data_dir = data_dir
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.data_dir / "breeder.sqlite3", check_same_thread=False)
        try:
            self._init_schema()
        except BaseException:
            self._conn.close()
            raise

    def _init_schema(self) -> None:
        conn = self._conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.data_dir} was written by a newer version "
                               f"(schema {version}; this build reads {SCHEMA_VERSION})")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after a crash
        if version == 1:  # before the pool column: add it; _find_missing fills it from the files
            conn.execute("ALTER TABLE genomes ADD COLUMN pool TEXT")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS missing (id TEXT PRIMARY KEY)")

    def _file_bytes(self) -> int:
        """Bytes the data folder holds beside SQLite's files (the genome files)."""
        return 0

    def size_bytes(self) -> int:
        """Bytes in the data folder: the genome files and SQLite's database and journal."""
        sqlite = sum(f.stat().st_size for f in self.data_dir.glob("breeder.sqlite3*") if f.is_file())
        return self._file_bytes() + sqlite

    def _check_room(self) -> None:
        if self.max_bytes is None or self.size_bytes() < self.max_bytes:
            return
        # SQLite's write-ahead log only grows between checkpoints (deletes too): fold it into the
        # database before deciding that the folder is full.
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if (size := self.size_bytes()) >= self.max_bytes:
            raise StoreFull(f"the gallery is full ({size / 2**20:.1f} MiB of max_store_bytes "
                            f"{self.max_bytes / 2**20:.1f} MiB); delete genomes or walks to make room")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _newest(self, select: str, limit: int, offset: int) -> list[tuple[Any, ...]]:
        """One page of `select`'s rows, newest first (created, then id); at most MAX_LIST."""
        limit, offset = _page(limit, offset)
        return self._query(f"{select} ORDER BY created DESC, id LIMIT ? OFFSET ?", (limit, offset))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
