"""The server on Ray Serve: render workers (one batched loop each), one store owner, front ends."""
