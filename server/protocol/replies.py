"""The server's text messages: hello and the replies a session sends back (errors are in errors.py)."""

from __future__ import annotations

from typing import Any

from sdxl_breeder.protocol.messages import PROTOCOL_VERSION
from sdxl_breeder.spec import Limits


def hello(model: str, limits: Limits, warning: str | None = None, session: str | None = None) -> dict[str, Any]:
    """The first message on every socket; absent optional keys are left out, not sent as null."""
    extra = {k: v for k, v in (("warning", warning), ("session", session)) if v is not None}
    return {"type": "hello", "version": PROTOCOL_VERSION, "model": model, "limits": limits.to_json(), **extra}


def corners_reply(corners: list[dict[str, Any]], template: str | None = None) -> dict[str, Any]:
    return {"type": "corners", "corners": [dict(c) for c in corners], "template": template}


def genome_message(genome: dict[str, Any]) -> dict[str, Any]:
    return {"type": "genome", "genome": dict(genome)}


def brood_message(brood: str, generation: int, seed: int, count: int, parents: list[str],
                  mutation: float) -> dict[str, Any]:
    """Announces a brood; its `count` frames follow, each header naming `brood` and `child`."""
    return {"type": "brood", "brood": brood, "generation": generation, "seed": seed, "count": count,
            "parents": list(parents), "mutation": mutation}


def walk_message(walk_id: str, points: int, seconds: float) -> dict[str, Any]:
    return {"type": "walk", "walk": walk_id, "points": points, "seconds": seconds}


def settings_reply(settings: dict[str, Any]) -> dict[str, Any]:
    return {"type": "settings", **{k: v for k, v in settings.items() if k != "type"}}
