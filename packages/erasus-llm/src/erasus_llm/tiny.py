"""Tiny trained causal LMs and their data, for tests and examples (seconds on a CPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erasus.adapters import TinyProblem

    from erasus_llm.causal_lm import CausalLMAdapter

__all__ = [
    "TINY_DATA",
    "TINY_GPT2",
    "benchmark_views",
    "tiny_causal_lm_problem",
    "tiny_qa_problem",
    "train_causal_lm",
]

#: The tiny GPT-2 of the conformance problem (about 0.1M parameters).
TINY_GPT2: dict[str, Any] = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2}

#: The synthetic_qa parameters of the conformance problem: 16 people x 3 facts, the
#: facts of 2 of them to forget, 6 further people held out.
TINY_DATA: dict[str, Any] = {"people": 16, "holdout_people": 6,
                             "attributes": ["colour", "city", "job"],
                             "forget": {"kind": "person", "fraction": 0.125}}


def train_causal_lm(adapter: CausalLMAdapter, dataset: Any, *, steps: int = 300,
                    lr: float = 3e-3, batch_size: int = 16, seed: int = 0) -> None:
    """Plain supervised training on the answer loss (Adam, cosine-decayed ``lr``)."""
    import torch
    from erasus.data import index_loader

    torch.manual_seed(seed)
    model = adapter.model
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    step, epoch = 0, 0
    while step < steps:
        for _, raw in index_loader(dataset, batch_size=batch_size, shuffle=True,
                                   seed=seed * 1000 + epoch):
            loss = adapter.per_example_loss(adapter.prepare_batch(raw)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
        epoch += 1
    model.eval()


def tiny_qa_problem(build: Callable[[], Any], seed: int = 0, *, steps: int = 300
                    ) -> TinyProblem:
    """The model ``build()`` returns (built under ``seed``) trained on synthetic facts
    (:data:`TINY_DATA`) until it knows them, with the facts' benchmark views.

    The forget and retain facts end with a low answer loss, the held-out test facts (other
    people) with a high one, so forgetting is measurable in a few steps.
    """
    import torch
    from erasus.adapters import TinyProblem

    from erasus_llm.datasets import SyntheticQA

    splits = SyntheticQA(**TINY_DATA).load(seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = build()
        train_causal_lm(adapter, splits.train, steps=steps, seed=seed)
    return TinyProblem(adapter, splits.forget, splits.retain, splits.test, info=splits.info,
                       extra=benchmark_views(splits.forget, splits.retain, splits.test))


def tiny_causal_lm_problem(seed: int = 0, *, config: dict[str, Any] | None = None,
                           steps: int = 300) -> TinyProblem:
    """A tiny causal LM (GPT-2 by default) trained on synthetic facts until it knows them."""
    from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams

    return tiny_qa_problem(
        lambda: CausalLMAdapter.build(CausalLMParams(config=config or TINY_GPT2)), seed,
        steps=steps)


def benchmark_views(forget: Any, retain: Any, test: Any, n_perturbed: int = 3) -> dict[str, Any]:
    """TOFU / MUSE / WMDP-style extra splits over synthetic facts, for the LLM metrics.

    Each record gains ``perturbed_answer``: ``n_perturbed`` other values of its attribute
    (wrong answers of the same kind, TOFU's perturbations), and ``paraphrased_answer``:
    the answer itself (synthetic facts have no paraphrases). ``forget_perturbed`` and
    ``retain_perturbed`` are the forget and retain facts, ``holdout`` the test facts, and
    the retain facts split in two halves stand in for ``real_authors`` and
    ``world_facts`` (facts the model knows and should keep); ``verbmem_forget`` holds
    MUSE-style ``{prompt, gt}`` items: each forget fact's prompt text and its answer;
    ``mc_hazard`` WMDP-style ``{question, choices, answer}`` items over the forget facts;
    ``knowmem_forget_qa`` / ``knowmem_retain_qa`` MUSE-style questions (the forget facts,
    and the retain facts after the first six), each with an ``_icl`` split of three retain
    facts as few-shot examples.
    """
    from erasus_llm._facts import ATTRIBUTES

    def perturbed(record: dict[str, str]) -> dict[str, Any]:
        q = record["question"]
        values = next(v for t, v in ATTRIBUTES.values()
                      if q.startswith(t.split("{name}")[0]) and q.endswith(t.split("{name}")[1]))
        others = [v for v in values if v != record["answer"]][:n_perturbed]
        return {**record, "paraphrased_answer": record["answer"], "perturbed_answer": others}

    views = {name: [perturbed(data[i]) for i in range(len(data))]
             for name, data in (("forget_perturbed", forget), ("retain_perturbed", retain))}
    half = len(views["retain_perturbed"]) // 2
    return {**views, "real_authors": views["retain_perturbed"][:half],
            "world_facts": views["retain_perturbed"][half:],
            "holdout": [test[i] for i in range(len(test))],
            "verbmem_forget": [{"prompt": f"Question: {r['question']}\nAnswer:",
                                "gt": f" {r['answer']}"} for r in views["forget_perturbed"]],
            "mc_hazard": [_choices(r, i) for i, r in enumerate(views["forget_perturbed"])],
            **_knowmem_views(forget, retain)}


def _knowmem_views(forget: Any, retain: Any) -> dict[str, list[dict[str, str]]]:
    facts = [retain[i] for i in range(len(retain))]
    return {"knowmem_forget_qa": [forget[i] for i in range(len(forget))],
            "knowmem_forget_qa_icl": facts[:3], "knowmem_retain_qa": facts[6:],
            "knowmem_retain_qa_icl": facts[3:6]}


def _choices(record: dict[str, Any], i: int) -> dict[str, Any]:
    """A multiple-choice item: the answer among the perturbed ones, at position i mod n."""
    options = [record["answer"], *record["perturbed_answer"]]
    k = i % len(options)
    return {"question": record["question"], "choices": options[-k:] + options[:-k],
            "answer": k}  # k = 0: options[-0:] is all of them, options[:-0] none
