"""The ``forget_loss`` metric: the model's mean loss on the forget split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric

if TYPE_CHECKING:
    from erasus.evaluation import EvalContext

__all__ = ["ForgetLoss"]


class ForgetLoss(Metric):
    """Mean per-example loss on the forget split (it rises as the model forgets).

    Reads the per-example ``loss`` of the shared evaluation context, so it costs no
    forward pass of its own when another metric has already evaluated the forget split.
    Compare the unlearned model's value with the retrained oracle's: the oracle never
    saw the forget data, so its forget loss is the target.
    """

    name = "forget_loss"
    modalities = ("any",)
    needs = frozenset()
    outputs = ("forget_loss",)
    scope = "model"
    paper = None

    def compute(self, ctx: EvalContext) -> Measurement:
        """The mean of ``ctx.outputs("forget")["loss"]``."""
        losses = ctx.outputs("forget").get("loss")  # absent when the split has no example
        if losses is None or losses.size == 0:
            raise IncompatibleComponentError(
                "metric 'forget_loss' needs a non-empty forget split; the data set gave none")
        return Measurement(values={"forget_loss": float(losses.mean(dtype="float64"))})
