"""The run pipeline end to end on the bundled digits benchmark (small settings).

Covers the atomic run directory, reproducibility, coreset selection records, refusal to
overwrite, the never-modified input model, lifecycle hooks, the divergence guard, kill
and resume, tracker failures, and what reports get: the structured JSON log, gradient
norms on request, reporter order and failures, ``erasus report``. Originals and oracles
are trained once per session in the shared cache (the quickstart's training recipe, so
every test file reuses them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import erasus
import pytest
import yaml
from erasus.checkpoint import CheckpointStore
from erasus.errors import DivergenceError, RunDirectoryError
from erasus.plugins import get_plugin_manager
from erasus.reporting import ReportContext, Reporter, RunSummary, Tracker, read_summary
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
#: what the tests below rely on, pinned so that retuning the quickstart cannot break them
PINNED = ["strategy.name=gradient_difference", "strategy.batch_size=64", "selector.name=full",
          "oracle.strategy=retrain", "metrics=[accuracy, mia_efficacy, mia, avg_gap, time, memory]"]
SMALL = ["strategy.epochs=1", *PINNED]
#: run-level values that measure time or memory, so differ between identical runs
TIMING = {"unlearn_seconds", "oracle_seconds", "rte_ratio", "peak_host_mb", "peak_device_mb"}
ROLES = ("original", "unlearned", "oracle")


def _cache_override(tmp_path_factory: pytest.TempPathFactory) -> str:
    # the same directory conftest points ERASUS_CACHE_DIR at, usable before it is set
    return f"run.cache_dir={tmp_path_factory.getbasetemp() / 'cache'}"


def builtin_pm(*plugins: tuple[str, object]) -> Any:
    """A plugin manager with the built-in plugin (and ``plugins``) only."""
    return get_plugin_manager(entrypoints=False, plugins=plugins)


def stable(metrics: dict[str, Any]) -> dict[str, Any]:
    """The values of metrics.json that do not depend on timing or memory."""
    out: dict[str, Any] = {role: metrics[role] for role in ROLES if role in metrics}
    out["run"] = {k: v for k, v in metrics.get("run", {}).items() if k not in TIMING}
    out["details"] = {k: v for k, v in metrics.get("details", {}).items() if k != "run"}
    return out


def load_weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def assert_same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def tree_hashes(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def call_cli(argv: list[str]) -> int:
    from erasus.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def partial_of(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


@pytest.fixture(scope="module")
def cache_override(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _cache_override(tmp_path_factory)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory, cache_override: str) -> Any:
    """One quickstart run with one unlearning epoch (trains original/oracle once)."""
    out = tmp_path_factory.mktemp("pipeline") / "base"
    return erasus.run(QUICKSTART, overrides=[*SMALL, cache_override], output=out,
                      plugin_manager=builtin_pm(), progress=False)


@pytest.fixture
def only_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs through the CLI see only the built-in plugin and print on a wide console."""
    import erasus.cli.app as cli_app
    from rich.console import Console

    monkeypatch.setenv("ERASUS_PLUGINS", "")
    monkeypatch.setenv("ERASUS_DEBUG", "0")
    monkeypatch.setattr(cli_app, "out", Console(width=400))
    monkeypatch.setattr(cli_app, "err", Console(stderr=True, width=400))


