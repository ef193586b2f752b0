"""The gradient- and loss-based selectors: influence, tracin, gradient_norm, grad_match,
el2n, representer. Each is tested for what makes it that method, on small trained
classifiers with planted mislabelled forget examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.adapters import TinyProblem
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.builtin.selectors.el2n import EL2N
from erasus.builtin.selectors.grad_match import GradMatch, _nnls_gram, matching_error
from erasus.builtin.selectors.gradient_norm import GradientNorm
from erasus.builtin.selectors.influence import Influence, exact_hessian
from erasus.builtin.selectors.representer import Representer, fit_representer
from erasus.builtin.selectors.tracin import TracIn, spaced_checkpoints
from erasus.data import DataInfo
from erasus.errors import IncompatibleComponentError
from erasus.gradients import per_example_grads
from erasus.selection import SelectionContext
from erasus.testing.tiny import record_training, tiny_classification_data, train_classifier
from scipy.stats import spearmanr
from torch.utils.data import Subset, TensorDataset

INFO = DataInfo(modality="classification", num_classes=4, input_shape=(10,))
#: Forget-set positions whose labels are flipped before training (5 and 13 both get the
#: wrong label 1, 20 the wrong label 2).
PLANTED = (5, 13, 20)
N_FORGET = 24


def _planted_problem(*, epochs: int = 60, hidden: int = 16, seed: int = 0) -> TinyProblem:
    """4-class blobs; 24 forget examples, three of them (PLANTED) mislabelled; an MLP
    trained on all 240 training examples (so it fits the wrong labels against the grain).
    ``extra["probe"]`` is the first planted example alone, with its wrong label."""
    train, test = tiny_classification_data(seed)
    x, y = train.tensors
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))
    forget_idx = sorted(perm[:N_FORGET].tolist())
    retain_idx = sorted(perm[N_FORGET:].tolist())
    y = y.clone()
    for j in PLANTED:
        y[forget_idx[j]] = (y[forget_idx[j]] + 2) % 4
    data = TensorDataset(x, y)
    torch.manual_seed(seed)
    adapter = ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=hidden), INFO)
    train_classifier(adapter, data, seed=seed, epochs=epochs)
    return TinyProblem(adapter, Subset(data, forget_idx), Subset(data, retain_idx), test,
                       info=INFO, extra={"probe": Subset(data, [forget_idx[PLANTED[0]]])})


@pytest.fixture(scope="module")
def planted() -> TinyProblem:
    return _planted_problem()


@pytest.fixture(scope="module")
def recorded(planted) -> TinyProblem:
    return record_training(planted, {"checkpoints"})


def _context(problem: TinyProblem, record=None) -> SelectionContext:
    return SelectionContext(retain=problem.retain, test=problem.test, extra=problem.extra,
                            info=problem.info, record=record)


def _all_scores(selector, problem, **kwargs) -> np.ndarray:
    """Every forget example's score, in forget-set order (budget = the whole set)."""
    selection = selector.select(problem.adapter, problem.forget, **kwargs)
    assert len(selection.indices) == N_FORGET
    assert np.all(np.diff(selection.scores) <= 0), "scores must come best first"
    out = np.empty(N_FORGET)
    out[selection.indices] = selection.scores
    return out


def _weights(adapter) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter.model.named_parameters()}


def _unchanged(adapter, before) -> bool:
    return all(torch.equal(p, before[n]) for n, p in adapter.model.named_parameters())


# -- influence -----------------------------------------------------------------------------
def test_influence_ranks_the_planted_mislabelled_points_first(planted):
    before = _weights(planted.adapter)
    selection = Influence(budget=3).select(planted.adapter, planted.forget,
                                           context=_context(planted))
    assert sorted(selection.indices.tolist()) == sorted(PLANTED)
    info = selection.info
    assert info["method"] == "exact" and info["num_params"] <= 2000  # auto, small model
    assert "max_exact_params" in info["method_reason"]
    assert info["hessian_on"] == "retain" and info["n_hessian"] == 216
    assert _unchanged(planted.adapter, before)
    # the self-influence of a planted point dwarfs every clean example's
    scores = _all_scores(Influence(budget=N_FORGET), planted, context=_context(planted))
    clean = np.delete(scores, PLANTED)
    assert scores[list(PLANTED)].min() > 3 * clean.max()


