"""The privacy package: RDP accountant, mechanisms, bounds, certificates and verification."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

# -- accountant ----------------------------------------------------------------------------
GRID = list(itertools.product((0.8, 2.0),             # noise multiplier
                              (0.001, 0.01, 0.1),     # sampling rate
                              (10, 1000),             # steps
                              (1e-5, 1e-3)))          # delta


def test_accountant_matches_opacus_within_one_percent_on_a_grid():
    rdp_ref = pytest.importorskip("opacus.accountants.analysis.rdp")
    from erasus.privacy.accountant import DEFAULT_ORDERS, compute_rdp, rdp_to_epsilon

    opacus_orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    worst = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opacus warns when the best order is at the edge
        for sigma, q, steps in {g[:3] for g in GRID}:
            ref_rdp = rdp_ref.compute_rdp(q=q, noise_multiplier=sigma, steps=steps,
                                          orders=opacus_orders)
            same_orders = compute_rdp(q, sigma, steps, opacus_orders)
            our_orders = compute_rdp(q, sigma, steps, DEFAULT_ORDERS)
            for delta in {g[3] for g in GRID}:
                ref, _ = rdp_ref.get_privacy_spent(orders=opacus_orders, rdp=ref_rdp,
                                                   delta=delta)
                # same orders: the same number (the RDP curves agree to float precision)
                ours, _ = rdp_to_epsilon(opacus_orders, same_orders, delta)
                assert ours == pytest.approx(ref, rel=1e-6), (sigma, q, steps, delta)
                # our default orders (a superset): within 1%, never looser
                default, _ = rdp_to_epsilon(DEFAULT_ORDERS, our_orders, delta)
                assert default <= ref * (1 + 1e-9)
                worst = max(worst, abs(default - ref) / ref)
    assert worst <= 0.01


def test_rdp_closed_forms_composition_and_calibration():
    from erasus.privacy.accountant import (
        RDPAccountant,
        compute_rdp,
        epsilon,
        noise_multiplier_for,
        rdp_to_epsilon,
    )

    orders = (2.0, 4.0, 8.0, 2.5)
    # no subsampling: the Gaussian mechanism's RDP is alpha / (2 sigma^2) per step
    assert compute_rdp(1.0, 2.0, 3, orders) == pytest.approx([3 * a / 8 for a in orders])
    assert compute_rdp(0.0, 1.0, 5, orders) == [0.0] * 4
    # subsampling amplifies privacy; fractional and integer orders are consistent
    sub = compute_rdp(0.01, 1.0, 1, (2.0, 2.0001, 3.0))
    assert sub[0] < 2 / 2 and sub[0] <= sub[1] * (1 + 1e-3) and sub[1] < sub[2]
    acc = RDPAccountant()
    acc.step(noise_multiplier=1.1, sample_rate=0.01, steps=400)
    acc.step(noise_multiplier=1.1, sample_rate=0.01, steps=600)
    assert acc.get_epsilon(1e-5) == pytest.approx(epsilon(1.1, 0.01, 1000, 1e-5))
    assert RDPAccountant.of(acc.history).rdp() == pytest.approx(acc.rdp())
    # the classic conversion is never tighter than Balle et al.'s
    r = compute_rdp(0.01, 1.1, 1000)
    from erasus.privacy.accountant import DEFAULT_ORDERS

    assert rdp_to_epsilon(DEFAULT_ORDERS, r, 1e-5, "mironov2017")[0] >= \
        rdp_to_epsilon(DEFAULT_ORDERS, r, 1e-5)[0]
    assert epsilon(2.0, 0.01, 1000, 1e-5) < epsilon(1.0, 0.01, 1000, 1e-5)
    sigma = noise_multiplier_for(2.0, 1e-5, 0.01, 1000)
    assert epsilon(sigma, 0.01, 1000, 1e-5) <= 2.0 < epsilon(sigma * 0.99, 0.01, 1000, 1e-5)
    with pytest.raises(ValueError, match="orders must be > 1"):
        compute_rdp(0.1, 1.0, 1, (1.0,))


# -- mechanisms ---------------------------------------------------------------------------
def _hockey_stick(sigma: float, eps: float, sens: float) -> float:
    """delta(eps) of N(0, s^2) vs N(sens, s^2) by numerical integration (independent of
    the closed form the mechanisms module uses)."""
    from scipy import integrate, stats

    def f(x: float) -> float:
        return max(0.0, stats.norm.pdf(x, 0, sigma) - math.exp(eps) * stats.norm.pdf(x, sens,
                                                                                    sigma))

    lo, hi = -12 * sigma, 12 * sigma + sens
    return integrate.quad(f, lo, hi, limit=400, points=[sens / 2 - eps * sigma ** 2 / sens])[0]


@pytest.mark.parametrize(("eps", "delta", "sens"), [(1.0, 1e-5, 1.0), (0.5, 1e-3, 2.0),
                                                    (4.0, 1e-6, 1.0)])
def test_analytic_gaussian_is_the_smallest_sigma_meeting_delta(eps, delta, sens):
    from erasus.privacy.mechanisms import gaussian_delta, gaussian_sigma

    sigma = gaussian_sigma(eps, delta, sens)
    assert gaussian_delta(sigma, eps, sens) <= delta
    assert gaussian_delta(sigma * 0.999, eps, sens) > delta
    assert _hockey_stick(sigma, eps, sens) == pytest.approx(delta, rel=1e-3)
    if eps < 1:
        classic = gaussian_sigma(eps, delta, sens, method="classic")
        assert sigma < classic
        assert classic == pytest.approx(sens * math.sqrt(2 * math.log(1.25 / delta)) / eps)


def test_classic_gaussian_refuses_large_epsilon_and_known_value():
    from erasus.privacy.mechanisms import gaussian_sigma

    with pytest.raises(ValueError, match="epsilon < 1"):
        gaussian_sigma(2.0, 1e-5, method="classic")
    # Balle & Wang (2018): for epsilon = 1, delta = 1e-5 the analytic sigma is about 3.73
    # where the classic bound (extrapolated) gives 4.84
    assert gaussian_sigma(1.0, 1e-5) == pytest.approx(3.73, abs=0.01)


def test_mechanisms_add_noise_of_the_calibrated_scale():
    from erasus.privacy.mechanisms import GaussianMechanism, LaplaceMechanism, laplace_scale

    g = torch.Generator().manual_seed(0)
    zeros = torch.zeros(200_000, dtype=torch.float64)
    gm = GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=2.0)
    assert float(gm(zeros, g).std()) == pytest.approx(gm.sigma, rel=0.01)
    lm = LaplaceMechanism(epsilon=0.5, sensitivity=1.0)
    assert lm.scale == laplace_scale(0.5) == 2.0
    noise = lm(zeros, g)
    assert float(noise.abs().mean()) == pytest.approx(2.0, rel=0.02)  # E|Lap(b)| = b
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.03)
    again = LaplaceMechanism(epsilon=0.5)(zeros[:10], torch.Generator().manual_seed(1))
    assert torch.equal(again, LaplaceMechanism(epsilon=0.5)(zeros[:10],
                                                            torch.Generator().manual_seed(1)))


# -- bounds --------------------------------------------------------------------------------
def _logistic(n: int = 200, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = torch.cat([x / x.norm(dim=1, keepdim=True) * 0.7,
                   torch.full((n, 1), 0.7, dtype=torch.float64)], 1)
    y = torch.where(x[:, 0] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64) > 0,
                    1.0, -1.0)[:, None].to(torch.float64)
    return x, y


def test_newton_residual_bound_holds_and_is_tighter_than_the_worst_case():
    from erasus.privacy import linear
    from erasus.privacy.bounds import (
        newton_residual_bound,
        parameter_change_bound,
        perturbation_sigma,
        residual_budget,
        spectral_norm,
        worst_case_residual_bound,
    )

    x, y = _logistic()
    l2 = 1e-2
    b = torch.zeros(1, x.shape[1], dtype=torch.float64)
    w, _ = linear.fit(x, y, l2, b)
    for i in range(5):
        keep = torch.ones(len(x), dtype=torch.bool)
        keep[i] = False
        delta = linear.example_gradients(w, x[i:i + 1], y[i:i + 1]).sum(0) + l2 * w
        step = torch.linalg.solve(linear.hessian(w[0], x[keep], l2), delta[0])
        residual = linear.residual_norm(w + step, x[keep], y[keep], l2, b)
        bound = newton_residual_bound(x[keep], step)
        grad_norm = float(linear.example_gradients(w, x, y).norm(dim=-1).max())
        assert residual <= bound <= worst_case_residual_bound(grad_norm, l2, len(x))
        assert float(step.norm()) <= parameter_change_bound(float(delta.norm()), l2,
                                                            len(x) - 1)
    assert spectral_norm(x) == pytest.approx(float(torch.linalg.matrix_norm(x, ord=2)))
    budget = residual_budget(1.0, 1e-4, 2.0)
    assert budget == pytest.approx(2.0 / math.sqrt(2 * math.log(1.5e4)))
    assert perturbation_sigma(1.0, 1e-4, budget) == pytest.approx(2.0)


# -- certificates and verification ----------------------------------------------------------
@pytest.fixture(scope="module")
def certified():
    """A certified removal of 24 points from the tiny linear problem, with its certificate."""
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.builtin.strategies.certified_removal import (
        CertifiedRemoval,
        certified_tiny_problem,
    )
    from erasus.strategy import RunContext, UnlearnData

    torch.set_num_threads(1)
    problem = certified_tiny_problem(ClassifierAdapter, 0)
    adapter = problem.adapter
    history = CertifiedRemoval().unlearn(
        adapter, UnlearnData(forget=problem.forget, retain=problem.retain,
                             forget_train_indices=list(range(100, 124))), RunContext(seed=0))
    return problem, adapter, history.certificates[0]


def test_certificate_round_trips_through_json(certified, tmp_path):
    from erasus.privacy import Certificate

    _, _, cert = certified
    again = Certificate.from_json(cert.to_json())
    assert again == cert
    cert.save(tmp_path / "cert.json")
    assert Certificate.load(tmp_path / "cert.json") == cert
    data = cert.to_dict()
    assert data["spent"] + data["left"] == pytest.approx(cert.budget)
    assert data["removed"] == list(range(100, 124)) and data["method"] == "newton"
    with pytest.raises(ValueError, match="unknown certificate fields"):
        Certificate.from_dict({**data, "bogus": 1})


def test_verification_accepts_the_certified_model(certified):
    from erasus.privacy import verify

    problem, adapter, cert = certified
    result = verify(cert, adapter, problem.retain)
    assert result.ok and 0 < result.residual <= result.bound == cert.residual_bound


def test_verification_rejects_a_tampered_model(certified):
    from erasus.privacy import CertificateError, verify

    problem, adapter, cert = certified
    tampered = adapter.clone()
    with torch.no_grad():
        tampered.model.head.weight[1, 0] += 0.1
    with pytest.raises(CertificateError, match="not the certified one") as info:
        verify(cert, tampered, problem.retain)
    assert "gradient residual" in str(info.value)  # and the guarantee no longer holds
    with torch.no_grad():
        tampered = adapter.clone()
        tampered.model.perturbation.b.mul_(1.01)
    with pytest.raises(CertificateError, match="objective perturbation b differs"):
        verify(cert, tampered, problem.retain)


def test_verification_rejects_a_tampered_certificate_or_the_wrong_data(certified):
    import dataclasses

    from erasus.privacy import verify
    from torch.utils.data import Subset

    problem, adapter, cert = certified
    smaller = dataclasses.replace(cert, residual_bound=cert.residual_bound / 1e6)
    result = verify(smaller, adapter, problem.retain, raise_on_failure=False)
    assert not result.ok
    assert any("exceeds the certified bound" in p for p in result.problems)
    inflated = dataclasses.replace(cert, budget=cert.budget * 10)
    assert any("budget" in p for p in verify(inflated, adapter, problem.retain,
                                             raise_on_failure=False).problems)
    looser = dataclasses.replace(cert, epsilon=cert.epsilon * 2)
    assert not verify(looser, adapter, problem.retain, raise_on_failure=False).ok
    short = Subset(problem.retain, range(len(problem.retain) - 1))
    problems = verify(cert, adapter, short, raise_on_failure=False).problems
    assert any("the data holds 215 examples" in p for p in problems)
