"""The erasus-diffusion plugin is installed under the ``erasus`` entry-point group and loads."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import erasus
import erasus_diffusion
from erasus.plugins import get_plugin_manager
from erasus.testing.packaging import check_plugin_package


def test_plugin_package_is_wired_into_erasus():
    check_plugin_package("diffusion", "erasus-diffusion", "erasus_diffusion.plugin")


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_diffusion.__version__ == md.version("erasus-diffusion") == erasus.__version__


def test_registers_exactly_its_model_and_dataset():
    registry = get_plugin_manager().registry
    assert registry.by_plugin("diffusion") == {"model": ["diffusers_unet"],
                                               "dataset": ["digits_diffusion"]}
    assert registry.get("model", "diffusers_unet").modalities == ("diffusion",)


def test_building_the_registry_imports_no_heavy_module():
    code = ("import sys, erasus.plugins as p; p.get_plugin_manager().registry; "
            "import erasus_diffusion; "
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'sklearn') "
            "if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
