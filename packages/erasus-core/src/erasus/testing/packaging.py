"""Checks that an installed plugin package is wired into Erasus correctly.

A plugin package's tests call :func:`check_plugin_package` once: its entry point is
installed in the ``erasus`` group and belongs to its distribution, it loads through the
plugin manager (alone and beside every other installed plugin) with the installed
version, and ``ERASUS_PLUGINS`` without it leaves it disabled and unimported.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["check_plugin_package"]


@contextmanager
def _plugins_env(value: str | None) -> Iterator[None]:
    old = os.environ.get("ERASUS_PLUGINS")
    if value is None:
        os.environ.pop("ERASUS_PLUGINS", None)
    else:
        os.environ["ERASUS_PLUGINS"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ERASUS_PLUGINS", None)
        else:
            os.environ["ERASUS_PLUGINS"] = old


def check_plugin_package(name: str, distribution: str, module: str) -> None:
    """Assert that plugin ``name`` of ``distribution`` (plugin module ``module``) loads.

    Raises:
        AssertionError: naming what is wrong.
    """
    from erasus.plugins import ENTRY_POINT_GROUP, get_plugin_manager

    eps = list(md.entry_points(group=ENTRY_POINT_GROUP, name=name))
    assert len(eps) == 1, f"expected one '{name}' entry point in group 'erasus', got {eps}"
    ep = eps[0]
    assert ep.value == module, f"entry point '{name}' points at {ep.value}, not {module}"
    assert ep.dist is not None and ep.dist.metadata["Name"] == distribution, (
        f"entry point '{name}' belongs to {ep.dist and ep.dist.metadata['Name']}")
    version = md.version(distribution)

    for selection in (name, None):  # alone, then beside every installed plugin
        with _plugins_env(selection):
            pm = get_plugin_manager()
            _ = pm.registry  # a registration failure is recorded on the plugin too
        record = pm.records[name]
        assert record.status == "loaded", f"plugin '{name}' did not load: {record.error}"
        assert (record.package, record.version, record.module) == (distribution, version,
                                                                   module)
        assert not record.builtin
        assert pm.get_plugin(name) is importlib.import_module(module)
        assert pm.failures == [], [f"{r.name}: {r.error}" for r in pm.failures]

    for selection in ("", "builtin", f"not_{name}"):
        with _plugins_env(selection):
            pm = get_plugin_manager()
        record = pm.records[name]
        assert record.status == "disabled", (
            f"ERASUS_PLUGINS={selection!r} should disable '{name}', got {record.status}")
        assert pm.get_plugin(name) is None
