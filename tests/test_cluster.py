"""The server on Ray Serve (`serve --ray`): a local Ray instance, two render workers with a fraction
of a CPU each, the real tiny pipeline, real websockets through Serve's proxy, real SQLite.

One deployment for the module (starting Ray and the replicas is the slow part); the test that kills
a worker runs last."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
import websockets

from sdxl_breeder.protocol import decode_frame, frame_worker
from tests.conftest import PROMPTS

ray = pytest.importorskip("ray")

SIZE = 64
CORNERS = [{"prompt": p} for p in PROMPTS]
TIMEOUT = 90  # generous: the machine may be busy, and a lost worker is noticed by Ray


def test_cluster_options_are_checked_before_anything_starts(capsys):
    from sdxl_breeder.cli import main
    from sdxl_breeder.cluster.deploy import build_app

    assert main(["serve", "--replicas", "2"]) == 2
    assert "--replicas: only with --ray" in capsys.readouterr().err
    assert main(["serve", "--ray", "--replicas", "0"]) == 2
    assert "--replicas must be at least 1" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--ray", "--model", "tiny", "--port", str(taken.getsockname()[1])]) == 2
        assert "already in use" in capsys.readouterr().err
    assert main(["bench", "--server", "localhost:8000"]) == 2
    assert "websocket URL" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown argument 'modle'"):
        build_app({"modle": "tiny"})
    with pytest.raises(ValueError, match="replicas='two' is not a valid int"):
        build_app({"replicas": "two"})
    assert not ray.is_initialized()


class Cluster:
    def __init__(self, port: int) -> None:
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/ws"

    def health(self) -> dict[str, Any]:
        return httpx.get(self.http + "/healthz", timeout=30).json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray import serve

    from sdxl_breeder.cluster.deploy import ClusterOptions, deploy
    from sdxl_breeder.web.serve import ServeOptions

    port = _free_port()
    opts = ServeOptions(model="tiny", device="cpu", port=port, data_dir=tmp_path_factory.mktemp("cluster") / "data",
                        threads=1, max_batch=8)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        deploy(opts, ClusterOptions(replicas=2, gpus_per_replica=0, cpus_per_replica=0.25))
        c = Cluster(port)
        wait_until(lambda: len([w for w in c.health()["workers"] if w["up"]]) == 2, "both workers report")
        yield c
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


class Pad:
    """A websocket client of the pad protocol: JSON replies, frames with the worker that drew them."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seq = 0
        self.frames: list[tuple[str | None, int]] = []  # (worker, batch) per frame
        self.errors: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, corners=CORNERS) -> Pad:
        pad = cls(await websockets.connect(url, open_timeout=TIMEOUT))
        assert (await pad.json("hello"))["type"] == "hello"
        await pad.send({"type": "settings", "width": SIZE, "height": SIZE})
        await pad.json("settings")
        await pad.send({"type": "corners", "corners": corners})
        reply = await pad.json("corners")
        assert reply["type"] == "corners", reply
        await pad.frame()  # the frame at the pad's centre: the session is placed
        return pad

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), TIMEOUT)

    async def json(self, kind: str) -> dict[str, Any]:
        while True:
            m = await self.recv()
            if isinstance(m, str):
                msg = json.loads(m)
                if msg["type"] in (kind, "error"):
                    return msg

    async def frame(self, seq: int = 0) -> str | None:
        """The worker of the next frame answering move `seq` or later (errors are kept)."""
        while True:
            m = await self.recv()
            if isinstance(m, str):
                msg = json.loads(m)
                if msg["type"] == "error":
                    self.errors.append(msg)
                continue
            header, _ = decode_frame(m)
            if header.seq >= seq:
                self.frames.append((frame_worker(m), header.batch))
                return frame_worker(m)

    async def move(self) -> str | None:
        self.seq += 1
        t = self.seq * 0.07
        await self.send({"type": "move", "x": abs((t % 2) - 1), "y": abs(((t * 0.7) % 2) - 1), "seq": self.seq})
        return await self.frame(self.seq)

    async def close(self) -> None:
        await self.ws.close()


async def test_eight_pads_get_frames_from_both_workers_in_batches(cluster):
    pads = [await Pad.open(cluster.ws) for _ in range(8)]
    try:
        batches: dict[str | None, list[int]] = defaultdict(list)

        def done() -> bool:
            return (all(len(p.frames) >= 4 for p in pads) and len(batches) == 2
                    and all(max(b) > 1 for b in batches.values()))

        async def keep_moving(pad: Pad) -> None:
            deadline = time.monotonic() + TIMEOUT
            while not done() and time.monotonic() < deadline:
                await pad.move()
                worker, batch = pad.frames[-1]
                batches[worker].append(batch)

        await asyncio.gather(*(keep_moving(p) for p in pads))
        assert None not in batches, "every frame from a cluster names its worker"
        assert len(batches) == 2, f"frames came from {sorted(batches)}"
        assert all(len(p.frames) >= 4 for p in pads)
        for worker, sizes in batches.items():
            assert max(sizes) > 1, f"worker {worker} only rendered batches of 1"
        # Sticky: each pad's frames all come from the one worker it was placed on.
        assert all(len({w for w, _ in p.frames}) == 1 for p in pads)
        # Placed on the least loaded worker (by Serve's cached queue lengths: roughly, not exactly).
        placed = {w: sum(1 for p in pads if p.frames[0][0] == w) for w in batches}
        assert min(placed.values()) >= 2, placed

        # /healthz and /metrics show each worker's sessions, batch sizes and frame rate.
        def reported() -> bool:  # workers report every second: wait for a report after these frames
            workers = {w["worker"]: w for w in cluster.health()["workers"]}
            return all(w in workers and workers[w]["frames"] >= len(sizes) and workers[w]["sessions"] == placed[w]
                       for w, sizes in batches.items())

        wait_until(reported, "the workers report these sessions and frames")
        health = cluster.health()
        assert health["status"] == "ok" and health["sessions"] == 8
        assert {w["worker"] for w in health["workers"]} == set(batches)
        assert all(w["mean_batch"] > 1 for w in health["workers"])
        metrics = httpx.get(cluster.http + "/metrics", timeout=30).text
        for worker in batches:
            assert f'breeder_worker_sessions{{worker="{worker}"}} {placed[worker]:.1f}' in metrics
            assert f'breeder_worker_fps{{worker="{worker}"}}' in metrics
    finally:
        await asyncio.gather(*(p.close() for p in pads))


