"""The Gaussian and Laplace mechanisms, calibrated to a privacy target.

- Laplace (Dwork, McSherry, Nissim, Smith 2006): noise of scale ``b = sensitivity / epsilon``
  (L1 sensitivity) gives ``epsilon``-DP.
- Gaussian, classic (Dwork and Roth 2014, Theorem A.1): ``sigma = sensitivity *
  sqrt(2 ln(1.25 / delta)) / epsilon`` (L2 sensitivity) gives ``(epsilon, delta)``-DP for
  ``epsilon < 1``.
- Gaussian, analytic (Balle and Wang 2018, Theorem 8): the mechanism is ``(epsilon,
  delta)``-DP exactly when ``Phi(D/(2 sigma) - epsilon sigma / D) - e^epsilon
  Phi(-D/(2 sigma) - epsilon sigma / D) <= delta`` (``D`` the L2 sensitivity, ``Phi`` the
  normal CDF); the smallest such ``sigma`` is found by bisection on that exact condition.
  It is valid for every ``epsilon > 0`` and never larger than the classic ``sigma``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = [
    "GaussianMechanism",
    "LaplaceMechanism",
    "gaussian_delta",
    "gaussian_sigma",
    "laplace_scale",
]

GaussianMethod = Literal["analytic", "classic"]


def _check(epsilon: float, sensitivity: float) -> None:
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")


def laplace_scale(epsilon: float, sensitivity: float = 1.0) -> float:
    """The Laplace scale ``b`` that makes a query of L1 ``sensitivity`` ``epsilon``-DP."""
    _check(epsilon, sensitivity)
    return sensitivity / epsilon


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The exact (smallest) delta of the Gaussian mechanism with noise std ``sigma`` at
    ``epsilon`` (Balle and Wang 2018, Theorem 8)."""
    from scipy import special

    _check(epsilon, sensitivity)
    if sigma <= 0:
        return 1.0
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    first = float(special.ndtr(a - b))
    second = math.exp(epsilon + float(special.log_ndtr(-a - b)))
    return max(0.0, first - second)


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0,
                   method: GaussianMethod = "analytic") -> float:
    """The noise std that makes a query of L2 ``sensitivity`` ``(epsilon, delta)``-DP.

    ``method="classic"`` is the textbook bound (only for ``epsilon < 1``);
    ``"analytic"`` is the smallest sigma meeting the exact condition (relative precision
    1e-10).
    """
    _check(epsilon, sensitivity)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if method == "classic":
        if epsilon >= 1:
            raise ValueError(f"the classic Gaussian calibration holds only for epsilon < 1 "
                             f"(got {epsilon}); use method='analytic'")
        return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon
    if method != "analytic":
        raise ValueError(f"unknown method '{method}'; choose analytic or classic")
    lo, hi = 1e-6 * sensitivity, sensitivity
    while gaussian_delta(hi, epsilon, sensitivity) > delta:
        lo, hi = hi, hi * 2.0
    while gaussian_delta(lo, epsilon, sensitivity) <= delta and lo > 1e-300:
        lo /= 2.0
    while (hi - lo) > 1e-10 * hi:
        mid = (lo + hi) / 2.0
        if gaussian_delta(mid, epsilon, sensitivity) > delta:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class GaussianMechanism:
    """Adds ``N(0, sigma^2)`` noise calibrated to ``(epsilon, delta)`` and the L2
    ``sensitivity`` (analytic calibration by default)."""

    epsilon: float
    delta: float
    sensitivity: float = 1.0
    method: GaussianMethod = "analytic"

    @property
    def sigma(self) -> float:
        return gaussian_sigma(self.epsilon, self.delta, self.sensitivity, self.method)

    def __call__(self, value: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """``value`` plus independent Gaussian noise (drawn from ``generator``)."""
        import torch

        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        return value + (self.sigma * noise).to(value.dtype)


@dataclass(frozen=True)
class LaplaceMechanism:
    """Adds ``Laplace(0, b)`` noise with ``b = sensitivity / epsilon`` (L1 sensitivity)."""

    epsilon: float
    sensitivity: float = 1.0

    @property
    def scale(self) -> float:
        return laplace_scale(self.epsilon, self.sensitivity)

    def __call__(self, value: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """``value`` plus independent Laplace noise (inverse-CDF draws from ``generator``)."""
        import torch

        u = torch.rand(value.shape, generator=generator, dtype=torch.float64) - 0.5
        noise = -self.scale * torch.sign(u) * torch.log1p(-(2.0 * u.abs()).clamp_max(1 - 2**-53))
        return value + noise.to(value.dtype)
