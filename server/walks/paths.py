"""Cursor paths over the four-corner pad: timed points, generated shapes, and resampling to a frame rate.

Pad coordinates are (x, y) in [0, 1]², (0, 0) top-left; corners are TL, TR, BL, BR.
Pure Python on purpose (no torch/diffusers): the CLI and server validate walks cheaply.
The walk file (corners, settings and a path) is `walkfile.py`; its names are also importable from here.
"""

from __future__ import annotations

import bisect
import math
import random
from itertools import accumulate
from typing import Any, Callable, NamedTuple, Sequence

from sdxl_breeder.spec import LIMITS

MAX_WALK_FRAMES = LIMITS.max_record_points  # points of a walk, frames of a path: 10 minutes at 60 fps
MAX_FPS = LIMITS.max_fps
PATH_KINDS = ("line", "polyline", "circle", "lissajous", "spline", "random")
Point = tuple[float, float]
_WALK_FILE_NAMES = ("WALK_FORMAT", "WALK_VERSION", "Corner", "Walk", "scripted_walk")


def __getattr__(name: str) -> Any:
    """The walk file's names, which lived here before walkfile.py (imported lazily: it imports this)."""
    if name in _WALK_FILE_NAMES:
        from sdxl_breeder.walks import walkfile
        return getattr(walkfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WalkError(ValueError):
    """A walk or path request is invalid; the message is shown to users as one line."""


class WalkTooLong(WalkError):
    """A walk or path would have more frames than a limit allows."""


class WalkPoint(NamedTuple):
    """Cursor position (x, y) at time t seconds."""

    t: float
    x: float
    y: float


def finite_number(v: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite number within [lo, hi], else WalkError naming `name`."""
    # bool is an int subclass; JSON true must not pass as 1
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise WalkError(f"{name} must be a finite number, got {v!r}")
    if not lo <= v <= hi:
        raise WalkError(f"{name} must be within [{lo:g}, {hi:g}], got {v:g}")
    return float(v)


def _clamp(v: float) -> float:
    return min(max(float(v), 0.0), 1.0)


def _lerp(a: Sequence[float], b: Sequence[float], u: float) -> Point:
    return a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u


def frame_count(seconds: float, fps: float) -> int:
    """Validate duration and rate; return round(seconds * fps), at least 1."""
    if finite_number(seconds, "seconds") <= 0:
        raise WalkError(f"seconds must be a positive number, got {seconds!r}")
    if not 0 < finite_number(fps, "fps") <= MAX_FPS:
        raise WalkError(f"fps must be within (0, {MAX_FPS:g}], got {fps!r}")
    if (frames := seconds * fps) > MAX_WALK_FRAMES:  # compared as a float: 1e308 s must not overflow round()
        raise WalkTooLong(f"{seconds:g} s at {fps:g} fps is {frames:.0f} frames; limit {MAX_WALK_FRAMES}")
    return max(round(frames), 1)  # a very short walk is still one frame, never an empty video


def _keypoint(p: Any, name: str) -> Point:
    if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2:
        raise WalkError(f"{name} must be an (x, y) pair, got {p!r}")
    return finite_number(p[0], f"{name}: x", 0, 1), finite_number(p[1], f"{name}: y", 0, 1)


def _keypoints(points: Any, what: str) -> list[Point]:
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)) or len(points) < 2:
        raise WalkError(f"{what} needs a list of at least 2 (x, y) points, got {points!r}")
    return [_keypoint(p, f"points[{i}]") for i, p in enumerate(points)]


def _sample(n: int, fps: float, fn: Callable[[int], Point],
            pin: tuple[Point, Point] | None = None) -> list[WalkPoint]:
    """Frame i at t = i/fps, clamped to the pad; `pin` makes the ends exact keypoints."""
    out = [WalkPoint(i / fps, *(_clamp(v) for v in fn(i))) for i in range(n)]
    if pin:  # float rounding must not move the path off its first/last keypoint
        out[0] = WalkPoint(0.0, *pin[0])
        out[-1] = WalkPoint(out[-1].t, *pin[1]) if n > 1 else out[-1]
    return out


def line_path(start: Point = (0.0, 0.0), end: Point = (1.0, 1.0), seconds: float = 4.0,
              fps: float = 12.0) -> list[WalkPoint]:
    """Straight line from `start` to `end`, both endpoints included."""
    return polyline_path([_keypoint(start, "start"), _keypoint(end, "end")], seconds, fps)


def polyline_path(points: Sequence[Point], seconds: float, fps: float) -> list[WalkPoint]:
    """Through the keypoints in order at constant speed (by arc length)."""
    n, kps = frame_count(seconds, fps), _keypoints(points, "a polyline")
    cum = [0.0, *accumulate(math.dist(a, b) for a, b in zip(kps, kps[1:]))]  # arc lengths

    def at(i: int) -> Point:
        d = cum[-1] * (i / (n - 1) if n > 1 else 0.0)
        j = min(max(bisect.bisect_right(cum, d) - 1, 0), len(kps) - 2)
        seg = cum[j + 1] - cum[j]
        return _lerp(kps[j], kps[j + 1], (d - cum[j]) / seg if seg > 0 else 0.0)
    return _sample(n, fps, at, (kps[0], kps[-1]))


def circle_path(seconds: float, fps: float, center: Point = (0.5, 0.5), radius: float = 0.5,
                turns: float = 1.0) -> list[WalkPoint]:
    """Circle from its rightmost point; positive turns run clockwise on screen (y is down)."""
    n = frame_count(seconds, fps)
    cx, cy = _keypoint(center, "center")
    r, turns = finite_number(radius, "radius", 0, 1), finite_number(turns, "turns")
    # i/n, not i/(n-1): a closed loop should not show its start frame twice
    return _sample(n, fps, lambda i: (cx + r * math.cos(2 * math.pi * turns * i / n),
                                      cy + r * math.sin(2 * math.pi * turns * i / n)))


def lissajous_path(seconds: float, fps: float, a: float = 3, b: float = 2,
                   phase: float = math.pi / 2) -> list[WalkPoint]:
    """x = .5 + .5 sin(a·2πs + phase), y = .5 + .5 sin(b·2πs), with s = i/n."""
    n = frame_count(seconds, fps)
    a, b, phase = finite_number(a, "a"), finite_number(b, "b"), finite_number(phase, "phase")
    return _sample(n, fps, lambda i: (0.5 + 0.5 * math.sin(a * 2 * math.pi * i / n + phase),
                                      0.5 + 0.5 * math.sin(b * 2 * math.pi * i / n)))


def spline_path(points: Sequence[Point], seconds: float, fps: float) -> list[WalkPoint]:
    """Uniform Catmull-Rom through the keypoints (ends duplicated), uniform in parameter."""
    # not centripetal: the duplicated ends give zero-length knot intervals it would divide by
    n, kps = frame_count(seconds, fps), _keypoints(points, "a spline")
    ctrl, segments = [kps[0], *kps, kps[-1]], len(kps) - 1

    def at(i: int) -> Point:
        u = segments * (i / (n - 1) if n > 1 else 0.0)
        j = min(int(u), segments - 1)
        s, (p0, p1, p2, p3) = u - j, ctrl[j:j + 4]
        x, y = (0.5 * (2 * p1[k] + (p2[k] - p0[k]) * s
                       + (2 * p0[k] - 5 * p1[k] + 4 * p2[k] - p3[k]) * s * s
                       + (3 * p1[k] - p0[k] - 3 * p2[k] + p3[k]) * s ** 3) for k in (0, 1))
        return x, y
    return _sample(n, fps, at, (kps[0], kps[-1]))


def random_path(seconds: float, fps: float, seed: int, step: float = 0.05,
                start: Point = (0.5, 0.5)) -> list[WalkPoint]:
    """Seeded random walk: `step` per frame in a random direction, reflected at the borders."""
    n, step = frame_count(seconds, fps), finite_number(step, "step", 0, 1)
    x, y = _keypoint(start, "start")
    rng, out = random.Random(seed), [WalkPoint(0.0, x, y)]
    for i in range(1, n):
        a = rng.uniform(0.0, 2 * math.pi)
        # step <= 1 keeps v within [-1, 2], so reflecting once at each border suffices
        x, y = (_clamp(2 - abs(v) if abs(v) > 1 else abs(v))
                for v in (x + step * math.cos(a), y + step * math.sin(a)))
        out.append(WalkPoint(i / fps, x, y))
    return out


def make_path(kind: str, *, seconds: float, fps: float, points: Sequence[Point] | None = None,
              seed: int = 0) -> list[WalkPoint]:
    """Build a path of one of PATH_KINDS; only line/polyline/spline take `points`."""
    if kind not in PATH_KINDS:
        raise WalkError(f"unknown path kind {kind!r}; choose one of {', '.join(PATH_KINDS)}")
    if points is not None and kind not in ("line", "polyline", "spline"):
        raise WalkError(f"a {kind} path takes no points (only line, polyline and spline do)")
    if kind == "line":
        if points is None:
            return line_path(seconds=seconds, fps=fps)
        if not isinstance(points, Sequence) or len(points) != 2:
            raise WalkError("a line path needs exactly 2 points (start and end)")
        return line_path(points[0], points[1], seconds, fps)
    if kind in ("polyline", "spline"):
        return (polyline_path if kind == "polyline" else spline_path)(points, seconds, fps)
    if kind == "random":
        return random_path(seconds, fps, seed)
    return (circle_path if kind == "circle" else lissajous_path)(seconds, fps)


def resample(points: Sequence[WalkPoint | Sequence[float]], fps: float,
             seconds: float | None = None) -> list[WalkPoint]:
    """Positions at t0 + k/fps for k < round(duration*fps), linear in time; t is k/fps."""
    if not points:
        raise WalkError("cannot resample an empty walk")
    pts = [WalkPoint(*(float(v) for v in p)) for p in points]
    t0 = pts[0].t
    duration = pts[-1].t - t0 if seconds is None else seconds
    one_instant = seconds is None and duration == 0  # one frame; frame_count only validates
    n = min(1, frame_count(1.0, fps)) if one_instant else frame_count(duration, fps)
    times = [p.t for p in pts]
    out = [WalkPoint(0.0, pts[0].x, pts[0].y)]  # exactly the first point, even if t repeats
    for k in range(1, n):
        t = t0 + k / fps
        i = bisect.bisect_right(times, t) - 1  # last recorded point at or before t
        a = pts[i]
        if i == len(pts) - 1 or a.t == t:  # past the end the cursor holds still
            out.append(WalkPoint(k / fps, a.x, a.y))
        else:  # pts[i + 1].t > t > a.t, so no division by zero
            u = (t - a.t) / (pts[i + 1].t - a.t)
            out.append(WalkPoint(k / fps, *map(_clamp, _lerp(a[1:], pts[i + 1][1:], u))))
    return out
