"""The built-in experiment trackers (MLflow, Weights & Biases) on real runs, read back.

A run of the bundled digits benchmark (one unlearning epoch) is tracked into a local
MLflow SQLite store or an offline W&B run folder; the tests then read the store (the
MLflow client) or the offline run file (its protobuf records) and compare what they find
with the run directory's metrics.json and history.json.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import erasus
import pytest
from erasus.errors import ConfigError, MissingDependencyError
from erasus.plugins import get_plugin_manager

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
#: the quickstart with one unlearning epoch and pinned components (see test_pipeline.py)
SMALL = ["strategy.epochs=1", "strategy.name=gradient_difference", "strategy.batch_size=64",
         "selector.name=full", "oracle.strategy=retrain",
         "metrics=[accuracy, mia_efficacy, mia, avg_gap, time, memory]"]
ROLES = ("original", "unlearned", "oracle", "run")


@pytest.fixture(scope="module")
def cache_override(tmp_path_factory: pytest.TempPathFactory) -> str:
    # the directory conftest points ERASUS_CACHE_DIR at: originals are trained once
    return f"run.cache_dir={tmp_path_factory.getbasetemp() / 'cache'}"


def tracked_run(output: Path, cache_override: str, *tracking: str) -> Any:
    return erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, *tracking],
                      output=output, plugin_manager=get_plugin_manager(entrypoints=False),
                      progress=False)


def final_metrics(run_dir: Path) -> dict[str, float]:
    """metrics.json's values as the pipeline hands them to a tracker (``role/name``)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {f"{role}/{k}": v for role in ROLES for k, v in metrics.get(role, {}).items()}


def history_steps(run_dir: Path) -> list[dict[str, float]]:
    return json.loads((run_dir / "history.json").read_text())["steps"]


# -- registration and configuration --------------------------------------------------------
def test_both_trackers_are_builtin_components() -> None:
    from erasus.builtin.trackers import MLflowTracker, WandbTracker

    registry = get_plugin_manager(entrypoints=False).registry
    assert registry.get("tracker", "mlflow").cls is MLflowTracker
    assert registry.get("tracker", "wandb").cls is WandbTracker
    assert registry.get("tracker", "mlflow").plugin == registry.get("strategy", "npo").plugin


def test_an_unknown_tracker_is_a_config_error_naming_tracking(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        erasus.run(QUICKSTART, overrides=["tracking.name=mlfow"], output=tmp_path / "run",
                   plugin_manager=get_plugin_manager(entrypoints=False), progress=False)
    assert [p.path for p in caught.value.problems] == ["tracking.name"]
    assert "did you mean 'mlflow'" in str(caught.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_package_names_the_extra(name: str, tmp_path: Path, cache_override: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from erasus.builtin.trackers import MLflowTracker, WandbTracker

    monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails
    cls = {"mlflow": MLflowTracker, "wandb": WandbTracker}[name]
    hint = f'pip install "erasus[{name}]"'
    with pytest.raises(MissingDependencyError, match=f"{name}.*{hint}".replace("[", r"\[")):
        cls()
    # in a run, the tracker fails when it is created: before any training, not midway
    with pytest.raises(MissingDependencyError, match=hint.replace("[", r"\[")):
        tracked_run(tmp_path / "run", cache_override, f"tracking.name={name}")
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / ".run.partial").exists()  # nothing was written


# -- MLflow --------------------------------------------------------------------------------
def test_mlflow_records_the_run(tmp_path: Path, cache_override: str) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    final = tmp_path / "tracked"
    result = tracked_run(final, cache_override, "tracking.name=mlflow",
                         f"tracking.tracking_uri={uri}", "tracking.experiment=digits",
                         "tracking.tags.owner=tests")
    assert "tracker_error" not in result.metrics["run_info"]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    # artifacts live beside the database, not in whatever the working directory was
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "digits").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == final.name

    params = run.data.params
    assert params["strategy.name"] == "gradient_difference"
    assert params["strategy.epochs"] == "1"
    assert params["seed"] == "0"
    assert params["metrics.0.name"] == "accuracy"
    assert params["tracking.tracking_uri"] == uri

    tags = run.data.tags
    assert tags["erasus.strategy"] == "gradient_difference"
    assert tags["erasus.selector"] == "full"
    assert tags["erasus.model"] == "classifier"
    assert tags["erasus.data"] == "digits"
    assert tags["erasus.version.erasus"] == erasus.__version__
    assert tags["owner"] == "tests"

    # every training step's losses, at their steps, as history.json has them
    steps = history_steps(final)
    assert len(steps) == result.history.num_steps > 1
    for key in steps[0]:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, len(steps) + 1)), key
        assert [m.value for m in history] == [s[key] for s in steps], key

    # the final metrics equal metrics.json's
    expected = final_metrics(final)
    assert {"unlearned/UA", "oracle/TA", "run/avg_gap"} <= expected.keys()
    for key, value in expected.items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-12), key

    # the published run's files, without the transient checkpoint
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "history.json", "selection.json", "config.resolved.yaml",
            "report.md", "model"} <= listed
    assert not listed & {"checkpoint", "run_state.json"}
    model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.safetensors" in model
    local = Path(client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path)))
    assert json.loads(local.read_text()) == json.loads((final / "metrics.json").read_text())


