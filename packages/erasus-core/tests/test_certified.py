"""Certified removal (Guo et al., 2020) and certified training on a linear classifier."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from erasus.errors import IncompatibleComponentError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def problem():
    """The conformance problem: binary blobs (unit norm), a certified-trained linear model."""
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.builtin.strategies.certified_removal import certified_tiny_problem

    torch.set_num_threads(1)
    return certified_tiny_problem(ClassifierAdapter, 0)


def _design(problem, dataset):
    from erasus.privacy import linear

    x, labels = linear.design(problem.adapter, dataset)
    return x, linear.signs(labels, 2)


def _remove(problem, adapter, forget, retain, **params):
    from erasus.builtin.strategies.certified_removal import CertifiedRemoval
    from erasus.strategy import RunContext, UnlearnData

    return CertifiedRemoval(**params).unlearn(
        adapter, UnlearnData(forget=forget, retain=retain,
                             forget_train_indices=list(range(len(forget)))),
        RunContext(seed=0))


def test_certified_training_reaches_the_perturbed_optimum_and_stores_its_state(problem,
                                                                               tmp_path):
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.privacy import linear
    from torch.utils.data import ConcatDataset

    state = linear.read_state(problem.adapter.model)
    assert state.l2 == 0.05 and state.sigma == 1.0 and state.n_train == 240
    assert float(state.b.abs().sum()) > 0  # an objective perturbation was drawn
    x, y = _design(problem, ConcatDataset([problem.forget, problem.retain]))
    w = linear.get_weights(problem.adapter.model)
    assert linear.residual_norm(w, x, y, state.l2, state.b) < 1e-9
    assert state.spent == pytest.approx(linear.residual_norm(w, x, y, state.l2, state.b))
    # the binary model's cross-entropy is the logistic loss: logits are [0, w^T x]
    assert torch.equal(problem.adapter.model.head.weight[0],
                       torch.zeros_like(problem.adapter.model.head.weight[0]))
    problem.adapter.save(tmp_path)
    loaded = ClassifierAdapter.load(tmp_path)
    again = linear.read_state(loaded.model)
    assert torch.equal(again.b, state.b) and again.spent == state.spent
    assert loaded.model.head.weight.dtype == torch.float64


def test_newton_removal_approximates_exact_retraining_within_the_bound(problem):
    from erasus.privacy import linear

    adapter = problem.adapter.clone()
    history = _remove(problem, adapter, problem.forget, problem.retain)
    cert = history.certificates[0]
    assert cert.method == "newton" and cert.extra["newton_steps"] == len(problem.forget)
    state = linear.read_state(adapter.model)
    x, y = _design(problem, problem.retain)
    w_newton = linear.get_weights(adapter.model)
    residual = linear.residual_norm(w_newton, x, y, state.l2, state.b)
    assert 0 < residual <= cert.residual_bound <= cert.budget
    exact, _ = linear.fit(x, y, state.l2, state.b)  # retraining with the same b
    w_original = linear.get_weights(problem.adapter.model)
    assert float((w_newton - exact).norm()) < 0.02 * float((w_original - exact).norm())
    assert state.n_train == len(problem.retain)
    assert cert.removed == list(range(len(problem.forget))) and cert.index_space == "train"


def test_a_spent_budget_forces_exact_retraining_with_a_fresh_perturbation(problem):
    from erasus.builtin.strategies.certified_removal import draw_perturbation
    from erasus.privacy import linear, verify

    adapter = problem.adapter.clone()
    before = linear.read_state(adapter.model)
    # a tiny epsilon leaves a budget smaller than one Newton step's bound
    history = _remove(problem, adapter, problem.forget, problem.retain, epsilon=1e-6)
    cert = history.certificates[0]
    assert cert.method == "retrain" and history.steps[0]["retrained"] == 1.0
    state = linear.read_state(adapter.model)
    n = len(problem.retain)
    assert torch.equal(state.b, draw_perturbation(1.0, (1, 11), 0, n))
    assert not torch.equal(state.b, before.b)
    x, y = _design(problem, problem.retain)
    exact, _ = linear.fit(x, y, state.l2, state.b)
    assert torch.allclose(linear.get_weights(adapter.model), exact, atol=1e-10)
    assert verify(cert, adapter, problem.retain).ok


def test_the_budget_carries_over_sequential_requests(problem):
    from erasus.privacy import linear, verify
    from torch.utils.data import Subset

    adapter = problem.adapter.clone()
    first = _remove(problem, adapter, Subset(problem.forget, [0, 1]),
                    torch.utils.data.ConcatDataset([Subset(problem.forget, range(2, 24)),
                                                    problem.retain]))
    spent_first = linear.read_state(adapter.model).spent
    remaining = torch.utils.data.ConcatDataset([Subset(problem.forget, range(5, 24)),
                                                problem.retain])
    second = _remove(problem, adapter, Subset(problem.forget, [2, 3, 4]), remaining)
    cert = second.certificates[0]
    assert cert.residual_bound > spent_first > first.certificates[0].request_bound > 0
    assert cert.request_bound == pytest.approx(cert.residual_bound - spent_first)
    assert linear.read_state(adapter.model).n_train == 240 - 5
    assert verify(cert, adapter, remaining).ok
    # the first request's data no longer matches the model
    with pytest.raises(IncompatibleComponentError, match="certified on 235 examples"):
        _remove(problem, adapter, problem.forget, problem.retain)


def test_certified_removal_refuses_models_it_cannot_certify(problem):
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.testing.conformance import tiny_problem

    mlp = tiny_problem(ClassifierAdapter, 0)
    with pytest.raises(IncompatibleComponentError,
                       match=r"single linear layer.*arch: linear.*certified_training"):
        _remove(mlp, mlp.adapter, mlp.forget, mlp.retain)
    untrained = ClassifierAdapter.build(ClassifierAdapter.Params(arch="linear"),
                                        problem.info)
    with pytest.raises(IncompatibleComponentError, match="no such state"):
        _remove(problem, untrained, problem.forget, problem.retain)
    changed = problem.adapter.clone()
    with torch.no_grad():
        changed.model.head.bias[1] += 0.01  # row 1 holds w (row 0 is zero)
    with pytest.raises(IncompatibleComponentError, match="not at the certified optimum"):
        _remove(problem, changed, problem.forget, problem.retain)
    reset = problem.adapter.clone()
    reset.reset_parameters()  # what retrain does: it also clears the certified state
    with pytest.raises(IncompatibleComponentError, match="no such state"):
        _remove(problem, reset, problem.forget, problem.retain)


def _track_b():
    spec = importlib.util.spec_from_file_location("erasus_track_b",
                                                  ROOT / "benchmarks" / "track_b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_track_b(removals: int) -> None:
    result = _track_b().run(removals=removals, every=max(10, removals // 10))
    rows = result["removals"]
    assert len(rows) == removals
    for row in rows:  # the certified bound holds on every removal
        assert row["residual"] <= row["bound"] * (1 + 1e-9) + 1e-12, row
    assert result["summary"]["bound_holds"]
    assert any(r["method"] == "newton" for r in rows)


def test_track_b_certified_bound_holds_on_50_sequential_removals():
    _check_track_b(50)


@pytest.mark.slow
def test_track_b_certified_bound_holds_on_1000_sequential_removals():
    _check_track_b(1000)


def test_erasus_run_trains_removes_and_certifies_with_the_bundled_config(tmp_path):
    """configs/certified.yaml end to end (train: {name: certified_training})."""
    import json

    import erasus
    from erasus.builtin.datasets.digits import Digits
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.privacy import Certificate, verify

    result = erasus.run(ROOT / "configs" / "certified.yaml", output=tmp_path / "run",
                        overrides=[f"run.cache_dir={tmp_path / 'cache'}", "run.progress=false",
                                   "reporters=[]", "metrics=[accuracy]"])
    history = json.loads((result.run_dir / "history.json").read_text())
    cert = Certificate.from_dict(history["certificates"][0])
    splits = Digits(forget={"kind": "random", "fraction": 0.02}).load(seed=0)
    assert cert.removed == list(splits.forget_indices) and cert.method == "newton"
    model = ClassifierAdapter.load(result.run_dir / "model")
    assert verify(cert, model, splits.retain).ok
    assert result.metrics["unlearned"]["TA"] > 80
