"""The CLIP token-embedding patch (see README.md beside this file)."""
