"""Reporter and Tracker base classes: where a run's results go."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from erasus.components import Component, Params

__all__ = ["Reporter", "ReporterParams", "RunSummary", "Tracker", "TrackerParams"]


class RunSummary(dict):
    """What reporters receive: ``config``, ``metrics``, ``history``, ``selection``, timings."""


class ReporterParams(Params):
    """Parameters every reporter accepts."""


class Reporter(Component):
    """Writes files into the (not yet published) run directory from a finished run."""

    Params: ClassVar[type[Params]] = ReporterParams

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        """Write report files under ``run_dir``; return the paths written."""
        raise NotImplementedError


class TrackerParams(Params):
    """Parameters every tracker accepts."""


class Tracker(Component):
    """Records a run in an experiment-tracking store (MLflow, W&B...)."""

    Params: ClassVar[type[Params]] = TrackerParams

    def start(self, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        raise NotImplementedError

    def log_artifact(self, path: Path) -> None:
        raise NotImplementedError

    def end(self, status: str) -> None:
        raise NotImplementedError
