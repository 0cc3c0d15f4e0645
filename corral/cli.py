"""The `corral` console script's entry point; the commands live in `corral._cli`."""

from corral._cli import main

__all__ = ["main"]
