"""Mean true-class confidence and predictive entropy on the forget, retain and test splits."""

from __future__ import annotations

from typing import Any

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["Confidence", "softmax_stats"]

_SPLITS = ("forget", "retain", "test")


def softmax_stats(out: dict[str, Any]) -> tuple[Any, Any]:
    """Per-example softmax probability of the true label and entropy (nats) of the softmax."""
    import numpy as np

    logits = np.asarray(out["logits"], dtype=np.float64)
    labels = np.asarray(out["labels"], dtype=np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    entropy = -(probs * log_probs).sum(axis=1)
    return probs[np.arange(len(labels)), labels], entropy


class Confidence(Metric):
    """Mean softmax confidence in the true label, and mean predictive entropy, per split.

    For each of the forget, retain and test splits, from the context's cached logits and
    labels: ``<split>_confidence`` is the mean over examples of ``softmax(logits)[label]``
    and ``<split>_entropy`` the mean of ``-sum_k p_k log p_k`` (nats; ``log(classes)``
    for a uniform prediction). A model that still remembers its forget set is more
    confident and less uncertain there than on test data; after good unlearning the
    forget values move toward the test values (and the oracle's). These are the signals
    that confidence- and entropy-based membership attacks threshold.
    """

    name = "confidence"
    modalities = ("classification",)
    needs = frozenset()
    Params = MetricParams
    paper = None
    outputs = tuple(f"{s}_{k}" for s in _SPLITS for k in ("confidence", "entropy"))
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        values: dict[str, float] = {}
        for split in _SPLITS:
            out = ctx.outputs(split)
            if "logits" not in out or "labels" not in out:
                raise IncompatibleComponentError(
                    f"metric 'confidence' needs logits and labels, but the model adapter's "
                    f"outputs on '{split}' have only {', '.join(sorted(out))}; use a "
                    "classification adapter")
            if len(out["labels"]) == 0:
                raise IncompatibleComponentError(
                    f"metric 'confidence': the '{split}' split is empty")
            conf, entropy = softmax_stats(out)
            values[f"{split}_confidence"] = float(conf.mean())
            values[f"{split}_entropy"] = float(entropy.mean())
        return Measurement(values=values)
