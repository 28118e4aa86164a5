"""Quotas on what one client may use: open pad sessions, messages per second, genomes per minute.

Each is a token bucket or a counter, cheap enough to check on every message before it is parsed.
The numbers are the server's `Limits` (spec.py), sent to clients in `hello.limits`.
"""

from __future__ import annotations

import enum
import time
from typing import Awaitable, Callable, TypeVar

from sdxl_breeder.protocol import ErrorCode, ProtocolError

T = TypeVar("T")
Clock = Callable[[], float]
QUIET_S = 1.0  # a second without a dropped message ends an episode of flooding
MAX_CLIENTS = 4096  # REST clients whose genome budget is remembered at once


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def available(self) -> bool:
        return self._refill() >= 1.0

    def take(self) -> bool:
        if self._refill() < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def full(self) -> bool:
        return self._refill() >= self.burst


class Admit(enum.Enum):
    """What to do with one incoming message."""

    OK = "ok"  # handle it
    WARN = "warn"  # drop it and send the one `rate_limited` error of this episode
    DROP = "drop"  # drop it silently
    CLOSE = "close"  # the flood went on for too long: close the socket with 1008


class MessageRate:
    """The per-session message rate limit (`max_messages_per_second`, a second's worth of burst).

    Over it, messages are dropped unparsed; the first drop of an episode is answered by one
    error; an episode lasting `max_over_rate_seconds` closes the socket. After a drop the caller
    pauses for one token's time (`pause_s`) before reading on, so a flooding client is slowed
    by TCP itself and costs the server about twice the allowed rate, not its own speed.
    """

    def __init__(self, per_second: int, max_over_s: float, clock: Clock = time.monotonic) -> None:
        self._bucket = TokenBucket(per_second, per_second, clock)
        self._clock = clock
        self.max_over_s = max_over_s
        self.pause_s = 1.0 / per_second
        self.dropped = 0
        self._over_since: float | None = None
        self._last_drop = 0.0

    def warning(self) -> str:
        return (f"more than {self._bucket.rate:g} messages a second (max_messages_per_second): messages are "
                f"being dropped; slow down, or the socket closes after {self.max_over_s:g} s of this")

    def refusal(self) -> str:
        return f"over max_messages_per_second ({self._bucket.rate:g}/s) for {self.max_over_s:g} s"

    def admit(self) -> Admit:
        if self._bucket.take():
            return Admit.OK
        now = self._clock()
        self.dropped += 1
        if self._over_since is None or now - self._last_drop > QUIET_S:
            self._over_since = self._last_drop = now
            return Admit.WARN
        self._last_drop = now
        return Admit.CLOSE if now - self._over_since >= self.max_over_s else Admit.DROP


class GenomeQuota:
    """`max_genomes_per_minute` new genomes per session (a minute's worth of burst).

    `check` before the work that makes a genome, `spend` once it is stored: a refused or failed
    request costs nothing."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self._bucket = TokenBucket(per_minute / 60.0, per_minute, clock)

    def check(self) -> None:
        if not self._bucket.available():
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.per_minute} new genomes in a minute (max_genomes_per_minute); wait a little",
            )

    def spend(self) -> None:
        self._bucket.take()

    def idle(self) -> bool:
        return self._bucket.full()


async def counted(quota: GenomeQuota | None, make: Callable[[], Awaitable[T]]) -> T:
    """`await make()` (which stores one new genome) within `quota`, when there is one."""
    if quota is not None:
        quota.check()
    result = await make()
    if quota is not None:
        quota.spend()
    return result


class ClientQuotas:
    """Genome quotas of REST clients, one per client address (REST requests have no session)."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._quotas: dict[str, GenomeQuota] = {}

    def get(self, client: str) -> GenomeQuota:
        quota = self._quotas.get(client)
        if quota is None:
            if len(self._quotas) >= MAX_CLIENTS:  # forget the clients whose budget is whole again
                self._quotas = {k: q for k, q in self._quotas.items() if not q.idle()}
            quota = self._quotas[client] = GenomeQuota(self.per_minute, self._clock)
        return quota


class SessionSlots:
    """At most `max_sessions` pad sessions open at once (`max_sessions`)."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.open = 0

    def try_open(self) -> bool:
        if self.open >= self.max_sessions:
            return False
        self.open += 1
        return True

    def close(self) -> None:
        self.open -= 1

    def refusal(self) -> str:
        return f"the server is full ({self.max_sessions} sessions open, max_sessions); try again later"
