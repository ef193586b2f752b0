"""The ``diffusion`` plugin of Erasus (entry point ``diffusion = "erasus_diffusion.plugin"``).

Registers, through the core's ``erasus_register_*`` hooks:

- model ``diffusers_unet``: a diffusers ``UNet2DConditionModel`` with its noise scheduler,
  class- or prompt-conditioned, or a whole Stable Diffusion pipeline from a directory;
- dataset ``digits_diffusion``: scikit-learn's 8x8 digits as a diffusion benchmark.

Each hook imports its component module when called; those modules import torch,
diffusers and transformers only inside functions, so building the registry stays light.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus_diffusion.unet import DiffusersUNetAdapter

    register(DiffusersUNetAdapter)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus_diffusion.digits import DigitsDiffusion

    register(DigitsDiffusion)
