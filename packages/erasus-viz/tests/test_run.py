"""A real (small) quickstart run with erasus-viz installed writes every plot, its data and
report.html, and what they hold is true of the run's models and data."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

PNGS = ["loss_curves.png", "mia_roc.png", "mia_histograms.png", "embeddings_pca.png",
        "embeddings_tsne.png", "feature_shift.png", "loss_landscape.png", "gradient_flow.png"]
DATA = ["mia.json", "embeddings.json", "loss_landscape.json"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def loaded(viz_run: Path, viz_pm: Any) -> dict[str, Any]:
    """The run's data splits and its unlearned model, loaded back from the run directory."""
    from erasus.config import load_config

    resolved = load_config(viz_run / "config.resolved.yaml", viz_pm.registry)
    splits = resolved.data.create().load(seed=resolved.config.seed)
    model = resolved.model.info.cls.load(viz_run / "model", resolved.model.params,
                                         splits.info)
    return {"splits": splits, "unlearned": model, "seed": resolved.config.seed}


def test_the_run_writes_every_plot_its_data_and_the_html(viz_run):
    assert not (_json(viz_run / "metrics.json")["run_info"].get("reporter_errors"))
    for name in PNGS:
        data = (viz_run / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    for name in DATA:
        assert (viz_run / "plots" / "data" / name).is_file(), name
    assert (viz_run / "report.html").is_file()
    assert not list(viz_run.rglob("*.tmp")), "a temporary file was left behind"


def test_mia_data_shows_the_original_remembers_the_forget_set_more_than_the_oracle(
        viz_run, loaded):
    from sklearn.metrics import roc_auc_score

    data = _json(viz_run / "plots" / "data" / "mia.json")
    assert set(data["losses"]) == {"original", "unlearned", "oracle"}
    n_forget, n_heldout = len(data["indices"]["forget"]), len(data["indices"]["heldout"])
    assert n_forget == min(200, len(loaded["splits"].forget)) > 0
    assert n_heldout == min(200, len(loaded["splits"].test))
    auc = {}
    for role, losses in data["losses"].items():
        assert len(losses["forget"]) == n_forget and len(losses["heldout"]) == n_heldout
        scores = [-v for v in losses["forget"] + losses["heldout"]]
        labels = [1] * n_forget + [0] * n_heldout
        auc[role] = roc_auc_score(labels, scores)
    assert auc["original"] > auc["oracle"] + 0.2, auc


def test_embeddings_hold_the_requested_points_with_their_labels(viz_run, loaded):
    data = _json(viz_run / "plots" / "data" / "embeddings.json")
    splits = loaded["splits"]
    expected = {name: min(40, len(splits.get(name))) for name in ("forget", "retain", "test")}
    labels = data["labels"]
    assert {name: labels.count(name) for name in expected} == expected
    assert len(labels) == sum(expected.values())
    for method in ("pca", "tsne"):
        assert set(data[method]) == {"original", "unlearned"}
        for coords in data[method].values():
            assert len(coords) == len(labels)
            assert all(len(c) == 2 and all(abs(x) < 1e6 for x in c) for c in coords)
    # each label sits at the positions of its set's indices (forget last: drawn on top)
    assert labels == (["retain"] * expected["retain"] + ["test"] * expected["test"]
                      + ["forget"] * expected["forget"])
    assert "features" not in json.dumps(data)  # only 2-D coordinates are stored


def test_feature_shift_has_one_distance_per_mapped_example(viz_run):
    data = _json(viz_run / "plots" / "data" / "embeddings.json")
    shift = data["shift"]
    for name in ("forget", "retain", "test"):
        assert len(shift[name]) == data["labels"].count(name)
        assert all(0.0 <= v <= 2.0 for v in shift[name])
        assert max(shift[name]) > 0  # the unlearned model's features moved


def test_feature_shift_is_the_cosine_distance():
    from erasus_viz.embeddings import feature_shift

    original = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]]
    unlearned = [[0.0, 3.0], [2.0, 2.0], [0.0, -1.0], [1.0, 0.0]]
    shift = feature_shift(original, unlearned, ["forget", "retain", "test", "test"])
    assert shift["forget"] == [1.0]  # orthogonal
    assert shift["retain"] == [0.0]  # same direction, another length
    assert shift["test"] == [2.0, 0.0]  # opposite; a zero vector counts as no shift


