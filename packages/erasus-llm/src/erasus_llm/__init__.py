"""erasus-llm: the Erasus plugin for large language models.

The plugin itself is :mod:`erasus_llm.plugin`, loaded by the core through the ``erasus``
entry-point group; nothing is registered by importing this package.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("erasus-llm")
