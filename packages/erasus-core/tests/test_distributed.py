"""Multi-process runs: ``torchrun --nproc_per_node 2 -m erasus run`` over gloo on the CPU,
data-parallel or with sharded training (FSDP2), gives the one-process result (weights,
losses, metrics) and writes one run directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from erasus import distributed

CONFIG = """\
seed: 0
model: {name: classifier, arch: mlp}
data:
  name: digits
  forget: {kind: random, fraction: 0.1}
train: {epochs: 3, batch_size: 64}
selector: {name: full}
strategy: {name: gradient_difference, epochs: 2, batch_size: 67}
oracle: {strategy: retrain}
metrics: [accuracy, mia_efficacy]
run: {output_dir: runs}
"""
# 135 forget examples in batches of 67: each epoch ends with a batch of one example, which
# leaves the second process an empty share (sharded, it runs a forward at weight 0)


@pytest.mark.parametrize(("n", "size", "min_size", "expected"), [
    (10, 2, 1, [(0, 5), (5, 10)]),
    (7, 2, 1, [(0, 4), (4, 7)]),
    (7, 3, 1, [(0, 3), (3, 5), (5, 7)]),
    (1, 2, 1, [(0, 1), (1, 1)]),          # fewer items than processes: one empty share
    (5, 3, 2, [(0, 3), (3, 5), (5, 5)]),  # no non-empty share below min_size
    (0, 2, 1, [(0, 0), (0, 0)]),
])
def test_share_is_contiguous_covers_everything_and_respects_min_size(
        n: int, size: int, min_size: int, expected: list[tuple[int, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: size)
    shares = []
    for r in range(size):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares.append(distributed.share(n, min_size))
    assert shares == expected


def test_one_process_is_not_distributed() -> None:
    assert distributed.world_size() == 1
    assert distributed.share(9) == (0, 9)
    assert distributed.setup("cpu") == ("cpu", False)
    assert distributed.gather_shards([1, 2]) == [1, 2]


def _weights(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    (path,) = (run_dir / "model").glob("*.safetensors")
    return load_file(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same config run by one process, by two (torchrun, gloo) and by two with sharded
    training (FSDP2 full_shard), separate caches so the two-process runs train the
    original and the oracle data-parallel (or sharded) too."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "cfg.yaml").write_text(CONFIG)
    scratch = root / "tmp"
    scratch.mkdir()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    out: dict[str, Any] = {"root": root, "scratch": scratch}
    two = [torchrun, "--nproc_per_node", "2", "-m", "erasus"]
    for name, launcher, extra in (
            ("one", [sys.executable, "-m", "erasus"], []),
            ("two", two, []),
            ("sharded", two, ["--set", "run.sharding.strategy=full_shard"])):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "ERASUS_CACHE_DIR": str(root / f"cache-{name}"), "TMPDIR": str(scratch)}
        proc = subprocess.run([*launcher, "run", "cfg.yaml", "-o", f"out-{name}",
                               "--no-progress", *extra], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[name] = {"dir": root / f"out-{name}", "stdout": proc.stdout,
                     "metrics": json.loads((root / f"out-{name}" / "metrics.json").read_text()),
                     "history": json.loads((root / f"out-{name}" / "history.json").read_text())}
    return out


def test_two_processes_unlearn_to_the_one_process_weights(runs: dict[str, Any]) -> None:
    import torch

    one, two = _weights(runs["one"]["dir"]), _weights(runs["two"]["dir"])
    assert one.keys() == two.keys()
    diff = max(float((one[k] - two[k]).abs().max()) for k in one)
    # the only difference is floating-point summation order (and the paired batch's
    # rounding in the epoch's last, smaller batch)
    assert diff < 1e-3
    # ... while unlearning itself moved the weights by far more than that
    cache = runs["root"] / "cache-one" / "models"
    originals = [d for d in cache.iterdir()
                 if json.loads((d / "meta.json").read_text())["key"]["role"] == "original"]
    from safetensors.torch import load_file

    (path,) = originals[0].glob("*.safetensors")
    original = load_file(path)
    moved = max(float((one[k] - original[k].to(one[k].dtype)).abs().max()) for k in one)
    assert moved > 20 * diff
    assert all(torch.isfinite(t).all() for t in two.values())


def test_two_processes_log_the_whole_batch_losses(runs: dict[str, Any]) -> None:
    steps_one, steps_two = runs["one"]["history"]["steps"], runs["two"]["history"]["steps"]
    assert len(steps_one) == len(steps_two) > 0
    for a, b in zip(steps_one, steps_two, strict=True):
        assert b["forget_loss"] == pytest.approx(a["forget_loss"], rel=1e-3, abs=1e-4)
        assert b["loss"] == pytest.approx(a["loss"], rel=5e-2, abs=1e-2)
    # full batches (every step but the epoch's last) are split exactly
    assert steps_two[0]["loss"] == pytest.approx(steps_one[0]["loss"], rel=1e-5)


def test_two_processes_evaluate_to_the_same_metrics(runs: dict[str, Any]) -> None:
    m1, m2 = runs["one"]["metrics"], runs["two"]["metrics"]
    for role in ("original", "unlearned", "oracle"):
        assert m1[role].keys() == m2[role].keys()
        for key, value in m1[role].items():
            # one example of 450 test examples is 0.22 points
            assert m2[role][key] == pytest.approx(value, abs=0.5), (role, key)
    assert m1["run_info"]["processes"] == 1
    assert m2["run_info"]["processes"] == 2


def test_only_rank_0_writes_and_reports(runs: dict[str, Any]) -> None:
    root = runs["root"]
    assert runs["two"]["stdout"].count("run directory:") == 1
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(("out-", ".out-"))) \
        == ["out-one", "out-sharded", "out-two"]
    # the other rank's scratch run directory and cache scratch are gone
    assert not [p for p in runs["scratch"].iterdir() if p.name.startswith("erasus-rank")]
    assert not (runs["two"]["dir"] / "checkpoint").exists()
    # one cached original and one cached oracle, written by rank 0
    models = list((root / "cache-two" / "models").iterdir())
    assert len(models) == 2 and all((d / "meta.json").is_file() for d in models)


@pytest.mark.slow  # about 20 s
def test_the_shipped_accelerate_config_launches_two_processes(tmp_path: Path) -> None:
    metrics = _accelerate_run("ddp.yaml", tmp_path)
    assert metrics["run_info"]["processes"] == 2
    assert metrics["run_info"]["sharding"] is None


def _accelerate_run(config: str, tmp_path: Path) -> dict[str, Any]:
    """``accelerate launch`` with the shipped ``configs/accelerate/CONFIG`` on ``CONFIG``;
    the run's metrics.json (the run directory is ``tmp_path / "out"``)."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate comes with the test extra (through peft)"
    path = Path(__file__).resolve().parents[3] / "configs" / "accelerate" / config
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ERASUS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([accelerate, "launch", "--config_file", str(path), "-m", "erasus",
                           "run", "cfg.yaml", "-o", "out", "--no-progress"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / "out" / "metrics.json").read_text())


