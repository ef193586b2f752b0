"""A complete sample Erasus plugin: one coreset selector and one metric.

The plugin is :mod:`erasus_sample_plugin.plugin`, loaded by the core through the
``erasus`` entry-point group. Importing this package registers nothing, and the component
classes are imported on first access, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus_sample_plugin._version import __version__

if TYPE_CHECKING:
    from erasus_sample_plugin.forget_loss import ForgetLoss
    from erasus_sample_plugin.highest_loss import HighestLoss, HighestLossParams

__all__ = ["ForgetLoss", "HighestLoss", "HighestLossParams", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "ForgetLoss":
        from erasus_sample_plugin.forget_loss import ForgetLoss

        return ForgetLoss
    if name in ("HighestLoss", "HighestLossParams"):
        from erasus_sample_plugin import highest_loss

        return getattr(highest_loss, name)
    raise AttributeError(f"module 'erasus_sample_plugin' has no attribute '{name}'")
