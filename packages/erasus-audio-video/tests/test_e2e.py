"""End to end through the CLI: ``erasus run`` on a tiny model saved to a local directory.

Each adapter's tiny trained model (``tiny_problem(0)``) is saved with ``save`` and the run
config points ``model.path`` at it, with the same tiny data settings and seed, so the
run's forget/retain/test splits are the ones the model was trained on. Stated bounds:
gradient ascent raises the forget loss; gradient difference raises it while the retain
loss stays within ``1.5 x original + 0.1`` (metric ``loss``, metrics.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from erasus.testing.conformance import tiny_problem
from erasus_audio_video import VideoMAEAdapter, WhisperAdapter
from erasus_audio_video.speech import TINY_SPEECH
from erasus_audio_video.video import TINY_VIDEO

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
CASES = {
    "whisper": (WhisperAdapter, {"name": "synthetic_speech", **TINY_SPEECH}),
    "videomae": (VideoMAEAdapter, {"name": "synthetic_video", **TINY_VIDEO}),
}
STRATEGIES = {
    "gradient_ascent": {"epochs": 3, "lr": 1.0e-3},
    "gradient_difference": {"epochs": 5, "lr": 3.0e-4},
}


def retain_bound(original: float) -> float:
    """The retain loss gradient difference may reach: 1.5 x the original's + 0.1."""
    return 1.5 * original + 0.1


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    out = {}
    for name, (cls, _) in CASES.items():
        directory = tmp_path_factory.mktemp(f"{name}-model")
        tiny_problem(cls, 0).adapter.save(directory)
        out[name] = directory
    return out


def erasus_run(argv: list[str], monkeypatch) -> None:
    from erasus.cli.app import main

    # Only this plugin beside the built-ins, whatever else is installed.
    monkeypatch.setenv("ERASUS_PLUGINS", "audio_video")
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("model", list(CASES))
def test_erasus_run_unlearns_a_saved_tiny_model(model, strategy, saved_models, tmp_path,
                                                monkeypatch):
    _, data = CASES[model]
    config = {
        "seed": 0,
        "model": {"name": model, "path": str(saved_models[model])},
        "data": data,
        "strategy": {"name": strategy, **STRATEGIES[strategy]},
        "oracle": None,
        "metrics": ["loss", "mia", "memory"],  # 'time' compares with an oracle: none here
        "run": {"output_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    erasus_run(["run", str(path), "--output", str(tmp_path / "run"), "--no-progress"],
               monkeypatch)

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    before, after = metrics["original"], metrics["unlearned"]
    assert after["forget_loss"] > before["forget_loss"], (before, after)
    if strategy == "gradient_difference":
        assert after["retain_loss"] <= retain_bound(before["retain_loss"]), (before, after)
    assert 0.0 <= after["mia_auc"] <= 1.0
    assert metrics["run"]["peak_host_mb"] > 0
    # the unlearned model is a checkpoint the adapter (and transformers) can load again
    cls = CASES[model][0]
    assert cls.load(tmp_path / "run" / "model").name == model
    assert not (saved_models[model] / "checkpoint").exists()  # the input is never modified


@pytest.mark.parametrize("name", [pytest.param("audio", marks=pytest.mark.slow), "video"])
def test_example_configs_run_offline_from_a_fresh_tiny_model(name, tmp_path, monkeypatch):
    """configs/<name>.yaml as shipped: a fresh tiny model trained by the run, the oracle
    retrained, unlearned with gradient difference (audio: about 20 s, so marked slow)."""
    erasus_run(["run", str(CONFIGS / f"{name}.yaml"), "--output", str(tmp_path / "run"),
                "--no-progress"], monkeypatch)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["unlearned"]["forget_loss"] > metrics["original"]["forget_loss"]
    assert metrics["oracle"]["forget_loss"] > metrics["original"]["forget_loss"]
