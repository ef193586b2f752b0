"""Reporter and Tracker base classes: where a run's results go."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Component, Params

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.data import Splits

__all__ = ["ReportContext", "Reporter", "ReporterParams", "RunSummary", "Tracker",
           "TrackerParams", "build_reports", "read_summary"]

#: What a run can record for reporters beyond its metrics (``Reporter.records``).
RECORDS = frozenset({"gradient_norms"})


class RunSummary(dict):
    """What reporters receive: ``config``, ``metrics``, ``history``, ``selection``, timings."""


def read_summary(run_dir: str | Path) -> RunSummary:
    """The :class:`RunSummary` of a finished run directory, read from the files the run
    wrote (``config.resolved.yaml``, ``metrics.json``, ``history.json``,
    ``selection.json``): what ``erasus report`` passes to reporters."""
    import yaml

    from erasus.errors import RunDirectoryError

    run_dir = Path(run_dir)
    config_file = run_dir / "config.resolved.yaml"
    if not config_file.is_file():
        raise RunDirectoryError(f"'{run_dir}' is not a run directory (no "
                                "config.resolved.yaml)")

    def read_json(name: str) -> Any:
        path = run_dir / name
        if not path.is_file():
            raise RunDirectoryError(f"run directory '{run_dir}' has no {name}; it is not a "
                                    "finished run")
        return json.loads(path.read_text())

    return RunSummary(config=yaml.safe_load(config_file.read_text()),
                      metrics=read_json("metrics.json"), history=read_json("history.json"),
                      selection=read_json("selection.json"))


@dataclass
class ReportContext:
    """What :meth:`Reporter.collect` gets at the end of a run: the models by role
    (``original``, ``unlearned``, ``oracle``; ``None`` when there is none), the run's
    data splits, its seed and the evaluation batch size."""

    models: dict[str, ModelAdapter | None]
    splits: Splits
    seed: int = 0
    batch_size: int = 256
    extra: dict[str, Any] = field(default_factory=dict)


class ReporterParams(Params):
    """Parameters every reporter accepts."""


class Reporter(Component):
    """Writes files into the (not yet published) run directory from a finished run.

    A reporter whose output needs the models (features, per-example losses) records that
    data in :meth:`collect`, which the run calls with the models; :meth:`report` must
    then build its files from the run directory and the summary alone, so ``erasus
    report RUN_DIR`` rebuilds them without re-running anything. Reporters run in
    ascending ``order`` (a report that embeds the others' files comes last). ``records``
    names what the run must record for the reporter (``"gradient_norms"``: per-layer
    gradient norms during unlearning, in ``history.json``).
    """

    Params: ClassVar[type[Params]] = ReporterParams
    order: ClassVar[int] = 0
    records: ClassVar[frozenset[str]] = frozenset()

    def collect(self, run_dir: Path, context: ReportContext) -> list[Path]:
        """Record the data :meth:`report` needs from the models under ``run_dir``; return
        the paths written (default: nothing)."""
        return []

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        """Write report files under ``run_dir``; return the paths written."""
        raise NotImplementedError

    def compare(self, run_dirs: list[Path], summaries: list[RunSummary], out_dir: Path
                ) -> list[Path]:
        """Write files comparing several finished runs under ``out_dir`` (``erasus report
        RUN_DIR RUN_DIR...``); return the paths written (default: nothing)."""
        return []


def build_reports(run_dirs: list[Path], *, output: Path, only: list[str] | None = None,
                  plugin_manager: Any = None) -> list[Path]:
    """What ``erasus report`` does: each run directory's reporters (those of its resolved
    config, with their parameters; with ``only``, those registered names) rebuild their
    files from the saved run, and for several runs every installed reporter (or ``only``)
    writes its comparison under ``output``. Returns the paths written; a reporter that
    fails raises, naming it and the run."""
    from erasus.config import load_config
    from erasus.errors import ErasusError, RunDirectoryError
    from erasus.plugins import get_plugin_manager, using_registry

    pm = plugin_manager or get_plugin_manager()
    registry = pm.registry
    if only:
        unknown = [n for n in only if n not in registry.names("reporter")]
        if unknown:
            raise RunDirectoryError(
                f"unknown reporter(s) {', '.join(unknown)}; installed reporters: "
                f"{', '.join(registry.names('reporter')) or 'none'}")
    written: list[Path] = []
    summaries = []
    dirs = [Path(d) for d in run_dirs]
    with using_registry(registry):
        for run_dir in dirs:
            summary = read_summary(run_dir)
            summaries.append(summary)
            if only:
                reporters = [registry.get("reporter", n).cls(
                    registry.get("reporter", n).params_model()) for n in only]
            else:
                resolved = load_config(run_dir / "config.resolved.yaml", registry)
                reporters = [rc.create() for rc in resolved.reporters]
            for reporter in sorted(reporters, key=lambda r: type(r).order):
                try:
                    written += reporter.report(run_dir, summary)
                except ErasusError:
                    raise
                except Exception as exc:
                    raise RunDirectoryError(
                        f"reporter '{reporter.name}' failed on '{run_dir}': "
                        f"{type(exc).__name__}: {exc}") from exc
        if len(dirs) > 1:
            names = only or registry.names("reporter")
            for name in names:
                info = registry.get("reporter", name)
                reporter = info.cls(info.params_model())
                written += reporter.compare(dirs, summaries, Path(output))
    return written


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
