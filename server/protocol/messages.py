"""The client's messages: one typed value per websocket message kind, plus the REST bodies that share them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sdxl_breeder.spec import Corner

PROTOCOL_VERSION = 1
MAX_SEQ = 2**53  # the largest integer a JavaScript number holds exactly
CURSOR = "cursor"  # an evolve parent: the blend at the session's current pad position


@dataclass(frozen=True)
class SettingsMsg:
    """Any subset of the session settings; `clear_corner_seeds` is JSON `"corner_seeds": null`."""
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    blend: str | None = None
    quality: int | None = None
    corner_seeds: tuple[int, int, int, int] | None = None
    clear_corner_seeds: bool = False


@dataclass(frozen=True)
class CornersMsg:
    """All four corners in CORNER_NAMES order, optionally with a noken template."""
    corners: tuple[Corner, Corner, Corner, Corner]
    template: str | None = None


@dataclass(frozen=True)
class MoveMsg:
    """A cursor position on the pad; `seq` comes back in the frame header."""
    x: float
    y: float
    seq: int


@dataclass(frozen=True)
class BreedMsg:
    """Breed a child from two genomes (they may be the same); seed None means a random one."""
    parents: tuple[str, str]
    seed: int | None = None
    mutation: float = 0.0


@dataclass(frozen=True)
class RecordMsg:
    """Start or stop recording this session's moves as a walk."""
    action: Literal["start", "stop"]


@dataclass(frozen=True)
class KeepMsg:
    """Save the blend at the current position as a new genome, with an optional label."""
    prompt: str | None = None


@dataclass(frozen=True)
class EvolveMsg:
    """Breed a brood of `count` children from 1–4 parents (genome ids or CURSOR); seed None: random."""
    parents: tuple[str, ...]
    count: int = 9
    mutation: float = 0.2
    seed: int | None = None


@dataclass(frozen=True)
class SelectMsg:
    """Keep some children of a brood as genomes (0-based indices, no repeats)."""
    brood: str
    children: tuple[int, ...]


@dataclass(frozen=True)
class BroodRequest(EvolveMsg):
    """A POST /api/broods body: an evolve without a session, so with its own template and size."""
    template: str | None = None
    width: int = 512
    height: int = 512


ClientMessage = SettingsMsg | CornersMsg | MoveMsg | BreedMsg | RecordMsg | KeepMsg | EvolveMsg | SelectMsg


@dataclass(frozen=True)
class RenderRequest:
    """A one-off REST render: a session's corners, settings and position in one request."""
    corners: tuple[Corner, ...]
    template: str | None
    x: float = 0.0
    y: float = 0.0
    seed: int = 0
    blend: str = "lerp"
    width: int = 512
    height: int = 512
    format: str = "jpeg"
    quality: int = 90
    corner_seeds: tuple[int, ...] | None = None