def test_loss_landscape_centre_is_the_models_mean_loss_on_the_same_examples(viz_run, loaded):
    from erasus.testing.conformance import mean_loss
    from torch.utils.data import Subset

    data = _json(viz_run / "plots" / "data" / "loss_landscape.json")
    splits, model = loaded["splits"], loaded["unlearned"]
    assert data["resolution"] == 5 and len(data["alphas"]) == 5
    middle = data["alphas"].index(0.0)
    for name in ("forget", "retain"):
        indices = data["indices"][name]
        assert len(indices) == min(64, len(splits.get(name)))
        expected = mean_loss(model, Subset(splits.get(name), indices), splits.collate_fn)
        assert data["center_loss"]["unlearned"][name] == pytest.approx(expected, abs=1e-5)
        grid = data["surfaces"]["unlearned"][name]
        assert len(grid) == 5 and all(len(row) == 5 for row in grid)
        assert grid[middle][middle] == pytest.approx(expected, abs=1e-5)
        # away from the centre the loss is higher (the trained weights sit in a basin)
        assert max(grid[0][0], grid[-1][-1], grid[0][-1], grid[-1][0]) > expected


def test_loss_landscape_collect_restores_the_weights_bit_for_bit(loaded, tmp_path):
    from erasus.reporting import ReportContext
    from erasus_viz.loss_landscape import LossLandscape

    model = loaded["unlearned"]
    model.model.train()  # collect evaluates in eval mode and must give the mode back
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    context = ReportContext(models={"original": model, "unlearned": None, "oracle": None},
                            splits=loaded["splits"], seed=1, batch_size=32)
    LossLandscape(resolution=3, max_examples=16, span=2.0).collect(tmp_path, context)
    after = model.model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        # bits, not only values (-0.0 == 0.0)
        assert before[key].numpy().tobytes() == after[key].numpy().tobytes(), key
    data = _json(tmp_path / "plots" / "data" / "loss_landscape.json")
    assert set(data["surfaces"]) == {"original"}
    assert model.model.training
    model.model.eval()


def test_filter_normalised_directions_match_each_filters_norm():
    import torch
    from erasus_viz.loss_landscape import filter_normalized_direction

    conv = torch.randn(4, 3, 3, 3)
    bias = torch.randn(4)
    d_conv, d_bias = filter_normalized_direction([conv, bias],
                                                 torch.Generator().manual_seed(0))
    assert torch.equal(d_bias, torch.zeros(4))
    assert torch.allclose(d_conv.flatten(1).norm(dim=1), conv.flatten(1).norm(dim=1),
                          rtol=1e-5)
    again = filter_normalized_direction([conv, bias], torch.Generator().manual_seed(0))
    assert torch.equal(again[0], d_conv)  # seeded


def test_gradient_flow_draws_the_models_parameters(viz_run, loaded):
    from erasus_viz.gradient_flow import gradient_table

    history = _json(viz_run / "history.json")
    names = [n for n, _ in loaded["unlearned"].model.named_parameters()]
    assert history["gradient_norms"], "gradient_flow did not make the run record norms"
    steps, drawn, norms = gradient_table(history)
    assert drawn == names
    assert steps == [r["step"] for r in history["gradient_norms"]]
    assert all(v > 0 for row in norms for v in row)


def test_the_html_embeds_every_plot_and_the_metric_values(viz_run):
    from erasus.builtin.reporters.markdown import format_value

    html = (viz_run / "report.html").read_text(encoding="utf-8")
    for name in PNGS:
        encoded = base64.b64encode((viz_run / "plots" / name).read_bytes()).decode()
        stem = name.removesuffix(".png")
        assert re.search(rf'<img id="plot-{stem}" data-plot="{name}"[^>]*'
                         rf'src="data:image/png;base64,{re.escape(encoded)}"', html), name
    metrics = _json(viz_run / "metrics.json")
    for role in ("original", "unlearned", "oracle"):
        for key, value in metrics[role].items():
            assert f'data-value="{value!r}"' in html, (role, key)
            assert f">{format_value(value)}</td>" in html, (role, key)
            gap = abs(metrics["unlearned"][key] - metrics["oracle"][key])
            assert f'data-value="{gap!r}"' in html, key
    for key, value in metrics["run"].items():
        assert f'<tr data-metric="{key}"><th>{key}</th><td class="num" data-value="{value!r}"' \
            in html
    # self-contained: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script" not in html
    for expected in ("gradient_difference", "digits", "classifier", "small_cnn",
                     "erasus (run)", "python", "torch", 'id="timing-table"'):
        assert expected in html, expected
    run_info = metrics["run_info"]
    for key in ("selection_seconds", "unlearn_seconds", "original_seconds", "oracle_seconds"):
        assert f'data-value="{run_info[key]!r}"' in html, key
    # the environment the run recorded
    for key, label in (("python_version", "python (run)"), ("torch_version", "torch (run)")):
        assert f"<tr><th>{label}</th><td>{run_info[key]}</td></tr>" in html, key
    assert 'id="metrics-table"' in html and 'id="config-yaml"' in html
    assert "data-skipped" not in html  # every plot was drawn
