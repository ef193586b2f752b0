"""Checking a removal certificate against the model and the data it speaks of.

:func:`verify` recomputes what a :class:`~erasus.privacy.certificates.Certificate` claims:

1. the model is the certified one: the hash of its weights and state, and of its
   objective perturbation ``b``, match the certificate's;
2. the certificate is consistent: its budget is ``sigma * epsilon / sqrt(2 log(1.5 /
   delta))``, its bound is within that budget, and the model's stored state (lambda,
   sigma, bound spent, data size) agrees with it;
3. the data is the remaining data: as many examples as the certificate says remain;
4. the guarantee holds: the gradient residual ``||grad L_b(w; D')||`` of the model on that
   data, recomputed from scratch, is at most the certified bound.

A tampered model (any weight or ``b`` changed), a tampered certificate (a bound or budget
edited) or the wrong data fails with a message naming what does not match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from erasus.errors import ErasusError

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.privacy.certificates import Certificate

__all__ = ["CertificateError", "Verification", "verify"]

#: Relative slack for float64 round-off when comparing recomputed numbers.
_RTOL = 1e-6


class CertificateError(ErasusError):
    """A certificate does not hold for the given model and data."""


@dataclass
class Verification:
    """The outcome of :func:`verify`: the recomputed residual and what failed."""

    residual: float
    bound: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise CertificateError("certificate verification failed:\n" +
                                   "\n".join(f"  {p}" for p in self.problems))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_RTOL, abs_tol=1e-12)


def verify(certificate: Certificate, adapter: ModelAdapter, data: Any, *,
           collate_fn: Any = None, raise_on_failure: bool = True) -> Verification:
    """Check ``certificate`` against ``adapter`` and the remaining data ``data``.

    Args:
        certificate: the certificate to check.
        adapter: the certified model (a ``linear`` classifier).
        data: the data the model is certified on after the removal (the retain set).
        collate_fn: the data set's collate function, if any.
        raise_on_failure: raise :class:`CertificateError` listing every problem (default);
            otherwise return them in the :class:`Verification`.
    """
    from erasus.privacy import linear
    from erasus.privacy.bounds import residual_budget
    from erasus.privacy.certificates import model_hash, tensor_hash

    linear.check_linear(adapter, "verification")
    problems: list[str] = []
    model = adapter.model
    state = linear.read_state(model)

    got = model_hash(model)
    if got != certificate.model_hash:
        problems.append(f"the model is not the certified one: its hash {got[:16]}... differs "
                        f"from the certificate's {certificate.model_hash[:16]}... (weights or "
                        "state changed after certification)")
    got_b = tensor_hash(state.b)
    if got_b != certificate.perturbation_hash:
        problems.append("the model's objective perturbation b differs from the certified one "
                        f"(hash {got_b[:16]}... vs {certificate.perturbation_hash[:16]}...)")

    try:
        budget = residual_budget(certificate.epsilon, certificate.delta, certificate.sigma)
    except ValueError as exc:
        budget = math.nan
        problems.append(f"the certificate's privacy parameters are invalid: {exc}")
    if not _close(budget, certificate.budget):
        problems.append(f"the certificate's budget {certificate.budget:.6g} is not sigma * "
                        f"epsilon / c = {budget:.6g} for its sigma, epsilon and delta")
    if certificate.residual_bound > certificate.budget * (1 + _RTOL):
        problems.append(f"the certified bound {certificate.residual_bound:.6g} exceeds the "
                        f"budget {certificate.budget:.6g}: the removal is not certified")
    for what, stored, claimed in (("lambda", state.l2, certificate.l2),
                                  ("sigma", state.sigma, certificate.sigma),
                                  ("bound spent", state.spent, certificate.residual_bound)):
        if not _close(stored, claimed):
            problems.append(f"the model's stored {what} {stored:.6g} differs from the "
                            f"certificate's {claimed:.6g}")
    if state.n_train != certificate.n_remaining:
        problems.append(f"the model is certified on {state.n_train} examples but the "
                        f"certificate says {certificate.n_remaining} remain")
    if len(data) != certificate.n_remaining:
        problems.append(f"the data holds {len(data)} examples but the certificate says "
                        f"{certificate.n_remaining} remain: pass the remaining (retain) data")

    residual = math.nan
    if state.l2 > 0 and len(data) > 0:
        x, labels = linear.design(adapter, data, collate_fn)
        y = linear.signs(labels, adapter.num_classes)  # type: ignore[attr-defined]
        residual = linear.residual_norm(linear.get_weights(model), x, y, state.l2, state.b)
        if not residual <= certificate.residual_bound * (1 + _RTOL) + 1e-12:
            problems.append(f"the gradient residual {residual:.6g} of the model on the data "
                            f"exceeds the certified bound {certificate.residual_bound:.6g}")
    else:
        problems.append("the model holds no certified state (lambda = 0): it was not trained "
                        "with certified_training")
    result = Verification(residual=residual, bound=certificate.residual_bound,
                          problems=problems)
    if raise_on_failure:
        result.raise_for_problems()
    return result
