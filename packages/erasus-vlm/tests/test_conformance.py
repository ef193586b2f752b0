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
from erasus.testing import conformance as c

SUITE = c.PluginSuite("vlm", erasus_vlm.plugin)
globals().update(SUITE.tests())  # test_model_adapter, test_strategy, ...


def _pairs(cases):
    return {(p.values[0].name, p.values[1].name) for p in cases}


def test_every_generic_component_runs_on_both_adapters():
    adapters = {"open_clip", "hf_clip"}
    assert {p.values[0].name for p in SUITE.models} == adapters
    # the generic strategies, selectors and metrics ("any"); the classification-only ones
    # (random_label, accuracy, mia_efficacy, avg_gap) are not paired with a vision-language model
    assert _pairs(SUITE.strategies) == {(s, a) for a in adapters for s in (
        "gradient_ascent", "gradient_difference", "finetune", "retrain")}
    assert _pairs(SUITE.selectors) == {(s, a) for a in adapters for s in ("full", "random")}
    assert _pairs(SUITE.metrics) == {(m, a) for a in adapters for m in (
        "loss", "mia", "time", "memory")}
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_image_text"}
