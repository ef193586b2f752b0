"""embedding_alignment: the refusal target, and unlearning on the tiny trained GPT-2."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import EmbeddingAlignment
from erasus_llm.strategies.embedding_alignment import refusal_target


def test_target_is_the_refusal_mean_and_forget_moves_to_it(problem, tmp_path,
                                                           oracle_forget_loss):
    idk = tmp_path / "idk.txt"
    idk.write_text("I don't know.\nNo idea.\n")
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    adapter = problem.adapter.clone()
    forget0 = c.mean_loss(adapter, problem.forget)
    s = EmbeddingAlignment(idk_path=str(idk), epochs=100)
    s.prepare(adapter, data, RunContext(seed=0))
    assert s.control.shape[-1] == adapter.model.config.hidden_size
    # the target is the mean of the per-refusal means (equal token counts aside): with
    # one refusal file per answer, the two-answer target lies between the one-answer ones
    qs = [problem.forget[i]["question"] for i in range(len(problem.forget))]
    t1 = refusal_target(s, adapter, qs, ["I don't know."])
    t2 = refusal_target(s, adapter, qs, ["No idea."])
    both = refusal_target(s, adapter, qs, ["I don't know.", "No idea."])
    assert torch.allclose(s.control, both)
    lo, hi = torch.minimum(t1, t2) - 1e-5, torch.maximum(t1, t2) + 1e-5
    assert bool(((both >= lo) & (both <= hi)).all())
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    s.unlearn(adapter, data, RunContext(seed=0))
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    assert forget1 >= forget0 + 0.5 * (oracle_forget_loss - forget0), (forget0, forget1)
    assert retain1 <= 0.15, retain1  # retain answer probability >= 0.86
    after = adapter.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(s.frozen)


def test_needs_qa_items_and_retain(problem):
    with pytest.raises(IncompatibleComponentError, match="retain"):
        EmbeddingAlignment().unlearn(problem.adapter.clone(),
                                     UnlearnData(forget=problem.forget), RunContext(seed=0))
