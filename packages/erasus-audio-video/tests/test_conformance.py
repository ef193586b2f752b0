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
# the resume check is adapter-independent and runs for every strategy in the core on the
# tiny classifier; here one loss-based strategy proves resume works on this family
globals().update(SUITE.tests(resume={"gradient_difference"}))


def _pairs(cases):
    return {(p.values[0].name, p.values[1] and p.values[1].name) for p in cases}


def test_every_component_has_a_case():
    adapters = {p.values[0].name: p.values[0].modalities for p in SUITE.models}
    assert set(adapters) == {"whisper", "videomae"}
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_speech", "synthetic_video"}
    for kind, cases in (("strategy", SUITE.strategies), ("selector", SUITE.selectors),
                        ("metric", SUITE.metrics)):
        assert _pairs(cases) == {(n, a) for a, mods in adapters.items()
                                 for n in c.builtin_components(kind, a, mods)}, kind
    # VideoMAE classifies, so the classification-only components run on it too
    assert ("random_label", "videomae") in _pairs(SUITE.strategies)
    assert ("random_label", "whisper") not in _pairs(SUITE.strategies)
    assert ("accuracy", "videomae") in _pairs(SUITE.metrics)
