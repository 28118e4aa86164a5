"""The websocket connection under the app: a peer that stops reading is cut off, and shutdown cannot hang.

uvicorn's websocket protocol waits as long as it takes for a peer to take what was written: a
client that never reads keeps its socket, its session and its send buffer forever, and a server
shutting down waits for it to close. Two deadlines fix both, at the transport where they belong
(an app cannot abort a socket through ASGI):
- a socket whose send buffer stays full (paused writing) for `drain_timeout_seconds` is aborted;
- a socket still open CLOSE_GRACE_S after its session ended, or after shutdown queued its close
  frame, is aborted (closing waits for the buffer to flush, which a peer that never reads stops).
An abort ends the session as a disconnect: the app's pending send raises and its `finally` runs.
uvicorn cancels app tasks still running SHUTDOWN_GRACE_S after shutdown began.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("sdxl_breeder.sockets")

CLOSE_GRACE_S = 2.0  # how long a peer gets to take the close frame and what is left before it
SHUTDOWN_GRACE_S = 5  # uvicorn's timeout_graceful_shutdown


def websocket_protocol(drain_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's websocket protocol with a drain deadline and a shutdown that always ends."""

    class DeadlineWebSocketProtocol(WebSocketsSansIOProtocol):
        _stall: asyncio.TimerHandle | None = None

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stall is None:
                self._stall = self.loop.call_later(drain_timeout_s, self._stalled)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel_stall()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_stall()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            super().shutdown()
            self.loop.call_later(CLOSE_GRACE_S, self._abort)

        async def run_asgi(self) -> None:
            try:
                await super().run_asgi()
            finally:
                self.loop.call_later(CLOSE_GRACE_S, self._abort)

        def _cancel_stall(self) -> None:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None

        def _stalled(self) -> None:
            self._stall = None
            peer = "%s:%d" % self.client if self.client else "a client"
            log.info("closing the websocket of %s: it took no data for %g s (drain_timeout_seconds)", peer, drain_timeout_s)
            self._abort()

        def _abort(self) -> None:
            if self.transport is not None:
                self.transport.abort()  # (a no-op once lost) connection_lost follows: the session ends

    return DeadlineWebSocketProtocol
