"""What the membership-inference metrics (mia, differential_privacy, lira) share: the
cached outputs of the members (the forget split) and the non-members, and the attack's ROC.

Private to the built-in metrics; not a public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["member_losses", "member_outputs", "roc"]


def member_outputs(ctx: Any, metric: str, nonmember_split: str, *, count: str = "loss",
                   check: Callable[[str, dict[str, Any]], None] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``ctx.outputs`` of the members (the ``forget`` split) and of the non-members
    (``nonmember_split``).

    Raises:
        IncompatibleComponentError: a split does not exist (saying to set
            ``nonmember_split``), ``check(split, outputs)`` raises, or a split is empty
            (``count`` is the output whose length is the number of examples).
    """
    outs = []
    for role, split in (("members", "forget"), ("non-members", nonmember_split)):
        try:
            out = ctx.outputs(split)
        except KeyError as exc:
            raise IncompatibleComponentError(
                f"metric '{metric}': no split named '{split}' for the {role}; set "
                f"nonmember_split to a held-out split ({exc.args[0] if exc.args else ''})"
            ) from None
        if check is not None:
            check(split, out)
        if len(out[count]) == 0:
            raise IncompatibleComponentError(f"metric '{metric}': the '{split}' split is empty")
        outs.append(out)
    return outs[0], outs[1]


def member_losses(ctx: Any, metric: str, nonmember_split: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The per-example losses (float64) of the members and of the non-members
    (:func:`member_outputs`)."""
    import numpy as np

    members, nonmembers = member_outputs(ctx, metric, nonmember_split)
    return (np.asarray(members["loss"], dtype=np.float64),
            np.asarray(nonmembers["loss"], dtype=np.float64))


def roc(member_scores: Any, nonmember_scores: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """``(auc, fpr, tpr)`` of the attack that says "member" above a threshold on the
    score: ``sklearn.metrics.roc_auc_score`` and ``roc_curve`` with the members labelled
    1 and the non-members 0."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.concatenate([member_scores, nonmember_scores])
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores)), fpr, tpr
