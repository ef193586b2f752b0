"""LiRA, confidence, feature distance, FLOPs in ``time``, the empirical-epsilon audit and
the metric suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from erasus.builtin.metrics.confidence import Confidence
from erasus.builtin.metrics.differential_privacy import (
    DifferentialPrivacy,
    clopper_pearson_upper,
    epsilon_lower_bound,
)
from erasus.builtin.metrics.feature_distance import FeatureDistance, linear_cka
from erasus.builtin.metrics.lira import LiRA, logit_confidence
from erasus.builtin.metrics.metric_suite import MetricSuite
from erasus.builtin.metrics.time import Time, train_flops_per_example
from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
from erasus.builtin.strategies.retrain import Retrain, RetrainParams
from erasus.config import ResolvedComponent
from erasus.data import DataInfo, Splits
from erasus.errors import ComponentNotFoundError, IncompatibleComponentError
from erasus.evaluation import EvalContext, Metric, MetricParams, RunEvalContext
from erasus.hookspecs import hookimpl
from erasus.monitor import ResourceMonitor
from erasus.pipeline import evaluate_models
from erasus.plugins import get_plugin_manager
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import tiny_classifier_problem
from erasus.testing.conformance import tiny_splits
from pydantic import ValidationError
from torch.utils.data import Subset, TensorDataset

REGISTRY = get_plugin_manager(entrypoints=False).registry


class FakeContext:
    """An EvalContext stand-in serving hand-made per-example outputs."""

    def __init__(self, outputs: dict[str, dict[str, np.ndarray]]) -> None:
        self._outputs = outputs
        self.splits = None
        self.forward_passes = 0

    def outputs(self, split: str, *, features: bool = False) -> dict[str, np.ndarray]:
        if split not in self._outputs:
            raise KeyError(f"no split named '{split}'")
        return self._outputs[split]


# -- confidence -------------------------------------------------------------------------
def _probs_outputs(probs: list[list[float]], labels: list[int]) -> dict[str, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    return {"logits": np.log(p), "labels": np.asarray(labels), "loss": np.zeros(len(p)),
            "index": np.arange(len(p))}


def test_confidence_is_the_mean_true_label_probability_and_entropy():
    ctx = FakeContext({
        "forget": _probs_outputs([[0.9, 0.1], [0.5, 0.5]], [0, 1]),
        "retain": _probs_outputs([[0.2, 0.8]], [1]),
        "test": _probs_outputs([[0.25, 0.75], [1.0 - 1e-12, 1e-12]], [0, 0]),
    })
    values = Confidence().compute(ctx).values

    def h(p):
        return -sum(x * math.log(x) for x in p if x > 0)

    assert values["forget_confidence"] == pytest.approx((0.9 + 0.5) / 2)
    assert values["forget_entropy"] == pytest.approx((h([0.9, 0.1]) + math.log(2)) / 2)
    assert values["retain_confidence"] == pytest.approx(0.8)
    assert values["retain_entropy"] == pytest.approx(h([0.2, 0.8]))
    assert values["test_confidence"] == pytest.approx((0.25 + 1.0) / 2)
    assert values["test_entropy"] == pytest.approx(h([0.25, 0.75]) / 2, abs=1e-9)
    with pytest.raises(IncompatibleComponentError, match="logits and labels"):
        Confidence().compute(FakeContext({s: {"loss": np.zeros(2)} for s in
                                          ("forget", "retain", "test")}))


# -- LiRA -------------------------------------------------------------------------------
RECIPE = {"epochs": 30, "lr": 2e-2, "batch_size": 100, "scheduler": "constant"}


@pytest.fixture(scope="module")
def overfit_problem():
    """Noisy 4-class blobs an MLP memorises: 200 train (100 forget), 200 test, and models
    trained with the shadows' recipe on all of train (members) and on retain only."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 10, generator=g)

    def draw(n):
        y = torch.arange(n) % 4
        return TensorDataset(centers[y] + 3.0 * torch.randn(n, 10, generator=g), y)

    train, test = draw(200), draw(200)
    info = DataInfo(modality="classification", num_classes=4, input_shape=(10,))
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(5)).tolist()
    forget_idx, retain_idx = sorted(perm[:100]), sorted(perm[100:])
    splits = Splits(train=train, forget=Subset(train, forget_idx),
                    retain=Subset(train, retain_idx), test=test, info=info,
                    forget_indices=forget_idx)

    def trained(data, seed):
        torch.manual_seed(seed)
        adapter = ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=64), info)
        Retrain(RetrainParams(**RECIPE)).unlearn(
            adapter, UnlearnData(forget=None, retain=data, info=info), RunContext(seed=seed))
        return adapter

    return splits, trained(train, 100), trained(splits.retain, 101)


