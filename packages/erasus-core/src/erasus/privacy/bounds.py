"""Gradient-residual and influence bounds of certified removal (Guo et al., 2020).

Notation (sum form, as in the paper): the training objective of a linear model with
weights ``w`` on ``n`` points is ``L(w; D) = sum_i l(w^T x_i, y_i) + (lambda n / 2) ||w||^2``,
trained with objective perturbation ``+ b^T w``. Removing points by one Newton step
``w- = w* + H^-1 Delta`` leaves a gradient residual ``||grad L_b(w-; D')||``, which these
functions bound:

- :func:`newton_residual_bound`: the data-dependent bound (Guo et al., Corollary 1),
  ``gamma * ||X'||_2 * ||H^-1 Delta|| * ||X' H^-1 Delta||`` with ``X'`` the remaining data
  and ``gamma`` the Lipschitz constant of ``l''`` (``1/4`` for the logistic loss, the
  paper's value);
- :func:`worst_case_residual_bound`: the data-independent bound of one removal
  (Theorem 1), ``4 gamma C^2 / (lambda^2 (n - 1))`` for features of norm at most 1 and
  per-example gradients of norm at most ``C``;
- :func:`residual_budget`: the largest residual ``epsilon'`` that Gaussian objective
  perturbation ``b ~ N(0, sigma^2 I)`` certifies as ``(epsilon, delta)``-removal
  (Theorem 3 with the Gaussian density): ``epsilon' = sigma * epsilon / c`` with
  ``c = sqrt(2 log(1.5 / delta))``;
- :func:`perturbation_sigma`: the ``sigma`` that certifies a given residual;
- :func:`parameter_change_bound`: the influence bound ``||H^-1 Delta|| <= ||Delta|| /
  (lambda n')``, from the strong convexity of the regularised loss on ``n'`` points.

The residual after several removals is at most the sum of their bounds (each Newton step
adds its own remainder to the residual it started from), which is how certified removal
accumulates its budget.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "LOGISTIC_GAMMA",
    "newton_residual_bound",
    "parameter_change_bound",
    "perturbation_sigma",
    "residual_budget",
    "spectral_norm",
    "worst_case_residual_bound",
]

#: The Lipschitz constant of the logistic loss's second derivative used by Guo et al.
LOGISTIC_GAMMA = 0.25


def _c(delta: float) -> float:
    if not 0 < delta < 1.5:
        raise ValueError(f"delta must be in (0, 1.5), got {delta}")
    return math.sqrt(2.0 * math.log(1.5 / delta))


def residual_budget(epsilon: float, delta: float, sigma: float) -> float:
    """The gradient-residual norm that ``b ~ N(0, sigma^2 I)`` certifies at ``(epsilon,
    delta)``: ``sigma * epsilon / sqrt(2 log(1.5 / delta))``."""
    if epsilon <= 0 or sigma < 0:
        raise ValueError(f"need epsilon > 0 and sigma >= 0 (got {epsilon}, {sigma})")
    return sigma * epsilon / _c(delta)


def perturbation_sigma(epsilon: float, delta: float, residual: float) -> float:
    """The std of ``b`` that certifies a gradient residual of ``residual`` at ``(epsilon,
    delta)`` (the inverse of :func:`residual_budget`)."""
    if epsilon <= 0 or residual < 0:
        raise ValueError(f"need epsilon > 0 and residual >= 0 (got {epsilon}, {residual})")
    return _c(delta) * residual / epsilon


def spectral_norm(x: torch.Tensor) -> float:
    """``||X||_2``, the largest singular value of a data matrix (exact, via the
    eigenvalues of the smaller Gram matrix)."""
    import torch

    x = x.to(torch.float64)
    gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
    if gram.numel() == 0:
        return 0.0
    return math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0))


def newton_residual_bound(x_remaining: torch.Tensor, step: torch.Tensor, *,
                          gamma: float = LOGISTIC_GAMMA, x_norm: float | None = None
                          ) -> float:
    """Guo et al.'s data-dependent bound on the gradient residual after the Newton step
    ``step = H^-1 Delta``: ``gamma ||X'||_2 ||step|| ||X' step||``.

    ``x_remaining`` is the remaining data ``[n', d]`` (rows as the model sees them, with a
    constant column for a bias); pass ``x_norm`` when ``||X'||_2`` is already known.
    """
    import torch

    x = x_remaining.to(torch.float64)
    s = step.to(torch.float64).reshape(-1)
    norm = spectral_norm(x) if x_norm is None else float(x_norm)
    return gamma * norm * float(s.norm()) * float((x @ s).norm())


def worst_case_residual_bound(gradient_bound: float, l2: float, n: int, *,
                              gamma: float = LOGISTIC_GAMMA) -> float:
    """Guo et al.'s Theorem 1: one removal from ``n`` points leaves a residual of at most
    ``4 gamma C^2 / (lambda^2 (n - 1))`` (features of norm <= 1, gradients of norm <= C)."""
    if n < 2 or l2 <= 0:
        raise ValueError(f"need n >= 2 and l2 > 0 (got {n}, {l2})")
    return 4.0 * gamma * gradient_bound ** 2 / (l2 ** 2 * (n - 1))


def parameter_change_bound(delta_norm: float, l2: float, n_remaining: int) -> float:
    """``||H^-1 Delta|| <= ||Delta|| / (lambda n')``: how far one removal can move the
    weights (the Hessian of the regularised loss is at least ``lambda n'`` I)."""
    if l2 <= 0 or n_remaining < 1:
        raise ValueError(f"need l2 > 0 and n_remaining >= 1 (got {l2}, {n_remaining})")
    return delta_norm / (l2 * n_remaining)
