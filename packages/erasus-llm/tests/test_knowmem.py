"""knowmem: MUSE's few-shot prompt and answer cut, ROUGE-L without stemming, a model that
knows the facts against one that does not, and the ICL splits of the bundled MUSE set."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import EvalContext
from erasus.testing import conformance
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
from erasus_llm.metrics import KnowMem
from erasus_llm.metrics.knowmem import knowmem_prompt, muse_answer
from erasus_llm.muse import Muse
from erasus_llm.tiny import TINY_GPT2, tiny_qa_problem

#: MUSE's prompt ends "Answer: " (with the space), so a model that is to answer it must
#: have learnt the answer after that space: this template trains exactly that.
MUSE_FORMAT = {"prompt_template": "Question: {question}\nAnswer: ",
               "answer_template": "{answer}"}


def test_the_prompt_is_muses_few_shot_format():
    shots = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    assert knowmem_prompt("Q3?", shots) == ("Question: Q1?\nAnswer: A1\n\n"
                                            "Question: Q2?\nAnswer: A2\n\n"
                                            "Question: Q3?\nAnswer: ")
    assert knowmem_prompt("Q3?", []) == "Question: Q3?\nAnswer: "


@pytest.mark.parametrize(("generated", "answer"), [
    ("Oslo\n\nQuestion: next?", "Oslo"), ("Oslo\nQuestion: next?", "Oslo"),
    ("Oslo Question: x", "Oslo "), ("Oslo", "Oslo")])
def test_answers_are_cut_where_muse_cuts_them(generated, answer):
    assert muse_answer(generated) == answer


@pytest.fixture(scope="module")
def knowing():
    """A tiny GPT-2 that learnt the synthetic facts in MUSE's answer format."""
    return tiny_qa_problem(lambda: CausalLMAdapter.build(
        CausalLMParams(config=TINY_GPT2, **MUSE_FORMAT)), 0, steps=300)


def test_a_model_that_knows_the_facts_answers_them_and_a_fresh_one_does_not(knowing):
    splits = conformance.tiny_splits(knowing)
    zero_shot = KnowMem(KnowMem.Params(shots="none"))
    known = zero_shot.compute(EvalContext(knowing.adapter, splits))
    assert known.values["knowmem_forget_qa_rouge_l_f1"] > 0.8
    assert known.values["knowmem_retain_qa_rouge_l_f1"] > 0.8
    answers = known.details["knowmem_forget_qa"]["answers"]
    assert [a.strip() for a in answers] == [knowing.forget[i]["answer"]
                                           for i in range(len(knowing.forget))]
    torch.manual_seed(0)
    fresh = CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2, **MUSE_FORMAT))
    unknown = zero_shot.compute(EvalContext(fresh, splits))
    assert unknown.values["knowmem_forget_qa_rouge_l_f1"] < 0.2
    # few-shot (the default) reads the *_icl splits and reports both ROUGE-L values
    few = KnowMem().compute(EvalContext(knowing.adapter, splits))
    assert set(few.values) == {f"knowmem_{s}_qa_rouge_l_{v}" for s in ("forget", "retain")
                               for v in ("f1", "recall")}


def test_few_shot_without_icl_examples_is_an_error_naming_the_split_and_the_option(knowing):
    splits = conformance.tiny_splits(knowing)
    metric = KnowMem(KnowMem.Params(splits=["forget"]))
    with pytest.raises(IncompatibleComponentError, match=r"'forget_icl'.*shots: none"):
        metric.compute(EvalContext(knowing.adapter, splits))


def test_the_bundled_muse_set_has_the_few_shot_files():
    splits = Muse().load(seed=0)
    for split in ("knowmem_forget_qa", "knowmem_retain_qa"):
        questions = {it["question"] for it in splits.get(split)}
        shots = list(splits.get(f"{split}_icl"))
        assert len(shots) == 3
        assert not questions & {s["question"] for s in shots}  # examples are not asked
