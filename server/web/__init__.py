"""The HTTP side: Starlette app, websocket sessions, the service they share, and `serve`."""
