"""Commands that talk to a running server: `--server` and `--token`, the client, its errors as one line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Awaitable, Callable, TypeVar

from sdxl_breeder.cli.errors import CliError

if TYPE_CHECKING:  # the client is imported only by the commands that talk to a server
    from sdxl_breeder.client import BreederClient

T = TypeVar("T")


def add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="ws://127.0.0.1:8000/ws", help="websocket URL (default ws://127.0.0.1:8000/ws)")
    p.add_argument("--token", help="the server's --token, if it has one")


def client(args: argparse.Namespace) -> BreederClient:
    """The client for --server, --token and --timeout (a bad URL is a one-line error)."""
    from sdxl_breeder.client import BreederClient

    try:
        return BreederClient(args.server, token=args.token, timeout=args.timeout)
    except ValueError as e:
        raise CliError(str(e)) from None


def talk(client: BreederClient, work: Callable[[BreederClient], Awaitable[T]]) -> T:
    """Connect, run `work`, close; connection and server errors become one-line CLI errors."""
    import asyncio

    from sdxl_breeder.client import BreederConnectionError, BreederError

    async def run() -> T:
        async with client:
            return await work(client)

    try:
        return asyncio.run(run())
    except (BreederConnectionError, TimeoutError) as e:
        raise CliError(str(e)) from None
    except BreederError as e:
        raise CliError(f"server error: {e}") from None
