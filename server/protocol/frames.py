"""Binary frames: a length-prefixed JSON header (what the image shows) followed by the image bytes."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any

from sdxl_breeder.protocol import checks as c
from sdxl_breeder.protocol.checks import Check
from sdxl_breeder.protocol.errors import ErrorCode, ProtocolError
from sdxl_breeder.spec import Limits

_PREFIX = struct.Struct(">I")  # a binary frame starts with its header's length, big-endian
_ANY = -(2**64), 2**64  # decode_frame checks only types: ranges are the server's promise


@dataclass(frozen=True)
class FrameHeader:
    """What a binary frame shows: the move it answers (seq, x, y) and how it was rendered."""
    seq: int
    x: float
    y: float
    seed: int
    width: int
    height: int
    render_ms: float
    batch: int


@dataclass(frozen=True)
class BroodFrameHeader(FrameHeader):
    """A brood child's frame: the usual header plus its `brood` id and `child` index (0-based).
    It answers an evolve, not a move: seq, x and y are 0."""
    brood: str = ""
    child: int = 0


_FRAME: dict[str, Check] = {
    f.name: (lambda v, p, _: c.integer(v, p, *_ANY)) if f.type == "int" else (lambda v, p, _: c.number(v, p, *_ANY))
    for f in fields(FrameHeader)}
_BROOD_FRAME: dict[str, Check] = {"brood": c.GENOME, "child": lambda v, p, _: c.integer(v, p, *_ANY)}


def encode_frame(header: FrameHeader, image: bytes, extra: dict[str, Any] | None = None) -> bytes:
    """[N: 4-byte big-endian unsigned][N bytes of UTF-8 JSON header][image bytes]. `extra` adds
    header keys beyond FrameHeader (a cluster's `worker`); clients that don't know them ignore them."""
    fields_ = {**(extra or {}), **asdict(header)}
    raw = json.dumps(fields_, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _PREFIX.pack(len(raw)) + raw + bytes(image)


def decode_frame(data: bytes) -> tuple[FrameHeader, bytes]:
    """Split a binary frame (a BroodFrameHeader when it names a brood). Unknown header keys are
    ignored, so servers may add some."""
    n = _PREFIX.unpack_from(data)[0] if len(data) >= _PREFIX.size else -1
    if not 0 <= n <= len(data) - _PREFIX.size:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"frame of {len(data)} bytes is truncated (header length {n})")
    try:
        raw = json.loads(data[4:4 + n].decode("utf-8"), parse_constant=c.reject_constant)
        header = c.json_object(raw, "frame header")
        brood = "brood" in header
        required = {**_FRAME, **_BROOD_FRAME} if brood else _FRAME
        values = c.validate({k: v for k, v in header.items() if k in required}, "frame header", required, {}, Limits())
    except (ValueError, RecursionError) as exc:  # whatever failed inside, to the caller it is a garbled frame
        message = exc.message if isinstance(exc, ProtocolError) else f"frame header is not UTF-8 JSON: {exc}"
        raise ProtocolError(ErrorCode.BAD_VALUE, message) from None
    return (BroodFrameHeader if brood else FrameHeader)(**values), data[4 + n:]


def frame_worker(data: bytes) -> str | None:
    """The `worker` header key of a frame from a cluster (the render replica that drew it), else None."""
    n = _PREFIX.unpack_from(data)[0] if len(data) >= _PREFIX.size else -1
    try:
        worker = json.loads(data[4:4 + n].decode("utf-8")).get("worker") if 0 <= n <= len(data) - 4 else None
    except (ValueError, AttributeError):
        return None
    return worker if isinstance(worker, str) else None
