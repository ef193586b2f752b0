"""The LLM metrics on a tiny trained causal LM against a fresh (untrained) one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import EvalContext, RunEvalContext
from erasus.testing.conformance import tiny_problem, tiny_splits
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
from erasus_llm.metrics import (
    AnswerProb,
    ForgetQuality,
    MIAGradNorm,
    MIALoss,
    MIAReference,
    ModelUtility,
    PrivLeak,
    Rouge,
    TruthRatio,
)
from erasus_llm.tiny import TINY_GPT2


@pytest.fixture(scope="module")
def models():
    problem = tiny_problem(CausalLMAdapter, 0)  # trained (shared with the conformance suite)
    torch.manual_seed(1)
    fresh = CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2))
    fresh.model.eval()
    return problem.adapter, fresh, tiny_splits(problem)


def contexts(models, **roles):
    trained, fresh, splits = models
    pick = {"trained": trained, "fresh": fresh}
    return {role: EvalContext(pick[which], splits, role=role) for role, which in roles.items()}


def test_trained_model_knows_its_forget_answers(models):
    ctx = contexts(models, trained="trained", fresh="fresh")
    trained = AnswerProb().compute(ctx["trained"]).values["forget_answer_prob"]
    fresh = AnswerProb().compute(ctx["fresh"]).values["forget_answer_prob"]
    assert trained > 0.8 > 0.05 > fresh
    # the right answer beats the perturbed ones for the trained model only
    tr = TruthRatio().compute(ctx["trained"]).details["forget_perturbed"]["truth_ratios"]
    assert max(tr) < 0.5
    rouge = Rouge().compute(ctx["trained"]).values["forget_rouge_l_recall"]
    assert rouge > 0.8 > Rouge().compute(ctx["fresh"]).values["forget_rouge_l_recall"]
    assert MIALoss().compute(ctx["trained"]).values["mia_loss_auc"] > 0.9


def test_model_utility_of_trained_exceeds_fresh(models):
    ctx = contexts(models, trained="trained", fresh="fresh")
    trained = ModelUtility().compute(ctx["trained"])
    fresh = ModelUtility().compute(ctx["fresh"]).values["model_utility"]
    assert len(trained.details["components"]) == 9
    assert trained.values["model_utility"] > 0.5 > fresh
    # the greedy answers were generated once per split and shared with rouge
    Rouge(Rouge.Params(splits=["retain_perturbed"])).compute(ctx["trained"])
    assert ctx["trained"].llm_generations[("retain_perturbed", 200)] == 1


def test_forget_quality_same_vs_separated(models, tmp_path):
    same = RunEvalContext(results={}, run_info={}, contexts=contexts(
        models, original="trained", unlearned="trained", oracle="trained"))
    out = ForgetQuality().compute(same)
    assert out.values["forget_quality"] == pytest.approx(1.0)
    apart = RunEvalContext(results={}, run_info={}, contexts=contexts(
        models, original="trained", unlearned="trained", oracle="fresh"))
    out = ForgetQuality().compute(apart)
    # 6 forget questions, all apart: the exact p-value 2 / C(12, 6)
    assert out.values["forget_quality"] == pytest.approx(2 / 924, rel=1e-6)
    # the oracle's ratios, stored in the details, serve a later run as a results file
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"details": {"run": {"forget_quality": out.details}}}))
    no_oracle = RunEvalContext(results={}, run_info={}, contexts=contexts(
        models, unlearned="fresh"))
    stored = ForgetQuality(ForgetQuality.Params(oracle_results=str(path))).compute(no_oracle)
    assert stored.values == {"forget_quality": pytest.approx(1.0)}


def test_forget_quality_and_privleak_need_an_oracle(models):
    ctx = RunEvalContext(results={}, run_info={}, contexts=contexts(models, unlearned="trained"))
    with pytest.raises(IncompatibleComponentError, match=r"'forget_quality'.*oracle_results"):
        ForgetQuality().compute(ctx)
    with pytest.raises(IncompatibleComponentError, match=r"'privleak'.*oracle_auc"):
        PrivLeak().compute(ctx)
    with pytest.raises(IncompatibleComponentError, match="'mia_reference' needs the original"):
        MIAReference().compute(ctx)


def test_privleak_and_reference_attack(models):
    ctx = RunEvalContext(results={}, run_info={}, contexts=contexts(
        models, original="trained", unlearned="trained", oracle="fresh"))
    out = PrivLeak().compute(ctx)
    auc, oracle = out.details["auc"], out.details["oracle_auc"]
    assert auc > 0.9 and out.values["privleak"] == pytest.approx(
        ((1 - auc) - (1 - oracle)) / (1 - oracle) * 100)
    assert out.values["privleak"] < -50  # the forget set is far more exposed than for the oracle
    assert PrivLeak(PrivLeak.Params(oracle_auc=auc)).compute(ctx).values["privleak"] == \
        pytest.approx(0.0, abs=1e-6)
    # scored against itself as reference, every score is 0: no better than chance
    assert MIAReference().compute(ctx).values["mia_reference_auc"] == pytest.approx(0.5)


def test_gradnorm_leaves_the_model_as_it_was(models):
    trained, _, splits = models
    before = {n: p.detach().clone() for n, p in trained.model.named_parameters()}
    flags = {n: p.requires_grad for n, p in trained.model.named_parameters()}
    ctx = EvalContext(trained, splits)
    auc = MIAGradNorm().compute(ctx).values["mia_gradnorm_auc"]
    assert auc > 0.9  # members sit at a minimum: smaller gradients
    for n, p in trained.model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None and p.requires_grad == flags[n]
    passes = ctx.forward_passes
    MIAGradNorm().compute(ctx)
    assert ctx.forward_passes == passes == len(splits.forget) + len(splits.get("holdout"))
    assert np.isfinite(auc)


def test_batched_generation_matches_one_at_a_time(models):
    from erasus_llm.metrics._generation import greedy_answers

    trained, _, splits = models
    items = splits.get("retain_perturbed")
    lengths = {len(ids) for ids, _ in trained.encode([it["question"] for it in items],
                                                      [it["answer"] for it in items])}
    assert len(lengths) > 1  # left padding is exercised
    batched = greedy_answers(EvalContext(trained, splits, batch_size=64), "retain_perturbed",
                             20, "rouge")
    single = greedy_answers(EvalContext(trained, splits, batch_size=1), "retain_perturbed",
                            20, "rouge")
    assert batched == single
    assert sum(g == it["answer"] for g, it in zip(batched, items, strict=True)) > 0.8 * len(items)


def test_the_tofu_data_set_provides_what_the_metrics_read():
    from erasus_llm.tofu import Tofu

    splits = Tofu().load(seed=0)
    torch.manual_seed(0)
    ctx = EvalContext(CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2)), splits,
                      batch_size=64)
    tr = TruthRatio().compute(ctx).details["forget_perturbed"]["truth_ratios"]
    assert len(tr) == len(splits.get("forget_perturbed"))
    utility = ModelUtility(ModelUtility.Params(max_new_tokens=4)).compute(ctx)
    assert len(utility.details["components"]) == 9
    assert 0.4 < MIALoss().compute(ctx).values["mia_loss_auc"] < 0.7  # untrained: near chance


def test_verbatim_memorisation_of_trained_exceeds_fresh(models):
    from erasus_llm.metrics import VerbMem

    ctx = contexts(models, trained="trained", fresh="fresh")
    trained = VerbMem().compute(ctx["trained"])
    assert trained.values["verbmem_rouge_l_f1"] > 0.8
    assert trained.details["generations"][0] == \
        models[2].get("verbmem_forget")[0]["gt"].strip()
    assert VerbMem().compute(ctx["fresh"]).values["verbmem_rouge_l_f1"] < 0.2


def test_relearning_brings_back_what_gradient_ascent_suppressed(models):
    from erasus_llm.metrics import RelearnRobustness

    trained, _, splits = models
    unlearned = trained.clone()
    opt = torch.optim.Adam(unlearned.model.parameters(), lr=1e-3)
    forget = [splits.forget[i] for i in range(len(splits.forget))]
    for _ in range(40):  # gradient ascent on the forget answers, to a mean NLL above 3
        loss = -unlearned.per_example_loss(unlearned.prepare_batch(forget)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if -loss.item() > 3:
            break
    unlearned.model.eval()
    ctx = RunEvalContext(results={}, run_info={}, contexts={
        "unlearned": EvalContext(unlearned, splits, role="unlearned")})
    before = AnswerProb().compute(ctx.contexts["unlearned"]).values["forget_answer_prob"]
    weights = {n: p.detach().clone() for n, p in unlearned.model.named_parameters()}
    metric = RelearnRobustness(RelearnRobustness.Params(steps=10, lr=3e-3,
                                                        metrics=["answer_prob"]))
    after = metric.compute(ctx).values["relearn_forget_answer_prob"]
    assert before < 0.05 and after > 0.5
    for n, p in unlearned.model.named_parameters():  # the evaluated model is untouched
        assert torch.equal(p, weights[n])


def test_quantization_robustness_rounds_a_copy(models):
    from erasus_llm.metrics import QuantizationRobustness

    trained, _, splits = models
    ctx = RunEvalContext(results={}, run_info={}, contexts={
        "unlearned": EvalContext(trained, splits, role="unlearned")})
    plain = AnswerProb().compute(ctx.contexts["unlearned"]).values["forget_answer_prob"]
    eight = QuantizationRobustness(QuantizationRobustness.Params(
        bits=8, metrics=["answer_prob"])).compute(ctx)
    four = QuantizationRobustness(QuantizationRobustness.Params(
        bits=4, metrics=["answer_prob"])).compute(ctx)
    assert eight.values["quant8_forget_answer_prob"] == pytest.approx(plain, abs=0.02)
    assert four.values["quant4_forget_answer_prob"] != pytest.approx(plain, abs=1e-4)
    assert AnswerProb().compute(EvalContext(trained, splits)).values[
        "forget_answer_prob"] == pytest.approx(plain)  # the model itself is not quantized
