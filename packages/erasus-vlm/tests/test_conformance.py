"""The core's conformance suites, run on this plugin's components.

The plugin is registered in-process beside the built-in plugin, so these cases do not
depend on which other plugins are installed or on ``ERASUS_PLUGINS``;
``test_plugin.py`` checks the installed entry point. With ``plugin="vlm"`` every
generic strategy, selector and metric that supports the ``vision-language`` modality
(or ``any``) runs on the tiny CLIP of each adapter (``tiny_problem``: trained briefly on
coloured-shape captions, forgetting every "red" pair).
"""

from __future__ import annotations

import erasus_vlm.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PLUGIN = "vlm"
REGISTRY = get_plugin_manager(
    entrypoints=False, strict=True, plugins=((PLUGIN, erasus_vlm.plugin),)
).registry
MODELS = c.model_cases(REGISTRY, plugin=PLUGIN)
STRATEGIES = c.strategy_cases(REGISTRY, plugin=PLUGIN)
SELECTORS = c.selector_cases(REGISTRY, plugin=PLUGIN)
METRICS = c.metric_cases(REGISTRY, plugin=PLUGIN)
DATASETS = c.dataset_cases(REGISTRY, plugin=PLUGIN)


def _pairs(cases):
    return {(p.values[0].name, p.values[1].name) for p in cases}


def test_every_generic_component_runs_on_both_adapters():
    adapters = {"open_clip", "hf_clip"}
    assert {p.values[0].name for p in MODELS} == adapters
    # the generic strategies, selectors and metrics ("any"); the classification-only ones
    # (random_label, accuracy, mia_efficacy, avg_gap) are not paired with a vision-language model
    assert _pairs(STRATEGIES) == {(s, a) for a in adapters for s in (
        "gradient_ascent", "gradient_difference", "finetune", "retrain")}
    assert _pairs(SELECTORS) == {(s, a) for a in adapters for s in ("full", "random")}
    assert _pairs(METRICS) == {(m, a) for a in adapters for m in (
        "loss", "mia", "time", "memory")}
    assert {p.values[0].name for p in DATASETS} == {"synthetic_image_text"}


@pytest.mark.parametrize("adapter", MODELS)
def test_model_adapter(adapter):
    c.check_model_adapter(adapter)


@pytest.mark.parametrize(("strategy", "adapter"), STRATEGIES)
def test_strategy(strategy, adapter):
    c.check_strategy(strategy, adapter)  # the tiny problem carries finetune's lr for CLIP


@pytest.mark.parametrize(("strategy", "adapter"), STRATEGIES)
def test_strategy_resumes(strategy, adapter):
    c.check_strategy_resume(strategy, adapter)


@pytest.mark.parametrize(("selector", "adapter"), SELECTORS)
def test_selector(selector, adapter):
    c.check_selector(selector, adapter)


@pytest.mark.parametrize(("metric", "adapter"), METRICS)
def test_metric(metric, adapter):
    c.check_metric(metric, adapter, registry=REGISTRY)


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset(dataset):
    c.check_dataset(dataset)
