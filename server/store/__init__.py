"""The persistent gallery in `--data-dir`: genomes, their lineage and thumbnails, and walks.

SQLite (`breeder.sqlite3`) holds metadata, lineage, thumbnails (small JPEG BLOBs) and walks; each
genome's tensors live in `genomes/<id>.safetensors`. With `max_bytes`, new genomes and walks are
refused (`StoreFull`) once the folder holds that much. `database.py` opens SQLite, `genomes.py` and
`walks.py` keep one kind of thing each; `Store` is both.
"""

from __future__ import annotations

from sdxl_breeder.store.database import MAX_LIST, SCHEMA_VERSION, NotFound, StoreFull
from sdxl_breeder.store.genomes import VISIBLE, ORIGINS, GenomeShelf, genome_origin
from sdxl_breeder.store.walks import MAX_NAME_CHARS, WalkShelf

__all__ = ["MAX_LIST", "MAX_NAME_CHARS", "ORIGINS", "SCHEMA_VERSION", "NotFound", "Store", "StoreFull",
           "genome_origin"]


class Store(GenomeShelf, WalkShelf):
    """Thread-safe gallery: one SQLite connection shared by the event loop and worker threads."""

    def counts(self) -> dict[str, int]:
        (genomes,), = self._query(f"SELECT COUNT(*) FROM genomes WHERE {VISIBLE}")
        (walks,), = self._query("SELECT COUNT(*) FROM walks")
        return {"genomes": genomes, "walks": walks}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
