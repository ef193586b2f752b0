"""End to end through ``erasus run``: a tiny diffusion model saved to a local directory.

The original is the conformance suites' tiny class-conditional UNet (digits 0-3), saved
with the adapter's ``save`` and loaded by the CLI through ``model.path``; the data set is
``digits_diffusion`` with the same parameters, forgetting every training image of the
digit 0. The metric ``loss`` scores the original and the unlearned model on the same
timesteps and noise per example (keyed on the example's index), so its differences are
the model's, not the noise's.
"""

from __future__ import annotations

import json

import pytest
import yaml
from erasus.cli.app import main
from erasus.testing.conformance import tiny_problem
from erasus_diffusion.tiny import TINY_DATA
from erasus_diffusion.unet import DiffusersUNetAdapter

#: Stated bound for gradient difference: the unlearned retain loss stays at most
#: RETAIN_FACTOR x the original's + RETAIN_SLACK.
RETAIN_FACTOR, RETAIN_SLACK = 1.5, 0.1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-unet") / "model"
    tiny_problem(DiffusersUNetAdapter, 0).adapter.save(directory)
    return directory


def run_cli(tmp_path, model_dir, strategy: dict) -> dict:
    config = {
        "seed": 0,
        "model": {"name": "diffusers_unet", "path": str(model_dir)},
        "data": {"name": "digits_diffusion", **TINY_DATA},
        "strategy": strategy,
        "oracle": None,
        "metrics": ["loss", "mia", "memory"],
        "run": {"output_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    try:
        main(["run", str(path), "--output", str(out), "--no-progress"])
    except SystemExit as exc:
        assert not exc.code, exc.code
    assert (out / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    return json.loads((out / "metrics.json").read_text())


def test_gradient_ascent_raises_the_forget_loss(tmp_path, model_dir):
    metrics = run_cli(tmp_path, model_dir, {"name": "gradient_ascent"})
    before, after = metrics["original"], metrics["unlearned"]
    assert after["forget_loss"] > before["forget_loss"]
    assert 0.0 <= after["mia_auc"] <= 1.0


def test_gradient_difference_raises_the_forget_loss_and_keeps_the_retain_loss(tmp_path,
                                                                               model_dir):
    metrics = run_cli(tmp_path, model_dir, {"name": "gradient_difference"})
    before, after = metrics["original"], metrics["unlearned"]
    assert after["forget_loss"] > before["forget_loss"]
    assert after["retain_loss"] <= RETAIN_FACTOR * before["retain_loss"] + RETAIN_SLACK


def test_the_unlearned_model_in_the_run_directory_loads_and_the_input_is_untouched(
        tmp_path, model_dir):
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.rglob("*")}
    run_cli(tmp_path, model_dir, {"name": "gradient_ascent", "max_steps": 2})
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.rglob("*")} == before
    loaded = DiffusersUNetAdapter.load(tmp_path / "run" / "model")
    assert loaded.condition == "class" and loaded.num_classes == 10