def test_influence_exact_is_g_h_inverse_g(planted):
    """The exact method's score is g_i^T (H + lambda I)^-1 g_i with H the retain Hessian."""
    damping = 0.05
    scores = _all_scores(Influence(budget=N_FORGET, parameters="head", damping=damping),
                         planted, context=_context(planted))
    hessian = exact_hessian(planted.adapter, planted.retain, params="head")
    grads = per_example_grads(planted.adapter, planted.forget, names="head").double()
    solved = torch.linalg.solve(hessian + damping * torch.eye(len(hessian),
                                                              dtype=torch.float64), grads.T)
    expected = (grads * solved.T).sum(1).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-12)


def test_influence_exact_and_lissa_agree(planted):
    ctx = _context(planted)
    common = {"budget": N_FORGET, "parameters": "head"}
    exact = _all_scores(Influence(method="exact", **common), planted, context=ctx)
    lissa_sel = Influence(method="lissa", lissa_depth=100, lissa_batch_size=64, **common)
    lissa = _all_scores(lissa_sel, planted, context=ctx, seed=3)
    assert spearmanr(exact, lissa).statistic > 0.95
    assert set(np.argsort(-lissa)[:3]) == set(np.argsort(-exact)[:3]) == set(PLANTED)
    # seeded: the same seed gives the same estimate, another seed another one
    again = _all_scores(lissa_sel, planted, context=ctx, seed=3)
    other = _all_scores(lissa_sel, planted, context=ctx, seed=4)
    np.testing.assert_array_equal(lissa, again)
    assert not np.array_equal(lissa, other)


def test_influence_on_a_target_set_uses_the_up_weighting_sign(planted):
    """I_up,loss(z, T) = -g_T^T H^-1 g_z: up-weighting the planted points that carry the
    probe's wrong label lowers the loss of a target set holding the (mislabelled) probe,
    so they score lowest, far below every clean example."""
    ctx = _context(planted)
    scores = _all_scores(Influence(budget=N_FORGET, target="probe"), planted, context=ctx)
    assert set(np.argsort(scores)[:2]) == {5, 13}
    assert scores[[5, 13]].max() < 10 * np.delete(scores, PLANTED).min() < 0


def test_influence_auto_records_its_choice_and_missing_targets_are_named(planted):
    ctx = _context(planted)
    small = {"budget": 3, "parameters": "head", "max_exact_params": 10}
    fisher = Influence(**small).select(planted.adapter, planted.forget, context=ctx)
    assert fisher.info["method"] == "fisher" and "self-influence" in fisher.info[
        "method_reason"]
    assert sorted(fisher.indices.tolist()) == sorted(PLANTED)
    lissa = Influence(target="probe", lissa_depth=20, **small).select(
        planted.adapter, planted.forget, context=ctx)
    assert lissa.info["method"] == "lissa" and lissa.info["lissa_scale"] > 0
    with pytest.raises(IncompatibleComponentError, match=r"'nowhere'.*probe"):
        Influence(target="nowhere").select(planted.adapter, planted.forget, context=ctx)
    with pytest.raises(IncompatibleComponentError, match="no parameter group 'decoder'"):
        Influence(parameters="decoder").select(planted.adapter, planted.forget, context=ctx)


# -- tracin ---------------------------------------------------------------------------------
def test_tracin_self_influence_ranks_planted_points_first(recorded):
    before = _weights(recorded.adapter)
    ctx = _context(recorded, recorded.record)
    selection = TracIn(budget=3).select(recorded.adapter, recorded.forget, context=ctx)
    assert sorted(selection.indices.tolist()) == sorted(PLANTED)
    used = selection.info["checkpoints"]
    assert len(used) == 3 and selection.info["recorded_checkpoints"] == 20
    assert used[0]["epoch"] == 0 and used[-1]["epoch"] == 19
    assert _unchanged(recorded.adapter, before)  # checkpoints went into a clone


def test_tracin_score_is_the_lr_weighted_sum_over_checkpoints(recorded):
    ctx = _context(recorded, recorded.record)
    scores = _all_scores(TracIn(budget=N_FORGET, max_checkpoints=None, target="probe"),
                         recorded, context=ctx)
    clone = recorded.adapter.clone()
    expected = np.zeros(N_FORGET)
    for checkpoint in recorded.record.checkpoints():
        recorded.record.load_checkpoint(checkpoint, clone)
        grads = per_example_grads(clone, recorded.forget).double()
        target = per_example_grads(clone, recorded.extra["probe"]).double()[0]
        expected += checkpoint.lr * (grads @ target).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-12)
    # the proponents of the probe (training on them lowered the probe's loss): the planted
    # points with the probe's wrong label
    assert set(np.argsort(-scores)[:2]) == {5, 13}


