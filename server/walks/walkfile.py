"""The walk file: four corners, how to blend them, and a timed cursor path, as versioned JSON.

A walk renders the same frames wherever it is played: the CLI, the server's REST routes or a script.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sdxl_breeder import spec
from sdxl_breeder.files import atomic_path
from sdxl_breeder.spec import BLEND_MODES, LIMITS, MAX_SEED, NOKEN, FrameSettings, is_unicode_text
from sdxl_breeder.walks.paths import MAX_WALK_FRAMES, Point, WalkError, WalkPoint, finite_number, make_path

WALK_FORMAT = "sdxl-breeder-walk"
WALK_VERSION = 1
_GENOME_RE = re.compile(r"[0-9a-f]{16}")
_FIELDS = ("format", "version", "corners", "template", "blend", "seed", "corner_seeds",
           "width", "height", "points")


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
        t = finite_number(p[0], f"points[{i}]: t")
        x, y = finite_number(p[1], f"points[{i}]: x", 0, 1), finite_number(p[2], f"points[{i}]: y", 0, 1)
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
