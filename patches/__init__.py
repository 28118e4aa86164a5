"""Runtime patches for third-party libraries. See README.md in this folder."""
