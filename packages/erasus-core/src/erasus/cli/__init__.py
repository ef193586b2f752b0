"""The ``erasus`` command-line interface (Typer + rich)."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``erasus`` console script."""
    from erasus.cli.app import main as _main

    _main()
