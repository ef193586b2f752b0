"""satimp: the token weights by hand, and unlearning on the tiny trained GPT-2 measured
against the retain-only oracle."""

from __future__ import annotations

import math

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import SatImp, satimp_weights


def test_weights_by_hand():
    nll = torch.tensor([-math.log(0.9), -math.log(0.5)], requires_grad=True)
    w = satimp_weights(nll, beta1=5.0, beta2=1.0)
    assert torch.allclose(w, torch.tensor([0.9 ** 5 * 0.1, 0.5 ** 5 * 0.5]), atol=1e-6)
    assert not w.requires_grad


def test_loss_is_the_weighted_negative_nll(problem):
    adapter = problem.adapter.clone()
    batch = adapter.prepare_batch([problem.forget[0], problem.forget[1]])
    strategy = SatImp(retain_weight=0.0)
    got = strategy.loss(adapter, forget=batch, retain=None)["satimp_loss"]
    with torch.no_grad():
        nll, mask = adapter.token_losses(batch)
    p = torch.exp(-nll)
    expected = -(((p ** 5) * (1 - p) * nll * mask).sum(1) / mask.sum(1)).mean()
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_unlearns_toward_the_oracle(problem, oracle_forget_loss):
    forget0 = c.mean_loss(problem.adapter, problem.forget)
    adapter = problem.adapter.clone()
    SatImp().unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                     RunContext(seed=0))
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    assert forget1 >= forget0 + 0.25 * (oracle_forget_loss - forget0), (forget0, forget1)
    assert retain1 <= 0.2, retain1  # retain answers keep probability >= exp(-0.2) = 0.82


def test_needs_retain_unless_weight_zero(problem):
    with pytest.raises(IncompatibleComponentError, match="retain"):
        SatImp().unlearn(problem.adapter.clone(), UnlearnData(forget=problem.forget),
                         RunContext(seed=0))
    history = SatImp(retain_weight=0.0, max_steps=1).unlearn(
        problem.adapter.clone(), UnlearnData(forget=problem.forget), RunContext(seed=0))
    assert "retain_loss" not in history.steps[0]
