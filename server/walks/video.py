"""Video output for walks with PyAV: H.264 MP4, animated GIF, or a folder of PNG frames.

The output format follows the path: ``.mp4`` → H.264 (yuv420p, faststart, plays in
browsers), ``.gif`` → looping animated GIF, no suffix or an existing folder → PNGs
named ``frame_00000.png``…  No torch here; frames are PIL images or uint8 arrays.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image

from sdxl_breeder.files import new_file_mode
from sdxl_breeder.spec import LIMITS

VIDEO_FORMATS = ("mp4", "gif", "png")
PNG_NAME = "frame_{:05d}.png"
_PNG_RE = re.compile(r"frame_\d{5,}\.png")
MAX_GIF_FPS = LIMITS.max_gif_fps  # GIF delays are whole 1/100 s; browsers slow anything shorter than 2/100 s
_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709 and AVCOL_RANGE_MPEG share the value 1 in FFmpeg

Frame = Image.Image | np.ndarray


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The output format for `path`: "mp4", "gif" or "png" (a folder of frames)."""
    p = Path(path)
    if p.is_dir() or not p.suffix:
        return "png"
    suffix = p.suffix.lower().lstrip(".")
    if suffix in ("mp4", "gif"):
        return suffix
    raise ValueError(f"cannot write video to {str(p)!r}: unknown suffix {p.suffix!r}; use "
                     ".mp4 (H.264), .gif, or a folder path without a suffix for PNG frames")


def adjusted_size(width: int, height: int, fmt: str) -> tuple[int, int, str | None]:
    """The size the encoder needs for `fmt`, and a message for users when it differs."""
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"video {name} must be a positive integer, got {v!r}")
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"unknown video format {fmt!r}; choose one of {', '.join(VIDEO_FORMATS)}")
    if fmt != "mp4":
        return width, height, None
    # yuv420p stores colour at half resolution, so H.264 needs even sizes: drop the odd pixel
    w, h = width - width % 2, height - height % 2
    if w < 2 or h < 2:
        raise ValueError(f"H.264 needs at least 2×2 pixels, got {width}×{height}")
    odd = [f"{name} {v}" for name, v in (("width", width), ("height", height)) if v % 2]
    if not odd:
        return width, height, None
    verb = "is" if len(odd) == 1 else "are"
    return w, h, (f"{' and '.join(odd)} {verb} odd; H.264 yuv420p needs even sizes, "
                  f"encoding at {w}×{h}")


def _rate(fps: float, fmt: str) -> Fraction:
    if not isinstance(fps, (int, float, Fraction)) or isinstance(fps, bool) \
            or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if fmt == "gif" and fps > MAX_GIF_FPS:
        raise ValueError(f"GIF cannot play faster than {MAX_GIF_FPS:g} fps (got {fps:g}); "
                         "use .mp4 or a lower fps")
    rate = Fraction(fps).limit_denominator(1000)  # 12.5 → 25/2, 29.97 → 2997/100
    if rate <= 0:
        raise ValueError(f"fps {fps!r} is too small (at least 1/1000 is needed)")
    return rate