def test_a_failing_mlflow_store_does_not_lose_the_run(tmp_path: Path, cache_override: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    log_batch = MlflowClient.log_batch

    def failing(self: Any, run_id: str, metrics: Any = (), *args: Any, **kwargs: Any) -> Any:
        if any(m.step == 2 for m in metrics or ()):
            raise ConnectionError("tracking server went away")
        return log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", failing)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    final = tmp_path / "tracked"
    result = tracked_run(final, cache_override, "tracking.name=mlflow",
                         f"tracking.tracking_uri={uri}")
    # the run directory is published complete; the failure is recorded, not fatal
    assert result.run_dir == final
    assert (final / "model" / "model.safetensors").is_file()
    assert not (final.parent / f".{final.name}.partial").exists()
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["run_info"]["tracker_error"] == "ConnectionError: tracking server went away"
    assert "tracking server went away" in (final / "run.log").read_text()
    # what reached MLflow before the failure is there
    (run,) = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("erasus").experiment_id])
    assert [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(
        run.info.run_id, "loss")] == [1]


def _fake_run_dir(root: Path) -> Path:
    """A working run directory as the pipeline hands it to ``log_artifact``."""
    work = root / ".fake-run.partial"
    (work / "model").mkdir(parents=True)
    (work / "model" / "model.safetensors").write_bytes(b"weights")
    (work / "checkpoint").mkdir()
    (work / "checkpoint" / "optimizer.pt").write_bytes(b"state")
    (work / "run_state.json").write_text("{}")
    (work / "metrics.json").write_text('{"unlearned": {"UA": 1.0}}')
    return work


