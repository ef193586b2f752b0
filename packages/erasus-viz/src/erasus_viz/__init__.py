"""erasus-viz: the Erasus plugin for visualisation and reports.

The plugin itself is :mod:`erasus_viz.plugin`, loaded by the core through the ``erasus``
entry-point group; nothing is registered by importing this package.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("erasus-viz")
