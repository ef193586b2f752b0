"""Privacy accounting: Renyi DP of the subsampled Gaussian mechanism, composed over steps.

The Renyi differential privacy (RDP, Mironov 2017) of one step of DP-SGD, the Gaussian
mechanism with noise multiplier ``sigma`` applied to a Poisson-subsampled batch (each
example in with probability ``q``), is computed exactly at each order ``alpha`` by the
formulas of Mironov, Talwar and Zhang (2019): for integer ``alpha`` the binomial
expansion

    A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)),

and for fractional ``alpha`` their two convergent series with ``erfc`` terms; then
``RDP(alpha) = log(A_alpha) / (alpha - 1)``. RDP composes by addition over steps, and an
RDP curve converts to ``(epsilon, delta)``-DP at the best order, either by the classic
conversion ``epsilon = RDP(alpha) + log(1/delta) / (alpha - 1)`` (Mironov 2017,
Proposition 3) or the tighter one of Balle et al. (2020, Theorem 21),
``epsilon = RDP(alpha) + log((alpha-1)/alpha) - (log(delta) + log(alpha)) / (alpha - 1)``
(the default, as in Opacus and TensorFlow Privacy).

Everything is computed in log space with NumPy/SciPy (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_ORDERS",
    "RDPAccountant",
    "compute_rdp",
    "epsilon",
    "noise_multiplier_for",
    "rdp_to_epsilon",
]

#: The RDP orders searched by default: 1.1 ... 10.9 in steps of 0.1, then 11 ... 63, and a
#: few large ones for tiny noise multipliers or huge step counts.
DEFAULT_ORDERS: tuple[float, ...] = (
    tuple(1 + x / 10 for x in range(1, 100)) + tuple(float(a) for a in range(11, 64))
    + (128.0, 256.0, 512.0))

Conversion = Literal["balle2020", "mironov2017"]


def _log_add(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))``."""
    hi, lo = max(a, b), min(a, b)
    if hi == -math.inf:
        return -math.inf
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """``log(exp(a) - exp(b))`` for ``a >= b``."""
    if b > a:
        raise ValueError("log_sub needs a >= b")
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    return a + math.log(-math.expm1(b - a))


def _log_erfc(x: float) -> float:
    """``log(erfc(x))``, accurate for large ``x`` too."""
    from scipy import special

    return float(special.log_ndtr(-x * math.sqrt(2.0)) + math.log(2.0))


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """``log A_alpha`` for an integer order (the binomial expansion)."""
    log_a = -math.inf
    for k in range(alpha + 1):
        term = (math.log(math.comb(alpha, k)) + k * math.log(q) + (alpha - k) * math.log1p(-q)
                + (k * k - k) / (2.0 * sigma ** 2))
        log_a = _log_add(log_a, term)
    return log_a


def _log_a_fractional(q: float, sigma: float, alpha: float) -> float:
    """``log A_alpha`` for a fractional order: the two series of Mironov, Talwar and Zhang
    (2019, Section 3.3), summed until their terms are negligible."""
    from scipy import special

    # z0 splits the real line where the two mixture densities cross
    z0 = sigma ** 2 * math.log(1.0 / q - 1.0) + 0.5
    log_a0, log_a1 = -math.inf, -math.inf
    i = 0
    while True:
        coef = float(special.binom(alpha, i))
        log_coef = math.log(abs(coef)) if coef != 0 else -math.inf
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2.0) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2.0) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2.0 * sigma ** 2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2.0 * sigma ** 2) + log_e1
        if coef > 0:
            log_a0 = _log_add(log_a0, log_s0)
            log_a1 = _log_add(log_a1, log_s1)
        else:
            log_a0 = _log_sub(log_a0, log_s0)
            log_a1 = _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30 or i > 10_000:
            break
    return _log_add(log_a0, log_a1)


def _rdp_one_step(q: float, sigma: float, alpha: float) -> float:
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:
        return alpha / (2.0 * sigma ** 2)
    if math.isinf(alpha):
        return math.inf
    if float(alpha).is_integer():
        log_a = _log_a_integer(q, sigma, int(alpha))
    else:
        log_a = _log_a_fractional(q, sigma, float(alpha))
    return log_a / (alpha - 1.0)