def test_mlflow_file_store_limits_and_names(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from erasus.builtin.trackers import MLflowTracker
    from mlflow.tracking import MlflowClient

    # MLflow 3 keeps the file store only on request
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "store"
    config = {"seed": 1, "strategy": {"name": "npo", "note": "x" * 7000},
              "many": {f"k{i}": i for i in range(150)}}
    tracker = MLflowTracker(tracking_uri=str(store), log_model=False, run_name="named")
    tracker.start(config)
    tracker.log_metrics({"a:b|c": 1.0, "/odd//name/": 2.0, "skipped": None, "flag": True},
                        step=1)
    tracker.log_metrics({f"m{i}": float(i) for i in range(1200)})
    tracker.log_artifact(_fake_run_dir(tmp_path))
    tracker.end("failed")

    client = MlflowClient(tracking_uri=store.as_uri())
    assert tracker.run_id is not None
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.info.run_name == "named"  # an explicit name is kept
    params = run.data.params
    assert len([k for k in params if k.startswith("many.")]) == 150  # more than one batch
    note = params["strategy.note"]
    assert len(note) == 6000 and note.endswith("[truncated by erasus: 7000 characters in all]")
    metrics = run.data.metrics
    assert metrics["a_b_c"] == 1.0 and metrics["odd/name"] == 2.0
    assert "skipped" not in metrics and "flag" not in metrics
    assert len([k for k in metrics if k.startswith("m")]) == 1200
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert listed == {"metrics.json"}  # no model (log_model off), no checkpoint or state


def test_mlflow_tracking_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from erasus.builtin.trackers.mlflow import param_value, resolve_uri, valid_key

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_uri(None) == "http://mlflow:5000"
    assert resolve_uri("runs.db") == f"sqlite:///{tmp_path.resolve() / 'runs.db'}"
    assert resolve_uri("store") == (tmp_path.resolve() / "store").as_uri()
    assert resolve_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_uri("databricks") == "databricks"
    assert valid_key("unlearned/UA") == "unlearned/UA"
    assert valid_key("../a/./b") == "__/a/b"
    assert param_value("short") == "short"


# -- Weights & Biases ----------------------------------------------------------------------
@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """W&B quiet, its caches in tmp_path, no credentials; yields the outside connections
    this process tried (none are made: they raise)."""
    pytest.importorskip("wandb")
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        local = self.family == socket.AF_UNIX or (
            isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost"))
        if not local:
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts


def wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline W&B run file (``run-<id>.wandb``).

    The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0),
    then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length, type: 1 full,
    2 first, 3 middle, 4 last); a chunk's payload is a serialised ``Record`` protobuf.
    """
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    block, pos, pending, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _items(entries: Any) -> dict[str, Any]:
    """``{key: value}`` of W&B history/summary/config items (keys joined with ``/``)."""
    return {(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
            for item in entries}


def test_wandb_offline_records_the_run(tmp_path: Path, cache_override: str,
                                       wandb_env: list[Any]) -> None:
    wandb_dir = tmp_path / "tracking"
    final = tmp_path / "tracked"
    result = tracked_run(final, cache_override, "tracking.name=wandb",
                         f"tracking.dir={wandb_dir}", "tracking.project=digits",
                         "tracking.tags=[tests]")
    assert "tracker_error" not in result.metrics["run_info"]
    assert wandb_env == []  # nothing tried to leave the machine

    (run_folder,) = (wandb_dir / "wandb").glob("offline-run-*")
    (run_file,) = run_folder.glob("run-*.wandb")
    records = wandb_records(run_file)
    by_type: dict[str, list[Any]] = {}
    for record in records:
        by_type.setdefault(record.WhichOneof("record_type"), []).append(record)

    first = by_type["run"][0].run
    assert first.project == "digits" and list(first.tags) == ["tests"]
    config = _items(first.config.update)
    assert config["strategy"]["name"] == "gradient_difference"
    assert config["seed"] == 0
    # the run is renamed after its run directory once that is known
    assert by_type["run"][-1].run.display_name == final.name

    # every training step's losses, at their steps, as history.json has them
    steps = history_steps(final)
    rows = {int(r.history.step.num): _items(r.history.item) for r in by_type["history"]}
    assert sorted(rows) == list(range(1, len(steps) + 1))
    for number, step in enumerate(steps, start=1):
        assert {k: rows[number][k] for k in step} == step

    # the final metrics are in the run summary, equal to metrics.json's
    summary: dict[str, Any] = {}
    for record in by_type["summary"]:
        summary.update(_items(record.summary.update))
    expected = final_metrics(final)
    assert {"unlearned/UA", "oracle/TA"} <= expected.keys()
    assert {k: summary[k] for k in expected} == pytest.approx(expected, rel=1e-12)

    # the run directory is one artifact, without the transient checkpoint
    (artifact,) = [r.artifact for r in by_type["artifact"]]
    assert artifact.type == "erasus-run" and artifact.name == f"run-{final.name}"
    files = {c.path for c in artifact.manifest.contents}
    assert {"metrics.json", "history.json", "report.md", "model/model.safetensors"} <= files
    assert not any(f.startswith("checkpoint/") or f == "run_state.json" for f in files)

    assert by_type["exit"][0].exit.exit_code == 0


def test_wandb_tracker_ends_a_failed_run_with_an_error_code(tmp_path: Path,
                                                            wandb_env: list[Any]) -> None:
    from erasus.builtin.trackers import WandbTracker

    tracker = WandbTracker(dir=str(tmp_path / "w"), run_name="named", log_model=False)
    tracker.start({"strategy": {"name": "npo"}})
    tracker.log_metrics({"loss": 1.5, "skipped": None}, step=1)
    tracker.log_artifact(_fake_run_dir(tmp_path))
    tracker.end("failed")
    (run_file,) = (tmp_path / "w" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {r.display_name for r in runs} == {"named"}
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert {c.path for c in artifact.manifest.contents} == {"metrics.json"}
    (history,) = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    assert _items(history.item)["loss"] == 1.5 and "skipped" not in _items(history.item)
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 1
    assert wandb_env == []
