"""Gradient norm (GraNd): select the forget examples with the largest loss gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin._papers import PAUL_2021
from erasus.builtin.selectors._grad_common import CheckpointParams, CheckpointScorer

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter

__all__ = ["GradientNorm", "GradientNormParams", "gradient_norms"]


class GradientNormParams(CheckpointParams):
    """Parameters of gradient-norm selection."""

    parameters: str | None = Field(
        None, description="Parameter group to differentiate (a name from the model's "
        "parameter_groups(), e.g. 'head'); null: every trainable parameter.")


def gradient_norms(adapter: ModelAdapter, dataset: Any, *, params: str | None = None,
                   collate_fn: Any = None, batch_size: int = 64) -> np.ndarray:
    """``||grad_theta loss(z_i)||_2`` of every example of ``dataset``, in dataset order."""
    import numpy as np

    from erasus.gradients import iter_example_grads

    out = np.zeros(len(dataset), dtype=np.float64)
    for indices, grads in iter_example_grads(adapter, dataset, names=params,
                                             batch_size=batch_size, collate_fn=collate_fn):
        out[indices.numpy()] = grads.double().norm(dim=1).cpu().numpy()
    return out


class GradientNorm(CheckpointScorer):
    """Score each forget example by the L2 norm of its loss gradient (GraNd).

    ``score_i = || d loss(z_i) / d theta ||_2`` over the chosen parameters (``parameters``: a
    parameter group, or all trainable ones), each example's gradient computed on its own
    (``erasus.gradients``, eval mode), never per batch. Paul et al. define GraNd as this
    norm's expectation over weights early in training; by default the score is taken at
    the given model's weights (the model being unlearned). With ``use_checkpoints: true``
    it is the mean norm over the original's recorded training checkpoints (restricted to
    ``checkpoint_epochs``, e.g. the first few epochs as in the paper), each loaded into a
    clone of the model. The ``budget`` highest-scoring examples are returned, best first
    (ties to the lower position); ``info`` says where the score was taken.
    """

    name = "gradient_norm"
    modalities = ("any",)
    needs = frozenset()
    Params = GradientNormParams
    paper = PAUL_2021

    def score(self, adapter: ModelAdapter, dataset: Any, collate_fn: Any) -> np.ndarray:
        p: GradientNormParams = self.params  # type: ignore[assignment]
        return gradient_norms(adapter, dataset, params=p.parameters, collate_fn=collate_fn,
                              batch_size=p.batch_size)

    def score_info(self) -> dict[str, Any]:
        p: GradientNormParams = self.params  # type: ignore[assignment]
        return {"parameters": p.parameters or "all"}
