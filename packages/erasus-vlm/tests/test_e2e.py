"""``erasus run`` end to end on tiny CLIPs saved to local directories (in-process CLI).

Each adapter's tiny CLIP is trained on the ``synthetic_image_text`` training split and
saved with ``adapter.save``; the configs point ``model.path`` at that directory and
forget every pair whose caption says "red":

- gradient ascent raises the forget loss (metric ``loss``: unlearned ``forget_loss`` >
  original ``forget_loss``);
- gradient difference raises it while the retain loss stays within the bound
  ``unlearned retain_loss <= 1.5 x original retain_loss + 0.1``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from erasus_vlm._tiny import train_clip
from erasus_vlm.hf_clip import HFClipAdapter
from erasus_vlm.open_clip_adapter import OpenClipAdapter
from erasus_vlm.synthetic import SyntheticImageText

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "configs" / "vlm.yaml"
#: 32 captions (4 colours x 4 shapes x 2 quadrants), each twice in the training set
DATA: dict[str, Any] = {"n_train": 64, "n_test": 32, "colours": ["red", "green", "blue", "yellow"],
                        "sizes": [], "positions": ["top left", "bottom right"],
                        "forget": {"kind": "concept", "concept": "red"}}
ADAPTERS = {"open_clip": OpenClipAdapter, "hf_clip": HFClipAdapter}
STRATEGIES: dict[str, dict[str, Any]] = {
    "gradient_ascent": {"epochs": 3, "lr": 1e-4},
    "gradient_difference": {"epochs": 5, "lr": 1e-4, "batch_size": 32},
}
#: The stated bound on gradient difference's damage to the retain set.
RETAIN_FACTOR, RETAIN_SLACK = 1.5, 0.1


def run_cli(argv: list[str]) -> None:
    """``erasus ...`` in this interpreter (the venv's erasus), failing on a non-zero exit."""
    from erasus.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, f"erasus {' '.join(argv)} exited with {exc.code}"


def digest(directory: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(directory.iterdir()))
                          ).hexdigest()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each adapter's tiny CLIP, trained on the data set's training split and saved."""
    splits = SyntheticImageText(**DATA).load(seed=0)
    out = {}
    for name, cls in ADAPTERS.items():
        torch.manual_seed(0)
        adapter = cls.build(cls.Params(), splits.info)
        train_clip(adapter, splits.train, steps=150, batch_size=32, seed=0)
        out[name] = tmp_path_factory.mktemp(name) / "model"
        adapter.save(out[name])
    return out


@pytest.fixture(scope="module")
def runs(saved: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> dict[tuple[str, str], dict[str, Any]]:
    """``erasus run`` of every (adapter, strategy): its metrics.json and run directory."""
    results = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("ERASUS_PLUGINS", "vlm")
    mp.setenv("ERASUS_DEBUG", "0")
    mp.setenv("ERASUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    try:
        for model, path in saved.items():
            before = digest(path)
            for strategy, params in STRATEGIES.items():
                tmp = tmp_path_factory.mktemp(f"{model}-{strategy}")
                config = {"seed": 0,
                          "model": {"name": model, "path": str(path)},
                          "data": {"name": "synthetic_image_text", **DATA},
                          "selector": {"name": "full"},
                          "strategy": {"name": strategy, **params},
                          "oracle": None,
                          "metrics": ["loss"],
                          "run": {"output_dir": str(tmp / "runs")}}
                (tmp / "config.yaml").write_text(yaml.safe_dump(config))
                run_dir = tmp / "run"
                run_cli(["run", str(tmp / "config.yaml"), "--output", str(run_dir),
                         "--no-progress"])
                results[(model, strategy)] = {
                    "dir": run_dir,
                    "metrics": json.loads((run_dir / "metrics.json").read_text())}
            assert digest(path) == before, "the input model directory was modified"
    finally:
        mp.undo()
    return results


@pytest.mark.parametrize("model", list(ADAPTERS))
def test_gradient_ascent_raises_the_forget_loss(runs, model):
    metrics = runs[(model, "gradient_ascent")]["metrics"]
    original, unlearned = metrics["original"], metrics["unlearned"]
    assert unlearned["forget_loss"] > original["forget_loss"], (original, unlearned)


@pytest.mark.parametrize("model", list(ADAPTERS))
def test_gradient_difference_raises_the_forget_loss_and_keeps_the_retain_loss(runs, model):
    metrics = runs[(model, "gradient_difference")]["metrics"]
    original, unlearned = metrics["original"], metrics["unlearned"]
    assert unlearned["forget_loss"] > original["forget_loss"], (original, unlearned)
    assert unlearned["retain_loss"] <= RETAIN_FACTOR * original["retain_loss"] + RETAIN_SLACK, \
        (original, unlearned)


@pytest.mark.parametrize("model", list(ADAPTERS))
def test_the_unlearned_model_is_saved_and_loads(runs, model):
    run = runs[(model, "gradient_difference")]
    cls = ADAPTERS[model]
    loaded = cls.load(run["dir"] / "model")
    assert isinstance(loaded, cls)
    assert (run["dir"] / "model" / "model.safetensors").is_file()


def test_the_example_config_runs(tmp_path: Path):
    """configs/vlm.yaml, with less training so that it runs in seconds: original (trained
    from a fresh tiny open_clip config), oracle, unlearning and every metric."""
    run_dir = tmp_path / "run"
    run_cli(["run", str(EXAMPLE), "--output", str(run_dir), "--no-progress",
             "--set", "train.epochs=2", "--set", "data.n_train=64", "--set", "data.n_test=32",
             "--set", "strategy.epochs=1"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for role in ("original", "unlearned", "oracle"):
        assert set(metrics[role]) >= {"forget_loss", "retain_loss", "test_loss", "mia_auc"}
    assert "unlearn_seconds" in json.dumps(metrics)


@pytest.mark.slow
def test_the_example_config_runs_as_written(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_cli(["run", str(EXAMPLE), "--output", str(run_dir), "--no-progress"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    original, unlearned = metrics["original"], metrics["unlearned"]
    assert unlearned["forget_loss"] > original["forget_loss"]
