"""Differential privacy and certified removal: accounting, mechanisms, bounds, certificates.

- :mod:`~erasus.privacy.accountant`: RDP accounting of the subsampled Gaussian mechanism
  (Mironov 2017; Mironov, Talwar, Zhang 2019), composed over steps, to ``(epsilon, delta)``;
- :mod:`~erasus.privacy.mechanisms`: Gaussian (classic and analytic, Balle and Wang 2018)
  and Laplace mechanisms with calibration;
- :mod:`~erasus.privacy.bounds`: gradient-residual and influence bounds of certified
  removal (Guo et al. 2020);
- :mod:`~erasus.privacy.linear`: the certified linear model's objective (logistic
  regression with L2 and objective perturbation) and its Newton solver;
- :mod:`~erasus.privacy.certificates`: the :class:`Certificate` record (JSON round trip);
- :mod:`~erasus.privacy.verification`: :func:`verify` checks a certificate against a
  model and the remaining data.

Submodules import torch/scipy lazily; importing this package is cheap.
"""

from __future__ import annotations

from erasus.privacy.accountant import (
    RDPAccountant,
    compute_rdp,
    epsilon,
    noise_multiplier_for,
    rdp_to_epsilon,
)
from erasus.privacy.bounds import (
    newton_residual_bound,
    parameter_change_bound,
    perturbation_sigma,
    residual_budget,
    worst_case_residual_bound,
)
from erasus.privacy.certificates import Certificate, model_hash
from erasus.privacy.mechanisms import (
    GaussianMechanism,
    LaplaceMechanism,
    gaussian_delta,
    gaussian_sigma,
    laplace_scale,
)
from erasus.privacy.verification import CertificateError, Verification, verify

__all__ = [
    "Certificate",
    "CertificateError",
    "GaussianMechanism",
    "LaplaceMechanism",
    "RDPAccountant",
    "Verification",
    "compute_rdp",
    "epsilon",
    "gaussian_delta",
    "gaussian_sigma",
    "laplace_scale",
    "model_hash",
    "newton_residual_bound",
    "noise_multiplier_for",
    "parameter_change_bound",
    "perturbation_sigma",
    "rdp_to_epsilon",
    "residual_budget",
    "verify",
    "worst_case_residual_bound",
]
