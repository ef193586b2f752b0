"""The erasus-viz plugin is installed under the ``erasus`` entry-point group, loads, and
registers its reporters without importing anything heavy."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import subprocess
import sys

import erasus
import erasus_viz
import erasus_viz.plugin
import pytest
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance
from erasus.testing.packaging import check_plugin_package

REPORTERS = ["dashboard", "embeddings", "gradient_flow", "html_report", "loss_curves",
             "loss_landscape", "mia_plots"]


def test_plugin_package_is_wired_into_erasus():
    check_plugin_package("viz", "erasus-viz", "erasus_viz.plugin")


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_viz.__version__ == md.version("erasus-viz") == erasus.__version__


def test_registers_its_reporters():
    assert get_plugin_manager().registry.by_plugin("viz") == {"reporter": REPORTERS}


@pytest.mark.parametrize("name", REPORTERS)
def test_each_reporter_documents_itself(name):
    info = get_plugin_manager().registry.get("reporter", name)
    doc = inspect.getdoc(info.cls) or ""
    assert len(doc.splitlines()) > 3, f"{name} needs a docstring saying what it draws"
    assert "paper" in vars(info.cls), f"{name} must set paper (None or a Paper)"


def test_the_landscape_cites_li_et_al_2018():
    info = get_plugin_manager().registry.get("reporter", "loss_landscape")
    assert info.cls.paper.url == "https://arxiv.org/abs/1712.09913"
    assert info.cls.paper.year == 2018


def test_html_report_runs_after_the_plot_reporters():
    registry = get_plugin_manager().registry
    order = {n: registry.get("reporter", n).cls.order for n in REPORTERS}
    assert order["html_report"] > max(v for n, v in order.items() if n != "html_report")


def test_gradient_flow_asks_the_run_for_gradient_norms():
    info = get_plugin_manager().registry.get("reporter", "gradient_flow")
    assert info.cls.records == frozenset({"gradient_norms"})


def test_loading_the_plugin_imports_no_plotting_library():
    # the CLI builds the registry at start-up: it must not pay for matplotlib or plotly
    code = ("import sys; from erasus.plugins import get_plugin_manager; "
            "get_plugin_manager(); "
            "print(sorted(m for m in ('matplotlib', 'plotly', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# the core's reporter conformance: each reporter, after collect() on the tiny classifier,
# writes non-empty files in the run directory (the dashboard: from compare over two runs)
SUITE = conformance.PluginSuite("viz", erasus_viz.plugin)
globals().update(SUITE.tests())


def test_every_reporter_has_a_conformance_case():
    assert sorted(r.values[0].name for r in SUITE.reporters) == REPORTERS