def test_sharded_training_reaches_the_one_process_weights(runs: dict[str, Any]) -> None:
    """FSDP2 full_shard over two gloo processes: the original, the oracle and the
    unlearned model are trained sharded, each process holding half of the weights while
    training, and the run ends where one process does."""
    one, sharded = _weights(runs["one"]["dir"]), _weights(runs["sharded"]["dir"])
    assert one.keys() == sharded.keys()
    diff = max(float((one[k] - sharded[k]).abs().max()) for k in one)
    assert diff < 1e-3
    info = runs["sharded"]["metrics"]["run_info"]
    assert info["processes"] == 2
    assert info["sharding"]["strategy"] == "full_shard"
    assert info["sharding"]["source"] == "run.sharding"
    assert info["sharding"]["local_fraction"] == pytest.approx(0.5, abs=0.05)
    assert runs["one"]["metrics"]["run_info"]["sharding"] is None
    for role in ("original", "unlearned", "oracle"):
        for key, value in runs["one"]["metrics"][role].items():
            assert runs["sharded"]["metrics"][role][key] == pytest.approx(value, abs=0.5)
    steps_one = runs["one"]["history"]["steps"]
    steps_sharded = runs["sharded"]["history"]["steps"]
    assert len(steps_one) == len(steps_sharded)
    for a, b in zip(steps_one, steps_sharded, strict=True):
        assert b["forget_loss"] == pytest.approx(a["forget_loss"], rel=1e-3, abs=1e-4)
    # per-layer gradient norms (recorded when erasus-viz's gradient_flow plot asks) are
    # those of the whole gradients, gathered from the shards
    norms_one = runs["one"]["history"].get("gradient_norms", [])
    norms_sharded = runs["sharded"]["history"].get("gradient_norms", [])
    assert len(norms_one) == len(norms_sharded)
    for a, b in zip(norms_one, norms_sharded, strict=True):
        assert b["norms"].keys() == a["norms"].keys()
        for name, value in a["norms"].items():
            assert b["norms"][name] == pytest.approx(value, rel=1e-2, abs=1e-4), name
    log = (runs["sharded"]["dir"] / "run.log").read_text()
    # the original, the oracle and the unlearning loop
    assert log.count("training sharded over 2 processes (full_shard") == 3
    assert not (runs["sharded"]["dir"] / "checkpoint").exists()


