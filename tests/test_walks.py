"""Tests for sdxl_breeder.walks.paths and walkfile: path generators, the walk file format and resampling."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdxl_breeder.walks.paths import (
    MAX_WALK_FRAMES, PATH_KINDS, WalkError, WalkPoint, circle_path, frame_count, line_path, lissajous_path,
    make_path, polyline_path, random_path, resample, spline_path,
)
from sdxl_breeder.walks.walkfile import Corner, Walk, scripted_walk

KEYPOINTS = [(0.1, 0.2), (0.9, 0.1), (0.8, 0.9), (0.2, 0.7)]


def _points_for(kind: str) -> list[tuple[float, float]] | None:
    if kind == "line":
        return [(0.2, 0.3), (0.7, 0.9)]
    return KEYPOINTS if kind in ("polyline", "spline") else None


def valid_walk() -> dict[str, Any]:
    return {
        "format": "sdxl-breeder-walk", "version": 1,
        "corners": [{"prompt": "a red fox"}, {"genome": "0123456789abcdef"},
                    {"prompt": "a blue whale"}, {"prompt": "a green frog"}],
        "template": "a painting of [noken], oil on canvas", "blend": "slerp", "seed": 1234,
        "corner_seeds": [1, 2, 3, 4], "width": 512, "height": 768,
        "points": [[0.0, 0.0, 0.0], [0.04, 0.02, 0.01], [0.5, 0.5, 0.25], [1.0, 1.0, 1.0]],
    }


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("seconds,fps", [(4.0, 12.0), (2.5, 12.5), (1.0, 30.0), (0.3, 10.0)])
def test_every_kind_gives_round_seconds_times_fps_points_on_the_pad(
        kind: str, seconds: float, fps: float) -> None:
    pts = make_path(kind, seconds=seconds, fps=fps, points=_points_for(kind), seed=7)
    assert len(pts) == round(seconds * fps)
    for i, p in enumerate(pts):
        assert isinstance(p, WalkPoint)
        assert p.t == pytest.approx(i / fps)
        assert 0.0 <= p.x <= 1.0 and 0.0 <= p.y <= 1.0


@pytest.mark.parametrize("kind", ["line", "polyline", "spline"])
def test_keypoint_paths_start_and_end_exactly_on_their_keypoints(kind: str) -> None:
    kps = _points_for(kind)
    assert kps is not None
    pts = make_path(kind, seconds=3.7, fps=11.0, points=kps)
    assert (pts[0].x, pts[0].y) == kps[0]
    assert (pts[-1].x, pts[-1].y) == kps[-1]


def test_line_defaults_to_the_diagonal_and_is_evenly_spaced() -> None:
    pts = line_path(seconds=1.0, fps=5.0)
    np.testing.assert_allclose([(p.x, p.y) for p in pts],
                               [(0, 0), (.25, .25), (.5, .5), (.75, .75), (1, 1)])
    assert (pts[-1].x, pts[-1].y) == (1.0, 1.0)


def test_polyline_moves_at_constant_speed() -> None:
    pts = polyline_path([(0.0, 0.0), (1.0, 0.0), (1.0, 0.5)], seconds=1.0, fps=7.0)
    # 1.5 units of arc in 6 equal steps; the corner (1, 0) falls exactly on frame 4
    np.testing.assert_allclose([(p.x, p.y) for p in pts],
                               [(0, 0), (.25, 0), (.5, 0), (.75, 0), (1, 0), (1, .25), (1, .5)])


def test_spline_passes_through_interior_keypoints() -> None:
    # 3 segments over 31 frames: frames 10 and 20 sit exactly on the interior keypoints
    pts = spline_path(KEYPOINTS, seconds=3.1, fps=10.0)
    assert (pts[10].x, pts[10].y) == pytest.approx(KEYPOINTS[1])
    assert (pts[20].x, pts[20].y) == pytest.approx(KEYPOINTS[2])


def test_circle_starts_at_the_rightmost_point_and_stays_on_the_circle() -> None:
    pts = circle_path(2.0, 12.0, center=(0.5, 0.5), radius=0.4)
    assert (pts[0].x, pts[0].y) == pytest.approx((0.9, 0.5))
    assert all(math.dist((p.x, p.y), (0.5, 0.5)) == pytest.approx(0.4) for p in pts)


def test_lissajous_formula() -> None:
    pts = lissajous_path(2.0, 10.0)
    n = len(pts)
    for i in (0, 3, 17):
        s = i / n
        assert pts[i].x == pytest.approx(0.5 + 0.5 * math.sin(3 * 2 * math.pi * s + math.pi / 2))
        assert pts[i].y == pytest.approx(0.5 + 0.5 * math.sin(2 * 2 * math.pi * s))


def test_random_path_is_reproducible_by_seed_and_differs_across_seeds() -> None:
    a = random_path(5.0, 12.0, seed=42)
    assert a == random_path(5.0, 12.0, seed=42)
    assert a != random_path(5.0, 12.0, seed=43)
    assert (a[0].x, a[0].y) == (0.5, 0.5)
    big = random_path(20.0, 24.0, seed=1, step=0.3)  # big steps must reflect, not escape
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in big)


@pytest.mark.parametrize("call,needle", [
    (lambda: make_path("zigzag", seconds=1, fps=1), "unknown path kind 'zigzag'"),
    (lambda: make_path("polyline", seconds=1, fps=1), "at least 2"),
    (lambda: make_path("spline", seconds=1, fps=1, points=[(0.5, 0.5)]), "at least 2"),
    (lambda: make_path("line", seconds=1, fps=1, points=[(0, 0), (1, 1), (0, 1)]),
     "exactly 2 points"),
    (lambda: make_path("circle", seconds=1, fps=1, points=[(0, 0), (1, 1)]), "takes no points"),
    (lambda: make_path("polyline", seconds=1, fps=1, points=[(0, 0), (1.5, 0)]),
     "points[1]: x must be within [0, 1]"),
    (lambda: make_path("line", seconds=0, fps=12), "seconds must be a positive"),
    (lambda: make_path("line", seconds=1, fps=121), "fps must be within (0, 120]"),
    (lambda: make_path("line", seconds=1, fps=0), "fps must be within (0, 120]"),
    (lambda: make_path("line", seconds=float("nan"), fps=12), "seconds"),
    (lambda: make_path("random", seconds=400, fps=120), f"limit {MAX_WALK_FRAMES}"),
])
def test_bad_path_requests_raise_walk_error(call: Any, needle: str) -> None:
    with pytest.raises(WalkError) as e:
        call()
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_frame_count_is_at_least_one() -> None:
    assert frame_count(0.01, 12.0) == 1
    assert frame_count(2.5, 12.5) == 31


def test_walk_json_round_trip(tmp_path: Path) -> None:
    obj = valid_walk()
    walk = Walk.from_json(obj)
    assert walk.to_json() == obj
    assert Walk.from_json(json.dumps(obj)) == walk
    path = tmp_path / "walk.json"
    walk.save(path)
    assert Walk.load(path) == walk
    assert [p.name for p in tmp_path.iterdir()] == ["walk.json"]  # no temp file left behind
    assert walk.duration == 1.0
    assert walk.genome_ids() == ["0123456789abcdef"]
    assert walk.corners[0] == Corner(prompt="a red fox")


def test_optional_fields_default() -> None:
    obj = valid_walk()
    for key in ("template", "blend", "seed", "corner_seeds", "width", "height"):
        del obj[key]
    walk = Walk.from_json(obj)
    assert (walk.template, walk.blend, walk.seed, walk.corner_seeds) == (None, "lerp", 0, None)
    assert (walk.width, walk.height) == (512, 512)


def _set(path: str, value: Any) -> dict[str, Any]:
    """A valid walk with one field changed; `path` is dotted, e.g. "corners.1"."""
    obj = copy.deepcopy(valid_walk())
    keys = path.split(".")
    target: Any = obj
    for k in keys[:-1]:
        target = target[int(k) if isinstance(target, list) else k]
    last = keys[-1]
    if value is _DELETE:
        del target[int(last) if isinstance(target, list) else last]
    else:
        target[int(last) if isinstance(target, list) else last] = value
    return obj


_DELETE = object()

INVALID = [
    ("format", "sdxl-breeder-genome", "format must be 'sdxl-breeder-walk'"),
    ("version", 2, "unsupported walk version 2 (this build reads version 1)"),
    ("version", True, "unsupported walk version True"),
    ("corners.3", _DELETE, "corners must be a list of 4"),
    ("corners.1", {"prompt": "a cat", "genome": "0123456789abcdef"}, "corners[1] must have"),
    ("corners.2", {}, "corners[2] must have exactly one field"),
    ("corners.1", {"genome": "0123456789ABCDEF"}, "corners[1]: genome must be 16 lowercase"),
    ("corners.1", {"genome": "0123"}, "corners[1]: genome must be 16 lowercase hex"),
    ("corners.0", {"prompt": "   "}, "corners[0]: prompt must be a non-empty string"),
    ("corners.0", {"prompt": "x" * 1001}, "corners[0]: prompt is 1001 characters"),
    ("template", "no token here", "template must contain exactly one [noken], found 0"),
    ("template", "[noken] and [noken]", "template must contain exactly one [noken], found 2"),
    ("blend", "cubic", "blend must be one of lerp, slerp"),
    ("seed", 1.5, "seed must be an integer"),
    ("seed", True, "seed must be an integer"),
    ("seed", "7", "seed must be an integer"),
    ("seed", -1, "seed must be within [0, 4294967295]"),
    ("corner_seeds", [1, 2, 3], "corner_seeds must be null or a list of 4"),
    ("corner_seeds.2", 2**32, "corner_seeds[2] must be within"),
    ("width", 500, "width must be a multiple of 64 within [64, 1024]"),
    ("width", 2048, "width must be a multiple of 64 within [64, 1024]"),  # the server's own size limit
    ("height", 4096, "height must be a multiple of 64 within [64, 1024]"),
    ("width", 512.0, "width must be an integer"),
    ("points.2", [0.5, float("nan"), 0.3], "points[2]: x must be a finite number"),
    ("points.3", [1.0, 1.5, 0.5], "points[3]: x must be within [0, 1]"),
    ("points.1", [0.04, 0.5, -0.1], "points[1]: y must be within [0, 1]"),
    ("points.2", [0.01, 0.5, 0.5], "points[2]: t must not decrease"),
    ("points.0", [-0.5, 0.0, 0.0], "points[0]: t must be >= 0"),
    ("points.1", [0.1, 0.5], "points[1] must be [t, x, y]"),
    ("points.1", [0.1, True, 0.5], "points[1]: x must be a finite number"),
    ("points", [], "points must be a non-empty list"),
    ("points", _DELETE, "points must be a non-empty list"),
    ("color", "red", "unknown field 'color'"),
]


@pytest.mark.parametrize("path,value,needle", INVALID,
                         ids=[f"{p}={'del' if v is _DELETE else repr(v)[:24]}"
                              for p, v, _ in INVALID])
def test_invalid_walks_raise_walk_error_naming_the_problem(path: str, value: Any,
                                                           needle: str) -> None:
    with pytest.raises(WalkError) as e:
        Walk.from_json(_set(path, value))
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_invalid_walk_text_and_files(tmp_path: Path) -> None:
    with pytest.raises(WalkError, match="not valid JSON"):
        Walk.from_json("{not json")
    with pytest.raises(WalkError, match="must be a JSON object"):
        Walk.from_json("[1, 2]")
    with pytest.raises(WalkError, match="cannot read walk file .*missing.json"):
        Walk.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set("version", 2)))
    with pytest.raises(WalkError, match=r"bad\.json: unsupported walk version 2"):
        Walk.load(bad)


def test_too_many_points_is_rejected() -> None:
    pts = [[i / 100, 0.5, 0.5] for i in range(MAX_WALK_FRAMES + 1)]
    with pytest.raises(WalkError, match="points has 36001 entries"):
        Walk.from_json(_set("points", pts))


def test_resample_gives_round_seconds_times_fps_frames_interpolated_by_time() -> None:
    # recorded at irregular times, starting at t0 = 2
    rec = [WalkPoint(2.0, 0.1, 0.2), WalkPoint(2.3, 0.4, 0.2), WalkPoint(3.0, 0.4, 0.9),
           WalkPoint(4.0, 1.0, 0.9)]
    frames = resample(rec, fps=10.0)
    assert len(frames) == round(2.0 * 10.0)
    assert frames[0] == WalkPoint(0.0, 0.1, 0.2)  # exactly the first point
    assert frames[3] == pytest.approx(WalkPoint(0.3, 0.4, 0.2))  # exact where t matches
    assert frames[1] == pytest.approx(WalkPoint(0.1, 0.2, 0.2))  # 1/3 of the way to 2.3
    assert frames[5] == pytest.approx(WalkPoint(0.5, 0.4, 0.4))  # 2/7 of the way to 3.0
    assert frames[15] == pytest.approx(WalkPoint(1.5, 0.7, 0.9))  # halfway to 4.0
    times = [p.t for p in rec]
    for k, f in enumerate(frames):  # every frame is the linear interpolation at its time
        assert f.x == pytest.approx(np.interp(2.0 + k / 10, times, [p.x for p in rec]))
        assert f.y == pytest.approx(np.interp(2.0 + k / 10, times, [p.y for p in rec]))


@pytest.mark.parametrize("seconds,fps", [(1.0, 24.0), (2.5, 12.5), (0.7, 30.0), (3.0, 7.0)])
def test_resample_with_explicit_seconds_and_fractional_fps(seconds: float, fps: float) -> None:
    rec = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    frames = resample(rec, fps=fps, seconds=seconds)
    assert len(frames) == round(seconds * fps)
    for k, f in enumerate(frames):
        expected = min(k / fps, 1.0)  # the cursor holds still after the recording ends
        assert f.t == pytest.approx(k / fps)
        assert (f.x, f.y) == pytest.approx((expected, expected))


def test_resample_edge_cases() -> None:
    assert resample([[5.0, 0.3, 0.6]], fps=24.0) == [WalkPoint(0.0, 0.3, 0.6)]
    # a jump recorded at one instant: the first frame is the first point, later the last
    jump = resample([[0.0, 0.1, 0.1], [0.0, 0.9, 0.9], [1.0, 0.9, 0.9]], fps=4.0)
    assert jump[0] == WalkPoint(0.0, 0.1, 0.1)
    assert (jump[1].x, jump[1].y) == (0.9, 0.9)
    with pytest.raises(WalkError, match="empty"):
        resample([], fps=12.0)
    with pytest.raises(WalkError, match="fps"):
        resample([[0.0, 0.5, 0.5]], fps=0.0)
    with pytest.raises(WalkError, match="frames; limit"):
        resample([[0.0, 0.5, 0.5], [10_000.0, 0.5, 0.5]], fps=60.0)


def test_scripted_walk_builds_a_valid_walk() -> None:
    walk = scripted_walk("polyline", ["a red fox", "genome:0123456789abcdef",
                                      {"prompt": "a whale"}, Corner(genome="fedcba9876543210")],
                         seconds=2.0, fps=12.0, template="art of [noken]", blend="slerp",
                         seed=9, width=640, height=384, points=KEYPOINTS)
    # the path's 24 points plus one resting point at t = 2.0: the walk lasts exactly 2 s
    path = make_path("polyline", seconds=2.0, fps=12.0, points=KEYPOINTS)
    assert walk.points[:24] == path and len(walk.points) == 25
    assert walk.points[24] == WalkPoint(2.0, *KEYPOINTS[-1])
    assert walk.duration == 2.0
    # so rendering at the scripted fps gives back exactly the scripted frames, and any
    # other fps gives the same length of video
    assert resample(walk.points, 12.0) == path
    assert len(resample(walk.points, 24.0)) == 48
    assert len(resample(walk.points, 12.5)) == 25
    assert walk.genome_ids() == ["0123456789abcdef", "fedcba9876543210"]
    assert Walk.from_json(walk.to_json()) == walk
    assert Corner.parse("0123456789abcdef") == Corner(genome="0123456789abcdef")
    assert Corner.parse("prompt:0123456789abcdef") == Corner(prompt="0123456789abcdef")
    with pytest.raises(WalkError, match="template must contain exactly one"):
        scripted_walk("circle", ["a", "b", "c", "d"], seconds=1, fps=4, template="no token")
    with pytest.raises(WalkError, match="exactly 4 corners"):
        scripted_walk("circle", ["a", "b", "c"], seconds=1, fps=4)
    with pytest.raises(WalkError, match="width must be a multiple of 64"):
        scripted_walk("circle", ["a", "b", "c", "d"], seconds=1, fps=4, width=500)
