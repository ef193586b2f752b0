"""Behaviour of the saliency, sparsity and second-order strategies on small trained models.

Each test checks what makes the method that method (the mask, the pruned units, the noise
shape, the Newton step, the dampening rule) against an independent computation, and that
it forgets: on class-wise forgetting the retrained oracle misclassifies the whole forgotten
class, so forgetting moves the forget accuracy down while retain accuracy stays.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from erasus.adapters import ModelAdapter
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.builtin.strategies.finetune import Finetune
from erasus.builtin.strategies.fisher_forgetting import FisherForgetting
from erasus.builtin.strategies.influence_update import InfluenceUpdate
from erasus.builtin.strategies.l1_sparse import L1Sparse
from erasus.builtin.strategies.mask_based import MaskBased
from erasus.builtin.strategies.neuron_pruning import NeuronPruning
from erasus.builtin.strategies.retrain import Retrain
from erasus.builtin.strategies.salun import SalUn
from erasus.builtin.strategies.sparse_aware import SparseAware
from erasus.builtin.strategies.ssd import SSD
from erasus.components import Paper
from erasus.data import DataInfo
from erasus.errors import IncompatibleComponentError
from erasus.plugins import get_plugin_manager
from erasus.strategy import LoopParams, LossStrategy, RunContext, Strategy, UnlearnData
from erasus.testing.tiny import loss_and_accuracy as evaluate
from erasus.testing.tiny import (
    memorisation_classifier,
    memorisation_data,
    tiny_classification_data,
    train_classifier,
)
from torch.utils.data import ConcatDataset, Subset, TensorDataset
from torch.utils.data.dataloader import default_collate

STRATEGIES = (SalUn, L1Sparse, SparseAware, MaskBased, NeuronPruning, FisherForgetting,
              InfluenceUpdate, SSD)


# -- helpers ---------------------------------------------------------------------------------
def whole(adapter, dataset):
    return adapter.prepare_batch(default_collate([dataset[i] for i in range(len(dataset))]))


def run(strategy, adapter, forget, retain, seed: int = 0):
    return strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain),
                            RunContext(seed=seed))


def weights(adapter) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter.model.named_parameters()}


def example_grads(adapter, dataset) -> torch.Tensor:
    """[n, P] per-example loss gradients by a plain autograd loop (the reference)."""
    params = [p for p in adapter.model.parameters()]
    rows = []
    for i in range(len(dataset)):
        batch = whole(adapter, Subset(dataset, [i]))
        grads = torch.autograd.grad(adapter.per_example_loss(batch).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def flat(adapter) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in adapter.model.parameters()])


@pytest.fixture(scope="module")
def classwise():
    """4-class blobs, MLP trained to 100%; the forget set is all of class 0 (60 examples),
    so the retrained oracle gets 0% on it."""
    train, test = tiny_classification_data(0)
    torch.manual_seed(0)
    adapter = ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=32),
                                      DataInfo("classification", 4, (10,)))
    train_classifier(adapter, train, seed=0)
    y = train.tensors[1]
    forget = Subset(train, torch.nonzero(y == 0).flatten().tolist())
    retain = Subset(train, torch.nonzero(y != 0).flatten().tolist())
    assert evaluate(adapter, forget)[1] == 100.0 and evaluate(adapter, retain)[1] == 100.0
    return adapter, forget, retain, test


@pytest.fixture(scope="module")
def memorised_30_epochs():
    """The memorisation problem (:func:`erasus.testing.tiny.memorisation_data`) with its
    original trained for only 30 epochs: it memorises its training set (test acc ~ 58%)."""
    train, forget, retain, test = memorisation_data()
    adapter = memorisation_classifier()
    run(Retrain(epochs=30, lr=1e-2, batch_size=50, scheduler="constant"), adapter, None,
        train)
    return adapter, forget, retain, test


class _Regression(ModelAdapter):
    """An adapter with a per-example loss but no labels or classes."""

    name = "toy_regression"
    modalities = ("regression",)

    def prepare_batch(self, batch):
        return {"x": batch[0], "y": batch[1]}

    def per_example_loss(self, batch):
        return (self.model(batch["x"]).squeeze(-1) - batch["y"]) ** 2


# -- metadata and registration ---------------------------------------------------------------
@pytest.mark.parametrize("cls", STRATEGIES)
def test_metadata_is_explicit_and_registered(cls):
    assert "paper" in cls.__dict__ and isinstance(cls.paper, Paper)
    assert cls.paper.url.startswith("https://") and cls.paper.year >= 2017
    assert isinstance(cls.needs, frozenset) and "retain" in cls.needs
    assert cls.effect is not None
    assert inspect.getdoc(cls).splitlines()[0].strip()
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"
    registry = get_plugin_manager().registry
    assert registry.get("strategy", cls.name).cls is cls
    one_step = cls in (NeuronPruning, FisherForgetting, InfluenceUpdate, SSD)
    assert issubclass(cls, Strategy)
    assert issubclass(cls, LossStrategy) != one_step
    if not one_step:
        assert issubclass(cls.Params, LoopParams)


@pytest.mark.parametrize("cls", [SalUn, FisherForgetting])
def test_label_based_strategies_refuse_adapters_without_labels(cls):
    x = torch.randn(16, 3)
    data = TensorDataset(x, x.sum(-1))
    adapter = _Regression(torch.nn.Linear(3, 1))
    with pytest.raises(IncompatibleComponentError, match="classification") as info:
        run(cls(), adapter, data, data)
    assert cls.name in str(info.value)
    # the generic ones run on it
    for generic in (SSD(), L1Sparse(epochs=1), InfluenceUpdate()):
        run(generic, _Regression(torch.nn.Linear(3, 1)), data, data)


# -- SalUn -------------------------------------------------------------------------------------
def test_salun_mask_is_the_top_half_of_forget_gradient_magnitudes(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    strategy = SalUn()
    strategy.prepare(adapter, UnlearnData(forget=forget, retain=retain), RunContext(seed=0))
    grad = example_grads(adapter, forget).mean(0).abs()
    mask = torch.cat([m.reshape(-1) for m in strategy.masks.values()])
    assert int(mask.sum()) == round(0.5 * grad.numel())
    assert float(grad[mask].min()) >= float(grad[~mask].max()) - 1e-7
    # one label per forget example, uniform over all classes, from the run seed
    labels = strategy.random_labels
    again = SalUn()
    again.prepare(adapter, UnlearnData(forget=forget, retain=retain), RunContext(seed=0))
    assert len(labels) == len(forget) and torch.equal(labels, again.random_labels)
    assert set(labels.tolist()) == {0, 1, 2, 3}


def test_salun_changes_only_salient_weights_and_forgets(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    before = weights(adapter)
    strategy = SalUn(epochs=10, lr=3e-3)
    history = run(strategy, adapter, forget, retain)
    after = weights(adapter)
    changed_salient = 0
    for name, mask in strategy.masks.items():
        assert torch.equal(after[name][~mask], before[name][~mask]), name  # bit-identical
        changed_salient += int((after[name][mask] != before[name][mask]).sum())
    assert changed_salient > 0.5 * sum(int(m.sum()) for m in strategy.masks.values())
    # the hooks are gone: a plain backward now reaches the non-salient weights
    adapter.per_example_loss(whole(adapter, retain)).mean().backward()
    name, mask = next(iter(strategy.masks.items()))
    grad = dict(adapter.model.named_parameters())[name].grad
    assert bool((grad[~mask] != 0).any())
    # forgetting moves towards the oracle (0% on the forgotten class); utility stays
    assert evaluate(adapter, forget)[1] <= 85
    assert evaluate(adapter, retain)[1] >= 97
    assert history.num_steps == 10


# -- l1-sparse ---------------------------------------------------------------------------------
def l1_norm(adapter) -> float:
    return float(sum(p.detach().abs().sum() for p in adapter.model.parameters()))


def test_l1_sparse_shrinks_weights_with_a_linearly_decaying_penalty_and_forgets(classwise):
    original, forget, retain, _ = classwise
    sparse = original.clone()
    history = run(L1Sparse(gamma=0.03, epochs=10), sparse, forget, retain)
    plain = original.clone()
    run(L1Sparse(gamma=0.0, epochs=10), plain, forget, retain)  # = finetune, same settings
    reference = original.clone()
    run(Finetune(epochs=10), reference, forget, retain)
    assert l1_norm(plain) == pytest.approx(l1_norm(reference), rel=1e-6)
    assert l1_norm(sparse) < 0.6 * l1_norm(plain)
    # the penalty's weight decays linearly per epoch: gamma * (1 - e / epochs)
    per_epoch = {int(s["epoch"]): s["gamma"] for s in history.steps}
    assert per_epoch == pytest.approx({e: 0.03 * (1 - e / 10) for e in range(10)})
    for s in history.steps:
        assert s["loss"] == pytest.approx(s["retain_loss"] + s["gamma"] * s["l1_norm"],
                                          rel=1e-4)
    # weights only the forget class needed lose their support: forgetting happens
    assert evaluate(sparse, forget)[0] > 0.2 and evaluate(sparse, forget)[1] <= 95
    assert evaluate(plain, forget)[1] == 100.0
    assert evaluate(sparse, retain)[1] >= 98


# -- sparse-aware ------------------------------------------------------------------------------
def test_sparse_aware_prunes_exactly_the_smallest_weights_and_keeps_them_zero(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    before = weights(adapter)
    strategy = SparseAware(sparsity=0.8)
    run(strategy, adapter, forget, retain)
    after = weights(adapter)
    matrices = [n for n, w in before.items() if w.dim() >= 2]
    assert sorted(strategy.masks) == sorted(matrices)
    total = sum(before[n].numel() for n in matrices)
    zeros = sum(int((after[n] == 0).sum()) for n in matrices)
    assert zeros == round(0.8 * total)
    magnitude = torch.cat([before[n].abs().reshape(-1) for n in matrices])
    pruned = torch.cat([(~strategy.masks[n]).reshape(-1) for n in matrices])
    assert float(magnitude[pruned].max()) <= float(magnitude[~pruned].min())
    for n in matrices:
        assert bool((after[n][~strategy.masks[n]] == 0).all())
    biases = [n for n, w in before.items() if w.dim() < 2]
    assert all(bool((after[n] != 0).all()) for n in biases)  # not pruned
    forget_loss, forget_acc = evaluate(adapter, forget)
    assert forget_loss > 0.1 and forget_acc < 100  # forgetting happens
    assert evaluate(adapter, retain)[1] >= 97


# -- mask-based (Fisher masking) ---------------------------------------------------------------
def test_mask_based_zeroes_the_top_forget_fisher_weights_then_repairs(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    strategy = MaskBased(mask_fraction=0.05)
    data = UnlearnData(forget=forget, retain=retain)
    strategy.prepare(adapter, data, RunContext(seed=0))
    fisher = example_grads(original, forget).pow(2).mean(0)
    masked = torch.cat([m.reshape(-1) for m in strategy.masked.values()])
    assert int(masked.sum()) == round(0.05 * fisher.numel())
    assert float(fisher[masked].min()) >= float(fisher[~masked].max()) * (1 - 1e-5)
    assert torch.equal(flat(adapter) == 0, masked)
    assert torch.equal(flat(adapter)[~masked], flat(original)[~masked])

    repaired = original.clone()
    history = run(MaskBased(mask_fraction=0.05), repaired, forget, retain)
    assert history.num_steps == 3 * 3  # 180 retain examples, batch 64, 3 epochs
    assert evaluate(repaired, forget)[1] <= 80
    assert evaluate(repaired, retain)[1] >= 98


# -- neuron pruning ----------------------------------------------------------------------------
def test_neuron_pruning_prunes_exactly_the_highest_ratio_units(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    strategy = NeuronPruning(fraction=0.1)
    history = run(strategy, adapter, forget, retain)
    assert history.num_steps == 0

    # reference: mean |output| of each hidden linear unit, by hand
    body = original.model.body
    layers = {"body.1": 1, "body.3": 3}

    def mean_abs(dataset):
        x = whole(original, dataset)["inputs"]
        out = {}
        with torch.no_grad():
            h = x
            for i, module in enumerate(body):
                h = module(h)
                if i in layers.values():
                    out[i] = h.abs().mean(0)
        return out

    f, r = mean_abs(forget), mean_abs(retain)
    ratio = torch.cat([f[i] / (r[i] + 1e-8) for i in layers.values()])
    names = [(n, u) for n, i in layers.items() for u in range(len(f[i]))]
    k = round(0.1 * len(names))
    expected = {names[j] for j in torch.argsort(ratio, descending=True)[:k].tolist()}
    assert set(strategy.pruned) == expected and len(strategy.pruned) == k
    assert "head" not in strategy.scores  # the output layer is never pruned

    params = dict(adapter.model.named_parameters())
    before = dict(original.model.named_parameters())
    for layer in layers:
        rows = {u for n, u in strategy.pruned if n == layer}
        for u in range(params[f"{layer}.weight"].shape[0]):
            w, b = params[f"{layer}.weight"][u], params[f"{layer}.bias"][u]
            if u in rows:
                assert bool((w == 0).all()) and float(b.detach()) == 0.0
            else:
                assert torch.equal(w, before[f"{layer}.weight"][u])
    # the forget class loses much more accuracy than the rest
    forget_drop = 100 - evaluate(adapter, forget)[1]
    retain_drop = 100 - evaluate(adapter, retain)[1]
    assert forget_drop >= 20 and forget_drop > retain_drop + 15


# -- Fisher forgetting -------------------------------------------------------------------------
def test_fisher_forgetting_noise_is_inverse_to_the_retain_fisher(memorised_30_epochs):
    original, forget, retain, _ = memorised_30_epochs
    adapter = original.clone()
    strategy = FisherForgetting(alpha=1e-6)
    run(strategy, adapter, forget, retain, seed=3)
    fisher = torch.cat([v.reshape(-1) for v in strategy.fisher.values()])
    variance = torch.cat([v.reshape(-1) for v in strategy.variance.values()])

    # the Fisher is that of the model's predictive distribution on the retain set
    small = Subset(retain, list(range(12)))
    probe = FisherForgetting()
    probe.unlearn(original.clone(), UnlearnData(forget=forget, retain=small), RunContext())
    expected = torch.zeros_like(fisher)
    batch = whole(original, small)
    with torch.no_grad():
        probs = torch.softmax(original.logits(batch), -1)
    for y in range(4):
        relabelled = Subset(TensorDataset(batch["inputs"], torch.full((12,), y)), range(12))
        grads = example_grads(original, relabelled)
        expected += (probs[:, y:y + 1] * grads.pow(2)).sum(0)
    got = torch.cat([v.reshape(-1) for v in probe.fisher.values()])
    assert torch.allclose(got, expected / 12, rtol=1e-3, atol=1e-10)

    # variance = alpha * min(1 / (F + eps), max_inverse): non-increasing in F
    assert torch.allclose(variance, 1e-6 * (1 / (fisher + 1e-8)).clamp(max=1e3))
    order = torch.argsort(fisher)
    assert bool((variance[order][1:] <= variance[order][:-1] * (1 + 1e-6)).all())
    # the realised move is sqrt(variance) * N(0, 1), so the top-Fisher weights move less
    # than those whose inverse Fisher is clamped (F < 1e-3: variance 1e-3)
    moved = (flat(adapter) - flat(original)).pow(2)
    assert float((moved / variance).mean()) == pytest.approx(1.0, abs=0.1)
    top, clamped = order[-fisher.numel() // 100:], fisher < 1e-3
    assert float(fisher[top].min()) > 2.5e-3 and int(clamped.sum()) > 1000
    assert float(moved[top].mean()) < 0.6 * float(moved[clamped].mean())

    # seeded by the run seed
    again = original.clone()
    run(FisherForgetting(alpha=1e-6), again, forget, retain, seed=3)
    assert torch.equal(flat(again), flat(adapter))


def test_fisher_forgetting_with_default_alpha_forgets_within_a_utility_bound(
        memorised_30_epochs):
    original, forget, retain, test = memorised_30_epochs
    adapter = original.clone()
    run(FisherForgetting(), adapter, forget, retain)
    forget_before, _ = evaluate(original, forget)
    forget_after, _ = evaluate(adapter, forget)
    assert forget_after > 2 * forget_before  # the memorised fit loosens
    assert evaluate(adapter, retain)[1] >= 99
    assert abs(evaluate(adapter, test)[1] - evaluate(original, test)[1]) <= 3


# -- influence update --------------------------------------------------------------------------
LAMBDA = 1e-2


class _L2Logistic(ModelAdapter):
    """Multinomial logistic regression whose per-example loss includes an L2 term (convex)."""

    name = "l2_logistic"
    modalities = ("classification",)

    def prepare_batch(self, batch):
        return {"x": batch[0], "y": batch[1]}

    def per_example_loss(self, batch):
        ce = F.cross_entropy(self.model(batch["x"]), batch["y"], reduction="none")
        # attribute access, not parameters(): per-example gradients swap the tensors in
        reg = self.model.weight.pow(2).sum() + self.model.bias.pow(2).sum()
        return ce + 0.5 * LAMBDA * reg


def _fit(model, dataset) -> None:
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * LAMBDA * sum(
            p.pow(2).sum() for p in model.parameters())
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)


@pytest.fixture(scope="module")
def convex():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 5, generator=g)
    y = torch.arange(150) % 3
    data = TensorDataset((centers[y] + torch.randn(150, 5, generator=g)).double(), y)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    _fit(model, data)
    forget = Subset(data, list(range(0, 150, 10)))
    retain = Subset(data, [i for i in range(150) if i % 10])
    retrained = copy.deepcopy(model)
    _fit(retrained, retain)
    return model, forget, retain, flat(_L2Logistic(retrained))


def test_influence_update_exact_newton_step_reaches_the_retrained_minimiser(convex):
    model, forget, retain, target = convex
    adapter = _L2Logistic(copy.deepcopy(model))
    start = flat(adapter)
    strategy = InfluenceUpdate(hessian="exact", damping=1e-8)
    run(strategy, adapter, forget, retain)
    assert float((start - target).norm()) > 0.1
    assert float((flat(adapter) - target).norm()) < 0.1 * float((start - target).norm())
    assert torch.allclose(flat(adapter) - start, strategy.step)


def test_influence_update_woodfisher_moves_towards_the_retrained_minimiser(convex):
    model, forget, retain, target = convex
    adapter = _L2Logistic(copy.deepcopy(model))
    start = flat(adapter)
    strategy = InfluenceUpdate(hessian="woodfisher")
    run(strategy, adapter, forget, retain)
    assert float((flat(adapter) - target).norm()) < 0.6 * float((start - target).norm())
    # the Woodbury inverse equals the explicit inverse of the damped empirical Fisher
    grads = example_grads(_L2Logistic(copy.deepcopy(model)), retain)
    fisher = grads.T @ grads / len(retain) + 0.1 * torch.eye(grads.shape[1],
                                                             dtype=grads.dtype)
    g = example_grads(_L2Logistic(copy.deepcopy(model)), forget).sum(0) / len(retain)
    assert torch.allclose(strategy.step, torch.linalg.solve(fisher, g), rtol=1e-6,
                          atol=1e-9)


def test_influence_update_exact_refuses_negative_curvature():
    x = torch.randn(8, 2)
    data = TensorDataset(x, x.sum(-1))

    class Concave(_Regression):
        def per_example_loss(self, batch):
            return -super().per_example_loss(batch)

    with pytest.raises(IncompatibleComponentError, match="not positive definite"):
        run(InfluenceUpdate(hessian="exact", damping=1e-3), Concave(torch.nn.Linear(2, 1)),
            data, data)


# -- SSD ---------------------------------------------------------------------------------------
def _batch_importance(adapter, dataset, batch_size: int) -> torch.Tensor:
    """Squared batch-mean gradients averaged over consecutive batches (the reference)."""
    params = list(adapter.model.parameters())
    starts = list(range(0, len(dataset), batch_size))
    total = 0
    for s in starts:
        batch = whole(adapter, Subset(dataset, range(s, min(s + batch_size, len(dataset)))))
        grads = torch.autograd.grad(adapter.per_example_loss(batch).mean(), params)
        total = total + torch.cat([g.reshape(-1) for g in grads]).pow(2)
    return total / len(starts)


def test_ssd_dampens_exactly_the_weights_over_the_threshold(classwise):
    original, forget, retain, _ = classwise
    adapter = original.clone()
    strategy = SSD(alpha=2.0, lam=1.0, batch_size=60)
    run(strategy, adapter, forget, retain)
    imp_f = _batch_importance(original, forget, 60)
    imp_d = _batch_importance(original, ConcatDataset([retain, forget]), 60)
    selected = imp_f > 2.0 * imp_d
    assert 0 < int(selected.sum()) < selected.numel()
    factor = torch.cat([v.reshape(-1) for v in strategy.factors.values()])
    expected = (imp_d / imp_f).clamp(max=1.0)
    assert torch.allclose(factor[selected], expected[selected], rtol=1e-4)
    assert bool((factor[~selected] == 1).all())
    before, after = flat(original), flat(adapter)
    assert torch.equal(after[~selected], before[~selected])
    assert torch.allclose(after[selected], before[selected] * expected[selected], rtol=1e-4)
    assert bool((after[selected] != before[selected]).any())
    # the forgotten class's loss rises more than the rest's
    assert evaluate(adapter, forget)[0] > evaluate(adapter, retain)[0]


def test_ssd_defaults_are_the_papers():
    params = SSD.Params()
    assert (params.alpha, params.lam) == (10.0, 1.0)
