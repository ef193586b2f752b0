"""erasus-diffusion: the Erasus plugin for diffusion models.

The plugin itself is :mod:`erasus_diffusion.plugin`, loaded by the core through the ``erasus``
entry-point group; nothing is registered by importing this package. Importing it does not
import torch or diffusers either: the components import them when used.
"""

from __future__ import annotations

from importlib.metadata import version

from erasus_diffusion.digits import DigitsDiffusion, DigitsDiffusionParams
from erasus_diffusion.unet import DiffusersUNetAdapter, DiffusersUNetParams

__all__ = [
    "DiffusersUNetAdapter",
    "DiffusersUNetParams",
    "DigitsDiffusion",
    "DigitsDiffusionParams",
    "__version__",
]

__version__ = version("erasus-diffusion")
