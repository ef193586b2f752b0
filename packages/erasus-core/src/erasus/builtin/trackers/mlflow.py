"""An MLflow tracker: the run's config, losses, final metrics and files in an MLflow store."""

from __future__ import annotations

import atexit
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pydantic import Field

from erasus.builtin.trackers._common import (
    as_text,
    component_names,
    erasus_versions,
    flatten,
    numeric,
    published_name,
    run_entries,
)
from erasus.errors import MissingDependencyError
from erasus.reporting import Tracker, TrackerParams

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["MLflowParams", "MLflowTracker", "param_value", "resolve_uri", "valid_key"]

_INSTALL_HINT = 'the mlflow tracker needs MLflow; install it with: pip install "erasus[mlflow]"'
#: MLflow's limits (mlflow.utils.validation), fixed here so that no import is needed.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_TRUNCATED = "... [truncated by erasus: {n} characters in all]"
#: Characters MLflow accepts in metric and param names on every platform.
_INVALID_KEY_CHARS = re.compile(r"[^/\w.\- ]")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "diverged": "FAILED",
             "killed": "KILLED", "interrupted": "KILLED"}


class MLflowParams(TrackerParams):
    """Where the MLflow tracker records a run."""

    tracking_uri: str | None = Field(
        None, description="The MLflow tracking store: a URI (sqlite:///path/mlflow.db, "
        "http://host:5000, databricks, file:///dir) or a path (a path ending in .db is a SQLite "
        "store, any other path a file store directory). Default: $MLFLOW_TRACKING_URI if set, "
        "else sqlite:///mlflow.db in the working directory (MLflow's own default).")
    experiment: str = Field("erasus", description="The MLflow experiment; created if missing.")
    run_name: str | None = Field(
        None, description="The MLflow run name. Default: the name of the run directory.")
    artifact_location: str | None = Field(
        None, description="Where an experiment this tracker creates keeps its artifacts. "
        "Default: mlartifacts/<experiment> beside a SQLite store, else the store's default.")
    log_model: bool = Field(
        True, description="Upload the unlearned model (the run directory's model/) with the "
        "other run files; turn off for large models.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags set on the MLflow run.")


