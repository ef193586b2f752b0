"""The core's conformance suites, run on this plugin's components.

The plugin is registered in-process beside the built-in plugin (whose classifier adapter
gives the tiny model), so these cases do not depend on which other plugins are installed
or on ``ERASUS_PLUGINS``; ``test_plugin.py`` checks the installed entry point.
"""

from __future__ import annotations

import erasus_sample_plugin.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PLUGIN = "sample"
REGISTRY = get_plugin_manager(
    entrypoints=False, strict=True, plugins=((PLUGIN, erasus_sample_plugin.plugin),)
).registry
SELECTORS = c.selector_cases(REGISTRY, plugin=PLUGIN)
METRICS = c.metric_cases(REGISTRY, plugin=PLUGIN)


def test_every_component_has_a_case():
    assert {p.values[0].name for p in SELECTORS} == {"highest_loss"}
    assert {p.values[0].name for p in METRICS} == {"forget_loss"}
    assert all(p.values[1] is not None for p in (*SELECTORS, *METRICS))


@pytest.mark.parametrize(("selector", "adapter"), SELECTORS)
def test_selector(selector, adapter):
    c.check_selector(selector, adapter)


@pytest.mark.parametrize(("metric", "adapter"), METRICS)
def test_metric(metric, adapter):
    c.check_metric(metric, adapter, registry=REGISTRY)
