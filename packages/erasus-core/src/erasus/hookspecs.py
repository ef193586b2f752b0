"""Hook specifications of the pluggy project ``erasus``.

Registration hooks receive a ``register`` callback: call it once per component class.
Every hook takes keyword arguments only, so hooks can grow arguments without breaking
plugins (a hook implementation may accept any subset of them).
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "erasus"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def erasus_register_models(register: Any) -> None:
    """Register model adapter classes (ModelAdapter) with ``register(cls)``."""


@hookspec
def erasus_register_selectors(register: Any) -> None:
    """Register coreset selector classes (Selector) with ``register(cls)``."""


@hookspec
def erasus_register_strategies(register: Any) -> None:
    """Register unlearning strategy classes (Strategy) with ``register(cls)``."""


@hookspec
def erasus_register_losses(register: Any) -> None:
    """Register loss classes (Loss) with ``register(cls)``."""


@hookspec
def erasus_register_metrics(register: Any) -> None:
    """Register metric classes (Metric) with ``register(cls)``."""


@hookspec
def erasus_register_datasets(register: Any) -> None:
    """Register dataset provider classes (DatasetProvider) with ``register(cls)``."""


@hookspec
def erasus_register_reporters(register: Any) -> None:
    """Register reporter classes (Reporter) with ``register(cls)``."""


@hookspec
def erasus_register_trackers(register: Any) -> None:
    """Register experiment tracker classes (Tracker) with ``register(cls)``."""


@hookspec
def erasus_register_commands(register: Any) -> None:
    """Register Typer sub-apps with ``register(typer_app, name="...")`` for the CLI to mount."""


@hookspec
def erasus_run_start(run: Any) -> None:
    """Observe the start of a run (``run`` has ``config``, ``run_dir`` and ``seed``)."""


@hookspec
def erasus_step_end(run: Any, step: int, losses: dict[str, float]) -> None:
    """Observe the end of one unlearning optimisation step and its loss values."""


@hookspec
def erasus_run_end(run: Any, metrics: dict[str, Any]) -> None:
    """Observe the end of a run and its final metrics (``run.run_dir`` is written)."""
