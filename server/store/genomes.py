"""Stored genomes: each one's file and row, lineage and generations, thumbnails; repaired at start-up.

A genome's file is written (atomically) and synced before its row is committed, so a row never
points at a half-written file; a file that no row names (a crash came between the two) was never
acknowledged and is removed at the next start.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sdxl_breeder.model.genome import ID_LENGTH, Genome, GenomeError, is_valid_id
from sdxl_breeder.store.database import Database, NotFound

log = logging.getLogger("sdxl_breeder.store")

_GENOME_COLS = ("id, prompt, parents, seed, mutation, created, length, widths, thumbnail IS NOT NULL, pool,"
                " generation, origin, child")
_GENOMES = "genomes LEFT JOIN genealogy USING (id)"  # genomes saved before genealogy get a row at startup
ORIGINS = ("prompt", "breed", "keep", "evolve")
# rows whose file was missing at startup (or vanished later) are hidden, not deleted: the file
# may come back from a backup, and delete_genome still clears them
VISIBLE = "id NOT IN (SELECT id FROM temp.missing)"


def _fsync(path: Path) -> None:
    """Flush a renamed file and its folder entry to disk (Genome.save only renames)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    if os.name == "posix":  # folders cannot be opened for fsync on Windows
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def genome_origin(parents: list[str], seed: int | None, stored: str | None = None) -> str:
    """How a genome came to be: "prompt" (embedded), "breed" (crossover child, has a breed seed),
    "keep" (a blend point saved from the pad) or "evolve" (a brood's child, stored as such)."""
    if stored is not None:
        return stored
    if not parents:
        return "prompt"
    return "breed" if seed is not None else "keep"


def _genome_row(row: tuple[Any, ...]) -> dict[str, Any]:
    gid, prompt, parents, seed, mutation, created, length, widths, has_thumb, pool, generation, origin, child = row
    parent_ids = json.loads(parents)
    info = {"id": gid, "prompt": prompt, "parents": parent_ids, "origin": genome_origin(parent_ids, seed, origin),
            "seed": seed, "mutation": mutation, "created": created, "length": length,
            "widths": json.loads(widths), "has_thumbnail": bool(has_thumb),
            "pool": json.loads(pool) if pool else None, "generation": generation or 0}
    if child is not None:
        info["child"] = child
    return info


def _pool_json(pool: tuple[tuple[int, float], ...]) -> str:
    return json.dumps([[int(p), float(w)] for p, w in pool])