# -- the run directory ------------------------------------------------------------------
def test_run_directory_is_complete_and_published_atomically(base_run: Any) -> None:
    final: Path = base_run.run_dir
    names = {p.name for p in final.iterdir()}
    assert {"config.resolved.yaml", "metrics.json", "history.json", "selection.json",
            "model", "run.log", "report.md"} <= names
    assert "checkpoint" not in names            # removed once the run finished
    assert "run_state.json" not in names        # bookkeeping of the partial dir only
    assert not partial_of(final).exists()
    assert not [p for p in final.parent.iterdir() if p.name.endswith(".partial")]

    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(base_run.metrics, default=float))
    for role in ROLES:
        assert {"UA", "RA", "TA", "MIA_efficacy", "mia_auc"} <= set(metrics[role])
    assert {"avg_gap", "unlearn_seconds", "oracle_seconds", "rte_ratio", "peak_host_mb",
            "peak_device_mb"} <= set(metrics["run"])
    history = json.loads((final / "history.json").read_text())
    assert len(history["steps"]) == base_run.history.num_steps == metrics["run_info"]["steps"]
    assert [s["step"] for s in history["steps"]] == list(range(1, len(history["steps"]) + 1))

    weights = load_weights(final / "model")
    assert weights and all(bool(w.isfinite().all()) for w in weights.values())
    resolved = yaml.safe_load((final / "config.resolved.yaml").read_text())
    assert resolved["strategy"]["name"] == "gradient_difference"
    assert resolved["strategy"]["epochs"] == 1
    # every default is filled in
    from erasus.builtin.strategies.gradient_difference import GradientDifferenceParams

    defaults = GradientDifferenceParams().model_dump(mode="json")
    assert {k: v for k, v in resolved["strategy"].items() if k not in ("name", "epochs")} == \
        {k: v for k, v in defaults.items() if k != "epochs"}
    assert "unlearning took" in (final / "run.log").read_text()
    assert (final / "report.md").read_text().strip()


def test_resolved_config_reruns_to_the_same_metrics_and_weights(base_run: Any,
                                                                tmp_path: Path) -> None:
    again = erasus.run(base_run.run_dir / "config.resolved.yaml", output=tmp_path / "again",
                       plugin_manager=builtin_pm(), progress=False)
    assert stable(again.metrics) == stable(base_run.metrics)
    assert again.history.steps == base_run.history.steps
    assert_same_weights(load_weights(again.run_dir / "model"),
                        load_weights(base_run.run_dir / "model"))
    # the same configuration resolves to the same file
    assert (again.run_dir / "config.resolved.yaml").read_text() == \
        (base_run.run_dir / "config.resolved.yaml").read_text()


def test_same_seed_gives_identical_metrics(base_run: Any, tmp_path: Path,
                                           cache_override: str) -> None:
    twin = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override], output=tmp_path / "twin",
                      plugin_manager=builtin_pm(), progress=False)
    assert stable(twin.metrics) == stable(base_run.metrics)
    # ... while the timing values are real measurements
    assert twin.metrics["run"]["unlearn_seconds"] > 0
    # the comparison is sensitive: another learning rate unlearns differently
    other = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, "strategy.lr=0.01"],
                       output=tmp_path / "other", plugin_manager=builtin_pm(), progress=False)
    assert other.metrics["original"] == base_run.metrics["original"]
    assert other.metrics["unlearned"] != base_run.metrics["unlearned"]


def _digits_forget_indices(seed: int = 0) -> list[int]:
    from erasus.builtin.datasets.digits import Digits

    return Digits().load(seed=seed).forget_indices


def test_selection_full_is_the_forget_set(base_run: Any) -> None:
    selection = json.loads((base_run.run_dir / "selection.json").read_text())
    forget = _digits_forget_indices()
    assert selection["train_indices"] == forget
    assert selection["indices"] == list(range(len(forget)))
    assert len(forget) == 135


def test_selection_random_half_is_a_subset(base_run: Any, tmp_path: Path,
                                           cache_override: str) -> None:
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, "selector.name=random",
                                               "selector.budget=0.5"],
                        output=tmp_path / "random", plugin_manager=builtin_pm(), progress=False)
    selection = json.loads((result.run_dir / "selection.json").read_text())
    forget = _digits_forget_indices()
    train_indices = selection["train_indices"]
    assert len(train_indices) == len(set(train_indices)) == math.ceil(0.5 * len(forget))
    assert set(train_indices) < set(forget)
    positions = selection["indices"]
    assert positions == sorted(positions)
    assert train_indices == [forget[i] for i in positions]
    # only the coreset was unlearned: 68 examples in batches of 64 is 2 steps, not 3
    assert result.history.num_steps == 2 < base_run.history.num_steps


