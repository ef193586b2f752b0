"""The built-in losses (values against hand computations, gradient directions), looking a
loss up by name, and registering a user's own loss through the hook."""

from __future__ import annotations

import math

import pytest
import torch
from erasus.builtin.losses.contrastive import ContrastiveUnlearning
from erasus.builtin.losses.kl_divergence import KLDivergence
from erasus.builtin.losses.mmd import MMD
from erasus.builtin.losses.retain_anchor import RetainAnchor
from erasus.errors import ComponentNotFoundError, IncompatibleComponentError
from erasus.hookspecs import hookimpl
from erasus.losses import Loss, LossParams, LossSpec, get_loss
from erasus.plugins import get_plugin_manager
from erasus.strategy import StrategyParams
from pydantic import Field, ValidationError

BUILTIN = ("retain_anchor", "contrastive", "kl_divergence", "mmd")


# -- retain_anchor ----------------------------------------------------------------------
def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    return model, reference


def test_retain_anchor_is_the_weighted_squared_distance_and_pulls_toward_the_original():
    model, reference = _pair()
    loss = RetainAnchor(weight=0.5)(model, reference)
    expected = 0.5 * sum(float(((a - b) ** 2).sum().detach()) for a, b in
                         zip(model.parameters(), reference.parameters(), strict=True))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        # d/dtheta = 2 * weight * (theta - theta0): a descent step moves toward theta0
        assert torch.allclose(a.grad, 2 * 0.5 * (a.detach() - b.detach()))
        assert b.grad is None
    before = sum(float(((a - b) ** 2).sum().detach()) for a, b in
                 zip(model.parameters(), reference.parameters(), strict=True))
    with torch.no_grad():
        for a in model.parameters():
            a -= 0.1 * a.grad
    after = sum(float(((a - b) ** 2).sum().detach()) for a, b in
                zip(model.parameters(), reference.parameters(), strict=True))
    assert after == pytest.approx(before * 0.9 ** 2, rel=1e-5)  # (1 - lr * 2w)^2


def test_retain_anchor_covers_only_the_chosen_parameters_and_weights_them_per_element():
    model, reference = _pair()
    anchor = RetainAnchor(include=["1."])
    assert anchor.parameter_names(model) == ["1.weight", "1.bias"]
    value = anchor(model, reference)
    with torch.no_grad():
        expected = float(((model[1].weight - reference[1].weight) ** 2).sum()
                         + ((model[1].bias - reference[1].bias) ** 2).sum())
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert model[0].weight.grad is None  # the first layer is not anchored
    # EWC-style per-element importance: zero importance removes a term
    importance = {"1.weight": torch.zeros_like(model[1].weight)}
    weighted = anchor(model, reference, importance=importance)
    assert float(weighted.detach()) == pytest.approx(
        float(((model[1].bias - reference[1].bias) ** 2).sum().detach()), rel=1e-6)


def test_retain_anchor_uses_adapter_parameter_groups_and_names_bad_ones():
    from erasus.testing import tiny_classifier_problem

    adapter = tiny_classifier_problem().adapter
    changed = adapter.clone()
    with torch.no_grad():
        changed.model.head.weight.add_(1.0)  # only the head moved
    head = RetainAnchor(group="head")(changed, adapter)
    assert float(head.detach()) == pytest.approx(changed.model.head.weight.numel(), rel=1e-5)
    assert float(RetainAnchor(group="body")(changed, adapter).detach()) == 0.0
    with pytest.raises(IncompatibleComponentError, match="no parameter group 'encoder'"):
        RetainAnchor(group="encoder")(changed, adapter)


# -- contrastive ------------------------------------------------------------------------
def _reference_contrastive(zu, yu, zr, yr, tau):
    """The loss written out term by term (the docstring's formula)."""
    zu = torch.nn.functional.normalize(zu, dim=1)
    zr = torch.nn.functional.normalize(zr, dim=1)
    terms = []
    for i in range(len(zu)):
        pos = [j for j in range(len(zr)) if yr[j] != yu[i]]
        neg = [j for j in range(len(zr)) if yr[j] == yu[i]]
        if not pos:
            continue
        log_neg = (math.log(sum(math.exp(float(zu[i] @ zr[j]) / tau) for j in neg))
                   if neg else 0.0)
        terms.append(-sum(float(zu[i] @ zr[j]) / tau - log_neg for j in pos) / len(pos))
    return sum(terms) / len(terms)


def test_contrastive_matches_a_hand_computation():
    # anchor [1, 0] (class 0); same class at [1, 0], other classes at [0, 1] and [-1, 0]
    zu = torch.tensor([[1.0, 0.0]])
    zr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    yu, yr = torch.tensor([0]), torch.tensor([0, 1, 1])
    # similarities / tau (0.5): 2, 0, -2; positives mean -1; log-sum over negatives 2
    assert float(ContrastiveUnlearning(temperature=0.5)(zu, yu, zr, yr)) == pytest.approx(3.0)
    # random features and labels: the vectorised loss equals the written-out formula
    g = torch.Generator().manual_seed(0)
    zu, zr = torch.randn(5, 4, generator=g), torch.randn(9, 4, generator=g)
    yu, yr = torch.randint(0, 3, (5,), generator=g), torch.randint(0, 3, (9,), generator=g)
    value = ContrastiveUnlearning(temperature=0.3)(zu, yu, zr, yr)
    expected = _reference_contrastive(zu, yu, zr, yr, 0.3)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)


