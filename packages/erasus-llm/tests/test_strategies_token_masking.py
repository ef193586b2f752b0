"""token_masking: the token selection by hand and on the tiny trained GPT-2, and unlearning
measured against the retain-only oracle."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import TokenMasking, select_tokens
from pydantic import ValidationError


def _split_nll(adapter, problem, strategy):
    """Mean NLL of the selected and of the unselected forget answer tokens."""
    batch = adapter.prepare_batch([problem.forget[i] for i in range(len(problem.forget))])
    with torch.no_grad():
        nll, mask = adapter.token_losses(batch)
    sel, rest = [], []
    for row in range(len(problem.forget)):
        tokens = nll[row][mask[row].bool()]
        sel.append(tokens[strategy.selected[row]])
        rest.append(tokens[~strategy.selected[row]])
    return float(torch.cat(sel).mean()), float(torch.cat(rest).mean())


def test_select_tokens_by_hand():
    gain = torch.tensor([0.1, 5.0, 2.0, 2.0, 0.0])
    assert select_tokens(gain, 0.5).tolist() == [False, True, True, True, False]  # ceil(2.5)
    assert select_tokens(gain, 0.2).tolist() == [False, True, False, False, False]
    assert select_tokens(gain, 0.3).tolist() == [False, True, True, False, False]  # tie: earlier
    assert select_tokens(torch.tensor([1.0]), 0.01).tolist() == [True]  # at least one


def test_selection_on_the_tiny_model(problem):
    adapter = problem.adapter.clone()
    s = TokenMasking()
    s.prepare(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
              RunContext(seed=0))
    assert len(s.selected) == len(problem.forget)
    for gain, sel in zip(s.gains, s.selected, strict=True):
        assert not bool(sel[-1])  # the EOS after an answer needs no question: never selected
        assert int(sel.sum()) == -(-len(sel) // 2)
        assert float(gain[sel].min()) >= float(gain[~sel].max())
    # the stored reference is the original log-likelihood of the selected tokens
    batch = adapter.prepare_batch([problem.forget[0]])
    with torch.no_grad():
        nll, mask = adapter.token_losses(batch)
    expected = -float(nll[0][mask[0].bool()][s.selected[0]].sum())
    assert float(s.ref_log_prob[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("forget_loss", ["npo", "ga"])
def test_unlearns_the_selected_tokens_toward_the_oracle(problem, oracle_forget_loss,
                                                        forget_loss):
    forget0 = c.mean_loss(problem.adapter, problem.forget)
    adapter = problem.adapter.clone()
    s = TokenMasking(forget_loss=forget_loss, epochs=20 if forget_loss == "npo" else 3)
    s.unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
              RunContext(seed=0))
    sel0, rest0 = _split_nll(problem.adapter, problem, s)
    sel1, rest1 = _split_nll(adapter, problem, s)
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    assert forget1 >= forget0 + 0.3 * (oracle_forget_loss - forget0), (forget0, forget1)
    assert retain1 <= 0.6, retain1
    # the forget loss acts on the selected tokens: they move far more than the others
    assert sel1 - sel0 > 2 * (rest1 - rest0), (sel0, sel1, rest0, rest1)


def test_default_run_keeps_the_retain_set(problem):
    adapter = problem.adapter.clone()
    TokenMasking().unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                           RunContext(seed=0))
    assert c.mean_loss(adapter, problem.retain) <= 0.2  # retain answers keep p >= 0.82


def test_bad_input(problem):
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    with pytest.raises(IncompatibleComponentError, match="causal_lm"):
        TokenMasking().unlearn(object(), data, RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="question"):
        TokenMasking().unlearn(problem.adapter.clone(),
                               UnlearnData(forget=[{"text": "x"}], retain=problem.retain),
                               RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="retain"):
        TokenMasking().unlearn(problem.adapter.clone(), UnlearnData(forget=problem.forget),
                               RunContext(seed=0))
    with pytest.raises(ValidationError):
        TokenMasking(fraction=0.0)
    s = TokenMasking(retain_weight=0.0)
    adapter = problem.adapter.clone()
    s.prepare(adapter, UnlearnData(forget=problem.forget), RunContext(seed=0))
    batch = adapter.prepare_batch([problem.forget[0]])
    with pytest.raises(IncompatibleComponentError, match="index"):
        s.loss(adapter, forget=batch, retain=None)