def test_existing_output_directory_is_refused(tmp_path: Path, capsys: Any,
                                              only_builtin: None, cache_override: str) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    before = tree_hashes(out)
    code = call_cli(["run", str(QUICKSTART), *[a for o in SMALL for a in ("--set", o)],
                     "--set", cache_override, "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "already exists" in err and str(out) in err
    assert "Traceback" not in err
    assert tree_hashes(out) == before
    assert not partial_of(out).exists()
    with pytest.raises(RunDirectoryError, match="already exists"):
        erasus.run(QUICKSTART, overrides=SMALL, output=out, plugin_manager=builtin_pm())


def test_the_input_model_is_never_modified(base_run: Any, tmp_path: Path,
                                           cache_override: str) -> None:
    import shutil

    model_dir = tmp_path / "input-model"
    shutil.copytree(base_run.run_dir / "model", model_dir)
    before = tree_hashes(model_dir)
    mtimes = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, f"model.path={model_dir}",
                                               "oracle=null", "metrics=[accuracy]",
                                               "strategy.epochs=2"],
                        output=tmp_path / "second", plugin_manager=builtin_pm(), progress=False)
    assert tree_hashes(model_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == mtimes
    # the run did start from that model, and unlearned a copy of it
    for key in ("UA", "RA", "TA"):
        assert result.metrics["original"][key] == base_run.metrics["unlearned"][key]
    unlearned = load_weights(result.run_dir / "model")
    given = load_weights(model_dir)
    assert any(not bool((unlearned[k] == given[k]).all()) for k in given)
    assert "oracle" not in result.metrics


# -- lifecycle hooks ---------------------------------------------------------------------
class Recorder:
    """An in-process plugin that records every lifecycle hook call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @erasus.hookimpl
    def erasus_run_start(self, run: Any) -> None:
        self.events.append(("start", {"run_dir": Path(run.run_dir), "seed": run.seed,
                                      "config": run.config,
                                      "dir_exists": Path(run.run_dir).is_dir()}))

    @erasus.hookimpl
    def erasus_step_end(self, run: Any, step: int, losses: dict[str, float]) -> None:
        self.events.append(("step", {"step": step, "losses": dict(losses),
                                     "run_dir": Path(run.run_dir)}))

    @erasus.hookimpl
    def erasus_run_end(self, run: Any, metrics: dict[str, Any]) -> None:
        self.events.append(("end", {"run_dir": Path(run.run_dir), "metrics": metrics,
                                    "published": (Path(run.run_dir) / "metrics.json").is_file()}))


def test_lifecycle_hooks_see_start_every_step_and_end(tmp_path: Path,
                                                      cache_override: str) -> None:
    recorder = Recorder()
    pm = builtin_pm(("recorder", recorder))
    assert pm.records["recorder"].status == "loaded"
    final = tmp_path / "hooked"
    result = erasus.run(QUICKSTART, overrides=[*PINNED, cache_override, "strategy.epochs=2",
                                                 "seed=0"],
                        output=final, plugin_manager=pm, progress=False)
    kinds = [kind for kind, _ in recorder.events]
    n = result.history.num_steps
    assert n == 6  # 135 forget examples, batches of 64, two epochs
    assert kinds == ["start", *["step"] * n, "end"]

    start = recorder.events[0][1]
    assert start["seed"] == 0
    assert start["config"]["strategy"]["name"] == "gradient_difference"
    assert start["config"]["strategy"]["epochs"] == 2
    # the run works in the hidden partial directory; the final one appears only at the end
    assert start["run_dir"] == partial_of(final) and start["dir_exists"]

    steps = [info for kind, info in recorder.events if kind == "step"]
    assert [s["step"] for s in steps] == list(range(1, n + 1))
    for info, logged in zip(steps, result.history.steps, strict=True):
        assert {"loss", "forget_loss", "retain_loss"} <= set(info["losses"])
        assert info["losses"] == logged
        assert all(math.isfinite(v) for v in info["losses"].values())
        assert info["run_dir"] == partial_of(final)

    end = recorder.events[-1][1]
    assert end["run_dir"] == final == result.run_dir
    assert end["published"]
    assert end["metrics"] == result.metrics
    assert end["metrics"]["unlearned"]["UA"] == result.metrics["unlearned"]["UA"]


# -- the divergence guard ----------------------------------------------------------------
class NanParams(LoopParams):
    """Parameters of the NaN-injecting test strategy."""

    nan_step: int = Field(5, ge=1, description="The optimizer step whose loss is NaN.")


class NanAtStep(LossStrategy):
    """Descend the forget loss, but return a NaN loss at step ``nan_step`` (a test double)."""

    name = "nan_at_step"
    modalities = ("any",)
    needs = frozenset()
    Params = NanParams
    paper = None
    epoch_over = "forget"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.calls = 0

    def loss(self, adapter: Any, *, forget: Any, retain: Any) -> dict[str, Any]:
        self.calls += 1
        loss = adapter.per_example_loss(forget).mean()
        if self.calls == self.params.nan_step:
            loss = loss * float("nan")
        return {"loss": loss}


class NanPlugin:
    """Registers the NaN strategy."""

    @erasus.hookimpl
    def erasus_register_strategies(self, register: Any) -> None:
        register(NanAtStep)


NAN_OVERRIDES = [*PINNED, "strategy.name=nan_at_step", "strategy.nan_step=5",
                 "strategy.checkpoint_every=2", "strategy.batch_size=16", "strategy.epochs=1"]


def test_divergence_stops_before_the_bad_update_and_keeps_the_checkpoint(
        tmp_path: Path, cache_override: str) -> None:
    final = tmp_path / "diverged"
    with pytest.raises(DivergenceError) as info:
        erasus.run(QUICKSTART, overrides=[*NAN_OVERRIDES, cache_override], output=final,
                   plugin_manager=builtin_pm(("nan", NanPlugin())), progress=False)
    exc = info.value
    assert exc.step == 5
    assert exc.last_good_step == 4
    assert "step 5" in str(exc) and "step 4" in str(exc)
    assert not final.exists()
    work = partial_of(final)
    checkpoint = work / "checkpoint"
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4
    state = json.loads((work / "run_state.json").read_text())
    assert state["status"] == "diverged"
    assert state["step"] == 5 and state["last_good_step"] == 4
    weights = load_weights(checkpoint)
    assert weights and all(bool(w.isfinite().all()) for w in weights.values())
    assert "diverged at step 5" in (work / "run.log").read_text()


def test_divergence_through_the_cli_is_one_line_and_exit_1(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, only_builtin: None,
        cache_override: str) -> None:
    import erasus.plugins

    real = erasus.plugins.get_plugin_manager
    monkeypatch.setattr(erasus.plugins, "get_plugin_manager",
                        lambda **kw: real(entrypoints=False, plugins=(("nan", NanPlugin()),)))
    final = tmp_path / "cli-diverged"
    argv = ["run", str(QUICKSTART), "-o", str(final), "--no-progress", "--set", cache_override]
    for item in NAN_OVERRIDES:
        argv += ["--set", item]
    code = call_cli(argv)
    captured = capsys.readouterr()
    assert code == 1
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:")
    assert "diverged at step 5" in lines[0] and "step 4" in lines[0]
    assert "Traceback" not in captured.out + captured.err
    assert (partial_of(final) / "checkpoint" / "state.json").is_file()


# -- kill and resume ---------------------------------------------------------------------
RESUME_OVERRIDES = [*PINNED, "strategy.epochs=3", "strategy.batch_size=8",
                    "strategy.checkpoint_every=1"]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(ERASUS_PLUGINS="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("ERASUS_DEBUG", None)
    return env


def test_a_killed_run_resumes_to_the_same_result(tmp_path: Path, capsys: Any,
                                                 only_builtin: None,
                                                 cache_override: str) -> None:
    overrides = [*RESUME_OVERRIDES, cache_override]
    # the uninterrupted reference (also makes sure original and oracle are cached)
    reference = erasus.run(QUICKSTART, overrides=overrides, output=tmp_path / "reference",
                           plugin_manager=builtin_pm(), progress=False)
    total = reference.history.num_steps
    assert total == 51  # 17 batches of 8 per epoch, 3 epochs

    final = tmp_path / "killed"
    cmd = [sys.executable, "-m", "erasus.cli", "run", str(QUICKSTART), "-o", str(final),
           "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    state_file = partial_of(final) / "checkpoint" / "state.json"
    log = tmp_path / "killed.stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL,
                                stderr=stderr)
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed: "
                            f"{log.read_text()}")
            try:
                step = json.loads(state_file.read_text())["step"]
            except (OSError, ValueError, KeyError):
                step = 0
            if step >= 3:
                break
            assert time.monotonic() < deadline, f"no checkpoint appeared: {log.read_text()}"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists()
    assert partial_of(final).is_dir()
    # (a kill inside the checkpoint swap leaves .tmp/.old; last_step() recovers them, as
    # the resume does)
    killed_at = CheckpointStore(state_file.parent).last_step()
    assert killed_at is not None and 3 <= killed_at < total

    code = call_cli(["run", str(QUICKSTART), *[a for o in overrides for a in ("--set", o)],
                     "--resume", "-o", str(final), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"run directory: {final}" in out
    assert not partial_of(final).exists()

    resumed = json.loads((final / "metrics.json").read_text())
    expected = json.loads((reference.run_dir / "metrics.json").read_text())
    _assert_close(stable(resumed), stable(expected))
    history = json.loads((final / "history.json").read_text())
    assert history["resumed_from"] == killed_at
    assert len(history["steps"]) == total
    _assert_close(history["steps"], reference.history.steps)
    ref_weights = load_weights(reference.run_dir / "model")
    got_weights = load_weights(final / "model")
    for name, value in ref_weights.items():
        assert float((got_weights[name] - value).abs().max()) <= 1e-6, name
    assert "resume=True" in (final / "run.log").read_text()


def _assert_close(got: Any, want: Any, tol: float = 1e-6) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for key in want:
            _assert_close(got[key], want[key], tol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            _assert_close(a, b, tol)
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, abs=tol, rel=tol, nan_ok=True)
    else:
        assert got == want


def test_resume_with_nothing_to_resume_exits_1(tmp_path: Path, capsys: Any, base_run: Any,
                                               only_builtin: None) -> None:
    code = call_cli(["run", str(QUICKSTART), "--set", SMALL[0], "--resume",
                     "-o", str(tmp_path / "never-started"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no interrupted run" in err and "without --resume" in err
    assert not (tmp_path / "never-started").exists()

    code = call_cli(["run", str(QUICKSTART), "--set", SMALL[0], "--set",
                     f"run.output_dir={tmp_path / 'runs'}", "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no interrupted run of this configuration" in err
    # a finished run has nothing left to resume either
    with pytest.raises(RunDirectoryError, match="already finished"):
        erasus.run(QUICKSTART, overrides=SMALL, output=base_run.run_dir, resume=True,
                   plugin_manager=builtin_pm())


def test_resume_refuses_a_different_configuration(tmp_path: Path,
                                                  cache_override: str) -> None:
    final = tmp_path / "diverged"
    with pytest.raises(DivergenceError):
        erasus.run(QUICKSTART, overrides=[*NAN_OVERRIDES, cache_override], output=final,
                   plugin_manager=builtin_pm(("nan", NanPlugin())), progress=False)
    with pytest.raises(RunDirectoryError, match="different configuration"):
        erasus.run(QUICKSTART, overrides=[*NAN_OVERRIDES, cache_override, "strategy.lr=0.5"],
                   output=final, resume=True, plugin_manager=builtin_pm(("nan", NanPlugin())))


def _checkpoint_parts() -> tuple[Any, Any, Any]:
    import torch
    from erasus.training import make_scheduler

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    return model, optimizer, make_scheduler(LoopParams(), optimizer, 10)


def _state(step: int) -> dict[str, Any]:
    return {"step": step, "epoch": 0, "batch": step, "history": []}


def test_a_kill_between_the_checkpoint_renames_still_resumes(tmp_path: Path) -> None:
    import torch

    model, optimizer, scheduler = _checkpoint_parts()
    store = CheckpointStore(tmp_path / "checkpoint")
    store.save(model, optimizer, scheduler, _state(1))
    with torch.no_grad():
        model.weight.add_(1.0)
    newer_weight = model.weight.detach().clone()
    CheckpointStore(tmp_path / "staging").save(model, optimizer, scheduler, _state(2))
    # what save() leaves when killed right after its first os.replace: no 'checkpoint',
    # the previous one in '.old', the new complete one in '.tmp'
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    os.replace(tmp_path / "staging", tmp_path / "checkpoint.tmp")
    assert store.exists
    assert store.last_step() == 2  # the complete newer checkpoint wins
    fresh, fresh_opt, fresh_sched = _checkpoint_parts()
    assert store.load(fresh, fresh_opt, fresh_sched)["step"] == 2
    assert torch.equal(fresh.weight, newer_weight)


def test_a_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path: Path) -> None:
    model, optimizer, scheduler = _checkpoint_parts()
    store = CheckpointStore(tmp_path / "checkpoint")
    store.save(model, optimizer, scheduler, _state(1))
    # a half-written next checkpoint (killed before its state.json appeared)
    half = tmp_path / "checkpoint.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"truncated")
    assert store.last_step() == 1
    store.save(model, optimizer, scheduler, _state(2))  # the leftover does not get in the way
    assert store.last_step() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


# -- trackers ------------------------------------------------------------------------------
class RecordingTracker(Tracker):
    """Records every call it receives (a test double)."""

    name = "recording"
    paper = None
    calls: ClassVar[list[tuple[str, Any]]] = []

    def start(self, config: dict[str, Any]) -> None:
        self.calls.append(("start", config["strategy"]["name"]))

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        self.calls.append(("log_metrics", step))

    def log_artifact(self, path: Path) -> None:
        self.calls.append(("log_artifact", Path(path)))

    def end(self, status: str) -> None:
        self.calls.append(("end", status))


class ExplodingTracker(RecordingTracker):
    """Fails on the second logged step, like a tracking server going away (a test double)."""

    name = "exploding"
    calls: ClassVar[list[tuple[str, Any]]] = []

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(values, step)
        if step == 2:
            raise ConnectionError("tracking server went away")


class TrackerPlugin:
    """Registers the two test trackers."""

    @erasus.hookimpl
    def erasus_register_trackers(self, register: Any) -> None:
        register(RecordingTracker)
        register(ExplodingTracker)


def test_a_tracker_receives_the_run(tmp_path: Path, cache_override: str) -> None:
    RecordingTracker.calls.clear()
    final = tmp_path / "tracked"
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override,
                                               "tracking.name=recording"],
                        output=final, plugin_manager=builtin_pm(("trackers", TrackerPlugin())),
                        progress=False)
    calls = RecordingTracker.calls
    assert calls[0] == ("start", "gradient_difference")
    steps = [arg for name, arg in calls if name == "log_metrics" and arg is not None]
    assert steps == list(range(1, result.history.num_steps + 1))
    assert calls[-1] == ("end", "finished")
    assert "tracker_error" not in result.metrics["run_info"]


def test_a_failing_tracker_does_not_lose_the_run(tmp_path: Path, cache_override: str) -> None:
    ExplodingTracker.calls.clear()
    final = tmp_path / "tracked"
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override,
                                               "tracking.name=exploding"],
                        output=final, plugin_manager=builtin_pm(("trackers", TrackerPlugin())),
                        progress=False)
    assert result.run_dir == final
    assert (final / "model" / "model.safetensors").is_file()
    assert not partial_of(final).exists()
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["run_info"]["tracker_error"] == "ConnectionError: tracking server went away"
    assert result.history.num_steps == 3
    # the tracker is disabled after its failure; it is only told, once, to close its run
    assert ExplodingTracker.calls == [("start", "gradient_difference"), ("log_metrics", 1),
                                      ("log_metrics", 2), ("end", "failed")]
    assert "tracking server went away" in (final / "run.log").read_text()


def test_atomically_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from erasus.rundir import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644


def test_checkpoints_and_saved_models_keep_tied_weights_tied(tmp_path: Path) -> None:
    """Language models share their embedding with their output layer; both files must cope."""
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.checkpoint import CheckpointStore
    from erasus.training import make_scheduler

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    model = Tied()
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = make_scheduler(LoopParams(), optimizer, 10)
    store = CheckpointStore(tmp_path / "checkpoint")
    store.save(model, optimizer, scheduler, {"step": 1, "epoch": 0, "batch": 1, "history": []})
    fresh = Tied()
    store.load(fresh, torch.optim.Adam(fresh.parameters()),
               make_scheduler(LoopParams(), optimizer, 10))
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.head.weight is fresh.embed.weight

    class TiedAdapter(ModelAdapter):
        """A test double."""

        name = "tied_test"

        @classmethod
        def build(cls, params, info=None):
            return cls(Tied(), params)

    TiedAdapter(model).save(tmp_path / "saved")
    loaded = TiedAdapter.load(tmp_path / "saved")
    assert torch.equal(loaded.model.head.weight, model.head.weight)


def test_a_model_without_trainable_weights_is_refused_with_what_would_work():
    import torch
    from erasus.errors import IncompatibleComponentError
    from erasus.training import make_optimizer

    frozen = torch.nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(IncompatibleComponentError, match=r"no trainable weights.*strategy lora"):
        make_optimizer(LoopParams(), frozen)


# -- reports: the JSON log, gradient norms, reporter order and failures, erasus report ---
class Calls:
    log: ClassVar[list[tuple[str, str, Any]]] = []


class FirstReporter(Reporter):
    """Records its calls; asks for gradient norms (a test double)."""

    name = "first_test"
    paper = None
    order = -5
    records = frozenset({"gradient_norms"})

    def collect(self, run_dir: Path, context: ReportContext) -> list[Path]:
        models = {role for role, m in context.models.items() if m is not None}
        Calls.log.append(("collect", self.name, sorted(models)))
        (run_dir / "first.txt").write_text(str(len(context.splits.forget)))
        return [run_dir / "first.txt"]

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        Calls.log.append(("report", self.name, sorted(summary)))
        out = run_dir / "first-report.txt"
        out.write_text((run_dir / "first.txt").read_text())
        return [out]

    def compare(self, run_dirs: list[Path], summaries: list[RunSummary], out_dir: Path
                ) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / "compared.txt"
        out.write_text("\n".join(str(s["config"]["seed"]) for s in summaries))
        return [out]


class LastReporter(Reporter):
    """Runs last (order 10) and fails in report (a test double)."""

    name = "last_test"
    paper = None
    order = 10

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        Calls.log.append(("report", self.name, None))
        raise ValueError("no ink left")


class ReporterPlugin:
    @erasus.hookimpl
    def erasus_register_reporters(self, register: Any) -> None:
        register(LastReporter)  # registered first, runs last
        register(FirstReporter)


def pm() -> Any:
    return builtin_pm(("reporters", ReporterPlugin()))


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, cache_override: str) -> Any:
    Calls.log.clear()
    final = tmp_path_factory.mktemp("reported") / "run"
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override,
                                               "reporters=[last_test, first_test, markdown]"],
                        output=final, plugin_manager=pm(), progress=False)
    return result, list(Calls.log)


def test_reporters_run_in_order_and_a_failure_does_not_lose_the_run(reported):
    result, calls = reported
    final = result.run_dir
    assert calls[:2] == [("collect", "first_test", ["oracle", "original", "unlearned"]),
                         ("report", "first_test", ["config", "history", "metrics",
                                                   "selection"])]
    assert calls[2] == ("report", "last_test", None)
    assert not partial_of(final).exists() and (final / "model").is_dir()
    assert (final / "first-report.txt").read_text() == str(len(
        json.loads((final / "selection.json").read_text())["indices"]))
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["run_info"]["reporter_errors"] == {"last_test": "ValueError: no ink left"}
    assert (final / "report.md").is_file()  # the reporters after the failing one ran
    assert "reporter 'last_test' failed: ValueError: no ink left" in \
        (final / "run.log").read_text()


def test_gradient_norms_are_recorded_when_a_reporter_asks(reported):
    result, _ = reported
    history = json.loads((result.run_dir / "history.json").read_text())
    snaps = history["gradient_norms"]
    steps = [s["step"] for s in snaps]
    assert steps == list(range(1, len(history["steps"]) + 1))  # few steps: every one
    names = set(load_weights(result.run_dir / "model"))
    assert set(snaps[0]["norms"]) == names
    assert all(v > 0 for s in snaps for v in s["norms"].values())


def test_gradient_norms_are_the_gradients_l2_norms():
    import torch
    from erasus.training import gradient_norms

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1, bias=False))
    model[1].weight.requires_grad_(False)
    model(torch.ones(4, 3)).sum().backward()
    norms = gradient_norms(model)
    assert set(norms) == {"0.weight", "0.bias"}  # frozen weights have no gradient
    assert norms["0.weight"] == pytest.approx(float(model[0].weight.grad.norm()))


def test_no_gradient_norms_unless_asked(tmp_path, cache_override):
    result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, "reporters=[]"],
                        output=tmp_path / "run", plugin_manager=pm(), progress=False)
    assert "gradient_norms" not in json.loads((result.run_dir / "history.json").read_text())


def test_the_json_log_has_one_record_per_line_and_every_step(reported):
    result, _ = reported
    lines = (result.run_dir / "log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    steps = [r for r in records if r.get("event") == "step"]
    history = json.loads((result.run_dir / "history.json").read_text())["steps"]
    assert [r["step"] for r in steps] == [int(s["step"]) for s in history]
    assert steps[0]["values"]["forget_loss"] == pytest.approx(history[0]["forget_loss"])
    assert any(r["level"] == "ERROR" and "last_test" in r["message"] for r in records)
    # the text log keeps the narrative, without a line per step
    assert "step 1" not in (result.run_dir / "run.log").read_text()


def test_erasus_report_rebuilds_from_the_run_directory(reported, tmp_path):
    from erasus.reporting import build_reports

    result, _ = reported
    final = result.run_dir
    (final / "first-report.txt").unlink()
    (final / "report.md").unlink()
    Calls.log.clear()
    written = build_reports([final], output=tmp_path / "cmp",
                            only=["first_test", "markdown"], plugin_manager=pm())
    assert set(written) == {final / "first-report.txt", final / "report.md"}
    assert Calls.log == [("report", "first_test", ["config", "history", "metrics",
                                                   "selection"])]  # no collect: no models
    summary = read_summary(final)
    assert summary["metrics"]["unlearned"] == result.metrics["unlearned"]


def test_erasus_report_compares_several_runs(reported, tmp_path, cache_override):
    from erasus.reporting import build_reports

    first, _ = reported
    other = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, "seed=1",
                                              "reporters=[first_test]"],
                       output=tmp_path / "seed1", plugin_manager=pm(), progress=False)
    written = build_reports([first.run_dir, other.run_dir], output=tmp_path / "cmp",
                            only=["first_test"], plugin_manager=pm())
    assert tmp_path / "cmp" / "compared.txt" in written
    assert (tmp_path / "cmp" / "compared.txt").read_text() == "0\n1"


def test_erasus_report_cli_errors(tmp_path, reported):
    result, _ = reported
    assert call_cli(["report", str(tmp_path)]) == 1  # not a run directory
    assert call_cli(["report", str(result.run_dir), "--reporter", "nope"]) == 1
    assert call_cli(["report"]) == 2  # usage: a run directory is required


def test_runs_with_progress_bars_on(tmp_path, cache_override):
    import logging

    class Collect(logging.Handler):
        names: ClassVar[list[str]] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.names.append(record.name)

    root, handler = logging.getLogger(), Collect(logging.INFO)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = erasus.run(QUICKSTART, overrides=[*SMALL, cache_override, "reporters=[]"],
                            output=tmp_path / "run", plugin_manager=pm(), progress=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert result.history.num_steps > 0
    # an application's logging sees the run's narrative, not a record per step
    assert "erasus" in Collect.names and "erasus.steps" not in Collect.names
    steps = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text()
             .splitlines() if '"event": "step"' in line]
    assert len(steps) == result.history.num_steps
