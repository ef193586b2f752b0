"""The geometry-based selectors: kcenter, herding, craig, glister, submodular, kmeans_coreset.

Each test checks what makes the selector that method (k-center covers, herding tracks the
mean, CRAIG's gradients cover and its weights count, GLISTER's step lowers the validation
loss, the lazy greedy equals the plain greedy, k-means finds the planted clusters), against
independent computations and random selections of the same size.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.builtin.selectors._features import (
    FacilityLocation,
    GraphCut,
    greedy_maximize,
    similarity_kernel,
)
from erasus.builtin.selectors.craig import Craig
from erasus.builtin.selectors.glister import Glister, _load_flat
from erasus.builtin.selectors.herding import Herding
from erasus.builtin.selectors.kcenter import KCenter
from erasus.builtin.selectors.kmeans_coreset import KMeansCoreset
from erasus.builtin.selectors.random import RandomSelector
from erasus.builtin.selectors.submodular import Submodular
from erasus.data import DataInfo
from erasus.errors import IncompatibleComponentError
from erasus.gradients import flat_params, param_names, per_example_grads
from erasus.selection import SelectionContext
from erasus.testing.tiny import (
    tiny_classification_data,
    tiny_classifier_problem,
    train_classifier,
)
from torch.utils.data import ConcatDataset, Subset, TensorDataset

SEEDS = range(20)
GEOMETRY = (KCenter, Herding, Submodular, KMeansCoreset)


# -- fixtures ----------------------------------------------------------------------------
class _Points(torch.nn.Module):
    """A classifier whose features are its inputs, so tests can plant the geometry."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(dim, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def points(x) -> tuple[ClassifierAdapter, TensorDataset]:
    """An adapter whose feature vectors are exactly the rows of ``x``, and its dataset."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim == 1:
        x = x[:, None]
    return (ClassifierAdapter(_Points(x.shape[1])),
            TensorDataset(x, torch.zeros(len(x), dtype=torch.long)))


@pytest.fixture(scope="module")
def problem():
    return tiny_classifier_problem(0)


@pytest.fixture(scope="module")
def train_features(problem):
    """All 240 training examples of the tiny problem and their (penultimate) features."""
    data = ConcatDataset([problem.forget, problem.retain])
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        feats = problem.adapter.model.features(x).double().numpy()
    return data, feats


@pytest.fixture(scope="module")
def undertrained():
    """The tiny MLP after one epoch (large, varied gradients), 60 forget, 180 retain."""
    train, test = tiny_classification_data(0)
    torch.manual_seed(0)
    adapter = ClassifierAdapter.build(
        ClassifierParams(arch="mlp", hidden=32),
        DataInfo(modality="classification", num_classes=4, input_shape=(10,)))
    train_classifier(adapter, train, epochs=1, seed=0)
    return adapter, Subset(train, list(range(60))), Subset(train, list(range(60, 240))), test


def radius(x: np.ndarray, chosen) -> float:
    """Covering radius: the largest distance from a point to its nearest chosen point."""
    d = np.linalg.norm(x[:, None, :] - x[None, list(chosen), :], axis=2)
    return float(d.min(axis=1).max())


def random_indices(data, k: int, seed: int) -> np.ndarray:
    return RandomSelector(budget=k).select(None, data, seed=seed).indices


# -- kcenter -----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [12, 24])
def test_kcenter_covers_with_a_smaller_radius_than_random_for_every_seed(
        problem, train_features, k):
    data, feats = train_features
    for seed in SEEDS:
        selection = KCenter(budget=k).select(problem.adapter, data, seed=seed)
        ours = radius(feats, selection.indices)
        assert ours == pytest.approx(selection.info["radius"], rel=1e-5)
        assert ours < radius(feats, random_indices(data, k, seed)), seed


def test_kcenter_follows_the_farthest_first_rule_on_a_hand_example():
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 20.0])
    adapter, data = points(x)
    # the first center is drawn from the seed alone: pick a seed that starts at x = 0
    seed = next(s for s in range(100) if np.random.default_rng(s).integers(len(x)) == 0)
    selection = KCenter(budget=3).select(adapter, data, seed=seed)
    # 0 first, then the farthest point 20 (at distance 20), then 10 (10 from {0, 20})
    assert selection.info["first"] == 0
    assert selection.info["order"] == [0, 7, 4]
    assert selection.indices.tolist() == [0, 4, 7]
    assert selection.scores.tolist() == [20.0, 10.0, 20.0]
    # covering radius 3 (x = 3 to its center 0); the best 3 centers {1, 11, 20} give 2
    greedy = radius(x[:, None], selection.indices)
    best = min(radius(x[:, None], c) for c in itertools.combinations(range(len(x)), 3))
    assert (greedy, best) == (3.0, 2.0)
    assert greedy <= 2 * best


@pytest.mark.parametrize("seed", range(5))
def test_kcenter_is_within_twice_the_optimal_radius(seed):
    x = np.random.default_rng(seed).normal(size=(11, 2))
    adapter, data = points(x)
    k = 3
    selection = KCenter(budget=k).select(adapter, data, seed=seed)
    greedy = radius(x, selection.indices)
    best = min(radius(x, c) for c in itertools.combinations(range(len(x)), k))
    assert best <= greedy <= 2 * best + 1e-6
    # the k centers and the farthest point are pairwise >= greedy apart: OPT >= greedy / 2
    assert min(selection.scores) >= greedy - 1e-6


# -- herding -----------------------------------------------------------------------------
def mean_gap(x: np.ndarray, chosen) -> float:
    return float(np.linalg.norm(x[list(chosen)].mean(axis=0) - x.mean(axis=0)))


def test_herding_tracks_the_mean_better_than_random_and_better_as_k_grows():
    x = np.random.default_rng(0).normal(size=(300, 10))
    adapter, data = points(x)
    gaps = []
    for k in (5, 10, 20, 40):
        selection = Herding(budget=k, normalize=False).select(adapter, data)
        gap = mean_gap(x, selection.indices)
        assert gap == pytest.approx(selection.info["mmd"][-1], rel=1e-4)
        assert all(gap < mean_gap(x, random_indices(data, k, s)) for s in SEEDS), k
        gaps.append(gap)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < gaps[0] / 4


def test_herding_on_model_features_beats_random_on_average(problem, train_features):
    data, feats = train_features
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)  # normalize=True, as iCaRL
    gaps = []
    for k in (3, 6, 24, 48):
        gap = mean_gap(unit, Herding(budget=k).select(problem.adapter, data).indices)
        assert gap < 0.6 * np.mean([mean_gap(unit, random_indices(data, k, s)) for s in SEEDS])
        gaps.append(gap)
    assert gaps == sorted(gaps, reverse=True)


def test_herding_is_icarl_exemplar_selection():
    x = np.random.default_rng(1).normal(size=(40, 4))
    adapter, data = points(x)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    # iCaRL's loop, written plainly
    mu, chosen, total = unit.mean(axis=0), [], np.zeros(4)
    for t in range(1, 11):
        gaps = np.linalg.norm(mu - (total + unit) / t, axis=1)
        gaps[chosen] = np.inf
        chosen.append(int(np.argmin(gaps)))
        total += unit[chosen[-1]]
    selection = Herding(budget=10).select(adapter, data)
    assert selection.info["order"] == chosen
    assert dict(zip(selection.indices.tolist(), selection.scores.tolist(), strict=True)) == {
        j: float(10 - r) for r, j in enumerate(chosen)}


def test_kernel_herding_lowers_the_mmd_below_random():
    x = np.random.default_rng(2).normal(size=(200, 5))
    adapter, data = points(x)
    sim, settings = similarity_kernel(x, "rbf")

    def mmd(chosen) -> float:
        c = list(chosen)
        return float(sim.mean() - 2 * sim[c].mean() + sim[np.ix_(c, c)].mean())

    selection = Herding(budget=15, kernel="rbf", normalize=False).select(adapter, data)
    assert selection.info["gamma"] == pytest.approx(settings["gamma"])
    ours = mmd(selection.indices)
    assert np.sqrt(max(ours, 0.0)) == pytest.approx(selection.info["mmd"][-1], rel=1e-4)
    assert all(ours < mmd(random_indices(data, 15, s)) for s in SEEDS)


# -- craig -------------------------------------------------------------------------------
def test_craig_gradients_cover_better_than_random_and_weights_count_represented(
        undertrained):
    adapter, forget, _, _ = undertrained
    n, k = len(forget), 8
    grads = per_example_grads(adapter, forget).double()
    dist = torch.cdist(grads, grads).numpy()

    def cover(chosen) -> float:  # sum_i min_j d_ij: CRAIG's gradient-error bound
        return float(dist[:, list(chosen)].min(axis=1).sum())

    selection = Craig(budget=k).select(adapter, forget, seed=0)
    ours = cover(selection.indices)
    assert ours == pytest.approx(selection.info["cover_distance"], rel=1e-6)
    assert all(ours < cover(random_indices(forget, k, s)) for s in SEEDS)
    # facility location F(S) = sum_i max_j (D - d_ij) = n D - cover(S): higher than random
    assert n * dist.max() - ours > max(n * dist.max() - cover(random_indices(forget, k, s))
                                       for s in SEEDS)
    # weight = how many examples have that element as their nearest selected gradient
    weights = np.asarray(selection.info["weights"])
    owner = selection.indices[dist[:, selection.indices].argmin(axis=1)]
    assert np.array_equal(weights, [np.sum(owner == j) for j in selection.indices])
    assert weights.sum() == n and weights.min() >= 1
    assert np.array_equal(selection.scores, weights)
    # the lazy greedy made the same choices as the plain one
    plain = Craig(budget=k, lazy=False).select(adapter, forget)
    assert plain.info["order"] == selection.info["order"]
    assert selection.info["evaluations"] < plain.info["evaluations"]


def test_craig_last_layer_proxy_uses_only_the_head(problem):
    selection = Craig(budget=5, param_group="head").select(problem.adapter, problem.forget)
    head = sum(p.numel() for n, p in problem.adapter.model.named_parameters()
               if n.startswith("head."))
    assert selection.info["grad_dim"] == head
    assert sum(selection.info["weights"]) == len(problem.forget)


# -- glister -----------------------------------------------------------------------------
def val_loss(adapter, data) -> float:
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.stack([data[i][1] for i in range(len(data))])
    with torch.no_grad():
        return float(adapter.per_example_loss({"inputs": x, "labels": y}).mean())


@pytest.mark.parametrize("lr", [0.01, 0.05])
def test_glister_step_lowers_the_validation_loss_more_than_random(undertrained, lr):
    adapter, forget, retain, test = undertrained
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    k = 8
    selection = Glister(budget=k, lr=lr).select(
        adapter, forget, seed=0, context=SelectionContext(retain=retain, test=test))
    assert selection.info["refreshes"] == k - 1
    assert all(torch.equal(p, before[n]) for n, p in adapter.model.named_parameters())

    names = param_names(adapter)
    theta = flat_params(adapter, names)
    grads = per_example_grads(adapter, forget)
    base = val_loss(adapter, retain)

    def drop(chosen) -> float:  # the real validation-loss drop of one step on the subset
        moved = adapter.clone()
        _load_flat(moved, names, theta - lr * grads[list(chosen)].sum(dim=0))
        return base - val_loss(moved, retain)

    ours = drop(selection.indices)
    assert ours > 0
    assert all(ours > drop(random_indices(forget, k, s)) for s in SEEDS)


def test_glister_uses_the_named_validation_set(undertrained):
    adapter, forget, retain, test = undertrained
    context = SelectionContext(retain=retain, test=test)
    on_test = Glister(budget=5, validation="test").select(adapter, forget, context=context)
    assert on_test.info["validation"] == "test"
    swapped = SelectionContext(retain=test, test=retain)
    on_swapped = Glister(budget=5).select(adapter, forget, context=swapped)
    assert on_swapped.info["order"] == on_test.info["order"]


def test_glister_without_its_validation_set_says_which_sets_exist(problem):
    with pytest.raises(IncompatibleComponentError, match="needs a validation set "
                       r"\(validation: 'retain'\) but was given no selection context"):
        Glister(budget=3).select(problem.adapter, problem.forget)
    context = SelectionContext(retain=problem.retain, test=problem.test)
    with pytest.raises(IncompatibleComponentError,
                       match=r"'test_forgotten_class', which is missing; available sets: "
                       r"retain, test"):
        Glister(budget=3, validation="test_forgotten_class").select(
            problem.adapter, problem.forget, context=context)


# -- submodular --------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["facility_location", "graph_cut"])
@pytest.mark.parametrize("metric", ["rbf", "cosine"])
def test_submodular_lazy_greedy_equals_plain_greedy_and_beats_random(function, metric):
    x = np.random.default_rng(3).normal(size=(120, 6))
    adapter, data = points(x)
    params = {"budget": 12, "function": function, "metric": metric, "lam": 0.3}
    lazy = Submodular(**params).select(adapter, data)
    plain = Submodular(**params, lazy=False).select(adapter, data)
    assert lazy.info["order"] == plain.info["order"]
    assert np.array_equal(lazy.scores, plain.scores)
    assert lazy.info["evaluations"] < plain.info["evaluations"]

    sim, _ = similarity_kernel(x, metric)

    def value(chosen) -> float:
        c = list(chosen)
        if function == "facility_location":
            return float(sim[:, c].max(axis=1).sum())
        return float(sim[:, c].sum() - 0.3 * sim[np.ix_(c, c)].sum())

    ours = value(lazy.indices)
    assert ours == pytest.approx(lazy.info["objective"])
    assert ours == pytest.approx(sum(lazy.scores))  # the gains add up to the objective
    assert all(ours > value(random_indices(data, 12, s)) for s in SEEDS)


def test_lazy_greedy_matches_plain_greedy_on_many_random_kernels():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sim, _ = similarity_kernel(rng.normal(size=(60, 3)), "rbf")
        for make in (FacilityLocation, lambda s: GraphCut(s, 0.7)):
            assert greedy_maximize(make(sim), 60, 15, lazy=True)[:2] == \
                greedy_maximize(make(sim), 60, 15, lazy=False)[:2]


def test_graph_cut_lambda_trades_centrality_for_diversity():
    x = np.random.default_rng(4).normal(size=(80, 2))
    adapter, data = points(x)
    sim, _ = similarity_kernel(x, "rbf")
    central = Submodular(budget=8, function="graph_cut", lam=0.0).select(adapter, data)
    # lambda = 0: the 8 examples most similar to the whole set
    assert sorted(central.indices.tolist()) == sorted(np.argsort(-sim.sum(axis=1))[:8])
    # the first term grows with the whole set (80), the penalty with the selection (8):
    # diversity wins once lambda is of the order of n / k
    diverse = Submodular(budget=8, function="graph_cut", lam=5.0).select(adapter, data)

    def inner(chosen) -> float:
        c = list(chosen)
        return float(sim[np.ix_(c, c)].sum())

    assert inner(diverse.indices) < 0.6 * inner(central.indices)
    assert radius(x, diverse.indices) < radius(x, central.indices)


# -- kmeans_coreset ----------------------------------------------------------------------
def test_kmeans_coreset_picks_one_point_per_planted_cluster():
    rng = np.random.default_rng(5)
    centers = np.array([[0, 0], [20, 0], [0, 20], [20, 20], [40, 40]], dtype=float)
    sizes = [3, 5, 7, 9, 11]
    x = np.concatenate([c + rng.normal(scale=0.5, size=(s, 2))
                        for c, s in zip(centers, sizes, strict=True)])
    blob = np.repeat(np.arange(5), sizes)
    perm = rng.permutation(len(x))  # so clusters are not index ranges
    x, blob = x[perm], blob[perm]
    adapter, data = points(x)
    for seed in range(3):
        selection = KMeansCoreset(budget=5).select(adapter, data, seed=seed)
        chosen = selection.indices
        assert sorted(blob[chosen].tolist()) == [0, 1, 2, 3, 4]
        assert selection.scores.tolist() == [sizes[b] for b in blob[chosen]]
        assert selection.scores.sum() == len(x)
        for j in chosen:  # each is its blob's member nearest the blob's mean
            members = np.flatnonzero(blob == blob[j])
            mean = x[members].mean(axis=0)
            assert j == members[np.argmin(np.linalg.norm(x[members] - mean, axis=1))]


def test_kmeans_coreset_keeps_distinct_points_when_there_are_duplicates():
    x = np.array([[0.0, 0.0]] * 4 + [[5.0, 5.0]] * 2)
    adapter, data = points(x)
    selection = KMeansCoreset(budget=4).select(adapter, data, seed=0)
    assert len(set(selection.indices.tolist())) == 4
    assert "fewer distinct" in selection.info["warning"]


# -- shared ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", GEOMETRY)
def test_feature_selectors_refuse_a_model_without_features(problem, cls):
    adapter = ClassifierAdapter(torch.nn.Sequential(torch.nn.Linear(10, 4)))
    with pytest.raises(IncompatibleComponentError) as err:
        cls(budget=3).select(adapter, problem.forget)
    message = str(err.value)
    assert f"selector '{cls.name}'" in message and "model adapter 'classifier'" in message
    assert "craig" in message and "'random'" in message


@pytest.mark.parametrize("cls", (*GEOMETRY, Craig, Glister))
def test_indices_are_sorted_with_scores_kept_with_their_examples(problem, cls):
    context = SelectionContext(retain=problem.retain, test=problem.test)
    kwargs = {"context": context} if cls is Glister else {}
    selection = cls(budget=7).select(problem.adapter, problem.forget, seed=1, **kwargs)
    assert np.all(np.diff(selection.indices) > 0)
    assert sorted(selection.info["order"]) == selection.indices.tolist()
    if cls in (Submodular, KCenter, Herding):
        # scores follow the greedy order: the first chosen scores highest
        by_order = dict(zip(selection.indices.tolist(), selection.scores.tolist(),
                            strict=True))
        ordered = [by_order[j] for j in selection.info["order"]]
        assert ordered == sorted(ordered, reverse=True)


def test_selectors_are_registered():
    from erasus.plugins import get_plugin_manager

    names = get_plugin_manager().registry.names("selector")
    for name in ("kcenter", "herding", "craig", "glister", "submodular", "kmeans_coreset"):
        assert name in names
