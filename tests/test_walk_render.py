"""Offline walk rendering with the real tiny model: frame counts, sizes, determinism, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdxl_breeder.cli import main
from sdxl_breeder.walks.video import probe, read_video_frames
from sdxl_breeder.walks.render import render_walk, scene_for_walk, write_walk_video
from sdxl_breeder.walks.paths import WalkError
from sdxl_breeder.walks.walkfile import Walk, scripted_walk

from tests.conftest import PROMPTS
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings

SIZE = 64


def _walk(kind: str = "circle", seconds: float = 0.5, fps: float = 8, **kw: object) -> Walk:
    return scripted_walk(kind, list(PROMPTS), seconds=seconds, fps=fps, width=SIZE, height=SIZE,
                         seed=7, **kw)  # type: ignore[arg-type]


def test_mp4_has_round_seconds_times_fps_frames_of_the_right_size(renderer, tmp_path):
    walk = _walk(seconds=0.75, fps=8)  # 6 frames
    out = tmp_path / "walk.mp4"
    info = write_walk_video(walk, renderer, out, fps=8, batch=4)
    assert info == {"frames": 6, "path": str(out), "note": None, "width": SIZE, "height": SIZE, "fps": 8}
    frames = read_video_frames(out)  # decoded back with PyAV
    assert len(frames) == round(0.75 * 8)
    assert all(f.shape == (SIZE, SIZE, 3) for f in frames)
    assert probe(out)["codec"] == "h264"


def test_other_fps_keeps_the_duration(renderer):
    walk = _walk(seconds=0.5, fps=8)  # recorded at 8 fps, rendered at 12
    frames = list(render_walk(walk, renderer, fps=12, batch=3))
    assert len(frames) == round(0.5 * 12)


def test_size_override(renderer):
    frames = list(render_walk(_walk(seconds=0.25, fps=8), renderer, fps=8, width=128, height=SIZE))
    assert [f.shape for f in frames] == [(SIZE, 128, 3)] * 2


def test_same_walk_twice_gives_identical_frames(renderer):
    walk = _walk("lissajous", seconds=0.5, fps=8)
    first = list(render_walk(walk, renderer, fps=8, batch=3))
    second = list(render_walk(Walk.from_json(walk.to_json()), renderer, fps=8, batch=3))
    assert len(first) == len(second) == 4
    for a, b in zip(first, second):
        assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(first[0], first[2])  # the walk moves


@pytest.mark.parametrize("blend", ["lerp", "slerp"])
def test_line_corner_to_corner_starts_and_ends_on_the_corner_frames(renderer, blend):
    walk = scripted_walk("line", list(PROMPTS), seconds=0.5, fps=8, width=SIZE, height=SIZE, seed=3,
                         blend=blend, points=[(0, 0), (1, 1)])
    frames = list(render_walk(walk, renderer, fps=8, batch=1))
    scene = scene_for_walk(walk, renderer)

    def corner(x: float, y: float) -> np.ndarray:
        cond = FrameRequest(scene, x, y, FrameSettings(blend=blend, seed=3, width=SIZE, height=SIZE))
        return renderer.render([cond])[0]
    assert np.array_equal(frames[0], corner(0, 0))
    assert np.array_equal(frames[-1], corner(1, 1))


def test_corner_seeds_are_used(renderer):
    walk = _walk("line", seconds=0.25, fps=8, points=[(0, 0), (1, 1)])
    seeded = Walk.from_json({**walk.to_json(), "corner_seeds": [11, 12, 13, 14]})
    plain = list(render_walk(walk, renderer, fps=8))
    with_seeds = list(render_walk(seeded, renderer, fps=8))
    # at the top-left corner the blended noise is corner 0's noise: seed 11 instead of 7
    scene = scene_for_walk(walk, renderer)
    alone = renderer.render([FrameRequest(scene, 0, 0, FrameSettings(seed=11, width=SIZE, height=SIZE))])[0]
    assert np.array_equal(with_seeds[0], alone)
    assert not np.array_equal(with_seeds[0], plain[0])


def test_genome_corners_come_from_the_lookup(renderer):
    fox = renderer.genome_from_prompt(PROMPTS[1])
    walk = scripted_walk("line", [PROMPTS[0], f"genome:{fox.id}", PROMPTS[2], PROMPTS[3]], seconds=0.25,
                         fps=8, width=SIZE, height=SIZE, points=[(1, 0), (0, 1)])
    by_prompt = scripted_walk("line", list(PROMPTS), seconds=0.25, fps=8, width=SIZE, height=SIZE,
                              points=[(1, 0), (0, 1)])
    got = list(render_walk(walk, renderer, fps=8, genomes={fox.id: fox}.__getitem__))
    want = list(render_walk(by_prompt, renderer, fps=8))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("genomes", [None, {}.__getitem__, lambda gid: None])
def test_unknown_genome_is_a_walk_error(renderer, genomes):
    walk = scripted_walk("circle", ["a", "b", "genome:0123456789abcdef", "d"], seconds=0.25, fps=8,
                         width=SIZE, height=SIZE)
    with pytest.raises(WalkError, match=r"unknown genome 0123456789abcdef in corners\[2\]"):
        render_walk(walk, renderer, fps=8, genomes=genomes)


def test_bad_batch_and_size_fail_before_rendering(renderer, tmp_path):
    from sdxl_breeder.model.renderer import RenderError

    walk = _walk(seconds=0.25, fps=8)
    with pytest.raises(WalkError, match="batch"):
        render_walk(walk, renderer, fps=8, batch=0)
    with pytest.raises(RenderError):
        render_walk(walk, renderer, fps=8, width=100)
    with pytest.raises(WalkError, match="unknown suffix"):
        write_walk_video(walk, renderer, tmp_path / "walk.avi", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_gif_and_png_folder(renderer, tmp_path):
    walk = _walk(seconds=0.375, fps=8)  # 3 frames
    gif = write_walk_video(walk, renderer, tmp_path / "walk.gif", fps=8, batch=2)
    folder = write_walk_video(walk, renderer, tmp_path / "frames", fps=8, batch=2)
    assert gif["frames"] == folder["frames"] == 3
    assert probe(tmp_path / "walk.gif")["frames"] == 3
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_0000{i}.png" for i in range(3)]
    # PNG is lossless: the folder holds exactly the rendered frames (same batching)
    rendered = list(render_walk(walk, renderer, fps=8, batch=2))
    assert all(np.array_equal(a, b) for a, b in zip(read_video_frames(tmp_path / "frames"), rendered, strict=True))


# ------------------------------------------------------------------------------ CLI
def test_cli_render_walk_writes_an_mp4(tmp_path, capsys, renderer):
    walk_file = tmp_path / "walk.json"
    _walk(seconds=0.5, fps=8).save(walk_file)
    out = tmp_path / "out" / "walk.mp4"
    code = main(["render-walk", str(walk_file), "--model", "tiny", "--device", "cpu", "--fps", "10",
                 "--batch", "2", "--out", str(out)])
    assert code == 0
    assert probe(out)["frames"] == round(0.5 * 10)
    stdout = capsys.readouterr().out
    assert f"wrote {out} (5 frames, {SIZE}×{SIZE}, fps 10)" in stdout


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "sdxl-breeder-walk", "version": 2})])
def test_cli_render_walk_bad_file_is_one_line(tmp_path, capsys, content):
    walk_file = tmp_path / "bad.json"
    walk_file.write_text(content)
    code = main(["render-walk", str(walk_file), "--model", "tiny", "--device", "cpu",
                 "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("sdxl-breeder render-walk: error: ") and str(walk_file) in err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_render_walk_missing_file(tmp_path, capsys):
    code = main(["render-walk", str(tmp_path / "nope.json"), "--model", "tiny", "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "cannot read walk file" in capsys.readouterr().err


def test_cli_render_walk_unknown_genome_names_the_data_dir(tmp_path, capsys):
    walk_file = tmp_path / "walk.json"
    scripted_walk("circle", ["a", "b", "genome:0123456789abcdef", "d"], seconds=0.25, fps=8,
                  width=SIZE, height=SIZE).save(walk_file)
    code = main(["render-walk", str(walk_file), "--model", "tiny", "--device", "cpu",
                 "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "unknown genome 0123456789abcdef in corners[2]" in capsys.readouterr().err


def test_walk_file_roundtrip_path(tmp_path: Path):
    # the walk written by `sdxl-breeder walk --walk-file` is what render-walk reads back
    walk = _walk(seconds=0.25, fps=8)
    walk.save(tmp_path / "w.json")
    assert Walk.load(tmp_path / "w.json").to_json() == walk.to_json()
