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
# the resume check is adapter-independent and runs for every strategy in the core on the
# tiny classifier; here one loss-based strategy proves resume works on this family
globals().update(SUITE.tests(resume={"gradient_difference"}))


def _pairs(cases):
    return {(p.values[0].name, p.values[1].name) for p in cases}


def test_every_generic_component_runs_on_both_adapters():
    adapters = {p.values[0].name: p.values[0].modalities for p in SUITE.models}
    assert set(adapters) == {"open_clip", "hf_clip"}
    # the generic strategies, selectors and metrics ("any"); the classification-only ones
    # (random_label, accuracy, mia_efficacy, avg_gap) are not paired with a vision-language model
    for kind, cases in (("strategy", SUITE.strategies), ("selector", SUITE.selectors),
                        ("metric", SUITE.metrics)):
        assert _pairs(cases) == {(n, a) for a, mods in adapters.items()
                                 for n in c.builtin_components(kind, a, mods)}, kind
    assert ("random_label", "open_clip") not in _pairs(SUITE.strategies)
    assert {p.values[0].name for p in SUITE.datasets} == {"synthetic_image_text"}
