"""Tests for sdxl_breeder.walks.video: writing MP4/GIF/PNG with PyAV and reading them back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sdxl_breeder.walks.video import (
    VIDEO_FORMATS, VideoWriter, adjusted_size, format_for_path, probe,
    read_video_frames,
)

COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (250, 250, 40), (20, 30, 40), (128, 128, 128),
           (255, 255, 255), (90, 10, 160)]


def make_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Distinct frames: a solid colour with a soft horizontal gradient over it."""
    ramp = np.linspace(-20, 20, width)[None, :, None]
    frames = []
    for i in range(n):
        base = np.array(COLOURS[i % len(COLOURS)], float)[None, None, :]
        frames.append(np.clip(base + ramp, 0, 255).astype(np.uint8).repeat(height, axis=0))
    return frames


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("name,fmt,max_error", [
    ("walk.mp4", "mp4", 6.0), ("walk.gif", "gif", 6.0), ("frames", "png", 0.0),
])
def test_frames_round_trip_in_order(tmp_path: Path, name: str, fmt: str,
                                    max_error: float) -> None:
    n, width, height = 8, 96, 64
    frames = make_frames(n, width, height)
    out = tmp_path / name
    assert format_for_path(out) == fmt
    with VideoWriter(out, 12, width, height) as writer:
        assert writer.adjustment_note is None
        for f in frames:
            writer.write(f)
    decoded = read_video_frames(out)
    assert len(decoded) == n
    for i, (want, got) in enumerate(zip(frames, decoded)):
        assert got.shape == (height, width, 3)
        assert mean_abs_error(want, got) <= max_error, f"frame {i}"
        # in order: each decoded frame is closest to its own source frame
        assert min(range(n), key=lambda j: mean_abs_error(frames[j], got)) == i
    info = probe(out)
    assert (info["frames"], info["width"], info["height"]) == (n, width, height)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left behind


def test_mp4_is_browser_friendly_h264(tmp_path: Path) -> None:
    out = tmp_path / "walk.mp4"
    with VideoWriter(out, 24, 128, 64) as writer:
        for f in make_frames(5, 128, 64):
            writer.write(Image.fromarray(f))  # PIL images work as well as arrays
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["fps"] == pytest.approx(24.0)
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading


def test_gif_loops_forever_with_correct_timing(tmp_path: Path) -> None:
    out = tmp_path / "walk.gif"
    n, fps = 10, 12.5
    with VideoWriter(out, fps, 32, 32) as writer:
        for f in make_frames(n, 32, 32):
            writer.write(f)
    with Image.open(out) as gif:
        assert gif.n_frames == n
        assert gif.info.get("loop") == 0
        durations = []
        for k in range(n):
            gif.seek(k)
            durations.append(gif.info["duration"])
    assert durations == [80] * n  # 1000 / 12.5 ms
    assert probe(out)["codec"] == "gif"


def test_gif_keeps_identical_consecutive_frames(tmp_path: Path) -> None:
    # a paused cursor gives repeated frames; they must still count (and take time)
    out = tmp_path / "still.gif"
    frame = make_frames(1, 16, 16)[0]
    with VideoWriter(out, 10, 16, 16) as writer:
        for _ in range(4):
            writer.write(frame)
    assert len(read_video_frames(out)) == 4


