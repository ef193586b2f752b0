"""Mean per-example loss of a model on the forget, retain and test splits."""

from __future__ import annotations

from typing import Any

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["MeanLoss"]


class MeanLoss(Metric):
    """Mean per-example training loss on the forget, retain and test splits.

    The adapter's own loss (cross-entropy for classifiers, answer-token NLL for language
    models, the denoising loss for diffusion models...), read from the context's cached
    forward pass. Unlearning should raise ``forget_loss`` toward the oracle's while
    ``retain_loss`` stays put; it works for every modality.
    """

    name = "loss"
    modalities = ("any",)
    needs = frozenset()
    Params = MetricParams
    paper = None
    outputs = ("forget_loss", "retain_loss", "test_loss")
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        values = {}
        for split in ("forget", "retain", "test"):
            losses = ctx.outputs(split)["loss"]
            if len(losses) == 0:
                raise IncompatibleComponentError(
                    f"metric 'loss' needs a non-empty {split} split")
            values[f"{split}_loss"] = float(losses.mean())
        return Measurement(values=values)
