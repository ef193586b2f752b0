"""What the reporters do when something is missing or fails: a failing reporter never loses
the run, a model without features() is reported as such, one-shot runs draw no curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def _no_features(self: Any, batch: Any) -> Any:
    raise NotImplementedError("this model exposes no feature layer")


def _boom(self: Any, run_dir: Path, context: Any) -> list[Path]:
    raise RuntimeError("boom: the plot data could not be collected")


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, make_config, viz_pm) -> Path:
    """A run whose loss_curves reporter fails in collect() and whose model has no
    features() (the classifier adapter's features() raises NotImplementedError)."""
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.pipeline import run
    from erasus_viz.loss_curves import LossCurves

    config = make_config(reporters=["loss_curves", {"name": "embeddings", "max_examples": 20},
                                    "html_report"])
    out = tmp_path_factory.mktemp("broken") / "broken-run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LossCurves, "collect", _boom)
        mp.setattr(ClassifierAdapter, "features", _no_features)
        return Path(run(config, output=out, plugin_manager=viz_pm, progress=False).run_dir)


def test_a_reporter_that_fails_does_not_lose_the_run(broken_run):
    assert broken_run.is_dir() and broken_run.name == "broken-run"
    assert not list(broken_run.parent.glob(".*.partial"))  # published
    metrics = json.loads((broken_run / "metrics.json").read_text())
    errors = metrics["run_info"]["reporter_errors"]
    assert list(errors) == ["loss_curves"]
    assert "RuntimeError" in errors["loss_curves"] and "boom" in errors["loss_curves"]
    assert (broken_run / "model" / "model.safetensors").is_file()
    assert not (broken_run / "plots" / "loss_curves.png").exists()
    html = (broken_run / "report.html").read_text(encoding="utf-8")  # the others still ran
    assert 'data-skipped="loss_curves"' in html
    assert "the reporter failed: RuntimeError: boom" in html  # named during the run


def test_a_rebuilt_report_names_the_reporter_that_failed(broken_run, tmp_path):
    import shutil

    from erasus.reporting import read_summary
    from erasus_viz.html_report import HTMLReport

    copy = tmp_path / "run"
    shutil.copytree(broken_run, copy)
    HTMLReport().report(copy, read_summary(copy))
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert 'id="reporter-errors"' in html and "boom: the plot data" in html
    assert "the reporter failed: RuntimeError: boom" in html


def test_a_model_without_features_gets_a_note_instead_of_embeddings(broken_run):
    data = json.loads((broken_run / "plots" / "data" / "embeddings.json").read_text())
    assert list(data) == ["skipped"]
    assert "gives no features" in data["skipped"]
    assert "this model exposes no feature layer" in data["skipped"]
    assert not list((broken_run / "plots").glob("embeddings_*.png"))
    html = (broken_run / "report.html").read_text(encoding="utf-8")
    assert 'data-skipped="embeddings" data-plot="embeddings_pca.png"' in html
    assert 'data-skipped="embeddings" data-plot="embeddings_tsne.png"' in html
    assert "this model exposes no feature layer" in html
    # reporters the run did not ask for are named as such
    assert "&#x27;mia_plots&#x27; was not among the run&#x27;s reporters" in html


def _one_shot_summary() -> dict[str, Any]:
    return {"config": {"strategy": {"name": "ssd"}, "seed": 0},
            "metrics": {"original": {"UA": 1.0}, "unlearned": {"UA": 2.0}},
            "history": {"steps": [], "resumed_from": None, "stopped_early": None},
            "selection": {}}


def test_a_one_shot_run_gets_no_curves_and_no_gradient_flow(tmp_path):
    from erasus_viz.gradient_flow import GradientFlow
    from erasus_viz.html_report import HTMLReport
    from erasus_viz.loss_curves import LossCurves

    summary = _one_shot_summary()
    assert LossCurves().report(tmp_path, summary) == []
    assert GradientFlow().report(tmp_path, summary) == []
    assert not (tmp_path / "plots").exists()
    HTMLReport().report(tmp_path, summary)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "the strategy &#x27;ssd&#x27; took no optimisation steps" in html
    assert 'data-skipped="gradient_flow"' in html
    assert "<img" not in html
    # no oracle: no gap column
    assert "|unlearned - oracle|" not in html


def test_report_text_is_escaped(tmp_path):
    from erasus_viz.html_report import HTMLReport

    summary = _one_shot_summary()
    summary["config"]["strategy"] = {"name": "<script>alert(1)</script>"}
    HTMLReport().report(tmp_path, summary)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