def test_tracin_without_a_record_says_how_to_get_one(planted):
    for context in (None, _context(planted)):
        with pytest.raises(IncompatibleComponentError,
                           match=r"needs the original model's training checkpoints.*"
                                 r"training_record="):
            TracIn().select(planted.adapter, planted.forget, context=context)


def test_spaced_checkpoints_keep_first_and_last():
    items = list(range(20))
    assert spaced_checkpoints(items, 3) == [0, 9, 19]  # type: ignore[arg-type]
    assert spaced_checkpoints(items, 1) == [19]  # type: ignore[arg-type]
    assert spaced_checkpoints(items, None) == items  # type: ignore[arg-type]
    assert len(spaced_checkpoints(items, 7)) == 7  # type: ignore[arg-type]


# -- gradient_norm --------------------------------------------------------------------------
def test_gradient_norm_equals_a_brute_force_loop(planted):
    scores = _all_scores(GradientNorm(budget=N_FORGET), planted)
    model = planted.adapter.model
    brute = []
    for i in range(N_FORGET):
        x, y = planted.forget[i]
        loss = torch.nn.functional.cross_entropy(model(x[None]), y[None])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        brute.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))))
    np.testing.assert_allclose(scores, brute, rtol=1e-5)
    assert np.array_equal(np.argsort(-scores, kind="stable"),
                          np.argsort(-np.asarray(brute), kind="stable"))
    # the planted (high-loss) points score top
    top = GradientNorm(budget=3).select(planted.adapter, planted.forget)
    assert sorted(top.indices.tolist()) == sorted(PLANTED)


def test_gradient_norm_over_checkpoints_averages_them(recorded, planted):
    ctx = _context(recorded, recorded.record)
    sel = GradientNorm(budget=N_FORGET, use_checkpoints=True, checkpoint_epochs=[0, 1, 2])
    scores = _all_scores(sel, recorded, context=ctx)
    clone = recorded.adapter.clone()
    expected = np.zeros(N_FORGET)
    for checkpoint in recorded.record.checkpoints()[:3]:
        recorded.record.load_checkpoint(checkpoint, clone)
        expected += per_example_grads(clone, recorded.forget).double().norm(dim=1).numpy()
    np.testing.assert_allclose(scores, expected / 3, rtol=1e-6)
    with pytest.raises(IncompatibleComponentError, match="use_checkpoints: false"):
        sel.select(planted.adapter, planted.forget, context=_context(planted))
    with pytest.raises(IncompatibleComponentError, match=r"epochs \[99\] were not recorded"):
        GradientNorm(use_checkpoints=True, checkpoint_epochs=[99]).select(
            recorded.adapter, recorded.forget, context=ctx)


# -- grad_match -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def undertrained() -> TinyProblem:
    """Briefly trained, so every forget example still has a sizeable gradient."""
    return _planted_problem(epochs=3)


def test_grad_match_matches_the_mean_gradient_better_than_random(undertrained):
    grads = per_example_grads(undertrained.adapter, undertrained.forget).double().numpy()
    target = grads.mean(axis=0)
    norm = np.linalg.norm(target)
    rng = np.random.default_rng(0)
    previous = np.inf
    for k in (2, 4, 8, 12):
        sel = GradMatch(budget=k).select(undertrained.adapter, undertrained.forget)
        weights = np.asarray(sel.info["weights"])
        np.testing.assert_array_equal(weights, sel.scores)
        assert np.all(weights >= 0) and np.all(np.diff(sel.scores) <= 0)
        error = matching_error(grads, target, sel.indices, weights)
        assert error == pytest.approx(sel.info["matching_error"][-1], rel=1e-6)
        # random subsets of the same size, each with its own best non-negative weights
        random_errors = []
        for _ in range(50):
            rows = rng.choice(N_FORGET, size=k, replace=False)
            sub = grads[rows]
            w = _nnls_gram(sub @ sub.T, sub @ target)
            random_errors.append(matching_error(grads, target, rows, w))
        # below the best of 50 random subsets, and well below the typical one
        assert error < min(random_errors), (k, error, min(random_errors))
        if k >= 4:
            assert error < 0.65 * np.median(random_errors), (k, error, np.median(random_errors))
        assert error < previous  # more examples match better
        previous = error
        assert np.all(np.diff(sel.info["matching_error"]) <= 1e-12)
    assert previous < 0.2 * norm


