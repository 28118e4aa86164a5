"""The websocket endpoint: one pad session per socket (protocol v1, docs/protocol.md).

A receiver and two senders run side by side; when one ends the others are cancelled, and
`finally` always closes the render-loop session. The receiver only submits wanted frames and never
waits on the socket: messages over the session's rate are dropped before they are parsed, and
replies go to a bounded queue (a reader that falls behind loses the newest ones, not the server's
memory). One sender awaits the session's newest result and turns it into a binary frame message
(or an error); the other sends the queued replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sdxl_breeder import protocol as p
from sdxl_breeder.engine.loop import FrameJob, FrameOutput, LoopStopped, RenderFailure
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.web.broods import Brood, BroodBook, Cursor
from sdxl_breeder.spec import FrameSettings
from sdxl_breeder.web.quotas import Admit, GenomeQuota, MessageRate
from sdxl_breeder.web.service import Breeder
from sdxl_breeder.walks.walkfile import WALK_FORMAT, WALK_VERSION, Walk

log = logging.getLogger("sdxl_breeder.ws")
POLICY_VIOLATION = 1008


@dataclass
class PadState:
    settings: FrameSettings = field(default_factory=FrameSettings)
    scene: Scene | None = None
    corners: list[dict[str, Any]] = field(default_factory=list)
    template: str | None = None
    x: float = 0.5
    y: float = 0.5
    seq: int = 0
    recording: list[list[float]] | None = None
    record_start: float = 0.0


def _claimed_type(data: str | bytes, limits: p.Limits) -> str | None:
    """The known `type` a rejected message claimed to be, if it was a JSON object at all."""
    try:
        obj = p.parse_json(data, limits)
    except p.ProtocolError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if kind in p.MESSAGE_TYPES else None


def frame_message(out: FrameOutput, extra: dict[str, Any] | None = None) -> bytes:
    """A rendered frame as the binary frame message: header fields from the job it answers
    (and `extra` header fields, e.g. which cluster worker rendered it)."""
    job, st = out.job, out.job.settings
    header = p.FrameHeader(
        seq=job.seq, x=job.x, y=job.y, seed=st.seed, width=st.width, height=st.height,
        render_ms=round(out.render_ms, 2), batch=out.batch,
    )
    if job.brood is not None:  # a brood's child: its header also names the brood and the child
        header = p.BroodFrameHeader(**asdict(header), brood=job.brood, child=job.child or 0)
    return p.encode_frame(header, out.jpeg, extra)


class Replies:
    """The text replies waiting for the socket: at most `limit`; one more is dropped (and counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._items: deque[str] = deque()
        self._ready = asyncio.Event()

    def put(self, text: str) -> None:
        if len(self._items) >= self.limit:
            self.dropped += 1
            return
        self._items.append(text)
        self._ready.set()

    async def get(self) -> str:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class PadSocket:
    def __init__(self, ws: WebSocket, breeder: Breeder) -> None:
        self._start(ws, breeder)
        self.session = breeder.open_session()

    def _start(self, ws: WebSocket, breeder: Any) -> None:
        """The protocol side of a pad socket: its state and its quotas (also a cluster pad's)."""
        self.ws = ws
        self.breeder = breeder
        self.state = PadState()
        limits = breeder.limits
        self.genome_quota = GenomeQuota(limits.max_genomes_per_minute)
        self.rate = MessageRate(limits.max_messages_per_second, limits.max_over_rate_seconds)
        self.replies = Replies(limits.max_queued_replies)
        self.broods = BroodBook(breeder.limits.max_broods)
        self._brood_frames: asyncio.Queue[bytes | str] = asyncio.Queue()  # every child's frame is sent
        self._drawing: list[asyncio.Task[None]] = []
        self._draw_lock = asyncio.Lock()  # a session's broods are drawn one after another
        self._send_lock = asyncio.Lock()

    # ------------------------------------------------------------------ sending
    async def send_json(self, msg: dict[str, Any]) -> None:
        self.replies.put(json.dumps(msg))  # never waits for the socket

    async def text_sender(self) -> None:
        while True:
            text = await self.replies.get()
            async with self._send_lock:
                await self.ws.send_text(text)

    async def sender(self) -> None:
        while True:
            out = await self.session.next()
            if isinstance(out, FrameOutput):
                async with self._send_lock:
                    await self.ws.send_bytes(frame_message(out))
                self.session.sent(out)
            elif isinstance(out, RenderFailure):
                await self.send_json(p.error_message(p.ErrorCode.RENDER_FAILED, out.message))

    async def brood_sender(self) -> None:
        while True:
            data = await self._brood_frames.get()
            async with self._send_lock:
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_text(data)

    # ------------------------------------------------------------------ broods
    async def evolve(self, msg: p.EvolveMsg) -> None:
        s = self.state
        self._drawing = [t for t in self._drawing if not t.done()]
        if len(self._drawing) >= self.broods.capacity:
            raise p.ProtocolError(p.ErrorCode.TOO_LARGE,
                                  f"{len(self._drawing)} broods are still being drawn (limit max_broods); wait for their frames")
        cursor = Cursor(s.scene, s.x, s.y, s.settings.blend)
        template = s.scene.template if s.scene is not None else None
        brood = await self.breeder.evolution.breed(msg.parents, msg.count, msg.mutation, msg.seed, s.settings,
                                                   template=template, cursor=cursor)
        self.broods.add(brood)
        await self.send_json(brood.message())  # before any of its frames
        self._drawing.append(asyncio.create_task(self._draw(brood), name=f"brood-{brood.id}"))

    async def _draw(self, brood: Brood) -> None:
        async with self._draw_lock:
            try:
                async for out in self.breeder.evolution.draw(brood, self.session):
                    self._brood_frames.put_nowait(frame_message(out))
            except RuntimeError as e:  # the render failed (or the loop stopped)
                msg = p.error_message(p.ErrorCode.RENDER_FAILED, f"brood {brood.id}: {e}")
                self._brood_frames.put_nowait(json.dumps({**msg, "in_reply_to": "evolve"}))
            except Exception as e:  # noqa: BLE001 — a bug: the client hears of it, the log has the trace
                log.exception("drawing brood %s failed", brood.id)
                msg = p.error_message(p.ErrorCode.INTERNAL, f"brood {brood.id}: internal error ({type(e).__name__})")
                self._brood_frames.put_nowait(json.dumps({**msg, "in_reply_to": "evolve"}))

    async def select(self, msg: p.SelectMsg) -> None:
        brood = self.broods.get(msg.brood)
        for info in await self.breeder.evolution.select(brood, msg.children):
            await self.send_json(p.genome_message(info))

    # ------------------------------------------------------------------ receiving
    async def receiver(self) -> None:
        limits = self.breeder.limits
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            admit = self.rate.admit()  # before parsing: a flood costs as little as it can
            if admit is not Admit.OK:
                if admit is Admit.CLOSE:
                    await self.ws.close(POLICY_VIOLATION, self.rate.refusal())
                    return
                if admit is Admit.WARN:
                    await self.send_json(p.error_message(p.ErrorCode.RATE_LIMITED, self.rate.warning()))
                await asyncio.sleep(self.rate.pause_s)  # read no faster than that: TCP slows the sender
                continue
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            msg = None
            try:
                msg = p.parse_client_message(data, limits)
                await self.handle(msg)
            except WebSocketDisconnect:
                return  # the client left while its message was handled: nothing to answer
            except p.ProtocolError as e:
                reply = e.to_json()
                kind = p.message_type(msg) if msg is not None else _claimed_type(data, limits)
                if kind is not None:
                    reply["in_reply_to"] = kind  # lets clients pair errors with requests
                await self.send_json(reply)
            except Exception as e:  # noqa: BLE001 — never a traceback to a client
                if self.ws.application_state != WebSocketState.CONNECTED or self.ws.client_state != WebSocketState.CONNECTED:
                    return  # closed under us (a send raised): a normal disconnect, not a bug
                log.exception("error handling a message")
                await self.send_json(p.error_message(p.ErrorCode.INTERNAL, f"internal error ({type(e).__name__})"))

    def _want_frame(self) -> None:
        s = self.state
        if s.scene is not None:
            try:
                self.session.submit(FrameJob(s.scene, s.x, s.y, s.seq, s.settings))
            except LoopStopped as e:
                raise p.ProtocolError(p.ErrorCode.RENDER_FAILED, str(e)) from None

    async def handle(self, msg: p.ClientMessage) -> None:
        s = self.state
        if isinstance(msg, p.MoveMsg):
            if s.scene is None:
                raise p.ProtocolError(p.ErrorCode.NO_CORNERS, "send a corners message before moving")
            s.x, s.y, s.seq = msg.x, msg.y, msg.seq
            self._want_frame()
            if s.recording is not None:
                if len(s.recording) >= self.breeder.limits.max_record_points:
                    raise p.ProtocolError(p.ErrorCode.TOO_LARGE, "recording is full; stop it to save the walk")
                s.recording.append([round(time.perf_counter() - s.record_start, 4), msg.x, msg.y])
        elif isinstance(msg, p.SettingsMsg):
            changes = {k: getattr(msg, k) for k in ("width", "height", "seed", "blend", "quality", "corner_seeds")}
            changes = {k: v for k, v in changes.items() if v is not None}
            if msg.clear_corner_seeds:
                changes["corner_seeds"] = None
            s.settings = replace(s.settings, **changes)
            await self.send_json(p.settings_reply(s.settings.to_json()))
            self._want_frame()
        elif isinstance(msg, p.CornersMsg):
            resolved = await self.breeder.scene(msg.corners, msg.template, self.genome_quota)
            s.scene, s.corners, s.template = resolved.scene, resolved.corners, resolved.template
            await self.send_json(p.corners_reply(resolved.corners, resolved.template))
            self._want_frame()
        elif isinstance(msg, p.BreedMsg):
            info = await self.breeder.breed(msg.parents, msg.seed, msg.mutation, self.genome_quota)
            await self.send_json(p.genome_message(info))
        elif isinstance(msg, p.KeepMsg):
            if s.scene is None:
                raise p.ProtocolError(p.ErrorCode.NO_CORNERS, "send a corners message before keeping a frame")
            info = await self.breeder.keep(s.scene, s.x, s.y, s.settings.blend, msg.prompt, self.genome_quota)
            await self.send_json(p.genome_message(info))
        elif isinstance(msg, p.RecordMsg):
            await self.record(msg.action)
        elif isinstance(msg, p.EvolveMsg):
            await self.evolve(msg)
        elif isinstance(msg, p.SelectMsg):
            await self.select(msg)

    async def record(self, action: str) -> None:
        s = self.state
        if action == "start":
            s.recording = []
            s.record_start = time.perf_counter()
            if s.scene is not None:
                s.recording.append([0.0, s.x, s.y])
            return
        if s.recording is None:
            raise p.ProtocolError(p.ErrorCode.NOT_RECORDING, "record stop without record start")
        points, s.recording = s.recording, None
        if not points:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, "the recording has no moves; move the cursor while recording")
        corners = [
            {"genome": c["genome"]} if c.get("prompt") is None else {"prompt": c["prompt"]} for c in s.corners
        ]
        st = s.settings
        walk = Walk.from_json(
            {
                "format": WALK_FORMAT,
                "version": WALK_VERSION,
                "corners": corners,
                "template": s.template,
                "blend": st.blend,
                "seed": st.seed,
                "corner_seeds": list(st.corner_seeds) if st.corner_seeds else None,
                "width": st.width,
                "height": st.height,
                "points": points,
            }
        )
        info = await self.breeder.save_walk(walk, source="recording")
        await self.send_json(p.walk_message(info["id"], info["points"], info["seconds"]))

    # ------------------------------------------------------------------ lifetime
    async def run(self) -> None:
        try:
            await self.converse()
        finally:
            for task in self._drawing:
                task.cancel()
            self.session.close()

    async def converse(self) -> None:
        """hello, then the receiver and the senders until one of them ends (a cluster pad's too)."""
        await self.send_json(p.hello(self.breeder.model_name, self.breeder.limits, self.breeder.warning))
        tasks = [asyncio.create_task(t) for t in (self.receiver(), self.sender(), self.text_sender(), self.brood_sender())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError)):
                log.warning("websocket session ended: %r", exc)