def test_logit_confidence_is_log_odds_of_the_true_label():
    out = _probs_outputs([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], [0, 2])
    assert logit_confidence(out) == pytest.approx([math.log(0.7 / 0.3), 0.0])


def test_lira_finds_members_of_an_overfit_model_and_not_of_one_that_never_saw_them(
        overfit_problem):
    splits, original, never_saw = overfit_problem
    lira = LiRA(n_shadow=8, shadow_train=RECIPE)
    ctx = EvalContext(original, splits, role="original")
    members = lira.compute(ctx)
    # the attack reads the evaluated model's cached outputs: one batch each of forget, test
    assert ctx.forward_passes == 2
    assert members.values["lira_tpr_at_fpr_0_01"] >= 0.08  # 8x the false-positive rate
    assert members.values["lira_auc"] > 0.75
    assert members.values["lira_offline_tpr_at_fpr_0_01"] >= 0.05
    assert members.details["n_members"] == 100 and members.details["n_nonmembers"] == 200

    unseen = lira.compute(EvalContext(never_saw, splits, role="oracle")).values
    assert unseen["lira_tpr_at_fpr_0_01"] <= 0.05  # chance: TPR about the FPR
    assert abs(unseen["lira_auc"] - 0.5) < 0.12
    # the shadows were trained once, for both models
    assert lira.shadows_trained == 8


def test_lira_parameters_and_non_classifiers_are_checked():
    with pytest.raises(ValidationError, match="even"):
        LiRA(n_shadow=3)
    with pytest.raises(ValidationError, match="epoch"):
        LiRA(shadow_train={"epoch": 3})  # a misspelt recipe key fails at config time
    ctx = FakeContext({"forget": {"loss": np.zeros(3)}, "test": {"loss": np.zeros(3)}})
    with pytest.raises(IncompatibleComponentError, match="logits and labels"):
        LiRA().compute(ctx)


# -- feature distance ---------------------------------------------------------------------
class FeatureContext(FakeContext):
    def __init__(self, features: np.ndarray) -> None:
        super().__init__({"forget": {"features": features, "index": np.arange(len(features)),
                                     "loss": np.zeros(len(features))}})


def test_feature_distance_values_by_hand():
    g = np.random.default_rng(0)
    original = g.normal(size=(20, 3))
    unlearned = original + np.array([3.0, 4.0, 0.0])  # every row moved by 5
    rotation = np.linalg.qr(g.normal(size=(3, 3)))[0]
    oracle = original @ rotation  # the same representation, rotated
    ctx = RunEvalContext(results={}, run_info={}, contexts={
        "original": FeatureContext(original), "unlearned": FeatureContext(unlearned),
        "oracle": FeatureContext(oracle)})
    m = FeatureDistance().compute(ctx)
    assert m.values["feature_l2_to_original"] == pytest.approx(5.0)
    cos = [(a @ b) / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(unlearned, original,
                                                                            strict=True)]
    assert m.values["feature_cosine_to_original"] == pytest.approx(1 - np.mean(cos))
    # a shift is removed by centring: the same representation for CKA
    assert m.values["feature_cka_to_original"] == pytest.approx(1.0)
    # the rotated oracle: far in coordinates, identical up to rotation (CKA 1)
    assert m.details["oracle_to_original"]["l2"] > 0.5
    assert m.details["oracle_to_original"]["cka"] == pytest.approx(1.0)
    assert linear_cka(original, g.normal(size=(20, 3))) < 0.5
    with pytest.raises(IncompatibleComponentError, match="no oracle model"):
        FeatureDistance().compute(RunEvalContext(results={}, run_info={}, contexts={
            "original": FeatureContext(original), "unlearned": FeatureContext(unlearned)}))


