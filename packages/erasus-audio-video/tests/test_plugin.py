"""The erasus-audio-video plugin is installed under the ``erasus`` entry-point group and loads."""

from __future__ import annotations

import importlib.metadata as md

import erasus
import erasus_audio_video
import erasus_audio_video.plugin
import pytest
from erasus.plugins import ENTRY_POINT_GROUP, get_plugin_manager

NAME = "audio_video"


def test_entry_point_is_installed():
    (ep,) = md.entry_points(group=ENTRY_POINT_GROUP, name=NAME)
    assert ep.value == "erasus_audio_video.plugin"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "erasus-audio-video"


def test_version_is_the_installed_one_and_matches_the_core():
    # First-party packages move in lockstep with the core.
    assert erasus_audio_video.__version__ == md.version("erasus-audio-video") == erasus.__version__


def test_loads_through_the_plugin_manager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ERASUS_PLUGINS", NAME)
    pm = get_plugin_manager()
    record = pm.records[NAME]
    assert record.status == "loaded", record.error
    assert record.error is None
    assert record.package == "erasus-audio-video"
    assert record.version == erasus_audio_video.__version__
    assert record.module == "erasus_audio_video.plugin"
    assert not record.builtin
    assert pm.get_plugin(NAME) is erasus_audio_video.plugin
    assert pm.failures == []
    assert pm.registry.by_plugin(NAME) == {}  # no component yet (see README)


def test_loads_beside_every_other_installed_plugin():
    pm = get_plugin_manager()
    assert pm.records[NAME].status == "loaded", pm.records[NAME].error
    assert pm.get_plugin(NAME) is erasus_audio_video.plugin


@pytest.mark.parametrize("selection", ["", "builtin", "some_other_plugin"])
def test_erasus_plugins_without_it_disables_it(monkeypatch: pytest.MonkeyPatch,
                                               selection: str):
    monkeypatch.setenv("ERASUS_PLUGINS", selection)
    pm = get_plugin_manager()
    record = pm.records[NAME]
    assert record.status == "disabled"
    assert record.package == "erasus-audio-video"
    assert pm.get_plugin(NAME) is None
