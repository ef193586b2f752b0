"""The core's conformance suites, run on this plugin's components.

The plugin is registered in-process beside the built-in plugin, so the cases do not depend
on which other plugins are installed or on ``ERASUS_PLUGINS`` (``test_plugin.py`` checks the
installed entry point). Every generic strategy, selector and metric that declares the
``diffusion`` modality (or ``any``) runs on the tiny class-conditional UNet of
``DiffusersUNetAdapter.tiny_problem``.
"""

from __future__ import annotations

import erasus_diffusion.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PLUGIN = "diffusion"
REGISTRY = get_plugin_manager(
    entrypoints=False, strict=True, plugins=((PLUGIN, erasus_diffusion.plugin),)
).registry
MODELS = c.model_cases(REGISTRY, plugin=PLUGIN)
STRATEGIES = c.strategy_cases(REGISTRY, plugin=PLUGIN)
SELECTORS = c.selector_cases(REGISTRY, plugin=PLUGIN)
METRICS = c.metric_cases(REGISTRY, plugin=PLUGIN)
DATASETS = c.dataset_cases(REGISTRY, plugin=PLUGIN)


def _names(cases):
    return {p.values[0].name for p in cases}


def test_every_generic_component_has_a_case_on_the_diffusion_model():
    assert _names(MODELS) == {"diffusers_unet"}
    assert _names(DATASETS) == {"digits_diffusion"}
    # random_label (classification only) does not pair with a diffusion model
    assert _names(STRATEGIES) == {"gradient_ascent", "gradient_difference", "finetune",
                                  "retrain"}
    assert _names(SELECTORS) == {"full", "random"}
    assert _names(METRICS) == {"loss", "mia", "time", "memory"}
    assert all(p.values[1] is not None and p.values[1].name == "diffusers_unet"
               for p in (*STRATEGIES, *SELECTORS, *METRICS))


@pytest.mark.parametrize("adapter", MODELS)
def test_model_adapter(adapter):
    c.check_model_adapter(adapter)


@pytest.mark.parametrize(("strategy", "adapter"), STRATEGIES)
def test_strategy(strategy, adapter):
    c.check_strategy(strategy, adapter)


@pytest.mark.parametrize(("strategy", "adapter"), STRATEGIES)
def test_strategy_resume(strategy, adapter):
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
