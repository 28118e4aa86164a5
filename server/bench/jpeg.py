"""The JPEG phase of `sdxl-breeder bench`: milliseconds per frame for each JPEG encoder here.

PIL and simplejpeg encode a host uint8 frame (both release the GIL while they encode); nvJPEG
(`torchvision.io.encode_jpeg` on a CUDA tensor, where torchvision is installed and a GPU is in
use) encodes the frame on the GPU, timed up to the bytes on the host.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def host_encoders() -> dict[str, Callable[[np.ndarray, int], bytes]]:
    from sdxl_breeder.engine.output import JPEG_ENCODERS

    return dict(JPEG_ENCODERS)


def _nvjpeg(device: Any) -> Callable[[Any, int], bytes] | None:
    if getattr(device, "type", "cpu") != "cuda":
        return None
    try:
        from torchvision.io import encode_jpeg
    except ImportError:
        return None

    def encode(frame: Any, quality: int) -> bytes:
        data = encode_jpeg(frame.permute(2, 0, 1).contiguous(), quality=quality)
        return data.cpu().numpy().tobytes()

    return encode


def time_encoders(frame: np.ndarray, quality: int, device: Any = None, seconds: float = 1.0) -> dict[str, Any]:
    """{encoder: {"ms_per_frame", "bytes"}} for `frame` (uint8 `[H, W, 3]`), each run for about
    `seconds` after one warm-up call; encoders that are not installed are listed as such."""
    import torch

    candidates: dict[str, tuple[Callable[[Any, int], bytes], Any]] = {
        name: (fn, frame) for name, fn in host_encoders().items()
    }
    nv = _nvjpeg(device)
    if nv is not None:
        candidates["nvjpeg"] = (nv, torch.from_numpy(frame).to(device))
    out: dict[str, Any] = {}
    for name, (fn, arg) in candidates.items():
        try:
            data = fn(arg, quality)
        except Exception as e:  # noqa: BLE001 — an encoder that cannot run here is reported, not fatal
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        n = 0
        start = time.perf_counter()
        while n < 3 or time.perf_counter() - start < seconds:
            fn(arg, quality)
            n += 1
        out[name] = {"ms_per_frame": round(1000 * (time.perf_counter() - start) / n, 3), "bytes": len(data), "frames": n}
    if nv is None:
        out["nvjpeg"] = {"error": "needs torchvision and a CUDA device"}
    return out