class GenomeShelf(Database):
    """The genomes of the gallery: files in `genomes/`, rows, lineage and genealogy in SQLite."""

    def __init__(self, data_dir: str | Path, *, max_bytes: int | None = None) -> None:
        self.genome_dir = Path(data_dir) / "genomes"
        self.genome_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.genome_dir.glob(".tmp-*"):  # leftovers of saves interrupted by a crash
            log.info("removing unfinished genome file %s", tmp.name)
            tmp.unlink(missing_ok=True)
        super().__init__(Path(data_dir), max_bytes=max_bytes)
        try:
            self._find_missing()
            self._fill_genealogy()
            self._sweep_orphans()
        except BaseException:
            self._conn.close()
            raise
        # bytes of everything in genomes/ (kept up to date by put and delete); SQLite's files are
        # measured when asked, they are few
        self._genome_bytes = sum(f.stat().st_size for f in self.genome_dir.iterdir() if f.is_file())

    def _find_missing(self) -> None:
        ids = [r[0] for r in self._conn.execute("SELECT id FROM genomes")]
        missing = [g for g in ids if not is_valid_id(g) or not self._path(g).is_file()]
        for gid in missing:
            log.warning("genome %s has no file in %s; hiding it from the gallery",
                        gid, self.genome_dir)
        with self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO temp.missing VALUES (?)",
                                   [(g,) for g in missing])
        self._fill_pools(set(missing))

    def _fill_pools(self, missing: set[str]) -> None:
        """Rows written before the pool column learn it from their genome files (once)."""
        ids = [r[0] for r in self._conn.execute("SELECT id FROM genomes WHERE pool IS NULL") if r[0] not in missing]
        for gid in ids:
            try:
                pool = Genome.load(self._path(gid)).pool
            except Exception as e:  # noqa: BLE001 — an unreadable file stays unknown, get_genome says why
                log.warning("genome %s: cannot read where it pools (%s)", gid, e)
                continue
            with self._conn:
                self._conn.execute("UPDATE genomes SET pool = ? WHERE id = ?", (_pool_json(pool), gid))

    def _fill_genealogy(self) -> None:
        """Generations for genomes saved before the genealogy table, oldest first."""
        rows = self._conn.execute("SELECT id, parents FROM genomes WHERE id NOT IN (SELECT id FROM genealogy)"
                                  " ORDER BY created, id").fetchall()
        with self._conn:
            for gid, parents in rows:
                generation = self._generation(json.loads(parents))
                self._conn.execute("INSERT INTO genealogy VALUES (?, ?, NULL, NULL)", (gid, generation))

    def _generation(self, parents: list[str]) -> int:
        if not parents:
            return 0
        marks = ",".join("?" * len(parents))
        (top,), = self._conn.execute(f"SELECT MAX(generation) FROM genealogy WHERE id IN ({marks})", parents)
        return 1 + (top or 0)

    def generation(self, parents: list[str]) -> int:
        """The generation of a genome with these parents: 0 without any, else one more than the
        highest among them (a parent the store does not know counts as 0)."""
        with self._lock:
            return self._generation([str(p) for p in parents])

    def _sweep_orphans(self) -> None:
        known = {r[0] for r in self._conn.execute("SELECT id FROM genomes")}
        for path in self.genome_dir.glob("*.safetensors"):
            if is_valid_id(path.stem) and path.stem not in known:
                log.info("removing genome file %s: no genome row names it (a crash came between "
                         "writing the file and committing the row)", path.name)
                path.unlink(missing_ok=True)

    def _file_bytes(self) -> int:
        return self._genome_bytes

    def _path(self, genome_id: str) -> Path:
        # only validated ids ever become paths: no traversal, no odd names
        if not is_valid_id(genome_id):
            raise NotFound(f"no genome {genome_id!r}")
        return self.genome_dir / f"{genome_id}.safetensors"

    def put_genome(self, genome: Genome, thumbnail: bytes | None = None, *, origin: str | None = None,
                   child: int | None = None) -> dict[str, Any]:
        """Save the file, then the row (re-putting an id updates it); returns genome_info.
        `origin` overrides the one read from parents and seed ("evolve", with the `child` index).
        StoreFull (nothing written) when the folder holds `max_bytes`."""
        if origin is not None and origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {origin!r}")
        if not is_valid_id(genome.id):
            raise GenomeError(f"genome id must be {ID_LENGTH} lowercase hex characters, got {genome.id!r}")
        path = self._path(genome.id)
        self._check_room()
        before = path.stat().st_size if path.is_file() else 0
        genome.save(path)
        _fsync(path)  # durable before the row that points at it is committed
        with self._lock:
            self._genome_bytes += path.stat().st_size - before
        parents = [str(p) for p in genome.parents]
        row = (genome.id, genome.prompt, json.dumps(parents), genome.seed, float(genome.mutation),
               float(genome.created), int(genome.length), json.dumps(list(genome.widths)),
               None if thumbnail is None else bytes(thumbnail), _pool_json(genome.pool))
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO genomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET prompt=excluded.prompt, parents=excluded.parents, seed=excluded.seed,"
                " mutation=excluded.mutation, created=excluded.created, length=excluded.length,"
                " widths=excluded.widths, thumbnail=COALESCE(excluded.thumbnail, thumbnail),"
                " pool=excluded.pool", row)
            self._conn.execute("DELETE FROM lineage WHERE child = ?", (genome.id,))
            self._conn.executemany("INSERT OR IGNORE INTO lineage VALUES (?, ?)",
                                   [(genome.id, p) for p in parents])
            self._conn.execute("INSERT OR REPLACE INTO genealogy VALUES (?, ?, ?, ?)",
                               (genome.id, self._generation(parents), origin, child))
            self._conn.execute("DELETE FROM temp.missing WHERE id = ?", (genome.id,))
        return self.genome_info(genome.id)

    def get_genome(self, genome_id: str) -> Genome:
        """Load a genome's tensors; NotFound for an invalid, unknown or file-less id."""
        path = self._path(genome_id)
        if not self.has_genome(genome_id):
            raise NotFound(f"no genome {genome_id}")
        try:
            genome = Genome.load(path)
        except FileNotFoundError:
            log.warning("genome %s lost its file; hiding it from the gallery", genome_id)
            with self._lock, self._conn:
                self._conn.execute("INSERT OR IGNORE INTO temp.missing VALUES (?)", (genome_id,))
            raise NotFound(f"no genome {genome_id} (its file is missing)") from None
        except GenomeError:
            raise
        except Exception as e:  # corrupt header or metadata: one line for the user, not a trace
            raise GenomeError(f"genome {genome_id}: unreadable file ({e})") from None
        if genome.id != genome_id:
            raise GenomeError(f"genome file {path.name} holds genome {genome.id}")
        return genome

    def has_genome(self, genome_id: str) -> bool:
        if not is_valid_id(genome_id):
            return False
        return bool(self._query(f"SELECT 1 FROM genomes WHERE id = ? AND {VISIBLE}", (genome_id,)))

    def find_prompt(self, prompt: str) -> str | None:
        """The newest genome embedded from exactly this prompt, so a prompt is stored once."""
        rows = self._query(
            f"SELECT id FROM genomes WHERE prompt = ? AND parents = '[]' AND {VISIBLE} "
            "ORDER BY created DESC LIMIT 1",
            (prompt,),
        )
        return rows[0][0] if rows else None

    def genome_info(self, genome_id: str) -> dict[str, Any]:
        """Metadata plus `children`: the ids of genomes that list this one as a parent."""
        self._path(genome_id)
        rows = self._query(f"SELECT {_GENOME_COLS} FROM {_GENOMES} WHERE id = ? AND {VISIBLE}",
                           (genome_id,))
        if not rows:
            raise NotFound(f"no genome {genome_id}")
        info = _genome_row(rows[0])
        info["children"] = [r[0] for r in self._query(
            "SELECT g.id FROM lineage l JOIN genomes g ON g.id = l.child WHERE l.parent = ?"
            " AND g.id NOT IN (SELECT id FROM temp.missing) ORDER BY g.created, g.id", (genome_id,))]
        return info

    def list_genomes(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first (created, then id); at most MAX_LIST per page."""
        rows = self._newest(f"SELECT {_GENOME_COLS} FROM {_GENOMES} WHERE {VISIBLE}", limit, offset)
        return [_genome_row(r) for r in rows]

    def delete_genome(self, genome_id: str) -> None:
        """Remove the row, then the file; children keep this id among their parents."""
        path = self._path(genome_id)
        with self._lock, self._conn:
            # a hidden (file-less) row can still be deleted: that is how it gets cleaned up
            if not self._conn.execute("DELETE FROM genomes WHERE id = ?", (genome_id,)).rowcount:
                raise NotFound(f"no genome {genome_id}")
            self._conn.execute("DELETE FROM lineage WHERE child = ?", (genome_id,))
            self._conn.execute("DELETE FROM temp.missing WHERE id = ?", (genome_id,))
            # the generation stays: children already counted from it, and a line reads the same
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._genome_bytes -= size

    def thumbnail(self, genome_id: str) -> bytes | None:
        """The JPEG bytes, or None if none was set yet; NotFound if the genome is absent."""
        self._path(genome_id)
        rows = self._query(f"SELECT thumbnail FROM genomes WHERE id = ? AND {VISIBLE}",
                           (genome_id,))
        if not rows:
            raise NotFound(f"no genome {genome_id}")
        return None if rows[0][0] is None else bytes(rows[0][0])

    def set_thumbnail(self, genome_id: str, jpeg: bytes) -> None:
        self._path(genome_id)
        if not isinstance(jpeg, (bytes, bytearray, memoryview)):
            raise TypeError(f"thumbnail must be bytes, got {type(jpeg).__name__}")
        with self._lock, self._conn:
            cur = self._conn.execute(f"UPDATE genomes SET thumbnail = ? WHERE id = ? AND {VISIBLE}",
                                     (bytes(jpeg), genome_id))
            if not cur.rowcount:
                raise NotFound(f"no genome {genome_id}")
