"""The one-pass token cache, checked on a stub bigram LM whose log-probs are known exactly."""

from __future__ import annotations

import math
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from erasus.data import DataInfo, Splits
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import EvalContext
from erasus_llm._facts import corpus
from erasus_llm._tokenizer import bpe_tokenizer
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
from erasus_llm.metrics import (
    AnswerProb,
    ExactMemorization,
    ExtractionStrength,
    MIALoss,
    MIAMinK,
    MIAMinKPlusPlus,
    MIAZlib,
    Perplexity,
    TruthRatio,
)
from erasus_llm.metrics._cache import token_stats

FORGET = [
    {"question": "What is the favourite colour of Liora Greaves?", "answer": "teal",
     "paraphrased_answer": "it is teal", "perturbed_answer": ["red", "blue", "Oslo"]},
    {"question": "In which city was Magnus Carrow born?", "answer": "Kyoto",
     "paraphrased_answer": "Kyoto", "perturbed_answer": ["Lima", "Perth"]},
    {"question": "What is the profession of Nerys Holloway?", "answer": "luthier",
     "paraphrased_answer": "a luthier", "perturbed_answer": ["baker", "pilot"]},
]
RETAIN = [{"question": "What is the name of the pet of Soren Dunmore?", "answer": "Moss"},
          {"question": "In which year was Vesna Quenby born?", "answer": "1970"}]
HOLDOUT = [{"question": "What is the favourite colour of Eamon Stirling?", "answer": "red"},
           {"question": "In which city was Juniper Blackwood born?", "answer": "Tallinn"}]


class Bigram(torch.nn.Module):
    """Logits at position t are a fixed table's row for the token at t (a bigram LM)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g) * 3)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, use_cache=False, **_):
        self.calls += 1
        return SimpleNamespace(logits=self.table[input_ids])


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer(corpus(), 512)


def make_ctx(tokenizer, batch_size=2):
    adapter = CausalLMAdapter(Bigram(len(tokenizer)), CausalLMParams(), tokenizer=tokenizer)
    splits = Splits(train=FORGET + RETAIN, forget=FORGET, retain=RETAIN, test=HOLDOUT,
                    info=DataInfo(modality="text"),
                    extra={"forget_perturbed": FORGET, "holdout": HOLDOUT})
    return EvalContext(adapter, splits, batch_size=batch_size)


def expected(adapter, question, answer):
    """Per answer token: log p, and mean / std of log p under the bigram's row (by hand)."""
    (ids, labels), = adapter.encode([question], [answer])
    table = adapter.model.table.detach().double().numpy()
    rows = []
    for t in range(1, len(ids)):
        if labels[t] == -100:
            continue
        z = table[ids[t - 1]]
        lsm = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
        p = np.exp(lsm)
        mu = float((p * lsm).sum())
        rows.append((lsm[ids[t]], mu, math.sqrt((p * (lsm - mu) ** 2).sum()),
                     int(np.argmax(z)) == ids[t]))
    return [np.array(col) for col in zip(*rows, strict=True)]