# -- el2n -------------------------------------------------------------------------------------
def test_el2n_is_the_l2_error_of_the_softmax(planted):
    scores = _all_scores(EL2N(budget=N_FORGET), planted)
    x = torch.stack([planted.forget[i][0] for i in range(N_FORGET)])
    y = torch.stack([planted.forget[i][1] for i in range(N_FORGET)])
    with torch.no_grad():
        probs = torch.softmax(planted.adapter.model(x).double(), dim=1)
    by_hand = []
    for i in range(N_FORGET):
        onehot = torch.zeros(4, dtype=torch.float64)
        onehot[y[i]] = 1.0
        by_hand.append(float(torch.sqrt(((probs[i] - onehot) ** 2).sum())))
    np.testing.assert_allclose(scores, by_hand, rtol=1e-6, atol=1e-9)
    # a mislabelled point has the highest EL2N
    assert int(np.argmax(scores)) in PLANTED


def test_el2n_over_checkpoints_and_without_a_record(recorded, planted):
    undertrained_scores = EL2N(budget=3, use_checkpoints=True, checkpoint_epochs=[2, 3]).select(
        recorded.adapter, recorded.forget, context=_context(recorded, recorded.record))
    assert undertrained_scores.info["checkpoint_epochs"] == [2, 3]
    assert sorted(undertrained_scores.indices.tolist()) == sorted(PLANTED)
    with pytest.raises(IncompatibleComponentError, match=r"training checkpoints.*no training"):
        EL2N(use_checkpoints=True).select(planted.adapter, planted.forget,
                                          context=_context(planted))


# -- representer ------------------------------------------------------------------------------
def test_representer_decomposition_reconstructs_the_last_layer(planted):
    """After fine-tuning the last layer with L2 lambda (as in the paper), its logits on
    held-out points equal sum_i alpha_i k(f_i, f_t) (Theorem 3.1) up to the stationarity
    gap: W - sum_i alpha_i f_i = grad J(W) / (2 lambda), so each logit is off by at most
    ||grad J|| ||f_t|| / (2 lambda); and the fine-tuned layer still predicts what the
    model predicts."""
    from erasus.builtin.selectors._grad_common import classifier_outputs
    from torch.utils.data import ConcatDataset

    train = ConcatDataset([planted.forget, planted.retain])
    out = classifier_outputs(planted.adapter, train, collate_fn=None, batch_size=64,
                             selector="representer", features=True)
    fit = fit_representer(out["features"], out["labels"], 4, lam=0.01)
    assert fit.grad_norm < 1e-6  # (nearly) a stationary point
    test = classifier_outputs(planted.adapter, planted.test, collate_fn=None, batch_size=64,
                              selector="representer", features=True)
    direct = fit.logits(test["features"])
    rebuilt = fit.representer_logits(test["features"])
    gap = (rebuilt - direct).abs().max(dim=1).values
    norms = torch.cat([test["features"], torch.ones(len(gap), 1, dtype=torch.float64)],
                      1).norm(dim=1)
    assert bool((gap <= fit.grad_norm * norms / (2 * fit.lam) + 1e-9).all())
    assert float(gap.max()) < 1e-3 * float(direct.abs().max())
    agreement = (direct.argmax(1) == test["logits"].argmax(1)).double().mean()
    assert agreement > 0.9


def test_representer_ranks_planted_points_first(planted):
    selection = Representer(budget=3).select(planted.adapter, planted.forget,
                                             context=_context(planted))
    assert sorted(selection.indices.tolist()) == sorted(PLANTED)
    assert selection.info["n_fit"] == 240 and selection.info["fit_gradient_norm"] < 1e-6
    assert selection.info["fit_prediction_agreement"] > 0.9
    # toward a target holding the planted probe, the planted points with its (wrong) label
    # are the strongest excitatory representers of the probe's predicted class
    scores = _all_scores(Representer(budget=N_FORGET, target="probe"), planted,
                         context=_context(planted))
    assert set(np.argsort(-scores)[:2]) == {5, 13}
    assert scores[[5, 13]].min() > 100 * np.delete(scores, PLANTED).max()
    with pytest.raises(IncompatibleComponentError, match="'retain' was not given"):
        Representer().select(planted.adapter, planted.forget, context=None)


def test_use_checkpoints_makes_the_pipeline_record_checkpoints():
    from erasus.builtin.selectors.el2n import EL2N
    from erasus.builtin.selectors.gradient_norm import GradientNorm

    for cls in (EL2N, GradientNorm):
        assert "training_checkpoints" not in cls().runtime_needs()
        assert "training_checkpoints" in cls(use_checkpoints=True).runtime_needs()
