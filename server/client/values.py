"""What the client hands back: frames, broods, and the two errors a script catches."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sdxl_breeder.protocol import FrameHeader, decode_frame


class BreederError(RuntimeError):
    """The server answered with {"type": "error"}; `code` is stable, `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BreederConnectionError(ConnectionError):
    """The server cannot be reached, refused the websocket, or the connection closed."""


@dataclass(frozen=True)
class Frame:
    """One binary frame: its header (seq, x, y, seed, width, height, render_ms, batch) and JPEG bytes."""

    header: FrameHeader
    jpeg: bytes

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        """Split a binary websocket message; ProtocolError if it is garbled."""
        return cls(*decode_frame(data))

    @functools.cached_property
    def image(self) -> Image.Image:
        """The decoded picture (decoded on first use, then kept)."""
        img = Image.open(io.BytesIO(self.jpeg))
        img.load()
        return img

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def brood(self) -> str | None:
        """The brood id of a brood child's frame; None for pad frames."""
        return getattr(self.header, "brood", None)

    @property
    def child(self) -> int | None:
        """The child index (0-based) of a brood child's frame; None for pad frames."""
        return getattr(self.header, "child", None)

    @property
    def x(self) -> float:
        return self.header.x

    @property
    def y(self) -> float:
        return self.header.y

    def save(self, path: str | Path) -> None:
        """Write the frame; a .jpg/.jpeg path gets the server's bytes as they are (no re-encoding)."""
        if Path(path).suffix.lower() in (".jpg", ".jpeg"):
            Path(path).write_bytes(self.jpeg)
        else:
            self.image.save(path)


@dataclass(frozen=True)
class Brood:
    """An evolve's answer: the brood's id, lineage facts and one frame per child, in child order."""

    id: str
    generation: int
    seed: int
    parents: list[str]
    mutation: float
    frames: list[Frame]

    @property
    def count(self) -> int:
        return len(self.frames)
