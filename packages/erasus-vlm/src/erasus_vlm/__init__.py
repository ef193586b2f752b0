"""erasus-vlm: the Erasus plugin for vision-language models.

The plugin itself is :mod:`erasus_vlm.plugin`, loaded by the core through the ``erasus``
entry-point group; nothing is registered by importing this package.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("erasus-vlm")
