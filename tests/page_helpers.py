"""Helpers for the browser tests (tests/test_page.py): Chromium, and the live server from tests/live.py."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

from tests.live import ROOT, LiveServer

PadServer = LiveServer  # the page tests' server: the same launcher as every other live-server test

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def find_chromium() -> str | None:
    """A Chromium binary: $BREEDER_CHROMIUM, the Debian package, or one on PATH (never a download)."""
    candidates = [os.environ.get("BREEDER_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                  shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def wait_until(page: Any, predicate: Callable[[], bool], timeout_ms: float = 15000, what: str = "condition") -> None:
    """Wait for a Python-side condition (e.g. on websocket events playwright collected), letting
    playwright dispatch its events between checks; fails with `what` after the timeout."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms / 1000:g} s waiting for {what}")
        page.wait_for_timeout(50)
