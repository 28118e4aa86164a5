"""Walks: timed cursor paths over the four-corner pad, and the walk file format.

Pad coordinates are (x, y) in [0, 1]², (0, 0) top-left; corners are TL, TR, BL, BR.
Pure Python on purpose (no torch/diffusers): the CLI and server validate walks cheaply.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import re
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from sdxl_breeder import spec
from sdxl_breeder.files import atomic_path
from sdxl_breeder.spec import BLEND_MODES, LIMITS, MAX_SEED, NOKEN, FrameSettings, is_unicode_text

WALK_FORMAT = "sdxl-breeder-walk"
WALK_VERSION = 1
MAX_WALK_FRAMES = LIMITS.max_record_points  # points of a walk, frames of a path: 10 minutes at 60 fps
MAX_FPS = LIMITS.max_fps
PATH_KINDS = ("line", "polyline", "circle", "lissajous", "spline", "random")
_GENOME_RE = re.compile(r"[0-9a-f]{16}")
_FIELDS = ("format", "version", "corners", "template", "blend", "seed", "corner_seeds",
           "width", "height", "points")
Point = tuple[float, float]


class WalkError(ValueError):
    """A walk or path request is invalid; the message is shown to users as one line."""


class WalkTooLong(WalkError):
    """A walk or path would have more frames than a limit allows."""


class WalkPoint(NamedTuple):
    """Cursor position (x, y) at time t seconds."""

    t: float
    x: float
    y: float


def _num(v: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
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
    if _num(seconds, "seconds") <= 0:
        raise WalkError(f"seconds must be a positive number, got {seconds!r}")
    if not 0 < _num(fps, "fps") <= MAX_FPS:
        raise WalkError(f"fps must be within (0, {MAX_FPS:g}], got {fps!r}")
    if (frames := seconds * fps) > MAX_WALK_FRAMES:  # compared as a float: 1e308 s must not overflow round()
        raise WalkTooLong(f"{seconds:g} s at {fps:g} fps is {frames:.0f} frames; limit {MAX_WALK_FRAMES}")
    return max(round(frames), 1)  # a very short walk is still one frame, never an empty video


def _keypoint(p: Any, name: str) -> Point:
    if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2:
        raise WalkError(f"{name} must be an (x, y) pair, got {p!r}")
    return _num(p[0], f"{name}: x", 0, 1), _num(p[1], f"{name}: y", 0, 1)


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
    r, turns = _num(radius, "radius", 0, 1), _num(turns, "turns")
    # i/n, not i/(n-1): a closed loop should not show its start frame twice
    return _sample(n, fps, lambda i: (cx + r * math.cos(2 * math.pi * turns * i / n),
                                      cy + r * math.sin(2 * math.pi * turns * i / n)))


def lissajous_path(seconds: float, fps: float, a: float = 3, b: float = 2,
                   phase: float = math.pi / 2) -> list[WalkPoint]:
    """x = .5 + .5 sin(a·2πs + phase), y = .5 + .5 sin(b·2πs), with s = i/n."""
    n = frame_count(seconds, fps)
    a, b, phase = _num(a, "a"), _num(b, "b"), _num(phase, "phase")
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
    n, step = frame_count(seconds, fps), _num(step, "step", 0, 1)
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


@dataclass(frozen=True)
class Corner(spec.Corner):
    """A walk file's corner: spec.Corner (a prompt, or a genome id of 16 lowercase hex chars),
    checked when made and read from CLI text or JSON."""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.genome is None):
            raise WalkError("a corner must have exactly one of prompt or genome")

    @classmethod
    def parse(cls, text: str) -> Corner:
        """CLI text: "genome:<id>", "prompt:<text>", a bare genome id, else a prompt."""
        for key in ("genome", "prompt"):
            if text.startswith(key + ":"):
                return cls.from_json({key: text[len(key) + 1:]})
        return cls.from_json({"genome" if _GENOME_RE.fullmatch(text) else "prompt": text})

    @classmethod
    def from_json(cls, obj: Any, where: str = "corner") -> Corner:
        if not isinstance(obj, dict) or set(obj) not in ({"prompt"}, {"genome"}):
            raise WalkError(f"{where} must have exactly one field, prompt or genome, got {obj!r}")
        if "genome" in obj:
            g = obj["genome"]
            if not isinstance(g, str) or not _GENOME_RE.fullmatch(g):
                raise WalkError(f"{where}: genome must be 16 lowercase hex characters, got {g!r}")
            return cls(genome=g)
        return cls(prompt=_text(obj["prompt"], f"{where}: prompt"))

    def to_json(self) -> dict[str, str]:
        return {"genome": self.genome} if self.genome else {"prompt": str(self.prompt)}


@dataclass
class Walk:
    """A walk file: four corners, how to blend them, and the timed cursor path."""

    corners: list[Corner]
    points: list[WalkPoint]
    template: str | None = None
    blend: str = "lerp"
    seed: int = 0
    corner_seeds: list[int] | None = None
    width: int = 512
    height: int = 512

    @property
    def duration(self) -> float:
        """Seconds from the first to the last point."""
        return self.points[-1].t - self.points[0].t if self.points else 0.0

    def genome_ids(self) -> list[str]:
        """Genome ids the corners reference, in corner order, without repeats."""
        return list(dict.fromkeys(c.genome for c in self.corners if c.genome is not None))

    def settings(self, width: int | None = None, height: int | None = None, quality: int = 90) -> FrameSettings:
        """How the walk's frames render (its own size unless another is asked for)."""
        seeds = tuple(self.corner_seeds) if self.corner_seeds is not None else None
        return FrameSettings(
            width=self.width if width is None else width, height=self.height if height is None else height,
            seed=self.seed, blend=self.blend, quality=quality, corner_seeds=seeds,  # type: ignore[arg-type]
        )

    def validate(self) -> Walk:
        """A checked copy: raises WalkError if this walk would not load back."""
        return Walk.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": WALK_FORMAT, "version": WALK_VERSION,
            "corners": [c.to_json() for c in self.corners],
            "template": self.template, "blend": self.blend, "seed": self.seed,
            "corner_seeds": None if self.corner_seeds is None else list(self.corner_seeds),
            "width": self.width, "height": self.height,
            "points": [[p.t, p.x, p.y] for p in self.points],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any] | str) -> Walk:
        """Parse and validate (a dict or JSON text); WalkError names the offending field."""
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except ValueError as e:
                raise WalkError(f"walk file is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise WalkError("walk file must be a JSON object")
        if obj.get("format") != WALK_FORMAT:
            raise WalkError(f"format must be {WALK_FORMAT!r}, got {obj.get('format')!r}")
        version = obj.get("version")
        if type(version) is not int or version != WALK_VERSION:  # not 1.0, not true
            raise WalkError(f"unsupported walk version {version!r} "
                            f"(this build reads version {WALK_VERSION})")
        unknown = sorted(set(obj) - set(_FIELDS))
        if unknown:
            raise WalkError(f"unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
        if not isinstance(corners := obj.get("corners"), list) or len(corners) != 4:
            got = f"{len(corners)} corners" if isinstance(corners, list) else repr(corners)
            raise WalkError(f"corners must be a list of 4 (TL, TR, BL, BR), got {got}")
        template = obj.get("template")
        if template is not None and (found := _text(template, "template").count(NOKEN)) != 1:
            raise WalkError(f"template must contain exactly one {NOKEN}, found {found}")
        blend = obj.get("blend", "lerp")
        if blend not in BLEND_MODES:
            raise WalkError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
        seeds = obj.get("corner_seeds")
        if seeds is not None and (not isinstance(seeds, list) or len(seeds) != 4):
            raise WalkError(f"corner_seeds must be null or a list of 4 integers, got {seeds!r}")
        return cls(
            corners=[Corner.from_json(c, f"corners[{i}]") for i, c in enumerate(corners)],
            points=_points(obj.get("points")), template=template, blend=blend,
            seed=_int(obj.get("seed", 0), "seed", 0, MAX_SEED),
            corner_seeds=None if seeds is None
            else [_int(s, f"corner_seeds[{i}]", 0, MAX_SEED) for i, s in enumerate(seeds)],
            width=_int(obj.get("width", 512), "width", LIMITS.min_size, LIMITS.max_size, LIMITS.size_multiple),
            height=_int(obj.get("height", 512), "height", LIMITS.min_size, LIMITS.max_size, LIMITS.size_multiple))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Walk:
        """Read a walk file; error messages start with the file name."""
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise WalkError(f"cannot read walk file {path}: {reason}") from None
        except WalkError as e:
            raise WalkError(f"{path}: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file in the same folder, then os.replace)."""
        text = json.dumps(self.validate().to_json(), allow_nan=False, separators=(",", ":"))
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())


def _int(v: Any, name: str, lo: int, hi: int, multiple: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise WalkError(f"{name} must be an integer, got {v!r}")
    if not lo <= v <= hi or v % multiple:
        rule = f"a multiple of {multiple} within" if multiple > 1 else "within"
        raise WalkError(f"{name} must be {rule} [{lo}, {hi}], got {v}")
    return v


def _text(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise WalkError(f"{name} must be a non-empty string, got {v!r}")
    if not is_unicode_text(v):
        raise WalkError(f"{name} is not valid Unicode text (it holds a lone surrogate)")
    if len(v) > LIMITS.max_prompt_chars:
        raise WalkError(f"{name} is {len(v)} characters; the limit is {LIMITS.max_prompt_chars}")
    return v


def _points(raw: Any) -> list[WalkPoint]:
    if not isinstance(raw, list) or not raw:
        raise WalkError("points must be a non-empty list of [t, x, y]")
    if len(raw) > MAX_WALK_FRAMES:
        raise WalkError(f"points has {len(raw)} entries; the limit is {MAX_WALK_FRAMES}")
    out: list[WalkPoint] = []
    for i, p in enumerate(raw):
        if not isinstance(p, (list, tuple)) or len(p) != 3:
            raise WalkError(f"points[{i}] must be [t, x, y], got {p!r}")
        t = _num(p[0], f"points[{i}]: t")
        x, y = _num(p[1], f"points[{i}]: x", 0, 1), _num(p[2], f"points[{i}]: y", 0, 1)
        if t < (prev_t := out[-1].t if out else 0.0):
            rule = "must be >= 0" if i == 0 else f"must not decrease (previous t is {prev_t:g})"
            raise WalkError(f"points[{i}]: t {rule}, got {t:g}")
        out.append(WalkPoint(t, x, y))
    return out


def scripted_walk(kind: str, corners: Sequence[Corner | dict[str, Any] | str], *,
                  seconds: float, fps: float, template: str | None = None,
                  blend: str = "lerp", seed: int = 0, width: int = 512, height: int = 512,
                  points: Sequence[Point] | None = None, path_seed: int = 0) -> Walk:
    """A validated Walk along a generated path; corners may be Corner, dict or CLI text."""
    if isinstance(corners, (str, bytes)) or len(corners) != 4:
        raise WalkError("a walk needs exactly 4 corners (TL, TR, BL, BR)")
    parsed = [c if isinstance(c, Corner) else Corner.parse(c) if isinstance(c, str)
              else Corner.from_json(c, f"corners[{i}]") for i, c in enumerate(corners)]
    path = make_path(kind, seconds=seconds, fps=fps, points=points, seed=path_seed)
    # rest at the end until t = n/fps, so the walk lasts n/fps and renders back to n frames
    path.append(WalkPoint(len(path) / fps, path[-1].x, path[-1].y))
    return Walk(corners=parsed, points=path, template=template, blend=blend, seed=seed,
                width=width, height=height).validate()
