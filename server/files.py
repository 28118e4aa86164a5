"""Atomic file writes that follow the umask: a temporary file next to the target, renamed into place.

`tempfile.mkstemp` creates files readable by their owner only (0600), which is right for secrets
and wrong for a user's videos, walks and genomes: those get the mode any other new file would get
(0666 less the umask) before they appear under their final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success it gets the umask's mode and replaces
    `path`, on failure it is removed and `path` is left as it was."""
    path = Path(path)
    # ".tmp-" first: the store sweeps `.tmp-*` leftovers of writes a crash interrupted
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.", suffix=suffix or ".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