def test_png_folder_is_lossless_and_replaces_stale_frames(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(5):  # a longer earlier render
        Image.new("RGB", (8, 8)).save(folder / f"frame_{k:05d}.png")
    (folder / "notes.txt").write_text("keep me")
    frames = make_frames(3, 20, 10)
    with VideoWriter(folder, 5, 20, 10) as writer:
        for f in frames:
            writer.write(f)
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_00000.png", "frame_00001.png", "frame_00002.png", "notes.txt"]
    for k, want in enumerate(frames):
        with Image.open(folder / f"frame_{k:05d}.png") as img:
            assert np.array_equal(np.asarray(img.convert("RGB")), want)
    assert probe(folder)["codec"] == "png" and probe(folder)["fps"] is None


def test_odd_size_is_adjusted_with_a_note(tmp_path: Path) -> None:
    assert adjusted_size(255, 256, "mp4") == (
        254, 256, "width 255 is odd; H.264 yuv420p needs even sizes, encoding at 254×256")
    w, h, note = adjusted_size(255, 257, "mp4")
    assert (w, h) == (254, 256) and note is not None and "width 255 and height 257 are odd" in note
    assert adjusted_size(256, 256, "mp4") == (256, 256, None)
    assert adjusted_size(255, 257, "gif") == (255, 257, None)
    assert adjusted_size(255, 257, "png") == (255, 257, None)
    with pytest.raises(ValueError, match="at least 2×2"):
        adjusted_size(1, 64, "mp4")
    with pytest.raises(ValueError, match="width must be a positive integer"):
        adjusted_size(0, 64, "png")

    out = tmp_path / "odd.mp4"
    frames = make_frames(4, 65, 49)
    with VideoWriter(out, 8, 65, 49) as writer:
        assert writer.adjustment_note == (
            "width 65 and height 49 are odd; H.264 yuv420p needs even sizes, encoding at 64×48")
        assert (writer.out_width, writer.out_height) == (64, 48)
        for f in frames:
            writer.write(f)  # frames keep the requested size; the writer crops
    decoded = read_video_frames(out)
    assert len(decoded) == 4 and decoded[0].shape == (48, 64, 3)
    for want, got in zip(frames, decoded):
        assert mean_abs_error(want[:48, :64], got) <= 6.0


@pytest.mark.parametrize("fps", [12.5, 29.97, 7.5])
def test_fractional_fps(tmp_path: Path, fps: float) -> None:
    out = tmp_path / "frac.mp4"
    n = 6
    with VideoWriter(out, fps, 32, 32) as writer:
        for f in make_frames(n, 32, 32):
            writer.write(f)
    assert probe(out)["fps"] == pytest.approx(fps)
    with av.open(str(out)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert times == pytest.approx([k / fps for k in range(n)], abs=1e-3)


def test_unknown_suffix_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        format_for_path(tmp_path / "walk.avi")
    msg = str(e.value)
    assert "'.avi'" in msg and ".mp4" in msg and ".gif" in msg and "folder" in msg
    with pytest.raises(ValueError, match="unknown suffix"):
        VideoWriter(tmp_path / "walk.webm", 12, 64, 64)
    assert format_for_path(tmp_path / "WALK.MP4") == "mp4"
    assert format_for_path(tmp_path) == "png"  # an existing folder, whatever its name
    assert VIDEO_FORMATS == ("mp4", "gif", "png")


def test_bad_frames_and_arguments_are_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    with VideoWriter(out, 12, 64, 64) as writer:
        with pytest.raises(ValueError, match="frame 0 is 32×64 but this video is 64×64"):
            writer.write(np.zeros((64, 32, 3), np.uint8))
        with pytest.raises(ValueError, match=r"uint8 array of shape \(height, width, 3\)"):
            writer.write(np.zeros((64, 64, 3), np.float32))
        with pytest.raises(ValueError, match="PIL image or a numpy array"):
            writer.write([[0, 0, 0]])  # type: ignore[arg-type]
        writer.write(np.zeros((64, 64, 3), np.uint8))
    assert probe(out)["frames"] == 1
    with pytest.raises(ValueError, match="fps must be a positive number"):
        VideoWriter(tmp_path / "a.mp4", 0, 64, 64)
    with pytest.raises(ValueError, match="GIF cannot play faster than 50 fps"):
        VideoWriter(tmp_path / "a.gif", 60, 64, 64)


def test_failed_or_empty_renders_leave_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames were written"):
        with VideoWriter(tmp_path / "empty.mp4", 12, 64, 64):
            pass
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "crash.gif", 12, 64, 64) as writer:
            writer.write(make_frames(1, 64, 64)[0])
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_or_broken_video_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such video"):
        read_video_frames(tmp_path / "nope.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot read video"):
        probe(broken)
