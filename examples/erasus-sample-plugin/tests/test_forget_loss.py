"""``forget_loss`` is the mean cross-entropy of the model on the forget split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from erasus.data import DataInfo, Splits
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import EvalContext
from erasus.testing import tiny_classifier_problem
from erasus_sample_plugin.forget_loss import ForgetLoss
from torch.utils.data import Subset


@pytest.fixture(scope="module")
def problem():
    return tiny_classifier_problem(seed=0)


def splits_of(problem, forget=None) -> Splits:
    forget = problem.forget if forget is None else forget
    return Splits(train=problem.forget.dataset, forget=forget, retain=problem.retain,
                  test=problem.test,
                  info=DataInfo(modality="classification", num_classes=4, input_shape=(10,)))


def hand_computed_forget_loss(problem) -> float:
    xs, ys = zip(*(problem.forget[i] for i in range(len(problem.forget))), strict=True)
    with torch.no_grad():
        logits = problem.adapter.model(torch.stack(xs))
    return F.cross_entropy(logits, torch.stack(ys)).item()


def test_equals_the_hand_computed_mean_loss(problem):
    ctx = EvalContext(problem.adapter, splits_of(problem), batch_size=7)
    measurement = ForgetLoss().compute(ctx)
    assert set(measurement.values) == set(ForgetLoss.outputs)
    assert measurement.values["forget_loss"] == pytest.approx(
        hand_computed_forget_loss(problem), rel=1e-5)


def test_rises_when_the_model_is_pushed_away_from_the_forget_labels(problem):
    adapter = problem.adapter.clone()
    before = ForgetLoss().compute(EvalContext(adapter, splits_of(problem)))
    with torch.no_grad():
        adapter.model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
        for p in adapter.model.parameters():
            p.mul_(-1.0)  # flips every logit's sign: confident right becomes confident wrong
    after = ForgetLoss().compute(EvalContext(adapter, splits_of(problem)))
    assert after.values["forget_loss"] > before.values["forget_loss"] + 1.0


def test_reuses_the_cached_forward_pass(problem):
    ctx = EvalContext(problem.adapter, splits_of(problem))
    ctx.outputs("forget")
    passes = ctx.forward_passes
    ForgetLoss().compute(ctx)
    assert ctx.forward_passes == passes


def test_an_empty_forget_split_is_an_error(problem):
    ctx = EvalContext(problem.adapter, splits_of(problem, forget=Subset(problem.test, [])))
    with pytest.raises(IncompatibleComponentError, match="non-empty forget split"):
        ForgetLoss().compute(ctx)
