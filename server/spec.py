"""The shared vocabulary, defined once: nokens, blend modes, corners, frame settings and every limit.

Stdlib only, so the protocol, the walk files, the CLI and the model code all import it cheaply.
The page (static/js/protocol.js) mirrors what it needs of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NOKEN = "[noken]"  # the slot of a template where the blended noken goes
BLEND_MODES = ("lerp", "slerp")
CORNER_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")
MAX_SEED = 2**32 - 1  # seeds are ints in [0, MAX_SEED] (what torch.Generator.manual_seed takes)


def is_unicode_text(text: str) -> bool:
    """Whether `text` can be written as UTF-8: JSON's "\\ud800" decodes to a lone surrogate,
    which no tokenizer, database or file takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Limits:
    """Every limit the server enforces; sent to clients as `hello.limits` and `/api/config`."""

    max_message_bytes: int = 16384  # a larger client text message closes the socket with 1009
    max_prompt_chars: int = 1000
    min_size: int = 64
    max_size: int = 1024
    size_multiple: int = 64
    max_seed: int = MAX_SEED
    min_quality: int = 1
    max_quality: int = 100
    max_mutation: float = 2.0
    max_json_depth: int = 6
    max_batch: int = 8
    max_record_points: int = 36000  # points in a recorded or posted walk
    max_body_bytes: int = 4 * 1024 * 1024  # a REST request body (a long walk file is ~1 MiB); over it: 413
    max_fps: float = 120.0  # frames per second of a walk path or video
    max_video_jobs: int = 2  # walk videos rendering at once (they share the loop with live pads); over it: 429
    max_video_cache_bytes: int = 1 << 30  # rendered walk videos kept in DATA_DIR/videos; least recently used go first
    max_video_frames: int = 3600  # frames one GET /api/walks/{id}/video.mp4 may render; over it: 413
    max_gif_frames: int = 600  # frames one GET /api/walks/{id}/video.gif may render (a GIF is many times the bytes of the same MP4); over it: 413
    max_gif_fps: float = 50.0  # GIF delays are whole 1/100 s and browsers slow anything under 2/100 s; over it: 400
    max_brood_children: int = 16  # children in one brood (evolve.count)
    max_brood_parents: int = 4
    max_brood_mutation: float = 1.0
    max_broods: int = 16  # broods a websocket session keeps selectable (older ones are forgotten)
    max_api_broods: int = 64  # broods the REST API keeps selectable, for all callers together
    max_sessions: int = 256  # open pad sessions; one more is closed at once with 1013
    max_messages_per_second: int = 300  # per session, a second's worth of burst; more are dropped
    max_over_rate_seconds: float = 5.0  # dropping messages this long closes the socket with 1008
    max_queued_replies: int = 32  # text replies waiting for a slow reader; more are dropped
    drain_timeout_seconds: float = 30.0  # a socket whose send buffer stays full this long is closed
    max_genomes_per_minute: int = 120  # new genomes per session (REST: per client address)
    max_store_bytes: int = 10 * 2**30  # the data folder; beyond it new genomes and walks are refused

    def to_json(self) -> dict[str, int | float]:
        return asdict(self)

    def check_size(self, name: str, value: int) -> str | None:
        """Why `value` is not an allowed frame width/height, or None when it is."""
        if not self.min_size <= value <= self.max_size or value % self.size_multiple:
            return f"{name} must be a multiple of {self.size_multiple} within [{self.min_size}, {self.max_size}], got {value}"
        return None


LIMITS = Limits()  # the defaults; a server may be started with others (e.g. --max-batch)


@dataclass(frozen=True)
class Corner:
    """One corner of the pad: a new prompt or an existing genome id (exactly one is set)."""

    prompt: str | None = None
    genome: str | None = None


@dataclass(frozen=True)
class FrameSettings:
    """How a session's frames are rendered: size, noise seed(s), blend mode, JPEG quality."""

    width: int = 512
    height: int = 512
    seed: int = 0
    blend: str = "lerp"
    quality: int = 80
    corner_seeds: tuple[int, int, int, int] | None = None  # per-corner noise, blended like the tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "blend": self.blend,
            "quality": self.quality,
            "corner_seeds": list(self.corner_seeds) if self.corner_seeds else None,
        }
