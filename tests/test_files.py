"""Files the user keeps (videos, walk files, genomes, checkpoints) follow the umask, like any other
new file, and appear atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from sdxl_breeder.files import atomic_path, current_umask
from sdxl_breeder.walks.walkfile import scripted_walk
from sdxl_breeder.walks.video import VideoWriter


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_written_files_follow_the_umask(umask, tmp_path, renderer):
    expected = 0o666 & ~umask
    walk = scripted_walk("circle", ["a", "b", "c", "d"], seconds=1, fps=4, width=64, height=64)
    walk.save(tmp_path / "walk.json")
    renderer.genome_from_prompt("a cat").save(tmp_path / "g.safetensors")
    for name in ("w.mp4", "w.gif"):
        with VideoWriter(tmp_path / name, 4, 64, 64) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
    for name in ("walk.json", "g.safetensors", "w.mp4", "w.gif"):
        assert _mode(tmp_path / name) == expected, (name, oct(_mode(tmp_path / name)))
    # and only the finished files are there: no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["g.safetensors", "walk.json", "w.gif", "w.mp4"])


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