def test_contrastive_gradient_moves_forget_features_off_their_class():
    g = torch.Generator().manual_seed(1)
    centers = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1)
    yr = torch.arange(30) % 3
    zr = centers[yr] + 0.1 * torch.randn(30, 8, generator=g)
    yu = torch.tensor([0, 0, 1, 2])
    zu = (centers[yu] + 0.1 * torch.randn(4, 8, generator=g)).requires_grad_(True)
    loss_fn = ContrastiveUnlearning(temperature=0.5)

    def own_vs_other(z):
        zn = torch.nn.functional.normalize(z, dim=1)
        rn = torch.nn.functional.normalize(zr, dim=1)
        sim = zn @ rn.T
        same = yu[:, None] == yr[None, :]
        return float(sim[same].mean()), float(sim[~same].mean())

    own0, other0 = own_vs_other(zu.detach())
    for _ in range(20):
        loss = loss_fn(zu, yu, zr, yr)
        (grad,) = torch.autograd.grad(loss, zu)
        with torch.no_grad():
            zu -= 0.5 * grad
    own1, other1 = own_vs_other(zu.detach())
    assert own0 > 0.9 and own1 < 0.0  # pushed away from their own class
    assert other1 > other0 + 0.5  # pulled toward the other classes


def test_contrastive_without_same_class_keys_and_without_positives():
    zu = torch.tensor([[1.0, 0.0]], requires_grad=True)
    zr = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # class-wise forgetting: no retain key shares class 0, the log term is 0
    value = ContrastiveUnlearning(temperature=1.0)(zu, torch.tensor([0]), zr,
                                                   torch.tensor([1, 2]))
    assert float(value.detach()) == pytest.approx(-(0.0 + 1 / math.sqrt(2)) / 2, rel=1e-6)
    # every key shares the anchor's class: no positive, no contrast, a zero loss
    none = ContrastiveUnlearning()(zu, torch.tensor([0]), zr, torch.tensor([0, 0]))
    assert float(none.detach()) == 0.0
    none.backward()
    assert torch.all(zu.grad == 0)
    with pytest.raises(IncompatibleComponentError, match="same width"):
        ContrastiveUnlearning()(zu, torch.tensor([0]), torch.zeros(2, 3), torch.tensor([1, 2]))


# -- kl_divergence ----------------------------------------------------------------------
def test_kl_divergence_matches_a_hand_computation():
    teacher = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    student = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    kl_pq = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    kl_qp = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(KLDivergence()(student, teacher)) == pytest.approx(kl_pq, rel=1e-6)
    assert float(KLDivergence(direction="reverse")(student, teacher)) == pytest.approx(
        kl_qp, rel=1e-6)
    # temperature 2: p = softmax((0, ln 3) / 2) = (1, sqrt 3) / (1 + sqrt 3), times T^2
    p1 = 1 / (1 + math.sqrt(3))
    kl_t = p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5)
    assert float(KLDivergence(temperature=2.0)(student, teacher)) == pytest.approx(
        4 * kl_t, rel=1e-6)
    assert float(KLDivergence(temperature=2.0, scale_by_t2=False)(student, teacher)) == \
        pytest.approx(kl_t, rel=1e-6)
    # agrees with torch's own KL (batchmean) on random logits
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = torch.nn.functional.kl_div(torch.log_softmax(s / 3, -1), torch.log_softmax(t / 3, -1),
                                     reduction="batchmean", log_target=True) * 9
    assert float(KLDivergence(temperature=3.0)(s, t)) == pytest.approx(float(ref), rel=1e-5)
    per = KLDivergence(reduction="none")(s, t)
    assert per.shape == (6,) and bool((per >= 0).all())


def test_kl_divergence_gradient_pulls_the_student_toward_the_teacher_only():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 3, generator=g, requires_grad=True)
    student = torch.randn(4, 3, generator=g, requires_grad=True)
    t = 2.0
    loss = KLDivergence(temperature=t)(student, teacher)
    loss.backward()
    assert teacher.grad is None  # the teacher is detached
    q = torch.softmax(student.detach() / t, -1)
    p = torch.softmax(teacher.detach() / t, -1)
    # d/ds of T^2 * mean KL(p || softmax(s / T)) = T * (q - p) / n
    assert torch.allclose(student.grad, t * (q - p) / 4, atol=1e-6)
    with torch.no_grad():
        stepped = student - 1.0 * student.grad
    assert float(KLDivergence(temperature=t)(stepped, teacher)) < float(loss.detach())
    with pytest.raises(IncompatibleComponentError, match="differ in shape"):
        KLDivergence()(student, teacher[:, :2])


