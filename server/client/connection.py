"""Opening a session's websocket: the server URL, the handshake and hello, and a refusal told plainly."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sdxl_breeder.client.values import BreederConnectionError
from sdxl_breeder.protocol import PROTOCOL_VERSION

log = logging.getLogger("sdxl_breeder.client")

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
MAX_MESSAGE_BYTES = 64 * 2**20  # a 1024² JPEG at quality 100 can pass websockets' 1 MiB default
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_REFUSED = {401: ": missing or wrong token", 403: ": missing or wrong token, or origin not allowed",
            404: ": no websocket at this path (the server's is /ws)"}


def normalize_url(url: str) -> str:
    """ws(s)://host:port/path: http(s) becomes ws(s), a bare "host:port" gets ws://, no path gets /ws."""
    text = url.strip()
    parts = urlsplit(text if "://" in text else "ws://" + text)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"server URL {url!r} must look like ws://HOST:PORT/ws (or wss://, http://, https://)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") or "/ws", parts.query, ""))


def redact(url: str) -> str:
    """The URL with any ?token= value hidden, for error messages and logs."""
    parts = urlsplit(url)
    query = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*"))) if query else url


async def open_session(url: str, token: str | None, timeout: float) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect to `url` (normalized) and read the server's hello; BreederConnectionError says why not."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    where = redact(url)
    try:
        ws = await ws_connect(url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES,
                              open_timeout=timeout)
    except InvalidStatus as e:
        status = e.response.status_code
        raise BreederConnectionError(f"server at {where} refused the connection (HTTP {status})"
                                     f"{_REFUSED.get(status, '')}") from None
    except InvalidURI as e:
        raise ValueError(f"bad server URL {where}: {e}") from None
    except InvalidHandshake as e:
        raise BreederConnectionError(f"server at {where} did not accept a websocket: {e}") from None
    except TimeoutError:  # before OSError, which it is a kind of
        raise BreederConnectionError(f"cannot reach server at {where}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise BreederConnectionError(f"cannot reach server at {where}: is `sdxl-breeder serve` running? "
                                     f"({os.strerror(e.errno) if e.errno else e})") from None
    try:
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except (ConnectionClosed, TimeoutError, ValueError, TypeError) as e:
        await ws.close()
        if isinstance(e, ConnectionClosed) and e.rcvd is not None and e.rcvd.code == 1008:
            raise BreederConnectionError(f"server at {where} refused the connection: {e.rcvd.reason}") from None
        why = "no answer in time" if isinstance(e, TimeoutError) else str(e)
        raise BreederConnectionError(f"server at {where} sent no hello: {why}") from None
    version = hello.get("version") if isinstance(hello, dict) and hello.get("type") == "hello" else None
    if version != PROTOCOL_VERSION:
        await ws.close()
        raise BreederConnectionError(f"server at {where} speaks protocol version {version!r}; "
                                     f"this client speaks {PROTOCOL_VERSION}")
    if hello.get("warning"):
        log.warning("server: %s", hello["warning"])
    return ws, hello
