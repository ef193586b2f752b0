"""``highest_loss`` selects exactly the forget examples with the highest loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from erasus.adapters import TinyProblem
from erasus.selection import resolve_budget
from erasus.testing import tiny_classifier_problem
from erasus_sample_plugin.highest_loss import HighestLoss
from torch.utils.data import DataLoader


@pytest.fixture(scope="module", params=["trained", "unsure"])
def problem(request):
    """The tiny trained problem, and a copy whose logits are shrunk so no loss is ~0.

    The trained model fits most forget examples perfectly (many losses round to 0 and
    tie); the shrunk copy gives every example a distinct loss, so the ranking is strict.
    """
    problem = tiny_classifier_problem(seed=0)
    return unsure(problem) if request.param == "unsure" else problem


def unsure(problem: TinyProblem) -> TinyProblem:
    """A copy of ``problem`` whose model's logits are 20 times smaller."""
    adapter = problem.adapter.clone()
    with torch.no_grad():
        adapter.model.head.weight.mul_(0.05)
        adapter.model.head.bias.mul_(0.05)
    return TinyProblem(adapter, problem.forget, problem.retain, problem.test)


def brute_force_losses(problem) -> np.ndarray:
    """Cross-entropy of each forget example, one forward pass per example."""
    model = problem.adapter.model
    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(len(problem.forget)):
            x, y = problem.forget[i]
            logits = model(x.unsqueeze(0))
            losses.append(F.cross_entropy(logits, y.view(1)).item())
    return np.array(losses)


def assert_is_top_k(selection, losses: np.ndarray, k: int) -> None:
    indices = np.asarray(selection.indices)
    assert len(indices) == k
    assert len(set(indices.tolist())) == k
    assert selection.scores == pytest.approx(losses[indices], rel=1e-5, abs=1e-6)
    assert np.all(np.diff(selection.scores) <= 0), "scores are not sorted highest first"
    rest = np.setdiff1d(np.arange(len(losses)), indices)
    if len(rest):
        assert losses[indices].min() >= losses[rest].max() - 1e-6


@pytest.mark.parametrize("budget", [0.5, 0.1, 5, 1, 1.0])
def test_selects_the_highest_loss_examples(problem, budget):
    losses = brute_force_losses(problem)
    selection = HighestLoss(budget=budget).select(problem.adapter, problem.forget)
    k = resolve_budget(budget, len(problem.forget))
    assert_is_top_k(selection, losses, k)
    ranked = np.sort(losses)[::-1]
    if k == len(losses) or ranked[k - 1] - ranked[k] > 1e-5:  # no tie at the cut
        expected = np.argsort(-losses, kind="stable")[:k]
        assert set(selection.indices.tolist()) == set(expected.tolist())


def test_the_unsure_problem_ranks_strictly():
    losses = brute_force_losses(unsure(tiny_classifier_problem(seed=0)))
    gaps = np.diff(np.sort(losses))
    assert gaps.min() > 1e-5, "the strict-ranking case has near-ties; choose another scale"
    assert losses.min() > 0.1


def test_indices_are_positions_in_the_dataset_of_a_shuffled_loader(problem):
    from_dataset = HighestLoss(budget=0.5).select(problem.adapter, problem.forget)
    loader = DataLoader(problem.forget, batch_size=4, shuffle=True,
                        generator=torch.Generator().manual_seed(3))
    from_loader = HighestLoss(budget=0.5).select(problem.adapter, loader)
    np.testing.assert_array_equal(from_loader.indices, from_dataset.indices)
    np.testing.assert_allclose(from_loader.scores, from_dataset.scores, rtol=1e-5)


def test_batch_size_does_not_change_the_selection(problem):
    big = HighestLoss(budget=7).select(problem.adapter, problem.forget)
    small = HighestLoss(budget=7, batch_size=5).select(problem.adapter, problem.forget)
    np.testing.assert_array_equal(small.indices, big.indices)


def test_leaves_the_model_as_it_found_it(problem):
    model = problem.adapter.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        HighestLoss(budget=3).select(problem.adapter, problem.forget)
        assert model.training
    finally:
        model.eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_rejects_a_bad_budget():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HighestLoss(budget=1.5)
    with pytest.raises(ValidationError):
        HighestLoss(budget=0)
