"""QLoRA: a causal LM loaded 4-bit (NF4) or 8-bit by bitsandbytes, unlearned by strategy
lora on adapters over the frozen quantized base (Dettmers et al. 2023), and merged into
dense float layers.

The model is the tiny conformance problem's architecture as a Llama (the usual QLoRA
family), trained on the synthetic facts and saved to a directory. Stated bounds: the
quantized model's answer loss stays within 0.05 nats of the float model's; after QLoRA
gradient difference, the forget loss has moved at least 0.5 nats toward the retain
oracle's and the retain loss stays <= 0.5 nats.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from erasus.errors import ConfigError, IncompatibleComponentError, MissingDependencyError
from erasus.testing import conformance as c
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
from erasus_llm.datasets import SyntheticQA
from erasus_llm.tiny import TINY_DATA, tiny_causal_lm_problem, train_causal_lm

pytest.importorskip("bitsandbytes", reason="the qlora extra: pip install 'erasus-llm[qlora]'")

LLAMA = {"model_type": "llama"}
TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The trained tiny Llama (float), its saved directory and the oracle's forget loss."""
    problem = tiny_causal_lm_problem(0, config=LLAMA)
    directory = tmp_path_factory.mktemp("tiny-llama") / "model"
    problem.adapter.save(directory)
    splits = SyntheticQA(**TINY_DATA).load(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        oracle = CausalLMAdapter.build(CausalLMParams(config=LLAMA))
        train_causal_lm(oracle, splits.retain, steps=300, seed=0)
    oracle_dir = tmp_path_factory.mktemp("tiny-llama-oracle") / "model"
    oracle.save(oracle_dir)
    return {"problem": problem, "dir": directory, "oracle_dir": oracle_dir,
            "oracle_forget": c.mean_loss(oracle, splits.forget)}


def quantized(llama: dict[str, Any], scheme: str = "nf4") -> CausalLMAdapter:
    return CausalLMAdapter.load(llama["dir"], CausalLMParams(quantization=scheme))


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


def lora(strategy: str, **params: Any) -> Any:
    from erasus.plugins import active_registry

    cls = active_registry().get("strategy", "lora").cls
    return cls(cls.Params(strategy=strategy, target_modules=TARGETS, **params))


def unlearn(adapter: CausalLMAdapter, strategy: Any, problem: Any) -> None:
    from erasus.pipeline import unlearn as run_unlearn
    from erasus.plugins import active_registry
    from erasus.strategy import RunContext

    full = active_registry().get("selector", "full").cls
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
        run_unlearn(adapter, strategy, full(full.Params()), problem.forget, problem.retain,
                    RunContext(seed=0))


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_loading_quantized_freezes_the_base_and_keeps_the_function(llama, scheme):
    import bitsandbytes as bnb

    problem = llama["problem"]
    adapter = quantized(llama, scheme)
    layer = bnb.nn.Linear4bit if scheme == "nf4" else bnb.nn.Linear8bitLt
    assert isinstance(adapter.model.model.layers[0].mlp.down_proj, layer)
    assert adapter.quantization == scheme
    assert not any(p.requires_grad for p in adapter.model.parameters())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
        for split in (problem.forget, problem.retain):
            assert c.mean_loss(adapter, split) == pytest.approx(
                c.mean_loss(problem.adapter, split), abs=0.05)


def test_adapter_gradients_equal_those_on_the_dequantised_model(llama):
    """The base's 4-bit matmuls pass the same gradients to the adapters as the float
    layers holding the dequantised weights, also after an eval-mode forward pass (which
    bitsandbytes' CPU repacking would turn into a matmul without a backward)."""
    from erasus.data import index_loader
    from peft import LoraConfig, LoraModel

    problem = llama["problem"]
    q = quantized(llama)
    dense = copy.deepcopy(q)
    dense.model.dequantize()
    _, raw = next(iter(index_loader(problem.forget, batch_size=4)))
    grads = []
    for adapter in (q, dense):
        with torch.no_grad():  # eval mode first: what the pipeline does to the original
            adapter.per_example_loss(adapter.prepare_batch(raw))
        torch.manual_seed(0)
        LoraModel(adapter.model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS),
                  "default")
        torch.manual_seed(1)
        for name, param in adapter.model.named_parameters():
            if "lora_B" in name:  # B = 0 at init: make the A gradients non-zero too
                param.data.normal_(0, 0.1)
        adapter.model.train()
        adapter.per_example_loss(adapter.prepare_batch(raw)).mean().backward()
        grads.append({n: p.grad for n, p in adapter.model.named_parameters()
                      if p.requires_grad})
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) == 2 * len(TARGETS) * 2
    for name, grad in grads[1].items():
        assert grads[0][name] is not None, name
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grads[0][name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_qlora_forgets_toward_the_oracle_and_yields_a_dense_model(llama, scheme, tmp_path):
    problem = llama["problem"]
    before = digest(llama["dir"])
    adapter = quantized(llama, scheme)
    start = c.mean_loss(adapter, problem.forget)
    unlearn(adapter, lora("gradient_difference", lr=5e-3,
                          strategy_params={"epochs": 5, "batch_size": 8}), problem)
    forget, retain = c.mean_loss(adapter, problem.forget), c.mean_loss(adapter, problem.retain)
    oracle = llama["oracle_forget"]
    assert abs(oracle - forget) <= abs(oracle - start) - 0.5, (start, forget, oracle)
    assert retain <= 0.5
    # merged into float layers: a dense model, no quantization left to save or reload
    model = adapter.model
    assert all(p.is_floating_point() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear
    assert type(model.model.layers[0].self_attn.k_proj) is torch.nn.Linear  # no adapter
    assert adapter.quantization is None and getattr(model, "hf_quantizer", None) is None
    adapter.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in saved
    assert json.loads((tmp_path / "out" / "adapter.json").read_text())["params"][
        "quantization"] is None
    again = CausalLMAdapter.load(tmp_path / "out")
    assert c.mean_loss(again, problem.forget) == pytest.approx(forget, abs=1e-5)
    assert digest(llama["dir"]) == before  # the input model is untouched


def test_the_merge_keeps_an_update_smaller_than_a_quantization_step(llama):
    """W + delta with |delta| far below NF4's step survives the merge (peft's own merge
    re-quantises W + delta, which rounds such an update back to W)."""
    from erasus.builtin.strategies.lora import _merge_into_float
    from peft import LoraConfig, LoraModel
    from peft.utils.integrations import dequantize_module_weight

    q = quantized(llama)
    base = q.model.model.layers[0].mlp.down_proj
    weight = dequantize_module_weight(base).float().clone()
    LoraModel(q.model, LoraConfig(r=2, lora_alpha=2, target_modules=["down_proj"]), "default")
    layer = q.model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.lora_A["default"].weight.fill_(1e-3)
        layer.lora_B["default"].weight.fill_(1e-3)
        delta = layer.get_delta_weight("default").float()
        assert 0 < delta.abs().max() < 1e-4
        _merge_into_float(q.model)
    merged = q.model.model.layers[0].mlp.down_proj
    assert type(merged) is torch.nn.Linear
    torch.testing.assert_close(merged.weight, weight + delta, atol=1e-7, rtol=0)


def test_a_strategy_on_the_quantized_weights_is_refused(llama):
    problem = llama["problem"]
    from erasus.plugins import active_registry

    npo = active_registry().get("strategy", "npo").cls
    with pytest.raises(IncompatibleComponentError, match=r"quantization: nf4.*strategy \{name: "
                       r"lora, strategy: npo\}"):
        unlearn(quantized(llama), npo(npo.Params()), problem)


def test_the_config_check_names_lora_and_oracle_path(llama, tmp_path):
    from erasus.config import load_config
    from erasus.plugins import active_registry

    config = {"model": {"name": "causal_lm", "path": str(llama["dir"]),
                        "quantization": "nf4"},
              "data": {"name": "synthetic_qa", **TINY_DATA},
              "strategy": {"name": "npo"}, "oracle": {"strategy": "finetune"}}
    with pytest.raises(ConfigError) as info:
        load_config(config, active_registry())
    text = str(info.value)
    assert "strategy.name" in text and "{name: lora, strategy: npo}" in text
    assert "oracle.path" in text and "cannot be trained" in text


def test_a_run_with_a_quantized_model(llama, tmp_path):
    """The run pipeline (``erasus run``'s code path) on the NF4 model: the original is
    evaluated quantized, the unlearned model is written dense, the model directory is not
    modified."""
    import erasus

    before = digest(llama["dir"])
    config = {
        "seed": 0,
        "model": {"name": "causal_lm", "path": str(llama["dir"]), "quantization": "nf4"},
        "data": {"name": "synthetic_qa", **TINY_DATA},
        "selector": {"name": "full"},
        "strategy": {"name": "lora", "strategy": "npo", "target_modules": TARGETS,
                     "lr": 1e-2, "strategy_params": {"epochs": 5, "batch_size": 8}},
        "oracle": {"path": str(llama["oracle_dir"])},
        "metrics": ["loss"],
        "reporters": [],
        "run": {"output_dir": str(tmp_path / "runs")},
    }
    result = erasus.run(config, output=tmp_path / "run", progress=False)
    metrics = result.metrics
    assert metrics["unlearned"]["forget_loss"] > metrics["original"]["forget_loss"] + 1.0
    saved = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert "quantization_config" not in saved
    assert digest(llama["dir"]) == before


def test_parameter_errors(llama, monkeypatch):
    with pytest.raises(ValueError, match="quantization applies to a model loaded from path"):
        CausalLMParams(quantization="nf4", config={"model_type": "llama"})
    with pytest.raises(ValueError, match="save the GGUF model as a directory first"):
        CausalLMParams(path="x", gguf_file="m.gguf", quantization="nf4")
    with pytest.raises(IncompatibleComponentError, match="a fresh model is trained in float"):
        CausalLMAdapter.build(CausalLMParams(quantization="nf4"))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingDependencyError, match=r"erasus-llm\[qlora\]"):
        quantized(llama)
