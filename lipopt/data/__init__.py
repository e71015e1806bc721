"""Bundled data (the demo network)."""