async def test_rest_renders_on_any_worker(cluster):
    async with httpx.AsyncClient(base_url=cluster.http, timeout=TIMEOUT) as http:
        r = await http.post("/api/render", json={"corners": CORNERS, "x": 0.3, "y": 0.6, "width": SIZE, "height": SIZE})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        a = (await http.post("/api/genomes", json={"prompt": "a lighthouse at dusk"})).json()
        child = (await http.post("/api/breed", json={"parents": [a["id"], a["id"]], "seed": 3})).json()
        assert child["parents"] == [a["id"], a["id"]] and child["origin"] == "breed"
        thumb = await http.get(f"/api/genomes/{child['id']}/thumbnail.jpg")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        missing = await http.get("/api/genomes/0123456789abcdef/thumbnail.jpg")
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_genome"
        bad = await http.post("/api/render", json={"corners": CORNERS, "template": "no slot here"})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_template"


async def test_bench_end_to_end_reports_each_worker(cluster, tmp_path, capsys):
    from sdxl_breeder.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--model", "tiny", "--size", str(SIZE), "--batches", "1", "--clients", "4", "--seconds", "2",
            "--server", cluster.ws, "--json", str(out)]
    assert await asyncio.to_thread(main, args) == 0
    (row,) = json.loads(out.read_text())["runs"][0]["end_to_end"]
    assert row["errors"] == [] and row["frames"] > 0
    assert len(row["worker_fps"]) == 2 and all(fps > 0 for fps in row["worker_fps"].values())
    assert sum(row["worker_fps"].values()) == pytest.approx(row["fps"], rel=0.01)
    assert "per render worker:" in capsys.readouterr().out


async def test_a_killed_worker_moves_its_pads_and_loses_no_genome(cluster):
    pads = [await Pad.open(cluster.ws) for _ in range(4)]
    try:
        for pad in pads:
            await pad.move()
        by_worker = defaultdict(list)
        for pad in pads:
            by_worker[pad.frames[-1][0]].append(pad)
        assert len(by_worker) == 2, "four pads were spread over both workers"
        async with httpx.AsyncClient(base_url=cluster.http, timeout=TIMEOUT) as http:
            stored = [(await http.post("/api/genomes", json={"prompt": "a quiet harbour"})).json()["id"]]
            await pads[0].send({"type": "keep", "prompt": "kept before the crash"})
            stored.append((await pads[0].json("genome"))["genome"]["id"])
            stored.append((await http.post("/api/breed", json={"parents": stored[:2], "seed": 1})).json()["id"])

            victim = pads[0].frames[-1][0]
            (pid,) = [w["pid"] for w in cluster.health()["workers"] if w["worker"] == victim]
            os.kill(pid, signal.SIGKILL)

            for pad in by_worker[victim]:
                # An error naming the worker, then, after the next move, frames from another one.
                while not pad.errors:
                    pad.errors.append(await pad.json("error"))
                assert pad.errors[0]["code"] == "render_failed" and victim in pad.errors[0]["message"], pad.errors
                deadline = time.monotonic() + TIMEOUT
                while (worker := await moved(pad)) in (None, victim):
                    assert time.monotonic() < deadline, f"no frame from another worker: {pad.errors}"
                assert worker != victim
            for pad in pads:  # every pad goes on, wherever it is now
                assert await pad.move() != victim

            listed = {g["id"] for g in (await http.get("/api/genomes")).json()["genomes"]}
            assert set(stored) <= listed
            for gid in stored:
                assert (await http.get(f"/api/genomes/{gid}")).status_code == 200
        again = await Pad.open(cluster.ws, corners=[{"genome": g} for g in (*stored, stored[0])])
        assert await again.move() != victim
        await again.close()
    finally:
        await asyncio.gather(*(p.close() for p in pads))


async def moved(pad: Pad) -> str | None:
    """Move once; the worker of the answering frame, or None if the move only got an error (the
    session is being placed again while Ray notices the dead worker)."""
    pad.seq += 1
    await pad.send({"type": "move", "x": 0.5, "y": 0.5, "seq": pad.seq})
    while True:
        m = await pad.recv()
        if isinstance(m, str):
            if json.loads(m)["type"] == "error":
                return None
            continue
        header, _ = decode_frame(m)
        if header.seq >= pad.seq:
            return frame_worker(m)
