"""The seq2seq_lm adapter (T5-style): question in the encoder, answer + EOS as the decoder
target, the loss against a hand computation, save/load, unlearning toward the oracle on a
tiny trained T5, and the LLM metrics (one pass, greedy generation) on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from erasus.builtin.strategies.npo import NPO
from erasus.config import load_config
from erasus.errors import ConfigError, IncompatibleComponentError
from erasus.evaluation import EvalContext
from erasus.plugins import get_plugin_manager
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance
from erasus_llm.metrics import AnswerProb, Rouge, TruthRatio
from erasus_llm.metrics._cache import continuation_stats, token_stats
from erasus_llm.seq2seq_lm import Seq2SeqLMAdapter, Seq2SeqLMParams
from erasus_llm.tiny import train_causal_lm

ITEMS = {"question": ["What colour does Ann like?", "Where does Bo live?"],
         "answer": ["red", "Paris"]}


def _adapter(**params) -> Seq2SeqLMAdapter:
    torch.manual_seed(0)
    return Seq2SeqLMAdapter.build(Seq2SeqLMParams(**params))


@pytest.fixture(scope="module")
def problem():
    return conformance.tiny_problem(Seq2SeqLMAdapter, 0)


def test_question_is_the_encoder_input_and_answer_plus_eos_the_target():
    adapter = _adapter(prompt_template="question: {question}")
    tok = adapter.tokenizer
    batch = adapter.prepare_batch(ITEMS)
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert first == tok("question: What colour does Ann like?")["input_ids"]
    labels = [row[row != -100].tolist() for row in batch["labels"]]
    assert labels == [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                      for a in ITEMS["answer"]]
    with torch.no_grad():
        logits = adapter.model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"],
                               labels=batch["labels"]).logits
        got = adapter.per_example_loss(batch)
    for i, target in enumerate(labels):
        want = -F.log_softmax(logits[i, :len(target)], -1).gather(
            1, torch.tensor(target)[:, None]).mean()
        assert torch.allclose(got[i], want, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    adapter = _adapter()
    adapter.save(tmp_path)
    loaded = Seq2SeqLMAdapter.load(tmp_path)
    with torch.no_grad():
        assert torch.allclose(adapter.per_example_loss(adapter.prepare_batch(ITEMS)),
                              loaded.per_example_loss(loaded.prepare_batch(ITEMS)), atol=1e-6)


def test_a_decoder_only_model_and_plain_text_are_refused_with_what_works():
    from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams

    causal = CausalLMAdapter.build(CausalLMParams(config={"model_type": "gpt2", "n_embd": 32,
                                                          "n_layer": 1, "n_head": 2}))
    with pytest.raises(IncompatibleComponentError, match="use model causal_lm"):
        Seq2SeqLMAdapter.wrap((causal.model, causal.tokenizer))
    with pytest.raises(IncompatibleComponentError, match="plain text items need a causal LM"):
        _adapter().prepare_batch({"text": ["some raw text"]})


def test_tiny_problem_knows_its_facts_and_answers_them_greedily(problem):
    adapter = problem.adapter
    forget = [problem.forget[i] for i in range(len(problem.forget))]
    test = [problem.test[i] for i in range(len(problem.test))]
    with torch.no_grad():
        f = adapter.per_example_loss(adapter.prepare_batch(forget)).mean()
        t = adapter.per_example_loss(adapter.prepare_batch(test)).mean()
    assert f < 0.1 < 1.0 < t
    answers, steps = adapter.generate_answers([it["question"] for it in forget], 8)
    assert answers == [it["answer"] for it in forget]
    assert steps >= 1


def test_npo_raises_the_forget_loss_toward_the_oracle_and_keeps_the_retain_facts(problem):
    torch.manual_seed(0)
    oracle = Seq2SeqLMAdapter.build(Seq2SeqLMParams())
    train_causal_lm(oracle, problem.retain, steps=300, seed=0)  # never sees the forget set
    forget0 = conformance.mean_loss(problem.adapter, problem.forget)
    oracle_forget = conformance.mean_loss(oracle, problem.forget)
    adapter = problem.adapter.clone()
    NPO(NPO.Params(lr=5e-4, epochs=5)).unlearn(
        adapter, UnlearnData(forget=problem.forget, retain=problem.retain, info=problem.info),
        RunContext(seed=0, reference=problem.adapter))
    forget1 = conformance.mean_loss(adapter, problem.forget)
    retain1 = conformance.mean_loss(adapter, problem.retain)
    assert forget0 < 0.1 < 1.0 < oracle_forget
    assert forget1 > 0.25 * oracle_forget  # a good part of the way to the oracle
    assert retain1 < 0.5  # the retain facts are still known
    assert conformance.mean_loss(problem.adapter, problem.forget) == pytest.approx(forget0)


def test_llm_metrics_read_the_decoder_log_probs_and_greedy_answers(problem):
    adapter = problem.adapter
    ctx = EvalContext(adapter, conformance.tiny_splits(problem), role="unlearned")
    stats = token_stats(ctx, "forget")
    forget = [problem.forget[i] for i in range(len(problem.forget))]
    with torch.no_grad():
        nll, mask = adapter.token_losses(adapter.prepare_batch(forget))
    assert [len(lp) for lp in stats.logp] == mask.sum(1).tolist()
    assert torch.allclose(torch.tensor([lp.sum() for lp in stats.logp]).float(),
                          -(nll * mask).sum(1), atol=1e-4)
    assert AnswerProb().compute(ctx).values["forget_answer_prob"] > 0.8
    # the trained model prefers the true answer to the perturbed ones
    assert TruthRatio().compute(ctx).values["forget_perturbed_truth_ratio_true_better"] > 0.5
    rouge = Rouge(Rouge.Params(splits=["forget"], max_new_tokens=8)).compute(ctx)
    assert rouge.values["forget_rouge_l_recall"] == pytest.approx(1.0)
    # plain text scored from its start (MUSE's raw corpora) needs a causal LM
    with pytest.raises(IncompatibleComponentError, match="needs a causal language model"):
        continuation_stats(ctx, ("raw",), [None], ["some raw text"], [0], 1, "perplexity")


def test_a_config_accepts_generation_metrics_and_refuses_causal_only_strategies():
    registry = get_plugin_manager().registry
    base = {"model": {"name": "seq2seq_lm"}, "data": {"name": "synthetic_qa"},
            "strategy": {"name": "npo"}, "metrics": ["answer_prob", "rouge"]}
    assert load_config(base, registry).model.info.cls is Seq2SeqLMAdapter
    bad = {**base, "strategy": {"name": "rmu"}, "metrics": ["rouge", "verbmem"]}
    with pytest.raises(ConfigError) as err:
        load_config(bad, registry)
    assert {p.path for p in err.value.problems} == {"strategy.name", "metrics[1].name"}
