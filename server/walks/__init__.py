"""Walks: paths over the pad, the walk file, video files, and walk → video."""
