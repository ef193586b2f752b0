"""The erasus-llm plugin is installed under the ``erasus`` entry-point group and loads."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import erasus
import erasus_llm
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing.packaging import check_plugin_package
from erasus_llm.causal_lm import CausalLMAdapter
from erasus_llm.datasets import QAJson, SyntheticQA
from erasus_llm.masked_lm import MaskedLMAdapter


def test_plugin_package_is_wired_into_erasus():
    check_plugin_package("llm", "erasus-llm", "erasus_llm.plugin")


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_llm.__version__ == md.version("erasus-llm") == erasus.__version__


def test_registers_the_adapter_data_sets_strategies_and_metrics():
    registry = get_plugin_manager().registry
    assert registry.by_plugin("llm") == {
        "model": ["causal_lm", "masked_lm", "seq2seq_lm", "sequence_classification"],
        "strategy": ["causal_tracing", "ce_u", "dpo", "embedding_alignment", "idk_dpo",
                     "rmu", "satimp", "token_masking", "undial"],
        "metric": ["answer_prob", "exact_memorization", "extraction_strength",
                   "forget_quality", "knowmem", "lm_eval_accuracy", "mc_accuracy",
                   "mia_gradnorm",
                   "mia_loss", "mia_min_k",
                   "mia_min_k_plus_plus", "mia_reference", "mia_zlib", "model_utility",
                   "perplexity", "privleak", "quantization_robustness", "relearn_robustness",
                   "rouge", "truth_ratio", "verbmem"],
        "dataset": ["muse", "qa_json", "synthetic_qa", "text_classification", "tofu",
                    "wmdp"]}
    assert registry.get("model", "causal_lm").cls is CausalLMAdapter
    assert registry.get("model", "masked_lm").cls is MaskedLMAdapter
    assert registry.get("dataset", "synthetic_qa").cls is SyntheticQA
    assert registry.get("dataset", "qa_json").cls is QAJson
    for kind, name in (("model", "causal_lm"), ("model", "masked_lm"), ("model", "seq2seq_lm"),
                       ("dataset", "synthetic_qa"), ("dataset", "qa_json")):
        assert registry.get(kind, name).modalities == ("text",)
    # the text classifier is a classifier: the core's classification components pair with it
    for kind, name in (("model", "sequence_classification"),
                       ("dataset", "text_classification")):
        assert registry.get(kind, name).modalities == ("classification",)
    assert "2401.06121" in CausalLMAdapter.paper.url  # TOFU's QA loss protocol


def test_building_the_registry_imports_neither_torch_nor_transformers():
    code = ("import sys, erasus.plugins as p; r = p.get_plugin_manager().registry; "
            "assert {'causal_lm', 'masked_lm', 'sequence_classification'} <= "
            "set(r.names('model')); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, "
            "sorted(m for m in ('torch', 'transformers') if m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_the_strategies_that_hook_layers_refuse_sharded_training(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """rmu (and embedding_alignment, RMU with a refusal-derived control vector) and
    causal_tracing hook layers and keep copies of weights, which FSDP splits over
    processes; every other LLM strategy trains through the loop's forward passes."""
    from erasus import sharding
    from erasus.errors import IncompatibleComponentError

    registry = get_plugin_manager().registry
    names = registry.by_plugin("llm")["strategy"]
    refused = {n for n in names if not registry.get("strategy", n).cls.shardable}
    assert refused == {"causal_tracing", "embedding_alignment", "rmu"}
    monkeypatch.setattr(sharding, "_ACTIVE", sharding.ShardingPlan())
    for name in sorted(refused):
        with pytest.raises(IncompatibleComponentError,
                           match=f"strategy '{name}' cannot train a sharded model"):
            sharding.require_shardable(registry.get("strategy", name).cls)
