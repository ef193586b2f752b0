"""The erasus-vlm plugin is installed under the ``erasus`` entry-point group and loads."""

from __future__ import annotations

import importlib.metadata as md

import erasus
import erasus_vlm
from erasus.plugins import get_plugin_manager
from erasus.testing.packaging import check_plugin_package


def test_plugin_package_is_wired_into_erasus():
    check_plugin_package("vlm", "erasus-vlm", "erasus_vlm.plugin")


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_vlm.__version__ == md.version("erasus-vlm") == erasus.__version__


def test_registers_no_component_yet():
    # The package's components arrive in later releases (see its README).
    assert get_plugin_manager().registry.by_plugin("vlm") == {}
