"""SDXL Breeder: fly between prompts in real time on a four-corner pad of SDXL token embeddings."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("sdxl-breeder")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
