"""GRAD-MATCH: a weighted subset whose gradient matches the whole forget set's gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.selectors._grad_common import ScoreParams, forget_data
from erasus.components import Paper
from erasus.selection import Selection, Selector, resolve_budget

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter

__all__ = ["GradMatch", "GradMatchParams", "matching_error", "omp_nonneg"]


class GradMatchParams(ScoreParams):
    """Parameters of GRAD-MATCH selection."""

    lam: float = Field(
        0.01, ge=0, description="The paper's L2 penalty lambda on the weights of each "
        "non-negative least-squares fit, relative to the gradients' scale: the penalty is "
        "lam * mean_i ||g_i||^2 * ||w||^2, so the same value suits any loss scale.")
    parameters: str | None = Field(
        None, description="Parameter group to differentiate (a name from the model's "
        "parameter_groups(), e.g. 'head'); null: every trainable parameter.")


def _nnls_gram(gram: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``argmin_{x >= 0} x^T gram x - 2 c^T x`` for a PSD ``gram`` with ``c`` in its range:
    NNLS on the square-root system ``||R x - d||`` with ``R^T R = gram``, ``R^T d = c``."""
    import numpy as np
    from scipy.optimize import nnls

    vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
    keep = vals > max(float(vals.max(initial=0.0)), 1e-300) * 1e-12
    if not keep.any():
        return np.zeros(len(c))
    root = np.sqrt(vals[keep])
    r = root[:, None] * vecs[:, keep].T
    d = (vecs[:, keep].T @ c) / root
    x, _ = nnls(r, d, maxiter=50 * max(len(c), 1))
    return x


def omp_nonneg(grads: np.ndarray, target: np.ndarray, k: int, lam: float
               ) -> tuple[list[int], np.ndarray, list[float]]:
    """Orthogonal matching pursuit with non-negative, ridge-regularised weights.

    ``grads`` is ``[n, P]`` (one gradient per row), ``target`` ``[P]``. Each of ``k``
    rounds adds the unchosen row most correlated with the residual ``target - sum_S w_j
    g_j`` (ties to the lower index; once nothing correlates positively the least
    anti-correlated row is still added, so exactly ``k`` rows are chosen, possibly with
    weight 0), then refits all weights of the chosen rows:
    ``argmin_{w >= 0} ||sum_S w_j g_j - target||^2 + lam ||w||^2``. Works on the Gram
    matrix ``grads grads^T`` (``n x n``), so the cost per round does not grow with ``P``.
    Returns the chosen rows in order, their final weights and the residual norm
    ``||sum_S w_j g_j - target||`` after each round.
    """
    import numpy as np

    n = grads.shape[0]
    gram = grads @ grads.T
    corr0 = grads @ target
    tt = float(target @ target)
    chosen: list[int] = []
    free = np.ones(n, dtype=bool)
    weights = np.zeros(0)
    errors: list[float] = []
    for _ in range(min(k, n)):
        corr = corr0 - gram[:, chosen] @ weights if chosen else corr0.copy()
        corr[~free] = -np.inf
        j = int(np.argmax(corr))
        chosen.append(j)
        free[j] = False
        sub = gram[np.ix_(chosen, chosen)]
        weights = _nnls_gram(sub + lam * np.eye(len(chosen)), corr0[chosen])
        sq = tt - 2.0 * float(corr0[chosen] @ weights) + float(weights @ sub @ weights)
        errors.append(float(np.sqrt(max(sq, 0.0))))
    return chosen, weights, errors


def matching_error(grads: np.ndarray, target: np.ndarray, rows: Any, weights: Any) -> float:
    """``|| sum_j w_j g_{rows_j} - target ||_2``."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    return float(np.linalg.norm(grads[rows].T @ np.asarray(weights) - target))


class GradMatch(Selector):
    """Choose ``k`` examples and non-negative weights matching the forget set's gradient.

    GRAD-MATCH's orthogonal matching pursuit (OMP) solves
    ``min_{|S| <= k, w >= 0} || sum_{i in S} w_i g_i - g ||^2 + lambda ||w||^2``
    (``lambda = lam * mean_i ||g_i||^2``), where
    ``g_i`` is forget example ``i``'s loss gradient (per example, over ``parameters``) and
    ``g = (1/n) sum_i g_i`` the mean gradient of the whole forget set: each round adds the
    example whose gradient correlates most with the current residual and refits every
    chosen weight by non-negative ridge least squares. So unlearning on the selected,
    weighted subset follows (to first order) the gradient of the full forget set.

    Scores are the OMP weights (a chosen example may get weight 0 when it stopped
    helping); indices are returned by weight, largest first (ties in OMP order).
    ``info`` holds ``weights`` (aligned with the indices), the OMP ``order``, the residual
    ``matching_error`` after each round and ``relative_error`` (final residual over
    ``||g||``).
    """

    name = "grad_match"
    modalities = ("any",)
    needs = frozenset()
    Params = GradMatchParams
    paper = Paper(
        title="GRAD-MATCH: Gradient Matching based Data Subset Selection for Efficient "
        "Deep Model Training",
        authors="Krishnateja Killamsetty, Durga Sivasubramanian, Ganesh Ramakrishnan, "
        "Abir De, Rishabh Iyer",
        year=2021,
        url="https://arxiv.org/abs/2103.00123",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        from erasus.errors import IncompatibleComponentError
        from erasus.gradients import per_example_grads

        p: GradMatchParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        grads = per_example_grads(adapter, dataset, names=p.parameters, batch_size=p.batch_size,
                                  collate_fn=collate_fn).double().cpu().numpy()
        if not np.isfinite(grads).all():
            raise IncompatibleComponentError(
                f"selector '{self.name}': some per-example gradients are not finite")
        target = grads.mean(axis=0)
        penalty = p.lam * float((grads ** 2).sum(axis=1).mean())
        order, weights, errors = omp_nonneg(grads, target, k, penalty)
        rank = np.argsort(-weights, kind="stable")
        indices = np.asarray(order, dtype=np.int64)[rank]
        scores = weights[rank]
        norm = float(np.linalg.norm(target))
        return Selection(indices=indices, scores=scores, info={
            "selector": self.name, "n_forget": n, "k": k, "lam": p.lam, "penalty": penalty,
            "parameters": p.parameters or "all", "weights": [float(w) for w in scores],
            "order": [int(i) for i in order], "matching_error": errors,
            "relative_error": errors[-1] / norm if norm > 0 else 0.0})