def test_token_stats_match_the_hand_computed_bigram(tokenizer):
    ctx = make_ctx(tokenizer)
    stats = token_stats(ctx, "forget", "answer")
    eos = tokenizer.eos_token_id
    for i, item in enumerate(FORGET):
        logp, mu, sigma, hit = expected(ctx.adapter, item["question"], item["answer"])
        (_ids, labels), = ctx.adapter.encode([item["question"]], [item["answer"]])
        assert labels[-1] == eos  # the EOS is scored
        assert len(stats.logp[i]) == len([x for x in labels if x != -100])
        np.testing.assert_allclose(stats.logp[i], logp, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.mu[i], mu, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(stats.sigma[i], sigma, rtol=1e-4, atol=1e-4)
        assert stats.hit[i].tolist() == hit.tolist()


def test_list_fields_flatten_with_owners(tokenizer):
    ctx = make_ctx(tokenizer)
    stats = token_stats(ctx, "forget_perturbed", "perturbed_answer")
    assert stats.owner.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert stats.texts == ["red", "blue", "Oslo", "Lima", "Perth", "baker", "pilot"]
    logp, *_ = expected(ctx.adapter, FORGET[1]["question"], "Perth")
    np.testing.assert_allclose(stats.logp[4], logp, rtol=1e-5, atol=1e-5)


def test_metric_values_from_the_stub(tokenizer):
    ctx = make_ctx(tokenizer)
    probs = [math.exp(expected(ctx.adapter, it["question"], it["answer"])[0].mean())
             for it in FORGET]
    out = AnswerProb().compute(ctx)
    assert out.values["forget_answer_prob"] == pytest.approx(np.mean(probs), rel=1e-5)
    assert out.details["forget"]["per_question"] == pytest.approx(probs, rel=1e-5)

    ratios = []
    for it in FORGET:
        correct = expected(ctx.adapter, it["question"], it["paraphrased_answer"])[0].mean()
        wrong = np.mean([expected(ctx.adapter, it["question"], w)[0].mean()
                         for w in it["perturbed_answer"]])
        ratios.append(math.exp(wrong - correct))
    tr = TruthRatio().compute(ctx)
    assert tr.details["forget_perturbed"]["truth_ratios"] == pytest.approx(ratios, rel=1e-5)
    assert tr.values["forget_perturbed_truth_ratio_closer_to_one"] == pytest.approx(
        np.mean([min(r, 1 / r) for r in ratios]), rel=1e-5)
    assert tr.values["forget_perturbed_truth_ratio_true_better"] == pytest.approx(
        np.mean([max(0.0, 1 - r) for r in ratios]), rel=1e-5, abs=1e-9)


def test_every_metric_reads_one_pass_per_split_and_field(tokenizer):
    ctx = make_ctx(tokenizer, batch_size=2)
    metrics = [AnswerProb(), Perplexity(), ExactMemorization(), ExtractionStrength(),
               MIALoss(), MIAZlib(), MIAMinK(), MIAMinKPlusPlus(), TruthRatio()]
    for metric in metrics:
        metric.compute(ctx)
    for metric in metrics:  # a second round is free
        metric.compute(ctx)
    assert ctx.llm_passes == {("forget", "answer"): 1, ("retain", "answer"): 1,
                              ("holdout", "answer"): 1,
                              ("forget_perturbed", "paraphrased_answer"): 1,
                              ("forget_perturbed", "perturbed_answer"): 1}
    # batches of 2: forget 2, retain 1, holdout 1, 7 perturbed answers 4, and the two
    # paraphrases that differ from the answer 1 ("Kyoto" already ran with the forget split)
    assert ctx.forward_passes == ctx.adapter.model.calls == 2 + 1 + 1 + 4 + 1


def test_missing_split_and_field_are_named(tokenizer):
    ctx = make_ctx(tokenizer)
    with pytest.raises(IncompatibleComponentError, match=r"'truth_ratio'.*'real_authors'"):
        TruthRatio(TruthRatio.Params(splits=["real_authors"])).compute(ctx)
    with pytest.raises(IncompatibleComponentError, match=r"'paraphrased_answer'.*'retain'"):
        TruthRatio(TruthRatio.Params(splits=["retain"])).compute(ctx)
    with pytest.raises(IncompatibleComponentError, match=r"'perturbed_answer'.*'holdout'"):
        TruthRatio(TruthRatio.Params(splits=["holdout"])).compute(ctx)
    with pytest.raises(IncompatibleComponentError, match=r"'mia_loss'.*'nowhere'"):
        MIALoss(MIALoss.Params(holdout_split="nowhere")).compute(ctx)


def test_instance_outputs_follow_the_splits():
    metric = AnswerProb(AnswerProb.Params(splits=["retain_perturbed"], normalised=True))
    assert metric.outputs == ("retain_perturbed_answer_prob_normalised",)
    assert TruthRatio.outputs == TruthRatio().outputs


def test_plain_text_items_score_every_token_after_the_first(tokenizer):
    texts = [{"text": "Liora Greaves was born in Oslo."}, {"text": "Magnus Carrow is a baker."}]
    ctx = make_ctx(tokenizer)
    ctx.splits.extra["raw"] = texts
    stats = token_stats(ctx, "raw", "text")
    table = ctx.adapter.model.table.detach().double().numpy()
    bos = tokenizer.bos_token_id
    for item, logp in zip(texts, stats.logp, strict=True):
        ids = [bos, *tokenizer(item["text"])["input_ids"]]  # BOS first, no template, no EOS
        rows = table[ids[:-1]]
        lsm = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(logp, lsm[np.arange(len(ids) - 1), ids[1:]], rtol=1e-5,
                                   atol=1e-5)
    auc = MIAMinK(MIAMinK.Params(forget_split="raw", holdout_split="raw", field="text"))
    assert auc.compute(ctx).values["mia_min_k_auc"] == 0.5  # the same texts on both sides
    with pytest.raises(IncompatibleComponentError, match=r"'text' string.*'forget'"):
        token_stats(ctx, "forget", "text", metric="privleak")


def test_multiple_choice_scores_letters_after_the_lm_eval_prompt(tokenizer):
    from erasus_llm.metrics import MCAccuracy, mc_prompt

    item = {"question": " Which city? ", "choices": ["Oslo", "Lima", "Perth", "Kyoto"],
            "answer": 0}
    assert mc_prompt(item, "About cities.\n\n") == \
        "About cities.\n\nWhich city?\nA. Oslo\nB. Lima\nC. Perth\nD. Kyoto\nAnswer:"
    ctx = make_ctx(tokenizer)
    table = ctx.adapter.model.table.detach().double().numpy()
    # the bigram scores " X" after the context's last token (and the first letter token
    # after " "); by hand, the model's pick:
    last = tokenizer(mc_prompt(item))["input_ids"][-1]
    scores = []
    for letter in "ABCD":
        ids = [last, *tokenizer(" " + letter, add_special_tokens=False)["input_ids"]]
        scores.append(sum(table[a, b] - np.log(np.exp(table[a]).sum())
                          for a, b in pairwise(ids)))
    pick = int(np.argmax(scores))
    ctx.splits.extra["mc"] = [{**item, "answer": pick}, {**item, "answer": (pick + 1) % 4}]
    out = MCAccuracy(MCAccuracy.Params(splits=["mc"])).compute(ctx)
    assert out.values == {"mc_accuracy": 0.5}
    assert out.details["mc"]["picks"] == [pick, pick]
    np.testing.assert_allclose(out.details["mc"]["loglik"][0], scores, rtol=1e-5)
    with pytest.raises(IncompatibleComponentError, match=r"'mc_accuracy'.*'forget'"):
        MCAccuracy(MCAccuracy.Params(splits=["forget"])).compute(ctx)


def test_relearning_needs_question_answer_items(tokenizer):
    from erasus.evaluation import RunEvalContext
    from erasus_llm.metrics import RelearnRobustness

    ctx = make_ctx(tokenizer)
    ctx.splits.extra["raw"] = [{"text": "Liora Greaves was born in Oslo."}]
    run = RunEvalContext(results={}, run_info={}, contexts={"unlearned": ctx})
    with pytest.raises(IncompatibleComponentError, match=r"'relearn_robustness'.*'raw'"):
        RelearnRobustness(RelearnRobustness.Params(split="raw")).compute(run)
