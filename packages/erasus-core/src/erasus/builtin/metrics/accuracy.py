"""Classification accuracy on the forget, retain and test splits (UA, RA, TA)."""

from __future__ import annotations

from typing import Any

from erasus.builtin._papers import JIA_2023
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["Accuracy", "split_accuracy"]


def split_accuracy(ctx: Any, split: str) -> float:
    """Top-1 accuracy (percent) of the context's model on ``split``, from cached outputs."""
    import numpy as np

    out = ctx.outputs(split)
    if "logits" not in out or "labels" not in out:
        raise IncompatibleComponentError(
            f"accuracy needs logits and labels, but the model adapter's outputs on '{split}' "
            f"have only {', '.join(sorted(out))}; use a classification adapter")
    logits, labels = out["logits"], out["labels"]
    if len(labels) == 0:
        raise IncompatibleComponentError(f"accuracy: the '{split}' split is empty")
    return float(100.0 * np.mean(np.argmax(logits, axis=-1) == labels))


class Accuracy(Metric):
    """Unlearning, retain and test accuracy, in percent (UA, RA, TA).

    - ``UA`` = 100 - top-1 accuracy on the forget split (higher: more forgotten);
    - ``RA`` = top-1 accuracy on the retain split;
    - ``TA`` = top-1 accuracy on the test split (for class-wise forgetting, the test set
      without the forgotten class).

    Computed from the context's cached forward passes (``ctx.outputs``). When the data set
    has a ``test_forgotten_class`` split, its accuracy goes in the details.
    """

    name = "accuracy"
    modalities = ("classification",)
    needs = frozenset()
    Params = MetricParams
    paper = JIA_2023
    outputs = ("UA", "RA", "TA")
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        forget = split_accuracy(ctx, "forget")
        values = {"UA": 100.0 - forget, "RA": split_accuracy(ctx, "retain"),
                  "TA": split_accuracy(ctx, "test")}
        details: dict[str, Any] = {"forget_accuracy": forget}
        splits = getattr(ctx, "splits", None)
        extra = getattr(splits, "extra", None) or {}
        if "test_forgotten_class" in extra:
            details["test_forgotten_class_accuracy"] = split_accuracy(ctx, "test_forgotten_class")
        return Measurement(values=values, details=details)
