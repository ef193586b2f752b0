"""The masked_lm adapter: answer-only masked loss, save/load round trip, unlearning and
the LLM metrics on a masked LM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from erasus.builtin.strategies.gradient_difference import GradientDifference
from erasus.config import load_config
from erasus.errors import ConfigError, IncompatibleComponentError
from erasus.evaluation import EvalContext
from erasus.plugins import get_plugin_manager
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance
from erasus_llm.masked_lm import MaskedLMAdapter, MaskedLMParams
from erasus_llm.metrics import AnswerProb, ExactMemorization, ExtractionStrength, MCAccuracy, Rouge
from erasus_llm.metrics._cache import token_stats
from erasus_llm.tiny import train_causal_lm

ITEMS = {"question": ["What colour does Ann like?", "Where does Bo live?"],
         "answer": ["red", "Paris"]}


def _adapter() -> MaskedLMAdapter:
    torch.manual_seed(0)
    return MaskedLMAdapter.build(MaskedLMParams())


def test_answer_is_masked_and_loss_matches_hand_computation():
    adapter = _adapter()
    batch = adapter.prepare_batch(ITEMS)
    mask_id = adapter.tokenizer.mask_token_id
    labelled = batch["labels"] != -100
    assert (batch["input_ids"][labelled] == mask_id).all()
    assert labelled.sum(1).tolist() == [
        len(adapter.tokenizer(" " + a, add_special_tokens=False)["input_ids"])
        for a in ITEMS["answer"]]
    with torch.no_grad():
        logits = adapter.model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits
        got = adapter.per_example_loss(batch)
    for i in range(2):
        pos = labelled[i].nonzero().flatten()
        want = -F.log_softmax(logits[i, pos], -1).gather(
            1, batch["labels"][i, pos][:, None]).mean()
        assert torch.allclose(got[i], want, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    adapter = _adapter()
    adapter.save(tmp_path)
    loaded = MaskedLMAdapter.load(tmp_path)
    batch = adapter.prepare_batch(ITEMS)
    with torch.no_grad():
        assert torch.allclose(adapter.per_example_loss(batch),
                              loaded.per_example_loss(loaded.prepare_batch(ITEMS)))


def test_tiny_problem_model_knows_the_forget_facts(problem):
    fresh = _adapter()
    forget = [problem.forget[i] for i in range(len(problem.forget))]
    with torch.no_grad():
        trained = problem.adapter.per_example_loss(problem.adapter.prepare_batch(forget))
        untrained = fresh.per_example_loss(fresh.prepare_batch(forget))
    assert trained.mean() < 0.2 * untrained.mean()


@pytest.fixture(scope="module")
def problem():
    return conformance.tiny_problem(MaskedLMAdapter, 0)


def test_gradient_difference_raises_forget_loss_toward_the_oracle(problem):
    torch.manual_seed(0)
    oracle = MaskedLMAdapter.build(MaskedLMParams())
    train_causal_lm(oracle, problem.retain, steps=400, seed=0)  # never sees the forget set
    forget0 = conformance.mean_loss(problem.adapter, problem.forget)
    oracle_forget = conformance.mean_loss(oracle, problem.forget)
    adapter = problem.adapter.clone()
    strategy = GradientDifference(GradientDifference.Params(lr=5e-4))
    strategy.unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain,
                                          info=problem.info), RunContext(seed=0))
    forget1 = conformance.mean_loss(adapter, problem.forget)
    retain1 = conformance.mean_loss(adapter, problem.retain)
    assert forget0 < 0.1 < 2.0 < oracle_forget
    # a good part of the way to the oracle, not far past it
    assert 0.25 * oracle_forget < forget1 < 1.5 * oracle_forget
    assert retain1 < min(1.0, 0.25 * forget1)  # the retain facts are still known


def test_llm_metrics_score_the_masked_answer_tokens(problem):
    adapter = problem.adapter
    ctx = EvalContext(adapter, conformance.tiny_splits(problem), role="unlearned")
    stats = token_stats(ctx, "forget")
    forget = [problem.forget[i] for i in range(len(problem.forget))]
    with torch.no_grad():
        nll, mask = adapter.token_losses(adapter.prepare_batch(forget))
    want = -(nll * mask).sum(1)
    assert torch.allclose(torch.tensor([lp.sum() for lp in stats.logp]).float(), want,
                          atol=1e-4)
    assert [len(lp) for lp in stats.logp] == mask.sum(1).tolist()
    # the trained model knows its forget facts: high probability, most argmaxes right
    assert AnswerProb().compute(ctx).values["forget_answer_prob"] > 0.8
    assert ExactMemorization().compute(ctx).values["forget_exact_memorization"] > 0.8
    # multiple choice is scored as a cloze: the letter masked after the prompt
    assert 0 <= MCAccuracy(MCAccuracy.Params(splits=["mc_hazard"])).compute(ctx).values[
        "mc_hazard_accuracy"] <= 1


def test_metrics_that_need_a_causal_lm_refuse_the_masked_lm(problem):
    ctx = EvalContext(problem.adapter, conformance.tiny_splits(problem), role="unlearned")
    for metric in (ExtractionStrength(), Rouge()):
        with pytest.raises(IncompatibleComponentError, match="causal_lm"):
            metric.compute(ctx)


def test_a_config_names_the_masked_lm_and_is_refused_causal_only_components():
    registry = get_plugin_manager().registry
    base = {"model": {"name": "masked_lm"}, "data": {"name": "synthetic_qa"},
            "strategy": {"name": "gradient_difference"}, "metrics": ["answer_prob"]}
    assert load_config(base, registry).model.info.cls is MaskedLMAdapter
    bad = {**base, "strategy": {"name": "rmu"}, "metrics": ["answer_prob", "rouge"]}
    with pytest.raises(ConfigError) as err:
        load_config(bad, registry)
    assert {p.path for p in err.value.problems} == {"strategy.name", "metrics[1].name"}
