"""Erasus: machine unlearning with a plugin ecosystem.

The public API is small: :func:`run` executes a run config (the same code path as
``erasus run``), :class:`Unlearner` unlearns a model you hold in Python, and
:mod:`erasus.hookspecs` / :data:`hookimpl` are what plugins implement. Heavy modules
(torch) are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus._version import __version__
from erasus.hookspecs import hookimpl

if TYPE_CHECKING:
    from erasus.api import Unlearner
    from erasus.pipeline import RunResult, run

__all__ = ["RunResult", "Unlearner", "__version__", "hookimpl", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "RunResult"):
        from erasus import pipeline

        return getattr(pipeline, name)
    if name == "Unlearner":
        from erasus.api import Unlearner

        return Unlearner
    raise AttributeError(f"module 'erasus' has no attribute '{name}'")
