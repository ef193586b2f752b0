"""An ensemble of member networks whose forward pass aggregates their predictions.

SISA training (Bourtoule et al., 2021) keeps one model per shard of the training set and
predicts with all of them. :class:`Ensemble` is that model as one ``torch.nn.Module``, so
a classifier adapter serves it like any other network (``model(x)`` gives logits): the
classifier's ``ensemble`` parameter builds it, and ``save``/``load`` keep its members'
weights in one safetensors file (``members.0.head.weight``...).

The aggregate is returned as log-probabilities, which are valid logits (their softmax is
the aggregated distribution, and cross-entropy on them is the ensemble's loss):

- ``softmax_mean``: the mean of the members' softmax outputs;
- ``majority_vote``: each member votes for its arg-max class; the class with the most
  votes wins and ties go to the higher mean probability. As a distribution:
  ``(votes + mean_probability) / (members + 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = ["AGGREGATIONS", "Ensemble", "aggregate"]

#: How an ensemble combines its members' predictions.
AGGREGATIONS = ("softmax_mean", "majority_vote")

Aggregation = Literal["softmax_mean", "majority_vote"]


def aggregate(member_logits: torch.Tensor, how: str = "softmax_mean") -> torch.Tensor:
    """Log-probabilities ``[batch, classes]`` of the aggregate of ``[members, batch,
    classes]`` member logits (see the module docstring for the rules)."""
    probs = torch.softmax(member_logits, dim=-1)
    mean = probs.mean(0)
    if how == "softmax_mean":
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))
    if how == "majority_vote":
        members, _, classes = member_logits.shape
        votes = nn.functional.one_hot(member_logits.argmax(-1), classes).to(mean.dtype).sum(0)
        return torch.log((votes + mean) / (members + 1))
    raise ValueError(f"unknown aggregation '{how}'; choose one of {', '.join(AGGREGATIONS)}")


class Ensemble(nn.Module):
    """Member networks of one architecture; ``forward`` returns the aggregated log-probs.

    ``features(x)`` concatenates the members' features (when they have ``features``).
    """

    def __init__(self, members: Sequence[nn.Module], aggregation: Aggregation = "softmax_mean"
                 ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation '{aggregation}'; choose one of "
                             f"{', '.join(AGGREGATIONS)}")
        self.members = nn.ModuleList(members)
        self.aggregation = aggregation

    def __len__(self) -> int:
        return len(self.members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[members, batch, classes]``: each member's logits."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return aggregate(self.member_logits(x), self.aggregation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features(x) for m in self.members], dim=-1)