def compute_rdp(sample_rate: float, noise_multiplier: float, steps: int,
                orders: Sequence[float] = DEFAULT_ORDERS) -> list[float]:
    """RDP at each of ``orders`` of ``steps`` compositions of the Poisson-subsampled
    Gaussian mechanism (sampling rate ``sample_rate``, noise std / sensitivity
    ``noise_multiplier``)."""
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    bad = [a for a in orders if a <= 1]
    if bad:
        raise ValueError(f"RDP orders must be > 1, got {bad[:3]}")
    return [_rdp_one_step(float(sample_rate), float(noise_multiplier), float(a)) * steps
            for a in orders]


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float,
                   conversion: Conversion = "balle2020") -> tuple[float, float]:
    """``(epsilon, best_order)``: the smallest epsilon over the orders at which the RDP
    curve ``rdp`` gives ``(epsilon, delta)``-DP (see the module docstring)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if len(orders) != len(rdp):
        raise ValueError(f"{len(orders)} orders but {len(rdp)} RDP values")
    best, best_order = math.inf, math.nan
    for a, r in zip(orders, rdp, strict=True):
        if math.isinf(r) or math.isnan(r):
            continue
        if conversion == "mironov2017":
            eps = r + math.log(1.0 / delta) / (a - 1.0)
        elif conversion == "balle2020":
            eps = r + math.log((a - 1.0) / a) - (math.log(delta) + math.log(a)) / (a - 1.0)
        else:
            raise ValueError(f"unknown conversion '{conversion}'; choose balle2020 or "
                             "mironov2017")
        if eps < best:
            best, best_order = eps, float(a)
    return max(best, 0.0), best_order


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, *,
            orders: Sequence[float] = DEFAULT_ORDERS,
            conversion: Conversion = "balle2020") -> float:
    """The epsilon of ``steps`` steps of DP-SGD at ``delta`` (RDP accounting)."""
    rdp = compute_rdp(sample_rate, noise_multiplier, steps, orders)
    return rdp_to_epsilon(orders, rdp, delta, conversion)[0]


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                         *, orders: Sequence[float] = DEFAULT_ORDERS,
                         conversion: Conversion = "balle2020", tolerance: float = 1e-3
                         ) -> float:
    """The smallest noise multiplier (to ``tolerance``, relative) whose ``steps`` steps at
    ``sample_rate`` stay within ``(target_epsilon, delta)`` (bisection; epsilon falls as
    the noise grows)."""
    if target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")

    def eps(sigma: float) -> float:
        return epsilon(sigma, sample_rate, steps, delta, orders=orders, conversion=conversion)

    lo, hi = 1e-3, 1.0
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise ValueError(f"no noise multiplier up to 1e6 reaches epsilon "
                             f"{target_epsilon} at delta {delta}")
    while (hi - lo) / hi > tolerance:
        mid = (lo + hi) / 2.0
        if eps(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass
class RDPAccountant:
    """Accumulates the RDP of a sequence of (subsampled) Gaussian mechanism steps.

    Example::

        acc = RDPAccountant()
        acc.step(noise_multiplier=1.1, sample_rate=256 / 60_000, steps=10_000)
        acc.get_epsilon(delta=1e-5)
    """

    orders: tuple[float, ...] = DEFAULT_ORDERS
    conversion: Conversion = "balle2020"
    history: list[tuple[float, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.orders = tuple(float(a) for a in self.orders)
        self._rdp = [0.0] * len(self.orders)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` more steps of the mechanism."""
        added = compute_rdp(sample_rate, noise_multiplier, steps, self.orders)
        self._rdp = [a + b for a, b in zip(self._rdp, added, strict=True)]
        self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    def rdp(self) -> list[float]:
        """The composed RDP at each order."""
        return list(self._rdp)

    def get_privacy_spent(self, delta: float) -> tuple[float, float]:
        """``(epsilon, best_order)`` at ``delta``."""
        return rdp_to_epsilon(self.orders, self._rdp, delta, self.conversion)

    def get_epsilon(self, delta: float) -> float:
        """The epsilon spent so far at ``delta``."""
        return self.get_privacy_spent(delta)[0]

    @classmethod
    def of(cls, steps: Iterable[tuple[float, float, int]], **kwargs: object
           ) -> RDPAccountant:
        """An accountant that has composed ``(noise_multiplier, sample_rate, steps)``."""
        acc = cls(**kwargs)  # type: ignore[arg-type]
        for sigma, q, n in steps:
            acc.step(noise_multiplier=sigma, sample_rate=q, steps=n)
        return acc
