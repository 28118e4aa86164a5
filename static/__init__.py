"""The page: plain HTML, CSS and ES modules, shipped as package data (this file only makes it findable)."""
