"""The core's conformance suites, run on this plugin's components and its tiny causal LM.

The plugin is registered in-process beside the built-in plugin, so every generic
strategy, selector and metric of the core (modality "any") runs on the ``causal_lm``
adapter's tiny GPT-2, whatever other plugins are installed; ``test_plugin.py`` checks the
installed entry point.
"""

from __future__ import annotations

import erasus_llm.plugin
from erasus.testing import conformance as c
from erasus_llm.metrics import METRICS

SUITE = c.PluginSuite("llm", erasus_llm.plugin)
#: The plugin's own strategies (erasus_llm.strategies), each checked on the tiny GPT-2.
LLM_STRATEGIES = {"dpo", "idk_dpo", "rmu", "undial", "ce_u", "satimp",
                  "embedding_alignment"}
# the resume check on the tiny GPT-2 is slow; one loss-based strategy proves it
globals().update(SUITE.tests(resume={"gradient_difference"}))


def test_every_component_has_a_case():
    assert {p.values[0].name for p in SUITE.models} == {"causal_lm"}
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_qa", "qa_json", "tofu",
                                                         "muse", "wmdp"}
    # every generic ("any") component of the core pairs with the causal LM adapter
    mods = SUITE.models[0].values[0].modalities
    for kind, cases in (("strategy", SUITE.strategies), ("selector", SUITE.selectors),
                        ("metric", SUITE.metrics)):
        own = {m.name for m in METRICS} if kind == "metric" else set()
        own |= LLM_STRATEGIES if kind == "strategy" else set()
        assert {p.values[0].name for p in cases} == c.builtin_components(kind, "causal_lm",
                                                                         mods) | own, kind
    assert {"gradient_ascent", "npo", "simnpo"} <= {p.values[0].name for p in SUITE.strategies}
    for case in (*SUITE.strategies, *SUITE.selectors, *SUITE.metrics):
        assert case.values[1] is not None and case.values[1].name == "causal_lm"
