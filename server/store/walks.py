"""Stored walks: a walk's JSON with its name, source, length and duration, listed newest first."""

from __future__ import annotations

import json
import time
from typing import Any

from sdxl_breeder.model.genome import is_valid_id, new_id
from sdxl_breeder.store.database import Database, NotFound
from sdxl_breeder.walks.paths import WalkError
from sdxl_breeder.walks.walkfile import Walk

MAX_NAME_CHARS = 200
_WALK_COLS = "id, name, source, created, points, seconds"


def _walk_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("id", "name", "source", "created", "points", "seconds"), row))


class WalkShelf(Database):
    """The walks table of the gallery."""

    def put_walk(self, walk: Walk, *, name: str | None = None, source: str = "api") -> dict[str, Any]:
        """Validate and store a walk under a new id; returns walk_info."""
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
            raise WalkError(f"walk name must be text of at most {MAX_NAME_CHARS} characters")
        walk = walk.validate()  # only walks that load back are stored
        self._check_room()
        text = json.dumps(walk.to_json(), allow_nan=False, separators=(",", ":"))
        info = {"id": new_id(), "name": name, "source": str(source), "created": time.time(),
                "points": len(walk.points), "seconds": walk.duration}
        with self._lock, self._conn:
            self._conn.execute("INSERT INTO walks VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (*info.values(), text))
        return info

    def get_walk(self, walk_id: str) -> Walk:
        rows = self._walk_query("walk", walk_id)
        return Walk.from_json(rows[0][0])

    def walk_info(self, walk_id: str) -> dict[str, Any]:
        return _walk_row(self._walk_query(_WALK_COLS, walk_id)[0])

    def list_walks(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first (created, then id); at most MAX_LIST per page."""
        return [_walk_row(r) for r in self._newest(f"SELECT {_WALK_COLS} FROM walks", limit, offset)]

    def delete_walk(self, walk_id: str) -> None:
        if not is_valid_id(walk_id):
            raise NotFound(f"no walk {walk_id!r}")
        with self._lock, self._conn:
            if not self._conn.execute("DELETE FROM walks WHERE id = ?", (walk_id,)).rowcount:
                raise NotFound(f"no walk {walk_id}")

    def _walk_query(self, cols: str, walk_id: str) -> list[tuple[Any, ...]]:
        if not is_valid_id(walk_id):
            raise NotFound(f"no walk {walk_id!r}")
        rows = self._query(f"SELECT {cols} FROM walks WHERE id = ?", (walk_id,))
        if not rows:
            raise NotFound(f"no walk {walk_id}")
        return rows
