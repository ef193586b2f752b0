"""The core's conformance suites, run on this plugin's components and its tiny LMs.

The plugin is registered in-process beside the built-in plugin, so every generic
strategy, selector and metric of the core (modality "any") runs on the ``causal_lm``
adapter's tiny GPT-2 and on the ``masked_lm`` adapter's tiny BERT, whatever other plugins
are installed; ``test_plugin.py`` checks the installed entry point.
"""

from __future__ import annotations

import erasus_llm.plugin
from erasus.testing import conformance as c
from erasus_llm.metrics import METRICS

SUITE = c.PluginSuite("llm", erasus_llm.plugin)
#: The plugin's own strategies (erasus_llm.strategies), each checked on the tiny GPT-2.
LLM_STRATEGIES = {"dpo", "idk_dpo", "rmu", "undial", "ce_u", "satimp",
                  "embedding_alignment", "token_masking", "causal_tracing"}
# the resume check on the tiny GPT-2 is slow; one loss-based strategy proves it
globals().update(SUITE.tests(resume={"gradient_difference"}))


def _runs_on(kind: str, name: str, adapter: str) -> bool:
    only = SUITE.registry.get(kind, name).cls.adapters
    return not only or adapter in only


def test_every_component_has_a_case():
    assert {p.values[0].name for p in SUITE.models} == {"causal_lm", "masked_lm", "seq2seq_lm",
                                                       "sequence_classification"}
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_qa", "qa_json", "tofu",
                                                         "muse", "wmdp",
                                                         "text_classification"}
    for case in (*SUITE.strategies, *SUITE.selectors, *SUITE.metrics):
        assert case.values[1] is not None and case.values[1].name in (
            "causal_lm", "masked_lm", "seq2seq_lm", "sequence_classification")
    # every generic ("any") component of the core pairs with every adapter of the plugin,
    # every classification component with the text classifier, and every component of
    # the plugin (modality "text") with each LM adapter it does not exclude
    for model in SUITE.models:
        adapter, mods = model.values[0].name, model.values[0].modalities
        for kind, cases in (("strategy", SUITE.strategies), ("selector", SUITE.selectors),
                            ("metric", SUITE.metrics)):
            own = {m.name for m in METRICS} if kind == "metric" else set()
            own |= LLM_STRATEGIES if kind == "strategy" else set()
            own = {n for n in own if _runs_on(kind, n, adapter) and "text" in mods}
            paired = {p.values[0].name for p in cases if p.values[1].name == adapter}
            assert paired == c.builtin_components(kind, adapter, mods) | own, (adapter, kind)
        paired = {p.values[0].name for p in SUITE.strategies if p.values[1].name == adapter}
        assert {"gradient_ascent", "npo", "simnpo"} <= paired, adapter
    # what needs a causal LM (generation, answer prefixes, decoder layers) is not paired
    # with the masked LM; what reads answer-token log-probs is
    classifier = {p.values[0].name for p in (*SUITE.strategies, *SUITE.metrics)
                  if p.values[1].name == "sequence_classification"}
    assert {"accuracy", "mia_efficacy", "random_label", "scrub", "salun"} <= classifier
    assert not classifier & (LLM_STRATEGIES | {m.name for m in METRICS})
    # the encoder-decoder decodes greedily (ROUGE, model utility) but has no answer prefix
    # to continue or decoder-only layers to edit
    seq2seq = {p.values[0].name for p in (*SUITE.strategies, *SUITE.metrics)
               if p.values[1].name == "seq2seq_lm"}
    assert {"rouge", "model_utility", "answer_prob", "truth_ratio", "npo"} <= seq2seq
    assert not seq2seq & {"verbmem", "extraction_strength", "dpo", "rmu", "causal_tracing"}
    masked = {p.values[0].name for p in (*SUITE.strategies, *SUITE.metrics)
              if p.values[1].name == "masked_lm"}
    assert not masked & {"rouge", "model_utility", "verbmem", "extraction_strength", "dpo",
                         "rmu", "undial", "ce_u"}
    assert {"answer_prob", "truth_ratio", "mia_min_k", "mc_accuracy", "satimp"} <= masked
