"""The sample plugin is installed, loads, and registers its two components by name."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import erasus_sample_plugin
import erasus_sample_plugin.plugin
import pytest
from erasus.config import load_config
from erasus.plugins import ENTRY_POINT_GROUP, get_plugin_manager
from erasus_sample_plugin.forget_loss import ForgetLoss
from erasus_sample_plugin.highest_loss import HighestLoss

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def test_entry_point_is_installed():
    (ep,) = md.entry_points(group=ENTRY_POINT_GROUP, name="sample")
    assert ep.value == "erasus_sample_plugin.plugin"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "erasus-sample-plugin"
    assert erasus_sample_plugin.__version__ == md.version("erasus-sample-plugin")


def test_loads_and_registers_its_components(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ERASUS_PLUGINS", "sample")
    pm = get_plugin_manager()
    record = pm.records["sample"]
    assert record.status == "loaded", record.error
    assert record.package == "erasus-sample-plugin"
    assert record.version == erasus_sample_plugin.__version__
    assert record.hooks == ["erasus_register_metrics", "erasus_register_selectors"]
    assert pm.get_plugin("sample") is erasus_sample_plugin.plugin
    assert pm.registry.by_plugin("sample") == {"selector": ["highest_loss"],
                                               "metric": ["forget_loss"]}
    assert pm.failures == []

    selector = pm.registry.get("selector", "highest_loss")
    assert selector.cls is HighestLoss
    assert (selector.plugin, selector.package) == ("sample", "erasus-sample-plugin")
    assert selector.summary.startswith("Select the forget examples with the highest")
    assert selector.paper is None
    assert [p.name for p in selector.params] == ["budget", "batch_size"]

    metric = pm.registry.get("metric", "forget_loss")
    assert metric.cls is ForgetLoss
    assert metric.modalities == ("any",)
    assert metric.cls.outputs == ("forget_loss",)


def test_registry_creates_them_with_validated_params():
    registry = get_plugin_manager().registry
    selector = registry.create("selector", "highest_loss", budget=3)
    assert isinstance(selector, HighestLoss) and selector.params.budget == 3
    assert isinstance(registry.create("metric", "forget_loss"), ForgetLoss)


def test_disabled_by_erasus_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ERASUS_PLUGINS", "")
    pm = get_plugin_manager()
    assert pm.records["sample"].status == "disabled"
    assert "highest_loss" not in pm.registry.names("selector")
    assert "forget_loss" not in pm.registry.names("metric")


def test_the_example_config_resolves_to_the_plugin_components():
    resolved = load_config(CONFIG, get_plugin_manager().registry)
    assert resolved.selector.info.cls is HighestLoss
    assert resolved.selector.params.budget == 0.5
    assert [m.info.name for m in resolved.metrics] == ["accuracy", "forget_loss"]
    assert resolved.metrics[1].info.plugin == "sample"
    assert resolved.oracle is None
