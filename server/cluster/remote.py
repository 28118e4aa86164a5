"""Calling deployments: an error a deployment raised comes back as itself, not wrapped by Ray."""

from __future__ import annotations

from typing import Any

from ray.exceptions import RayTaskError


def unwrap(e: BaseException) -> BaseException:
    """The deployment's own exception (ProtocolError, NotFound, …) for a RayTaskError, else `e`."""
    cause = e.cause if isinstance(e, RayTaskError) else None
    return cause if isinstance(cause, Exception) else e


async def call(response: Any) -> Any:
    """Await a DeploymentResponse."""
    try:
        return await response
    except RayTaskError as e:
        raise unwrap(e) from None


def call_sync(response: Any) -> Any:
    """Wait for a DeploymentResponse from a thread that is not running an event loop."""
    try:
        return response.result()
    except RayTaskError as e:
        raise unwrap(e) from None


def reason(e: BaseException) -> str:
    """One line saying why a call to a replica failed (Ray's messages run to many lines)."""
    text = str(unwrap(e)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:160]}" if first else type(e).__name__
