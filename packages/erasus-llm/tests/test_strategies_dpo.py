"""dpo and idk_dpo: the loss formula, the shipped refusals, the precomputed reference, and
unlearning on the tiny trained GPT-2 measured against the retain-only oracle."""

from __future__ import annotations

import math

import pytest
import torch
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import DPO, IdkDPO, dpo_loss
from erasus_llm.strategies._common import IDK_FILE, load_refusals, qa_records
from erasus_llm.strategies.dpo import refusal_choices


def _run(strategy, problem, seed=0):
    adapter = problem.adapter.clone()
    history = strategy.unlearn(adapter, UnlearnData(forget=problem.forget,
                                                    retain=problem.retain),
                               RunContext(seed=seed))
    return adapter, history


def test_dpo_loss_matches_hand_computation():
    chosen = torch.tensor([-2.0, -4.0])
    rejected = torch.tensor([-3.0, -1.0])
    ref_chosen = torch.tensor([-2.5, -4.0])
    ref_rejected = torch.tensor([-1.0, -1.0])
    # margins: (0.5 - (-2)) = 2.5 and (0 - 0) = 0; beta 0.1
    expected = (math.log1p(math.exp(-0.25)) + math.log(2.0)) / 2
    got = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # at the reference point the loss is log 2 whatever beta is
    assert float(dpo_loss(chosen, rejected, chosen, rejected, beta=3.0)) == \
        pytest.approx(math.log(2.0))


def test_refusals_ship_with_the_package_and_are_drawn_per_seed():
    refusals = load_refusals()
    assert IDK_FILE.is_file() and len(refusals) >= 20
    assert all(r and r == r.strip() for r in refusals)
    a = refusal_choices(40, refusals, seed=3)
    assert a == refusal_choices(40, refusals, seed=3)
    assert a != refusal_choices(40, refusals, seed=4)
    assert len(set(a)) > 5  # spread over the list, not one answer
    with pytest.raises(IncompatibleComponentError, match="does not exist"):
        load_refusals("/no/such/file.txt")


def test_reference_is_precomputed_not_a_model_copy(problem):
    adapter = problem.adapter.clone()
    strategy = DPO()
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    strategy.prepare(adapter, data, RunContext(seed=0))
    held = list(vars(strategy).values())
    assert not any(isinstance(v, torch.nn.Module) for v in held)
    n = len(problem.forget)
    assert strategy.ref_rejected.shape == (n,) and strategy.ref_chosen.shape == (n,)
    # the stored reference is the original model's summed answer log-likelihood
    expected = -c.mean_loss(adapter, torch.utils.data.Subset(problem.forget, [0]))
    tokens = int((adapter.prepare_batch([problem.forget[0]])["labels"] != -100).sum())
    assert float(strategy.ref_rejected[0]) == pytest.approx(expected * tokens, rel=1e-4)
    # the chosen answers are the forget questions with shipped refusals
    refusals = set(load_refusals())
    questions = [r["question"] for r in qa_records(problem.forget, "t", "t")]
    assert [r["question"] for r in strategy.chosen] == questions
    assert all(r["answer"] in refusals for r in strategy.chosen)
    assert float(strategy.ref_chosen.max()) < float(strategy.ref_rejected.min())


@pytest.mark.parametrize(("cls", "closed", "retain_bound"), [
    # plain DPO has no retain term: the forget answers go, retain answers suffer some
    (DPO, 0.3, 1.0),
    # IdkDPO's retain NLL keeps retain answers (probability >= exp(-0.2) = 0.82)
    (IdkDPO, 0.15, 0.2),
])
def test_unlearns_toward_the_oracle(problem, oracle_forget_loss, cls, closed, retain_bound):
    forget0 = c.mean_loss(problem.adapter, problem.forget)
    retain0 = c.mean_loss(problem.adapter, problem.retain)
    assert oracle_forget_loss > forget0 + 2.0  # the oracle never learnt the forget facts
    strategy = cls()
    adapter, history = _run(strategy, problem)
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    # at least `closed` of the gap to the oracle's forget loss is closed
    assert forget1 >= forget0 + closed * (oracle_forget_loss - forget0), (forget0, forget1)
    assert retain1 <= retain_bound, (retain0, retain1)
    # the preference moved: every refusal gained against its forget answer
    from erasus_llm.strategies._common import sequence_log_probs

    chosen = sequence_log_probs(adapter, strategy.chosen, 8)
    rejected = sequence_log_probs(adapter, qa_records(problem.forget, "t", "t"), 8)
    margin = (chosen - strategy.ref_chosen) - (rejected - strategy.ref_rejected)
    assert bool((margin > 0).all())
    assert history.steps[0]["dpo_loss"] == pytest.approx(math.log(2.0), rel=1e-4)


def test_idk_dpo_needs_retain_unless_weight_zero(problem):
    adapter = problem.adapter.clone()
    with pytest.raises(IncompatibleComponentError, match="retain"):
        IdkDPO().unlearn(adapter, UnlearnData(forget=problem.forget, retain=None),
                         RunContext(seed=0))
    history = IdkDPO(retain_weight=0.0, max_steps=1).unlearn(
        adapter, UnlearnData(forget=problem.forget, retain=None), RunContext(seed=0))
    assert "retain_loss" not in history.steps[0]


def test_refuses_a_model_that_is_not_a_causal_lm(problem):
    adapter = ClassifierAdapter(torch.nn.Linear(4, 2), ClassifierParams(num_classes=2))
    with pytest.raises(IncompatibleComponentError, match="causal_lm"):
        DPO().unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                      RunContext(seed=0))


def test_idk_path_overrides_the_refusals(problem, tmp_path):
    path = tmp_path / "idk.txt"
    path.write_text("Nope.\n\n", encoding="utf-8")
    strategy = DPO(idk_path=str(path))
    strategy.prepare(problem.adapter.clone(), UnlearnData(forget=problem.forget),
                     RunContext(seed=0))
    assert {r["answer"] for r in strategy.chosen} == {"Nope."}
