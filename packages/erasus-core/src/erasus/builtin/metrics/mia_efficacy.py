"""MIA-efficacy: the share of the forget set a confidence attack calls non-member."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasus.builtin._papers import JIA_2023
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["MIAEfficacy", "MIAEfficacyParams", "true_label_confidence"]


class MIAEfficacyParams(MetricParams):
    """Parameters of MIA-efficacy."""

    seed: int = Field(0, description="Seed of the draw of retain examples (the members).")


def true_label_confidence(out: dict[str, Any]) -> Any:
    """Softmax probability of the true label, one per example, from cached outputs."""
    import numpy as np

    logits = np.asarray(out["logits"], dtype=np.float64)
    labels = np.asarray(out["labels"], dtype=np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[np.arange(len(labels)), labels]


class MIAEfficacy(Metric):
    """MIA-efficacy: percent of the forget set a confidence-based attack predicts non-member.

    The shadow-free attack of Jia et al. (2023), used by SalUn and after: an
    ``sklearn.svm.SVC(C=3, kernel="rbf", gamma="auto")`` is fitted on one feature, the
    softmax probability of the true label, with retain examples labelled member (1) and
    test examples labelled non-member (0). The members are as many retain examples as
    there are test examples (all of them if the retain split is smaller), drawn without
    replacement with ``numpy.random.default_rng(seed)``. The attack then predicts on the
    forget split, and ``MIA_efficacy = 100 * share predicted non-member``: higher means the
    forget set looks more like data the model never saw.

    The confidence feature follows the privacy-risk evaluation of Song & Mittal (2021),
    "Systematic Evaluation of Privacy Risks of Machine Learning Models" (USENIX Security).
    """

    name = "mia_efficacy"
    modalities = ("classification",)
    needs = frozenset()
    Params = MIAEfficacyParams
    paper = JIA_2023
    outputs = ("MIA_efficacy",)
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        import numpy as np
        from sklearn.svm import SVC

        outs = {}
        for split in ("retain", "test", "forget"):
            out = ctx.outputs(split)
            if "logits" not in out or "labels" not in out:
                raise IncompatibleComponentError(
                    "mia_efficacy needs logits and labels (the true-label confidence), but the "
                    f"model adapter's outputs on '{split}' have only {', '.join(sorted(out))}; "
                    "use a classification adapter, or the loss-based 'mia' metric")
            if len(out["labels"]) == 0:
                raise IncompatibleComponentError(f"mia_efficacy: the '{split}' split is empty")
            outs[split] = true_label_confidence(out)

        p: MIAEfficacyParams = self.params  # type: ignore[assignment]
        retain_conf, test_conf = outs["retain"], outs["test"]
        n_members = min(len(test_conf), len(retain_conf))
        rng = np.random.default_rng(int(p.seed))
        members = retain_conf[rng.choice(len(retain_conf), size=n_members, replace=False)]
        x = np.concatenate([members, test_conf])[:, None]
        y = np.concatenate([np.ones(len(members)), np.zeros(len(test_conf))])
        clf = SVC(C=3, kernel="rbf", gamma="auto")
        clf.fit(x, y)
        predicted = clf.predict(outs["forget"][:, None])
        efficacy = float(100.0 * np.mean(predicted == 0))
        return Measurement(values={"MIA_efficacy": efficacy},
                           details={"n_members": int(n_members), "n_nonmembers": len(test_conf),
                                    "n_forget": len(predicted)})
