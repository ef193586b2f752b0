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
from erasus.testing import conformance as c

SUITE = c.PluginSuite("audio_video", erasus_audio_video.plugin)
globals().update(SUITE.tests())  # test_model_adapter, test_strategy, ...


def _pairs(cases):
    return {(p.values[0].name, p.values[1] and p.values[1].name) for p in cases}


def test_every_component_has_a_case():
    assert {p.values[0].name for p in SUITE.models} == {"whisper", "videomae"}
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_speech", "synthetic_video"}
    generic = {"retrain", "finetune", "gradient_ascent", "gradient_difference"}
    assert _pairs(SUITE.strategies) == {(s, m) for s in generic for m in ("whisper", "videomae")} \
        | {("random_label", "videomae")}
    assert _pairs(SUITE.selectors) == {(s, m) for s in ("full", "random")
                                 for m in ("whisper", "videomae")}
    assert _pairs(SUITE.metrics) == {(s, m) for s in ("loss", "mia", "time", "memory")
                               for m in ("whisper", "videomae")} \
        | {(s, "videomae") for s in ("accuracy", "mia_efficacy", "avg_gap")}
