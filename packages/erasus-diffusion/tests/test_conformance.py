"""The core's conformance suites, run on this plugin's components.

The plugin is registered in-process beside the built-in plugin, so the cases do not depend
on which other plugins are installed or on ``ERASUS_PLUGINS`` (``test_plugin.py`` checks the
installed entry point). Every generic strategy, selector and metric that declares the
``diffusion`` modality (or ``any``) runs on the tiny class-conditional UNet of
``DiffusersUNetAdapter.tiny_problem``.
"""

from __future__ import annotations

import erasus_diffusion.plugin
from erasus.testing import conformance as c

SUITE = c.PluginSuite("diffusion", erasus_diffusion.plugin)
# the resume check is adapter-independent and runs for every strategy in the core on the
# tiny classifier; here one loss-based strategy proves resume works on this family
globals().update(SUITE.tests(resume={"gradient_difference"}))


def _names(cases):
    return {p.values[0].name for p in cases}


def test_every_generic_component_has_a_case_on_the_diffusion_model():
    assert _names(SUITE.models) == {"diffusers_unet"}
    assert _names(SUITE.datasets) == {"digits_diffusion"}
    mods = SUITE.models[0].values[0].modalities
    for kind, cases in (("strategy", SUITE.strategies), ("selector", SUITE.selectors),
                        ("metric", SUITE.metrics)):
        assert _names(cases) == c.builtin_components(kind, "diffusers_unet", mods), kind
    # random_label (classification only) does not pair with a diffusion model
    assert "random_label" not in _names(SUITE.strategies)
    assert "gradient_ascent" in _names(SUITE.strategies)
    assert all(p.values[1] is not None and p.values[1].name == "diffusers_unet"
               for p in (*SUITE.strategies, *SUITE.selectors, *SUITE.metrics))
