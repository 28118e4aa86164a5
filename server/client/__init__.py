"""The scripting client for protocol v1: `BreederClient` (asyncio) and `SyncBreederClient` (blocking)."""

from __future__ import annotations

from sdxl_breeder.client.aio import BreederClient
from sdxl_breeder.client.connection import DEFAULT_URL, normalize_url, redact
from sdxl_breeder.client.sync import SyncBreederClient
from sdxl_breeder.client.values import Brood, BreederConnectionError, BreederError, Frame

__all__ = [
    "DEFAULT_URL", "Brood", "BreederClient", "BreederConnectionError", "BreederError", "Frame", "SyncBreederClient",
    "normalize_url", "redact",
]
