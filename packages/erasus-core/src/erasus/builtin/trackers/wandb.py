"""A Weights & Biases tracker: offline by default, so a run needs no account or network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin.trackers._common import numeric, published_name, run_entries
from erasus.errors import MissingDependencyError
from erasus.reporting import Tracker, TrackerParams

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["WandbParams", "WandbTracker"]

_INSTALL_HINT = ('the wandb tracker needs Weights & Biases; install it with: '
                 'pip install "erasus[wandb]"')
_EXIT_CODES = {"finished": 0, "failed": 1, "diverged": 1, "killed": 130, "interrupted": 130}
_ARTIFACT_TYPE = "erasus-run"


class WandbParams(TrackerParams):
    """Where the W&B tracker records a run."""

    project: str = Field("erasus", description="The W&B project.")
    entity: str | None = Field(
        None, description="The W&B user or team (default: your default entity).")
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline: write a local run folder that `wandb sync` uploads "
        "later (no account, no network); online: upload as the run goes (needs `wandb "
        "login` or WANDB_API_KEY); disabled: record nothing.")
    dir: str | None = Field(
        None, description="The folder in which W&B creates its `wandb/` folder of runs "
        "(default: $WANDB_DIR if set, else the working directory).")
    run_name: str | None = Field(
        None, description="The W&B run name. Default: the name of the run directory.")
    log_model: bool = Field(
        True, description="Include the unlearned model (the run directory's model/) in the "
        "run's artifact; turn off for large models.")
    tags: list[str] = Field(default_factory=list, description="Tags set on the W&B run.")


class WandbTracker(Tracker):
    """Records a run in Weights & Biases: config, per-step losses, final metrics, files.

    The W&B config is the run's resolved config; each training step's losses are logged
    at that step; the final metrics (``unlearned/UA`` ...) go to the run summary; the run
    directory's files (metrics.json, history, reports and, unless ``log_model`` is off,
    the model) are one artifact of type ``erasus-run``. In the default offline mode
    nothing leaves the machine: the run is a folder under ``<dir>/wandb/`` to upload
    later with ``wandb sync``.
    """

    name = "wandb"
    paper = None
    Params = WandbParams

    def __init__(self, params: WandbParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        _import_wandb()  # a missing wandb stops the run before any work, not midway
        self._run: Any = None

    @property
    def run(self) -> Any:
        """The ``wandb`` run once started (its ``dir``, ``id``...)."""
        return self._run

    def start(self, config: dict[str, Any]) -> None:
        wandb = _import_wandb()
        p = self.params
        if p.dir is not None:
            Path(p.dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=p.project, entity=p.entity, mode=p.mode, dir=p.dir,
            name=p.run_name or (config.get("run") or {}).get("name"), tags=p.tags,
            config=config,
            # another run in this process gets its own W&B run; no terminal capture
            reinit="create_new", settings=wandb.Settings(console="off"))

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        run = self._open()
        metrics = numeric(values)
        if step is None:  # the final metrics: what W&B shows for a run in its tables
            run.summary.update(metrics)
        else:
            run.log(metrics, step=step)

    def log_artifact(self, path: Path) -> None:
        wandb = _import_wandb()
        run = self._open()
        run_dir = Path(path)
        name = published_name(run_dir)
        if self.params.run_name is None:
            run.name = name
        artifact = wandb.Artifact(_artifact_name(name), type=_ARTIFACT_TYPE)
        for entry in run_entries(run_dir, include_model=self.params.log_model):
            if entry.is_dir():
                artifact.add_dir(str(entry), name=entry.name)
            else:
                artifact.add_file(str(entry))
        run.log_artifact(artifact)

    def end(self, status: str) -> None:
        if status not in _EXIT_CODES:
            raise ValueError(f"unknown run status {status!r}; expected one of "
                             f"{', '.join(sorted(_EXIT_CODES))}")
        run = self._open()
        self._run = None
        run.finish(exit_code=_EXIT_CODES[status])

    def _open(self) -> Any:
        if self._run is None:
            raise RuntimeError("the wandb tracker has no open run: call start() first")
        return self._run


def _artifact_name(run_name: str) -> str:
    """An artifact name W&B accepts (letters, digits, ``-``, ``_``, ``.``)."""
    return ("run-" + re.sub(r"[^\w.\-]", "_", run_name))[:128]


def _import_wandb() -> ModuleType:
    try:
        import wandb
    except ImportError:
        raise MissingDependencyError(_INSTALL_HINT) from None
    return wandb
