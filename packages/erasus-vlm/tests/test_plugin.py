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


def test_registers_its_clip_adapters_and_data_set():
    registry = get_plugin_manager().registry
    assert registry.by_plugin("vlm") == {"model": ["hf_clip", "open_clip"],
                                         "dataset": ["synthetic_image_text"]}
    for kind, name in (("model", "open_clip"), ("model", "hf_clip"),
                       ("dataset", "synthetic_image_text")):
        info = registry.get(kind, name)
        assert info.modalities == ("vision-language",)
        assert info.plugin == "vlm" and info.package == "erasus-vlm"
    assert registry.get("model", "open_clip").paper.url == "https://arxiv.org/abs/2103.00020"


def test_building_the_registry_imports_no_heavy_module():
    import subprocess
    import sys

    code = ("import sys, erasus.plugins as p; r = p.get_plugin_manager().registry; "
            "assert 'open_clip' in r.names('model'); heavy = [m for m in ('torch', "
            "'transformers', 'open_clip', 'torchvision') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
