"""causal_tracing: indirect effects on constructed cases, the located layers, updates confined
to their MLPs, and unlearning on the tiny trained GPT-2 measured against the oracle."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import CausalTracing, trace_layers
from erasus_llm.strategies._common import qa_records


def _records(problem, n=None):
    records = qa_records(problem.forget, "test", "traces")
    return records[:n] if n else records


def test_indirect_effect_by_hand(problem):
    """One record, traced by hand with the same noise: IE(l) = max_i p_restored - p_corrupt."""
    adapter = problem.adapter.clone()
    record = _records(problem, 1)
    got = trace_layers(adapter, record, trace="layer", samples=4, seed=3)
    model, tok = adapter.model.eval(), adapter.tokenizer
    prompt = adapter.params.prompt_template.format(question=record[0]["question"])
    enc = tok(prompt, return_offsets_mapping=True)
    ids = torch.tensor(enc["input_ids"])[None]
    lo = adapter.params.prompt_template.index("{question}")
    hi = lo + len(record[0]["question"])
    pos = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > lo and a < hi]
    answer = adapter.prepare_batch([problem.forget[0]])["input_ids"][0, ids.shape[1]]
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids)
        out = model(inputs_embeds=emb, output_hidden_states=True)
        # clean[l + 1] is layer l's output (the last one after the final norm, which does
        # not matter: the last layer's restored output at a question token reaches nothing)
        clean = out.hidden_states
        p_clean = torch.softmax(out.logits[0, -1], -1)[answer]
        std = 3.0 * float(emb[0, pos].std())
        noise = torch.randn(4, len(pos), emb.shape[-1], generator=torch.Generator().manual_seed(3))
        corrupt = emb.repeat(4, 1, 1)
        corrupt[:, pos] += noise * std
        p_corrupt = torch.softmax(model(inputs_embeds=corrupt).logits[:, -1], -1)[:, answer].mean()
        layers = adapter._decoder_layers()
        expected = []
        for layer_index, layer in enumerate(layers):
            best = -1.0
            for j in pos:
                def hook(m, a, o, j=j, layer_index=layer_index):
                    h = (o[0] if isinstance(o, tuple) else o).clone()
                    h[:, j] = clean[layer_index + 1][0, j]
                    return (h, *o[1:]) if isinstance(o, tuple) else h
                handle = layer.register_forward_hook(hook)
                p = torch.softmax(model(inputs_embeds=corrupt).logits[:, -1], -1)[:, answer]
                handle.remove()
                best = max(best, float(p.mean() - p_corrupt))
            expected.append(best)
    assert got.p_clean == pytest.approx(float(p_clean), abs=1e-5)
    assert got.p_corrupt == pytest.approx(float(p_corrupt), abs=1e-5)
    assert got.indirect_effects == pytest.approx(expected, abs=1e-5)
    # the last layer's output at a question token reaches no later position: no effect
    assert got.indirect_effects[-1] == pytest.approx(0.0, abs=1e-7)


def test_constructed_cases(problem):
    records = _records(problem, 2)
    adapter = problem.adapter.clone()
    # no noise: corrupted = clean, so nothing to restore
    quiet = trace_layers(adapter, records, noise_scale=0.0)
    assert quiet.p_corrupt == pytest.approx(quiet.p_clean, abs=1e-6)
    assert quiet.indirect_effects == pytest.approx([0.0, 0.0], abs=1e-6)
    # a layer whose MLP outputs zero whatever its input: restoring it changes nothing
    with torch.no_grad():
        for t in adapter._decoder_layers()[0].mlp.parameters():
            t.zero_()
    dead = trace_layers(adapter, records)
    assert dead.indirect_effects[0] == pytest.approx(0.0, abs=1e-7)


def test_locates_unlearns_and_only_touches_the_located_mlp(problem, oracle_forget_loss):
    forget0 = c.mean_loss(problem.adapter, problem.forget)
    adapter = problem.adapter.clone()
    before = {n: t.detach().clone() for n, t in adapter.model.named_parameters()}
    s = CausalTracing()
    history = s.unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                        RunContext(seed=0))
    result = s.trace_result
    # on the 2-layer model the fact is carried by layer 0's MLP at the question tokens
    assert result.layers == [0]
    assert result.indirect_effects[0] > 0.02 and result.total_effect > 0.3
    assert history.steps[0]["located_0"] == 0.0
    assert history.steps[0]["effect_0"] == pytest.approx(result.indirect_effects[0], rel=1e-5)
    changed = {n for n, t in adapter.model.named_parameters() if not torch.equal(t, before[n])}
    assert changed == set(s.trainable)
    assert changed and all(n.startswith("transformer.h.0.mlp.") for n in changed)
    assert all(t.requires_grad for t in adapter.model.parameters())  # flags given back
    forget1 = c.mean_loss(adapter, problem.forget)
    assert forget1 >= forget0 + 0.3 * (oracle_forget_loss - forget0), (forget0, forget1)
    assert c.mean_loss(adapter, problem.retain) <= 0.2


def test_subject_key_corrupts_the_subject_only(problem):
    items = []
    for i in range(2):
        item = dict(problem.forget[i])
        item["subject"] = item["question"].rstrip("?").split(" of ")[-1].split(" was ")[-1]
        items.append(item)
    adapter = problem.adapter.clone()
    s = CausalTracing(subject_key="subject", retain_weight=0.0, max_steps=1)
    s.unlearn(adapter, UnlearnData(forget=items), RunContext(seed=0))
    assert len(s.trace_result.per_example) == 2
    assert s.trace_result.total_effect > 0


def test_bad_input(problem):
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    with pytest.raises(IncompatibleComponentError, match="causal_lm"):
        CausalTracing().unlearn(object(), data, RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="top_k 3"):
        CausalTracing(top_k=3).unlearn(problem.adapter.clone(), data, RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="subject_key"):
        CausalTracing(subject_key="subject").unlearn(problem.adapter.clone(), data,
                                                     RunContext(seed=0))
    bad = [{**problem.forget[0], "subject": "Nobody Here"}]
    with pytest.raises(IncompatibleComponentError, match="does not occur"):
        CausalTracing(subject_key="subject", retain_weight=0.0).unlearn(
            problem.adapter.clone(), UnlearnData(forget=bad), RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="question"):
        CausalTracing().unlearn(problem.adapter.clone(),
                                UnlearnData(forget=[{"text": "x"}], retain=problem.retain),
                                RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="retain"):
        CausalTracing().unlearn(problem.adapter.clone(), UnlearnData(forget=problem.forget),
                                RunContext(seed=0))