def _as_rgb(frame: Frame, index: int) -> np.ndarray:
    """An HxWx3 uint8 array from a PIL image or an array; anything else is a clear error."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame {index} must be a PIL image or a numpy array, "
                         f"got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame {index} must be a uint8 array of shape (height, width, 3), "
                         f"got {frame.dtype} {frame.shape}")
    return frame


class VideoWriter:
    """Write frames to an MP4, a GIF or a folder of PNGs; use as a context manager.

    MP4 and GIF are written to a temporary file next to `path` and moved into place on
    `close()`, so a reader never sees half a video and a failed render leaves nothing.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int,
                 *, crf: int = 18) -> None:
        self.path = Path(path)
        self.format = format_for_path(self.path)
        self.fps = fps
        self.rate = _rate(fps, self.format)
        self.width, self.height = width, height  # the size frames must have
        self.out_width, self.out_height, self.adjustment_note = adjusted_size(
            width, height, self.format)
        self.frames_written = 0
        self._closed = False
        self._tmp: Path | None = None
        self._container: Any = None
        self._stream: Any = None
        if self.format == "png":
            self.path.mkdir(parents=True, exist_ok=True)
            # frames left over from a longer earlier render would otherwise look like ours
            for old in self.path.iterdir():
                if _PNG_RE.fullmatch(old.name):
                    old.unlink()
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".part")
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._open(crf)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def _open(self, crf: int) -> None:
        if self.format == "mp4":
            self._container = av.open(str(self._tmp), "w", format="mp4",
                                      options={"movflags": "+faststart"})
            stream = self._container.add_stream("libx264", rate=self.rate,
                                                options={"crf": str(crf)})
            stream.pix_fmt = "yuv420p"
            cc = stream.codec_context
            # tag BT.709 (what browsers assume for sRGB-ish web video) and convert to match
            cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = _BT709
        else:
            # loop=0: repeat forever
            self._container = av.open(str(self._tmp), "w", format="gif", options={"loop": "0"})
            stream = self._container.add_stream("gif", rate=self.rate)
            stream.pix_fmt = "pal8"
        stream.width, stream.height = self.out_width, self.out_height
        stream.codec_context.time_base = 1 / self.rate
        self._stream = stream

    def write(self, frame: Frame) -> None:
        """Append one frame (PIL image or uint8 HxWx3 array of the writer's width×height)."""
        if self._closed:
            raise ValueError(f"cannot write to {self.path}: the video is already closed")
        n = self.frames_written
        rgb = _as_rgb(frame, n)
        h, w = rgb.shape[:2]
        if (w, h) != (self.width, self.height):
            raise ValueError(f"frame {n} is {w}×{h} but this video is "
                             f"{self.width}×{self.height}")
        # crop the odd last row/column (see adjusted_size) instead of resampling the image
        rgb = np.ascontiguousarray(rgb[:self.out_height, :self.out_width])
        if self.format == "png":
            Image.fromarray(rgb).save(self.path / PNG_NAME.format(n))
        else:
            vf = self._mp4_frame(rgb) if self.format == "mp4" else _gif_frame(rgb)
            vf.pts, vf.time_base = n, 1 / self.rate
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        self.frames_written += 1

    @staticmethod
    def _mp4_frame(rgb: np.ndarray) -> av.VideoFrame:
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        return vf.reformat(format="yuv420p", dst_colorspace=_BT709, dst_color_range=_BT709)

    def close(self) -> None:
        """Finish the file; raises ValueError if no frame was written."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}")
        self._closed = True
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():  # flush frames the encoder still holds
                self._container.mux(packet)
            self._container.close()
            os.chmod(self._tmp, new_file_mode())  # type: ignore[arg-type]  # mkstemp made it 0600
            os.replace(self._tmp, self.path)  # type: ignore[arg-type]
        except BaseException:
            self._discard()
            raise

    def abort(self) -> None:
        """Stop without producing a file (PNG frames already written are kept)."""
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError, ValueError):
                pass  # the file is being thrown away; its trailer does not matter
            self._container = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _gif_frame(rgb: np.ndarray) -> av.VideoFrame:
    """A pal8 frame with its own 256-colour palette (swscale cannot make pal8 itself)."""
    img = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT)
    palette = np.zeros((256, 4), np.uint8)
    colours = np.array(img.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    palette[:, 0] = 255  # PyAV wants ARGB; opaque
    palette[:len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(img, np.uint8), palette), format="pal8")


def _png_frames(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if _PNG_RE.fullmatch(p.name)]
    return sorted(files, key=lambda p: int(p.stem.split("_")[1]))


def _open_input(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"no such video: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(f"cannot read video {path}: {e}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    return container


def read_video_frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Decode every frame of a video (or PNG folder) to HxWx3 uint8 RGB arrays."""
    p = Path(path)
    if p.is_dir():
        return [np.asarray(Image.open(f).convert("RGB")) for f in _png_frames(p)]
    container = _open_input(p)
    try:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    finally:
        container.close()


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """frames, width, height, fps (None for PNG folders), codec and pix_fmt of an output."""
    p = Path(path)
    if p.is_dir():
        files = _png_frames(p)
        if not files:
            raise ValueError(f"{p} contains no frame_NNNNN.png files")
        with Image.open(files[0]) as first:
            w, h, mode = first.width, first.height, first.mode
        pix_fmt = {"RGB": "rgb24", "RGBA": "rgba", "L": "gray", "P": "pal8"}.get(mode, mode)
        return {"frames": len(files), "width": w, "height": h, "fps": None,
                "codec": "png", "pix_fmt": pix_fmt}
    container = _open_input(p)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        # count packets rather than trusting the header (GIF has no frame count)
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return {"frames": frames, "width": cc.width, "height": cc.height,
                "fps": float(rate) if rate else None, "codec": cc.name, "pix_fmt": cc.pix_fmt}
    finally:
        container.close()