class MLflowTracker(Tracker):
    """Records a run in MLflow: the resolved config, per-step losses, final metrics, files.

    Params are the resolved config flattened to dotted keys (``strategy.lr``); each
    training step's losses are metrics at that step; the final metrics are
    ``role/name`` metrics (``unlearned/UA``); the run directory's files (metrics.json,
    history, reports and, unless ``log_model`` is off, the model) are artifacts; tags name
    the strategy, selector, model, data and the installed erasus distributions' versions.
    """

    name = "mlflow"
    paper = None
    Params = MLflowParams

    def __init__(self, params: MLflowParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        _import_mlflow()  # a missing MLflow stops the run before any work, not midway
        self._client: MlflowClient | None = None
        self._run_id: str | None = None  # while the run is open
        self.run_id: str | None = None
        """The MLflow run's id once started (kept after the run ends)."""
        self._named = self.params.run_name is not None

    def start(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        uri = resolve_uri(self.params.tracking_uri)
        client = _import_mlflow()(tracking_uri=uri)
        experiment_id = self._experiment_id(client, uri)
        tags = {**{f"erasus.{k}": v for k, v in component_names(config).items()},
                **{f"erasus.version.{d}": v for d, v in erasus_versions().items()},
                **self.params.tags}
        run_name = self.params.run_name or (config.get("run") or {}).get("name")
        run = client.create_run(experiment_id, run_name=run_name)
        self._client = client
        self._run_id = self.run_id = run.info.run_id
        atexit.register(self._end_at_exit)
        params: dict[str, str] = {}
        for key, value in flatten(config).items():
            params[valid_key(key)] = param_value(as_text(value))
        entries: list[Any] = [RunTag(k, v) for k, v in tags.items()]
        entries += [Param(k, v) for k, v in params.items()]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(self._run_id, params=[e for e in chunk if isinstance(e, Param)],
                             tags=[e for e in chunk if isinstance(e, RunTag)])

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        client, run_id = self._open()
        now = int(time.time() * 1000)
        metrics = [Metric(valid_key(k), v, now, step or 0) for k, v in numeric(values).items()]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=chunk)

    def log_artifact(self, path: Path) -> None:
        client, run_id = self._open()
        run_dir = Path(path)
        if not self._named:
            client.set_tag(run_id, "mlflow.runName", published_name(run_dir))
        for entry in run_entries(run_dir, include_model=self.params.log_model):
            if entry.is_dir():
                client.log_artifacts(run_id, str(entry), artifact_path=entry.name)
            else:
                client.log_artifact(run_id, str(entry))

    def end(self, status: str) -> None:
        if status not in _STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of "
                             f"{', '.join(sorted(_STATUSES))}")
        client, run_id = self._open()
        client.set_terminated(run_id, _STATUSES[status])
        self._run_id = None
        atexit.unregister(self._end_at_exit)

    def _open(self) -> tuple[MlflowClient, str]:
        if self._client is None or self._run_id is None:
            raise RuntimeError("the mlflow tracker has no open run: call start() first")
        return self._client, self._run_id

    def _end_at_exit(self) -> None:
        # the process exits with the run still open (the pipeline raised): mark it failed
        # rather than leave it RUNNING forever
        if self._client is not None and self._run_id is not None:
            try:
                self._client.set_terminated(self._run_id, "FAILED")
            except Exception:  # the store may be gone by now; nothing else to do at exit
                pass

    def _experiment_id(self, client: MlflowClient, uri: str) -> str:
        from mlflow.exceptions import MlflowException

        name = self.params.experiment
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = self.params.artifact_location or _default_artifacts(uri, name)
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another process created it meanwhile
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage != "active":
            raise ValueError(f"the MLflow experiment {name!r} is deleted; restore it "
                             f"(mlflow experiments restore --experiment-id "
                             f"{experiment.experiment_id}) or choose another experiment name")
        return experiment.experiment_id


def resolve_uri(uri: str | None) -> str:
    """The tracking URI a ``tracking_uri`` param stands for (see :class:`MLflowParams`)."""
    import os

    if uri is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri is None:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if "://" in uri or uri.startswith(("databricks", "sqlite:", "file:")):
        return uri
    path = Path(uri).expanduser().resolve()
    return f"sqlite:///{path}" if path.suffix in _SQLITE_SUFFIXES else path.as_uri()


def valid_key(key: str) -> str:
    """A metric or param name MLflow accepts: other characters become ``_``, and the name
    is a normalised relative path (``unlearned/UA`` stays as it is)."""
    cleaned = _INVALID_KEY_CHARS.sub("_", key)
    parts = [("__" if p == ".." else p) for p in cleaned.split("/") if p not in ("", ".")]
    return ("/".join(parts) or "_")[:MAX_KEY].rstrip("/") or "_"


def param_value(value: str) -> str:
    """``value`` within MLflow's param length limit, visibly truncated when longer."""
    if len(value) <= MAX_PARAM_VALUE:
        return value
    marker = _TRUNCATED.format(n=len(value))
    return value[:MAX_PARAM_VALUE - len(marker)] + marker


def _default_artifacts(tracking_uri: str, experiment: str) -> str | None:
    """``mlartifacts/<experiment>`` beside a SQLite file (MLflow would use ./mlruns of
    whatever the working directory is); None (the store's default) for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = unquote(urlparse(tracking_uri).path)
    if not db or db == "/:memory:":
        return None
    # sqlite:///relative.db has the path "/relative.db", sqlite:////abs.db "//abs.db"
    db_path = Path(db[1:]).resolve()
    folder = re.sub(r"[^\w.\-]", "_", experiment) or "experiment"
    return (db_path.parent / "mlartifacts" / folder).as_uri()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _import_mlflow() -> type[MlflowClient]:
    try:
        import mlflow  # noqa: F401  (the top-level import fails when MLflow is missing)
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MissingDependencyError(_INSTALL_HINT) from None
    return MlflowClient