def test_feature_distance_in_evaluate_models_reuses_each_models_feature_pass():
    problem = tiny_classifier_problem()
    splits = tiny_splits(problem)
    original = problem.adapter
    unlearned = original.clone()
    with torch.no_grad():
        unlearned.model.head.weight.add_(1.0)  # features unchanged, only the head moved
    oracle = original.clone()
    with torch.no_grad():
        for p in oracle.model.body.parameters():
            p.add_(0.2)
    metrics = [ResolvedComponent(info=REGISTRY.get("metric", n),
                                 params=REGISTRY.get("metric", n).params_model(),
                                 path=f"metrics[{i}]")
               for i, n in enumerate(("feature_distance", "accuracy"))]
    info: dict = {}
    out = evaluate_models(metrics, splits, {"original": original, "unlearned": unlearned,
                                            "oracle": oracle}, info)
    run = out["run"]
    assert run["feature_l2_to_original"] == pytest.approx(0.0, abs=1e-6)
    assert run["feature_cka_to_original"] == pytest.approx(1.0)
    assert run["feature_l2_to_oracle"] > 0.1
    # per model: forget, retain, test for accuracy, plus one features pass on forget
    assert info["forward_passes"] == 3 * 4


# -- time (FLOPs) and memory --------------------------------------------------------------
def test_time_counts_training_flops_of_the_unlearned_model():
    problem = tiny_classifier_problem()
    splits = tiny_splits(problem)
    adapter = problem.adapter
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in adapter.model.parameters()]
    per_example = train_flops_per_example(adapter, splits.forget)
    # MLP 10-32-32-4: forward 2*(320+1024+128); weight gradients the same; input gradients
    # of the two upper layers 2*(1024+128) (the input itself needs none)
    assert per_example == 2 * (320 + 1024 + 128) * 2 + 2 * (1024 + 128)
    assert all(torch.equal(before[k], v) for k, v in adapter.model.state_dict().items())
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad)
               for g, p in zip(grads, adapter.model.parameters(), strict=True))
    run_info = {"unlearn_seconds": 1.0, "oracle_seconds": 4.0, "steps": 10.0}
    ctx = RunEvalContext(results={}, run_info=run_info, splits=splits,
                         contexts={"unlearned": EvalContext(adapter, splits)})
    m = Time(flops_examples_per_step=32).compute(ctx)
    assert m.values == {"unlearn_seconds": 1.0, "oracle_seconds": 4.0, "rte_ratio": 0.25}
    assert m.details["flops"]["unlearn_flops"] == per_example * 32 * 10
    from_run = Time().compute(RunEvalContext(
        results={}, run_info={**run_info, "examples_per_step": 128}, splits=splits,
        contexts={"unlearned": EvalContext(adapter, splits)}))
    assert from_run.details["flops"]["unlearn_flops"] == per_example * 128 * 10
    recorded = Time().compute(RunEvalContext(results={}, run_info={**run_info,
                                                                   "unlearn_flops": 7.0e9}))
    assert recorded.details["flops"] == {"unlearn_flops": 7.0e9, "source": "recorded"}
    no_model = Time().compute(RunEvalContext(results={}, run_info=run_info))
    assert "no unlearned model" in no_model.details["flops"]["unavailable"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resource_monitor_records_the_device_peak():
    with ResourceMonitor() as mon:
        x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
        del x
    assert mon.peak_device_mb >= 64


# -- differential privacy ------------------------------------------------------------------
def test_clopper_pearson_upper_bound_by_hand():
    # no error in n trials: the bound solves (1 - u)^n = alpha
    assert float(clopper_pearson_upper(0, 100, 0.025)) == pytest.approx(1 - 0.025 ** (1 / 100))
    assert float(clopper_pearson_upper(10, 10, 0.025)) == 1.0


def test_epsilon_lower_bound_on_hand_built_scores():
    # perfectly separated: the best threshold errs on no one; both rates bounded by u
    separated = epsilon_lower_bound(np.full(100, 5.0), np.zeros(100))
    u = 1 - 0.025 ** (1 / 100)
    assert separated["epsilon_lb"] == pytest.approx(math.log((1 - u) / u))
    assert separated["fpr"] == 0.0 and separated["fnr"] == 0.0
    # delta loosens the bound
    assert epsilon_lower_bound(np.full(100, 5.0), np.zeros(100), delta=0.1)["epsilon_lb"] == \
        pytest.approx(math.log((1 - 0.1 - u) / u))
    # identical distributions: nothing to detect
    g = np.random.default_rng(0)
    same = epsilon_lower_bound(g.normal(size=2000), g.normal(size=2000))
    assert same["epsilon_lb"] < 0.15
    # randomised response with epsilon = 1: each side reports the truth w.p. e/(1+e); the
    # audit's lower bound must be below 1 and, with 20,000 draws a side, close to it
    q = math.e / (1 + math.e)
    members = (g.random(20_000) < q).astype(float)
    nonmembers = (g.random(20_000) < 1 - q).astype(float)
    rr = epsilon_lower_bound(members, nonmembers)
    assert 0.9 < rr["epsilon_lb"] < 1.0


def test_differential_privacy_metric_attacks_forget_losses_against_test_losses():
    ctx = FakeContext({"forget": {"loss": np.full(50, 0.01)},
                       "test": {"loss": np.full(50, 2.0)}})
    m = DifferentialPrivacy().compute(ctx)
    u = 1 - 0.025 ** (1 / 50)
    assert m.values["dp_epsilon_lb"] == pytest.approx(math.log((1 - u) / u))
    ctx = FakeContext({"forget": {"loss": np.full(50, 2.0)},  # forgotten: loss like test's
                       "test": {"loss": np.full(50, 2.0)}})
    assert DifferentialPrivacy().compute(ctx).values["dp_epsilon_lb"] == 0.0
    with pytest.raises(IncompatibleComponentError, match="nonmember_split"):
        DifferentialPrivacy(nonmember_split="heldout").compute(ctx)


# -- metric suite -------------------------------------------------------------------------
SUITE = ["accuracy", "mia_efficacy", "confidence", "loss", "mia", "differential_privacy"]


def test_metric_suite_costs_one_forward_pass_per_split():
    problem = tiny_classifier_problem()
    splits = tiny_splits(problem)
    batch = 50  # forget 24, retain 216, test 120 examples: 1 + 5 + 3 batches
    ctx = EvalContext(problem.adapter, splits, batch_size=batch)
    listed = [*SUITE[:-2], {"name": "mia", "nonmember_split": "test"}, SUITE[-1]]
    suite = MetricSuite(metrics=listed)
    m = suite.compute(ctx)
    one_pass_each = sum(math.ceil(len(splits.get(s)) / batch) for s in
                        ("forget", "retain", "test"))
    assert ctx.forward_passes == one_pass_each == 9
    assert m.details["forward_passes"] == 9
    # a second suite on the same context costs nothing more
    again = MetricSuite(metrics=SUITE).compute(ctx)
    assert again.details["forward_passes"] == 0 and again.values == m.values
    # the values are each metric's own, computed alone on a fresh context
    expected: dict = {}
    for name in SUITE:
        expected.update(REGISTRY.create("metric", name).compute(
            EvalContext(problem.adapter, splits)).values)
    assert m.values == pytest.approx(expected)
    assert tuple(m.values) == suite.outputs


def test_metric_suite_validates_names_against_the_registry():
    with pytest.raises(ComponentNotFoundError, match="did you mean 'accuracy'"):
        MetricSuite(metrics=["acuracy"])
    with pytest.raises(IncompatibleComponentError, match="run metric"):
        MetricSuite(metrics=["accuracy", "avg_gap"])
    with pytest.raises(ValidationError, match="twice"):
        MetricSuite(metrics=["loss", {"name": "loss"}])
    with pytest.raises(ValidationError, match="nonmember"):
        MetricSuite(metrics=[{"name": "mia", "nonmember": "test"}])
    assert MetricSuite().outputs == MetricSuite.outputs  # the declared default outputs


class Mistakes(Metric):
    """Share of forget examples the model gets wrong (a user's metric)."""

    name = "my_mistakes"
    modalities = ("classification",)
    needs = frozenset()
    Params = MetricParams
    paper = None
    outputs = ("forget_mistakes",)

    def compute(self, ctx):
        out = ctx.outputs("forget")
        return {"forget_mistakes": float(np.mean(out["logits"].argmax(1) != out["labels"]))}


class UserMetrics:
    @staticmethod
    @hookimpl
    def erasus_register_metrics(register):
        register(Mistakes)


def test_metric_suite_runs_a_user_registered_metric_with_the_builtins():
    pm = get_plugin_manager(entrypoints=False, strict=True, plugins=(("mine", UserMetrics),))
    problem = tiny_classifier_problem()
    ctx = EvalContext(problem.adapter, tiny_splits(problem))
    m = MetricSuite(metrics=["accuracy", "my_mistakes"], registry=pm.registry).compute(ctx)
    assert m.values["forget_mistakes"] == pytest.approx(m.values["UA"] / 100)
    assert ctx.forward_passes == 3
