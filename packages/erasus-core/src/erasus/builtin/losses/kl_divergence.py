"""KL divergence between a teacher's and a student's softened predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.losses import Loss, LossParams

if TYPE_CHECKING:
    import torch

__all__ = ["KLDivergence", "KLDivergenceParams"]


class KLDivergenceParams(LossParams):
    """Parameters of the distillation KL divergence."""

    temperature: float = Field(1.0, gt=0, description="Softmax temperature T of both "
                               "distributions.")
    direction: Literal["forward", "reverse"] = Field(
        "forward", description="'forward': KL(teacher || student), as in distillation; "
        "'reverse': KL(student || teacher).")
    scale_by_t2: bool = Field(True, description="Multiply by T^2, so gradient magnitudes do "
                              "not shrink as the temperature grows (Hinton et al.).")
    reduction: Literal["batchmean", "none"] = Field(
        "batchmean", description="'batchmean': the mean over examples of each example's KL; "
        "'none': one KL per example.")


class KLDivergence(Loss):
    """Temperature-softened KL divergence between teacher and student logits.

    ``loss(student_logits, teacher_logits)`` with logits of shape ``[n, classes]`` (or
    ``[..., classes]``, every leading position an example). With ``p = softmax(teacher /
    T)`` and ``q = softmax(student / T)`` it is, per example, ``KL(p || q) = sum_k p_k
    (log p_k - log q_k)`` (``direction: reverse`` swaps ``p`` and ``q``), times ``T^2``
    when ``scale_by_t2``, averaged over examples (``reduction: batchmean``). The teacher
    is detached: gradients flow into the student only. This is the distillation loss of
    Hinton et al. (2015) that SCRUB and the bad-teacher method build on: minimise it on
    retained data to stay close to the original, maximise it on forget data to depart.
    """

    name = "kl_divergence"
    modalities = ("any",)
    needs = frozenset()
    Params = KLDivergenceParams
    paper = Paper(
        title="Distilling the Knowledge in a Neural Network",
        authors="Geoffrey Hinton, Oriol Vinyals, Jeff Dean",
        year=2015,
        url="https://arxiv.org/abs/1503.02531",
        venue="NeurIPS Deep Learning Workshop",
    )

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
                 ) -> torch.Tensor:
        import torch.nn.functional as F

        p: KLDivergenceParams = self.params  # type: ignore[assignment]
        if student_logits.shape != teacher_logits.shape:
            raise IncompatibleComponentError(
                f"loss 'kl_divergence': student logits {tuple(student_logits.shape)} and "
                f"teacher logits {tuple(teacher_logits.shape)} differ in shape")
        t = p.temperature
        log_q = F.log_softmax(student_logits / t, dim=-1)
        log_p = F.log_softmax(teacher_logits.detach() / t, dim=-1)
        if p.direction == "forward":
            per_example = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
        else:
            per_example = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
        if p.scale_by_t2:
            per_example = per_example * (t * t)
        per_example = per_example.reshape(-1)
        return per_example if p.reduction == "none" else per_example.mean()
