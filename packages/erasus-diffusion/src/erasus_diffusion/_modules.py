"""The torch modules the ``diffusers_unet`` adapter wraps (imported lazily: imports torch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ClassTokens", "DiffusionModel"]


class ClassTokens(nn.Module):
    """Learned condition tokens per class: ``labels [B]`` to ``encoder_hidden_states [B, T, D]``.

    A class-conditional model sees its class through cross-attention, as a text-conditioned
    one sees its prompt. Each class has ``tokens`` vectors (more than one, so the
    attention weights depend on the query; with a single key, softmax is 1 and
    cross-attention would reduce to a per-class bias).
    """

    def __init__(self, num_classes: int, tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, tokens, dim))
        self.reset_parameters()

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> ClassTokens:
        """Class tokens holding ``weight`` ``[classes, tokens, dim]`` (no random init)."""
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.weight = nn.Parameter(weight.detach().clone())
        return module

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)  # as nn.Embedding

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.weight[labels]


class DiffusionModel(nn.Module):
    """A diffusers ``UNet2DConditionModel`` and what conditions it.

    Submodules (their names prefix the parameter names): ``unet``; ``class_embedding``
    (:class:`ClassTokens`) for class conditions or ``text_encoder`` for prompts; ``vae``
    (an ``AutoencoderKL``) when the UNet works in a latent space.
    """

    def __init__(self, unet: nn.Module, *, class_embedding: ClassTokens | None = None,
                 text_encoder: nn.Module | None = None, vae: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.class_embedding = class_embedding
        self.text_encoder = text_encoder
        self.vae = vae

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.unet(*args, **kwargs)
