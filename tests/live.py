"""The one test launcher for a real `sdxl-breeder serve` subprocess on loopback (Python and page tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

ROOT = Path(__file__).resolve().parent.parent
# `python -m sdxl_breeder` from the interpreter running the tests: the installed (editable) package
THIS_PACKAGE = (sys.executable, "-m", "sdxl_breeder")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class LiveServer:
    """`sdxl-breeder serve --model tiny` on a free loopback port, its log in a file next to the data dir.

    `command` is the program to run (default: this interpreter's `python -m sdxl_breeder`; the wheel
    test passes an installed `sdxl-breeder` script); `cwd` is where it runs (default: the repository).
    """

    def __init__(self, data_dir: Path, *extra: str, model: str = "tiny", startup_timeout: float = 120.0,
                 command: Sequence[str] = THIS_PACKAGE, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.args = [*command, "serve", "--model", model, "--port", str(self.port), "--data-dir", str(self.data_dir), *extra]
        self.cwd = cwd or ROOT
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    url = http  # the page tests' name for it

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> LiveServer:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_for(self._healthy, self.startup_timeout, "the server to answer /healthz", interval=0.2)
        except AssertionError as e:
            self.stop()
            raise RuntimeError(f"{e}:\n{self.log_tail()}") from None
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return httpx.get(self.http + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def get_json(self, path: str) -> Any:
        r = httpx.get(self.http + path, timeout=30)
        r.raise_for_status()
        return r.json()

    def rss(self) -> int:
        """The server process's resident memory in bytes."""
        import psutil

        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def metric(self, name: str) -> float:
        text = httpx.get(self.http + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
