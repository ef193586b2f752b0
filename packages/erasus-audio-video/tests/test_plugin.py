"""The erasus-audio-video plugin is installed under the ``erasus`` entry-point group and loads."""

from __future__ import annotations

import importlib.metadata as md

import erasus
import erasus_audio_video
from erasus.plugins import get_plugin_manager
from erasus.testing.packaging import check_plugin_package


def test_plugin_package_is_wired_into_erasus():
    check_plugin_package("audio_video", "erasus-audio-video", "erasus_audio_video.plugin")


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_audio_video.__version__ == md.version("erasus-audio-video") == erasus.__version__


def test_registers_exactly_its_components():
    registry = get_plugin_manager().registry
    assert registry.by_plugin("audio_video") == {
        "model": ["videomae", "whisper"],
        "dataset": ["synthetic_speech", "synthetic_video"],
    }
    assert registry.get("model", "whisper").modalities == ("audio",)
    assert registry.get("model", "videomae").modalities == ("video", "classification")
    assert registry.get("dataset", "synthetic_speech").modalities == ("audio",)
    assert registry.get("dataset", "synthetic_video").modalities == ("video",)


def test_every_component_cites_its_paper_and_documents_its_params():
    registry = get_plugin_manager().registry
    papers = {"whisper": "2212.04356", "videomae": "2203.12602"}
    for kind, names in registry.by_plugin("audio_video").items():
        for name in names:
            info = registry.get(kind, name)
            assert info.summary, name
            assert "paper" in vars(info.cls), f"{name} must set paper explicitly"
            if name in papers:
                assert papers[name] in info.cls.paper.url
            for field, spec in info.cls.Params.model_fields.items():
                assert spec.description, f"{name}.{field} has no description"
