"""The core's conformance suites, run on this plugin's components.

The plugin is registered in-process beside the built-in plugin, so these cases do not
depend on which other plugins are installed or on ``ERASUS_PLUGINS``; ``test_plugin.py``
checks the installed entry point. Every generic strategy, selector and metric (modality
``any``) runs on the tiny Whisper and the tiny VideoMAE; the classification components
(``random_label``, ``accuracy``, ``mia_efficacy``, ``avg_gap``) run on VideoMAE, which
declares the ``classification`` modality too.
"""

from __future__ import annotations

import erasus_audio_video.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PLUGIN = "audio_video"
REGISTRY = get_plugin_manager(
    entrypoints=False, strict=True, plugins=((PLUGIN, erasus_audio_video.plugin),)
).registry
MODELS = c.model_cases(REGISTRY, plugin=PLUGIN)
STRATEGIES = c.strategy_cases(REGISTRY, plugin=PLUGIN)
SELECTORS = c.selector_cases(REGISTRY, plugin=PLUGIN)
METRICS = c.metric_cases(REGISTRY, plugin=PLUGIN)
DATASETS = c.dataset_cases(REGISTRY, plugin=PLUGIN)


def _pairs(cases):
    return {(p.values[0].name, p.values[1] and p.values[1].name) for p in cases}


def test_every_component_has_a_case():
    assert {p.values[0].name for p in MODELS} == {"whisper", "videomae"}
    assert {p.values[0].name for p in DATASETS} == {"synthetic_speech", "synthetic_video"}
    generic = {"retrain", "finetune", "gradient_ascent", "gradient_difference"}
    assert _pairs(STRATEGIES) == {(s, m) for s in generic for m in ("whisper", "videomae")} \
        | {("random_label", "videomae")}
    assert _pairs(SELECTORS) == {(s, m) for s in ("full", "random")
                                 for m in ("whisper", "videomae")}
    assert _pairs(METRICS) == {(s, m) for s in ("loss", "mia", "time", "memory")
                               for m in ("whisper", "videomae")} \
        | {(s, "videomae") for s in ("accuracy", "mia_efficacy", "avg_gap")}


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