# -- mmd --------------------------------------------------------------------------------
def test_mmd_matches_a_hand_computation():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [3.0]])

    def k(a, b):
        return math.exp(-((a - b) ** 2) / 2.0)  # sigma = 1

    xs, ys = [0.0, 1.0], [0.0, 3.0]
    kxx = sum(k(a, b) for a in xs for b in xs)
    kyy = sum(k(a, b) for a in ys for b in ys)
    kxy = sum(k(a, b) for a in xs for b in ys)
    biased = kxx / 4 + kyy / 4 - 2 * kxy / 4
    unbiased = (kxx - 2) / 2 + (kyy - 2) / 2 - 2 * kxy / 4
    assert float(MMD(bandwidth=[1.0])(x, y)) == pytest.approx(biased, rel=1e-6)
    assert float(MMD(bandwidth=[1.0], estimator="unbiased")(x, y)) == pytest.approx(
        unbiased, rel=1e-6)
    # two widths: the kernels add up, and so does the discrepancy
    two = float(MMD(bandwidth=[1.0, 2.0])(x, y))
    assert two == pytest.approx(float(MMD(bandwidth=[1.0])(x, y))
                                + float(MMD(bandwidth=[2.0])(x, y)), rel=1e-6)
    assert float(MMD()(x, x)) == pytest.approx(0.0, abs=1e-7)


def test_mmd_median_heuristic_and_gradient_direction():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [3.0]])
    # pooled points 0, 1, 0, 3: pairwise distances 1, 0, 3, 1, 3, 2 (each twice): median 1.5
    assert MMD().bandwidths(x, y) == [pytest.approx(1.5)]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 2, generator=g)
    b = (torch.randn(40, 2, generator=g) + torch.tensor([3.0, 0.0])).requires_grad_(True)
    loss_fn = MMD(bandwidth=[1.0, 2.0, 4.0])
    start = float(loss_fn(a, b).detach())
    gap0 = float((b.detach().mean(0) - a.mean(0)).norm())
    for _ in range(30):
        (grad,) = torch.autograd.grad(loss_fn(a, b), b)
        assert torch.isfinite(grad).all()
        with torch.no_grad():
            b -= 20.0 * grad
    assert float(loss_fn(a, b).detach()) < 0.1 * start
    assert float((b.detach().mean(0) - a.mean(0)).norm()) < 0.5 * gap0  # b moved onto a
    with pytest.raises(IncompatibleComponentError, match="differ in width"):
        MMD()(a, torch.zeros(3, 5))


# -- lookup and user-registered losses ----------------------------------------------------
class Huber(Loss):
    """Mean Huber loss between predictions and targets (a user's own loss)."""

    class Params(LossParams):
        """Parameters of the Huber loss."""

        delta: float = Field(1.0, gt=0, description="Where the loss turns linear.")

    name = "my_huber"
    modalities = ("any",)
    needs = frozenset()
    paper = None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.huber_loss(pred, target, delta=self.params.delta)


class UserPlugin:
    @staticmethod
    @hookimpl
    def erasus_register_losses(register):
        register(Huber)


def test_builtin_losses_are_registered_cited_and_built_by_name():
    registry = get_plugin_manager(entrypoints=False).registry
    for name in BUILTIN:
        info = registry.get("loss", name)
        assert info.plugin == "builtin"
        assert info.paper is not None and info.summary
        assert all(p.doc for p in info.params)
    kl = get_loss("kl_divergence", registry=registry, temperature=2.0)
    assert isinstance(kl, KLDivergence) and kl.params.temperature == 2.0
    assert isinstance(get_loss("mmd"), MMD)  # default: the installed plugins' registry
    with pytest.raises(ComponentNotFoundError, match="did you mean 'kl_divergence'"):
        get_loss("kl_divergense", registry=registry)
    with pytest.raises(ValidationError):
        get_loss("kl_divergence", registry=registry, temprature=2.0)


def test_a_user_loss_registers_through_the_hook_and_is_looked_up_by_name():
    pm = get_plugin_manager(entrypoints=False, strict=True, plugins=(("mine", UserPlugin),))
    info = pm.registry.get("loss", "my_huber")
    assert info.plugin == "mine"
    loss = get_loss("my_huber", registry=pm.registry, delta=0.5)
    # |error| 2 > delta: delta * (|e| - delta / 2) = 0.5 * 1.75
    value = loss(torch.tensor([2.0]), torch.tensor([0.0]))
    assert float(value.detach()) == pytest.approx(0.875)
    # a strategy's parameters can name a loss; the config spells it as a mapping
    class MyStrategyParams(StrategyParams):
        """Parameters of a strategy with a configurable extra loss."""

        extra_loss: LossSpec = Field(LossSpec(name="kl_divergence"),
                                     description="The extra loss term.")

    params = MyStrategyParams.model_validate({"extra_loss": {"name": "my_huber",
                                                             "delta": 0.5}})
    built = params.extra_loss.create(registry=pm.registry)
    assert isinstance(built, Huber) and built.params.delta == 0.5
    assert isinstance(MyStrategyParams.model_validate({"extra_loss": "mmd"}).extra_loss.create(),
                      MMD)
    with pytest.raises(ValidationError):
        LossSpec(name="my_huber", delta=-1.0).create(registry=pm.registry)
