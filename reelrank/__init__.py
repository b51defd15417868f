"""reelrank: an open-source MLOps loop for short-video recommendation."""

__version__ = "0.1.0"
