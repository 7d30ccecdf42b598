"""The ``hub`` command line (Typer + rich). Sub-commands live in one module each."""

from hub.cli.main import app

__all__ = ["app"]
