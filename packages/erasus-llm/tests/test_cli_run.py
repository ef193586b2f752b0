"""End to end through ``erasus run``: a tiny GPT-2 saved to a local directory, unlearned.

The model directory is the tiny conformance problem's trained GPT-2 (``model.path``), the
data the same synthetic facts it was trained on (``synthetic_qa`` with ``TINY_DATA``, seed
0: the same forget people). Stated bound for gradient difference: the unlearned retain
loss stays <= 1.5 x the original's + 0.1 (nats per answer token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from erasus.testing.conformance import tiny_problem
from erasus_llm.causal_lm import CausalLMAdapter
from erasus_llm.tiny import TINY_DATA

RETAIN_FACTOR, RETAIN_SLACK = 1.5, 0.1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-gpt2") / "model"
    tiny_problem(CausalLMAdapter, 0).adapter.save(directory)
    return directory


def cli(argv: list[str]) -> None:
    from erasus.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, f"erasus {' '.join(argv)} exited with {exc.code}"


def run_config(tmp_path: Path, model_dir: Path, strategy: dict[str, Any]) -> dict[str, Any]:
    config = {
        "seed": 0,
        "model": {"name": "causal_lm", "path": str(model_dir)},
        "data": {"name": "synthetic_qa", **TINY_DATA},
        "selector": {"name": "full"},
        "strategy": strategy,
        "metrics": ["loss", "mia", "memory"],  # "time" needs an oracle
        "oracle": None,
        "run": {"output_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    cli(["run", str(path), "--output", str(out), "--no-progress"])
    return {"dir": out, "metrics": json.loads((out / "metrics.json").read_text())}


def test_gradient_ascent_raises_the_forget_loss(tmp_path: Path, model_dir: Path, capsys: Any):
    run = run_config(tmp_path, model_dir, {"name": "gradient_ascent", "epochs": 5,
                                           "lr": 5e-4, "batch_size": 8})
    m = run["metrics"]
    before, after = m["original"], m["unlearned"]
    assert after["forget_loss"] > before["forget_loss"] + 0.5, (before, after)
    assert before["mia_auc"] > 0.9  # the original still knows its forget facts
    assert (run["dir"] / "model" / "model.safetensors").is_file()
    assert (run["dir"] / "model" / "tokenizer.json").is_file()

    # `erasus evaluate RUN_DIR` reloads the saved model and finds the same losses
    capsys.readouterr()
    cli(["evaluate", str(run["dir"]), "--json"])
    again = json.loads(capsys.readouterr().out)
    for role in ("original", "unlearned"):
        for key in ("forget_loss", "retain_loss", "test_loss", "mia_auc"):
            assert again[role][key] == pytest.approx(m[role][key], rel=1e-5), (role, key)


def test_gradient_difference_raises_the_forget_loss_and_keeps_the_retain_loss(
        tmp_path: Path, model_dir: Path):
    run = run_config(tmp_path, model_dir, {"name": "gradient_difference", "epochs": 6,
                                           "lr": 2e-4, "batch_size": 8})
    before, after = run["metrics"]["original"], run["metrics"]["unlearned"]
    assert after["forget_loss"] > before["forget_loss"] + 0.3, (before, after)
    assert after["retain_loss"] <= RETAIN_FACTOR * before["retain_loss"] + RETAIN_SLACK, (
        before, after)


CONFIG = Path(__file__).resolve().parents[3] / "configs" / "llm.yaml"


def test_the_example_config_resolves_to_this_plugin():
    from erasus.config import load_config
    from erasus.plugins import get_plugin_manager
    from erasus_llm.datasets import SyntheticQA

    resolved = load_config(CONFIG, get_plugin_manager().registry)
    assert resolved.model.info.cls is CausalLMAdapter
    assert resolved.model.params.path is None and resolved.model.params.config
    assert resolved.data.info.cls is SyntheticQA
    assert resolved.strategy.info.name == "gradient_difference"
    assert [m.info.name for m in resolved.metrics] == ["loss", "mia", "time", "memory"]
    assert resolved.oracle is not None and resolved.oracle.info.name == "retrain"


@pytest.mark.slow  # about 30 s: trains the original and the oracle
def test_the_example_config_runs_offline(tmp_path: Path):
    out = tmp_path / "run"
    cli(["run", str(CONFIG), "--output", str(out), "--no-progress"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["unlearned"]["forget_loss"] > m["original"]["forget_loss"]
    assert m["oracle"]["forget_loss"] > m["original"]["forget_loss"]
    assert m["run"]["rte_ratio"] < 1
