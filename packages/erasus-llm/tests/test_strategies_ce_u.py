"""ce_u: the loss and its gradient by hand, and unlearning on the tiny trained GPT-2
measured against the retain-only oracle."""

from __future__ import annotations

import math

import pytest
import torch
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import CEU, ce_u_token_loss


def test_loss_and_gradient_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    loss = ce_u_token_loss(logits, torch.tensor([0]))
    # target: token 0 removed, the other two equal: t = (0, 1/2, 1/2)
    log_z = math.log(math.exp(2.0) + 2.0)
    assert float(loss.detach()) == pytest.approx(log_z, rel=1e-6)  # -(1/2 + 1/2) * (0 - log Z)
    loss.backward()
    q = torch.softmax(logits.detach(), dim=-1)
    # the gradient is q - t: it takes q(y) away from the true token, bounded by 1
    assert torch.allclose(logits.grad, q - torch.tensor([[0.0, 0.5, 0.5]]), atol=1e-6)


def test_unlearns_toward_the_oracle(problem, oracle_forget_loss):
    forget0 = c.mean_loss(problem.adapter, problem.forget)
    adapter = problem.adapter.clone()
    history = CEU().unlearn(adapter, UnlearnData(forget=problem.forget), RunContext(seed=0))
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    assert forget1 >= forget0 + 0.1 * (oracle_forget_loss - forget0), (forget0, forget1)
    # no retain term (the paper uses none): retain answers keep probability >= exp(-0.2)
    assert retain1 <= 0.2, retain1
    assert history.steps[-1]["forget_loss"] > history.steps[0]["forget_loss"]


def test_ignore_first_leaves_the_first_answer_tokens_out(problem):
    adapter = problem.adapter.clone()
    batch = adapter.prepare_batch([problem.forget[0]])
    batch["index"] = torch.tensor([0])
    n = int((batch["labels"] != -100).sum())  # answer tokens, EOS included
    # ignoring every answer token leaves nothing to train on: an error, not a zero loss
    with pytest.raises(IncompatibleComponentError, match="ignore_first"):
        CEU(ignore_first=n).loss(adapter, forget=batch, retain=None)
    last = CEU(ignore_first=n - 1).loss(adapter, forget=batch, retain=None)["ce_u_loss"]
    with torch.no_grad():
        logits = adapter.model(input_ids=batch["input_ids"]).logits[0]
    eos_at = int((batch["labels"][0] != -100).nonzero().max())  # EOS label position
    expected = ce_u_token_loss(logits[eos_at - 1:eos_at], batch["labels"][0, eos_at:eos_at + 1])
    assert float(last.detach()) == pytest.approx(float(expected), rel=1e-5)
    full = CEU().loss(adapter, forget=batch, retain=None)["ce_u_loss"]
    tail = CEU(ignore_first=1).loss(adapter, forget=batch, retain=None)["ce_u_loss"]
    assert float(full.detach()) != pytest.approx(float(tail.detach()))


def test_refuses_a_model_that_is_not_a_causal_lm(problem):
    adapter = ClassifierAdapter(torch.nn.Linear(4, 2), ClassifierParams(num_classes=2))
    with pytest.raises(IncompatibleComponentError, match="causal_lm"):
        CEU().unlearn(adapter, UnlearnData(forget=problem.forget), RunContext(seed=0))
