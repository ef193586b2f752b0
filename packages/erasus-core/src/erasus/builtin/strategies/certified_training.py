"""Training a linear model with objective perturbation, ready for certified removal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from erasus.builtin.strategies.certified_removal import (
    GUO_2020,
    certified_tiny_problem,
    draw_perturbation,
)
from erasus.errors import IncompatibleComponentError
from erasus.strategy import History, Strategy, StrategyParams

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter, TinyProblem
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["CertifiedTraining", "CertifiedTrainingParams"]


class CertifiedTrainingParams(StrategyParams):
    """Parameters of certified training (the objective and its perturbation)."""

    l2: float = Field(1e-3, gt=0, description="lambda of the L2 regulariser (lambda n / 2) "
                      "||w||^2, sum form as in Guo et al.; larger makes removals cheaper in "
                      "budget and the model less accurate.")
    sigma: float = Field(1.0, ge=0, description="Std of the objective perturbation b ~ "
                         "N(0, sigma^2 I); certified_removal's residual budget is sigma * "
                         "epsilon / sqrt(2 log(1.5 / delta)). 0: no perturbation (every "
                         "removal then retrains).")
    tol: float = Field(1e-12, gt=0, description="Newton's method stops when the gradient "
                       "norm is at most tol * n.")
    max_iter: int = Field(100, ge=1, description="Newton iterations per weight row at most.")


class CertifiedTraining(Strategy):
    """Train a linear classifier to the exact optimum of the perturbed, L2-regularised
    logistic loss (Guo et al., 2020), from scratch on the retain set.

    The objective (sum form) is ``sum_i l(w^T x_i, y_i) + (lambda n / 2) ||w||^2 + b^T w``
    with ``b ~ N(0, sigma^2 I)`` drawn from a generator seeded by the run seed and ``n``,
    ``l`` the logistic loss (two classes: class 1 against class 0; more: one-vs-rest), and
    ``x`` the flattened input with a constant 1 for the bias. Newton's method in float64
    reaches the optimum to machine precision. The model stores ``b``, ``lambda``,
    ``sigma``, the training residual (the starting point of certified removal's budget)
    and ``n`` in its ``perturbation`` buffers, which ``certified_removal`` reads.

    Use it as the training recipe of the original (``train: {name: certified_training}``)
    and as the oracle (exact retraining with a fresh ``b``). It needs ``model: {name:
    classifier, arch: linear}`` and refuses any other model.
    """

    name = "certified_training"
    modalities = ("classification",)
    #: Runs only on the classifier adapter (its ensemble / linear arch).
    adapters = ("classifier",)
    needs = frozenset({"retain"})
    Params = CertifiedTrainingParams
    paper = GUO_2020
    effect = "retrain_from_scratch"

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.privacy import linear

        linear.check_linear(adapter, self.name)
        p: CertifiedTrainingParams = self.params  # type: ignore[assignment]
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                f"'{self.name}' trains on the retain set, which is empty or missing")
        x, labels = linear.design(adapter, data.retain, data.collate_fn)
        y = linear.signs(labels, adapter.num_classes)  # type: ignore[attr-defined]
        n = x.shape[0]
        b = draw_perturbation(p.sigma, (y.shape[1], x.shape[1]), run.seed, n)
        w, iterations = linear.fit(x, y, p.l2, b, tol=p.tol, max_iter=p.max_iter)
        linear.set_weights(adapter.model, w)
        residual = linear.residual_norm(w, x, y, p.l2, b)
        linear.write_state(adapter.model, linear.CertifiedState(
            b=b, l2=p.l2, sigma=p.sigma, spent=residual, n_train=n))
        adapter.model.eval()
        loss = float(linear.objective(w, x, y, p.l2, b).sum()) / n
        history = History()
        history.steps.append({"loss": loss, "residual": residual,
                              "iterations": float(iterations), "step": 1.0})
        return history

    @classmethod
    def conformance_problem(cls, adapter_cls: type, seed: int = 0) -> TinyProblem | None:
        """A certified-trained linear classifier on tiny data (for the conformance suites)."""
        from erasus.builtin.models.classifier import ClassifierAdapter

        if not issubclass(adapter_cls, ClassifierAdapter):
            return None
        return certified_tiny_problem(adapter_cls, seed)