@pytest.mark.slow  # about 20 s
def test_the_shipped_fsdp_config_shards_training(runs: dict[str, Any],
                                                 tmp_path: Path) -> None:
    """accelerate launch with configs/accelerate/fsdp_shard_grad_op.yaml (the ZeRO-2
    equivalent) shards training and reaches the one-process weights."""
    info = _accelerate_run("fsdp_shard_grad_op.yaml", tmp_path)["run_info"]
    assert info["processes"] == 2
    assert info["sharding"]["strategy"] == "shard_grad_op"
    assert info["sharding"]["source"] == "the accelerate FSDP config"
    one, sharded = _weights(runs["one"]["dir"]), _weights(tmp_path / "out")
    assert max(float((one[k] - sharded[k]).abs().max()) for k in one) < 1e-3


def _kill_all_in(directory: Path) -> None:
    """SIGKILL every process whose working directory is ``directory`` (Linux /proc)."""
    import signal

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory.resolve():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # gone, or not ours
            continue


@pytest.mark.slow  # about 60 s: a sharded reference, a killed sharded run, its resume
def test_a_killed_sharded_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """Two sharded processes are killed mid-unlearning; ``--resume`` (sharded again) reads
    the gathered checkpoint, re-shards it and ends where the uninterrupted run does."""
    import time

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ERASUS_CACHE_DIR": str(tmp_path / "cache")}
    base = [torchrun, "--nproc_per_node", "2", "-m", "erasus", "run", "cfg.yaml",
            "--no-progress", "--set", "run.sharding.strategy=full_shard", "--set",
            "strategy.epochs=8", "--set", "strategy.checkpoint_every=1"]

    def finish(*extra: str) -> None:
        proc = subprocess.run([*base, *extra], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    finish("-o", "reference")  # also caches the original and the oracle
    state = tmp_path / ".killed.partial" / "checkpoint" / "state.json"
    proc = subprocess.Popen([*base, "-o", "killed"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            try:
                step = json.loads(state.read_text())["step"]
            except (OSError, ValueError, KeyError):
                step = 0
            if step >= 4:
                break
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
    finally:
        _kill_all_in(tmp_path)  # torchrun and both workers (they have sessions of their own)
        proc.wait()
    assert not (tmp_path / "killed").exists()
    finish("-o", "killed", "--resume")
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert history["resumed_from"] is not None and history["resumed_from"] >= 4
    reference, resumed = _weights(tmp_path / "reference"), _weights(tmp_path / "killed")
    assert max(float((reference[k] - resumed[k]).abs().max()) for k in reference) < 1e-5
