"""The base of the reporters that draw PNGs: which plots they make, why one is absent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from erasus.reporting import Reporter, ReporterParams, RunSummary

from erasus_viz._common import read_data

__all__ = ["Plot", "PlotReporter"]


@dataclass(frozen=True)
class Plot:
    """One PNG a reporter draws under ``RUN_DIR/plots/``, as ``report.html`` shows it."""

    file: str
    title: str
    #: One sentence saying what the plot shows.
    caption: str


class PlotReporter(Reporter):
    """A reporter that draws :attr:`plots` from ``plots/data/<data_file>`` or the run's
    own files; :meth:`absent_reason` says why its plots are missing from a run."""

    Params = ReporterParams
    modalities = ("any",)
    needs = frozenset()
    plots: ClassVar[tuple[Plot, ...]] = ()
    #: The JSON its ``collect`` writes under ``plots/data/`` (``None``: it collects nothing).
    data_file: ClassVar[str | None] = None

    def absent_reason(self, run_dir: Path, summary: RunSummary) -> str | None:
        """Why this reporter rightly drew nothing for the run, or ``None`` when it should
        have drawn (it failed, or did not run)."""
        if self.data_file is None:
            return None
        data = read_data(run_dir, self.data_file)
        if data is None:
            return (f"no plots/data/{self.data_file}: its data was not collected during the "
                    "run (the reporter failed or was not installed; the data needs the "
                    "models, so it cannot be rebuilt afterwards)")
        return str(data["skipped"]) if data.get("skipped") else None
