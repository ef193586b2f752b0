"""The core's conformance suites, run on this plugin's components and its tiny causal LM.

The plugin is registered in-process beside the built-in plugin, so every generic
strategy, selector and metric of the core (modality "any") runs on the ``causal_lm``
adapter's tiny GPT-2, whatever other plugins are installed; ``test_plugin.py`` checks the
installed entry point.
"""

from __future__ import annotations

import erasus_llm.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PLUGIN = "llm"
REGISTRY = get_plugin_manager(
    entrypoints=False, strict=True, plugins=((PLUGIN, erasus_llm.plugin),)
).registry
MODELS = c.model_cases(REGISTRY, plugin=PLUGIN)
STRATEGIES = c.strategy_cases(REGISTRY, plugin=PLUGIN)
SELECTORS = c.selector_cases(REGISTRY, plugin=PLUGIN)
METRICS = c.metric_cases(REGISTRY, plugin=PLUGIN)
DATASETS = c.dataset_cases(REGISTRY, plugin=PLUGIN)


def test_every_component_has_a_case():
    assert {p.values[0].name for p in MODELS} == {"causal_lm"}
    assert {p.values[0].name for p in DATASETS} == {"synthetic_qa", "qa_json"}
    # every generic ("any") component of the core pairs with the causal LM adapter
    assert {p.values[0].name for p in STRATEGIES} == {
        "retrain", "finetune", "gradient_ascent", "gradient_difference"}
    assert {p.values[0].name for p in SELECTORS} == {"full", "random"}
    assert {p.values[0].name for p in METRICS} == {"loss", "mia", "time", "memory"}
    for case in (*STRATEGIES, *SELECTORS, *METRICS):
        assert case.values[1] is not None and case.values[1].name == "causal_lm"


@pytest.mark.parametrize("adapter", MODELS)
def test_model_adapter(adapter):
    c.check_model_adapter(adapter)


@pytest.mark.parametrize(("strategy", "adapter"), STRATEGIES)
def test_strategy(strategy, adapter):
    c.check_strategy(strategy, adapter)


def test_strategy_resume():
    strategy = REGISTRY.get("strategy", "gradient_difference")
    c.check_strategy_resume(strategy, REGISTRY.get("model", "causal_lm"))


@pytest.mark.parametrize(("selector", "adapter"), SELECTORS)
def test_selector(selector, adapter):
    c.check_selector(selector, adapter)


@pytest.mark.parametrize(("metric", "adapter"), METRICS)
def test_metric(metric, adapter):
    c.check_metric(metric, adapter, registry=REGISTRY)


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset(dataset):
    c.check_dataset(dataset)
