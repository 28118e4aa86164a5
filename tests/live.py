"""The one test launcher for a real `sdxl-breeder serve` subprocess on loopback (Python and page tests),
a module-scoped fixture for one, a thin websocket client for pad sessions and a raw one for floods."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest
import websockets

from sdxl_breeder.protocol import decode_frame
from tests.conftest import PROMPTS

ROOT = Path(__file__).resolve().parent.parent
# `python -m sdxl_breeder` from the interpreter running the tests: the installed (editable) package
THIS_PACKAGE = (sys.executable, "-m", "sdxl_breeder")
SIZE = 128  # the frame size Client.setup asks for unless told
CORNERS = [{"prompt": p} for p in PROMPTS]
TIMEOUT = 60


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


def served(name: str, *extra: str) -> Any:
    """A module-scoped fixture: one LiveServer (with `extra` serve options) for a test module's tests."""
    @pytest.fixture(scope="module", name="server")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        with LiveServer(tmp_path_factory.mktemp(name) / "data", *extra) as live:
            yield live
    return server


class Client:
    """A thin test client: JSON replies and binary frames, each awaited with a timeout."""

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kw) -> Client:
        ws = await websockets.connect(url, open_timeout=TIMEOUT, **kw)
        c = cls(ws)
        hello = await c.json()
        assert hello["type"] == "hello"
        c.hello = hello
        return c

    async def send(self, msg) -> None:
        await self.ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    async def recv(self):
        return await asyncio.wait_for(self.ws.recv(), TIMEOUT)

    async def json(self, type_: str | None = None) -> dict:
        while True:
            m = await self.recv()
            if isinstance(m, str):
                msg = json.loads(m)
                if type_ is None or msg["type"] == type_ or msg["type"] == "error":
                    return msg

    async def frame(self, seq: int | None = None):
        while True:
            m = await self.recv()
            if isinstance(m, bytes):
                header, jpeg = decode_frame(m)
                if seq is None or header.seq >= seq:
                    return header, jpeg

    async def setup(self, size: int = SIZE, corners=CORNERS, **settings) -> dict:
        await self.send({"type": "settings", "width": size, "height": size, **settings})
        assert (await self.json("settings"))["width"] == size
        await self.send({"type": "corners", "corners": corners})
        reply = await self.json("corners")
        assert reply["type"] == "corners", reply
        await self.frame()  # the frame for the current position
        return reply

    async def close(self) -> None:
        await self.ws.close()


class RawWebSocket:
    """A websocket client on a plain blocking socket, for floods: `flood` sends a prebuilt message
    over and over in big writes from a thread (the kernel blocks it when the server stops reading,
    so it costs this process almost no CPU), `read_all` parses what the server sends. A client
    that never calls `read_all` never reads, with a small receive buffer."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: c29hay1mbG9vZC1rZXkhIQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed the connection during the handshake"
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sent = 0  # messages
        self.texts: list[dict[str, Any]] = []
        self.frames = 0
        self.close: tuple[int, str] | None = None
        self._flooding: threading.Thread | None = None

    @staticmethod
    def text_frame(text: str) -> bytes:
        payload = text.encode()
        assert len(payload) < 2**16
        mask = b"\x5a\x17\xc3\x0f"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        return b"\x81" + size + mask + masked

    def flood(self, text: str, *, batch: int = 1000) -> None:
        """Send `text` as fast as the server takes it, from a thread, until the socket closes."""
        chunk = self.text_frame(text) * batch

        def run() -> None:
            try:
                while True:
                    self.sock.sendall(chunk)
                    self.sent += batch
            except OSError:
                pass

        self._flooding = threading.Thread(target=run, daemon=True)
        self._flooding.start()

    def read_all(self, until: Callable[[], bool], timeout: float) -> None:
        """Read and parse server messages (texts kept, frames counted) until `until()` or a close."""
        deadline = time.monotonic() + timeout
        while self.close is None and not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s reading the server's messages")
            self._parse()
            # select, not a socket timeout: that would make the flooding thread's sends time out too
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.close = self.close or (1006, "")
                return
            self._buf += chunk
        self._parse()

    def _parse(self) -> None:
        while len(self._buf) >= 2:
            opcode, n = self._buf[0] & 0x0F, self._buf[1] & 0x7F
            at = 2
            if n == 126:
                n, at = int.from_bytes(self._buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(self._buf[2:10], "big"), 10
            if len(self._buf) < at + n:
                return
            payload, self._buf = self._buf[at : at + n], self._buf[at + n :]
            if opcode == 1:
                self.texts.append(json.loads(payload))
            elif opcode == 2:
                self.frames += 1
            elif opcode == 8:
                self.close = (int.from_bytes(payload[:2], "big"), payload[2:].decode())

    def abort(self) -> None:
        self.sock.close()
