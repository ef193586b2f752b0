"""The built-in metrics and the Markdown reporter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from erasus.builtin.metrics.accuracy import Accuracy
from erasus.builtin.metrics.avg_gap import AvgGap
from erasus.builtin.metrics.memory import Memory
from erasus.builtin.metrics.mia import LossMIA
from erasus.builtin.metrics.mia_efficacy import MIAEfficacy
from erasus.builtin.metrics.time import Time
from erasus.builtin.reporters.markdown import MarkdownReporter, format_metrics_table
from erasus.data import DataInfo, Splits
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import EvalContext, RunEvalContext
from erasus.reporting import RunSummary
from erasus.testing import tiny_classifier_problem
from erasus.testing.tiny import memorisation_classifier, memorisation_data


class FakeContext:
    """An EvalContext stand-in serving hand-made per-example outputs."""

    def __init__(self, outputs: dict[str, dict[str, np.ndarray]]) -> None:
        self._outputs = outputs
        self.splits = None

    def outputs(self, split: str, *, features: bool = False) -> dict[str, np.ndarray]:
        if split not in self._outputs:
            raise KeyError(f"no split named '{split}'")
        return self._outputs[split]


def logits_for(predicted: list[int], labels: list[int], num_classes: int = 3) -> dict:
    logits = np.full((len(predicted), num_classes), -2.0, dtype=np.float32)
    logits[np.arange(len(predicted)), predicted] = 3.0
    return {"logits": logits, "labels": np.asarray(labels), "loss": np.zeros(len(labels)),
            "index": np.arange(len(labels))}


def confidence_outputs(true_label_probs) -> dict:
    """Two-class outputs whose softmax probability of the true label (0) is as given."""
    p = np.clip(np.asarray(true_label_probs, dtype=np.float64), 1e-9, 1 - 1e-9)
    logits = np.stack([np.log(p), np.log1p(-p)], axis=1).astype(np.float32)
    return {"logits": logits, "labels": np.zeros(len(p), dtype=np.int64),
            "loss": -np.log(p), "index": np.arange(len(p))}


# -- accuracy -------------------------------------------------------------------------------
def test_accuracy_values_are_hand_computed_percentages():
    ctx = FakeContext({
        "forget": logits_for([0, 1, 2, 0], [0, 1, 1, 1]),  # 2 of 4 right
        "retain": logits_for([0, 1, 2, 0, 1], [0, 1, 2, 0, 0]),  # 4 of 5 right
        "test": logits_for([2, 2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 0, 1]),  # 6 of 8
    })
    m = Accuracy().compute(ctx)
    assert m.values == pytest.approx({"UA": 50.0, "RA": 80.0, "TA": 75.0})
    assert set(m.values) == set(Accuracy.outputs)


def test_accuracy_needs_logits_and_labels():
    loss_only = {"loss": np.zeros(3), "index": np.arange(3)}
    ctx = FakeContext({"forget": loss_only, "retain": loss_only, "test": loss_only})
    with pytest.raises(IncompatibleComponentError, match="logits"):
        Accuracy().compute(ctx)


@pytest.fixture(scope="module")
def tiny_splits():
    problem = tiny_classifier_problem(seed=0)
    train = problem.forget.dataset
    splits = Splits(train=train, forget=problem.forget, retain=problem.retain,
                    test=problem.test, info=DataInfo("classification", 4, (10,)),
                    forget_indices=list(problem.forget.indices))
    return problem.adapter, splits


def test_accuracy_reads_the_cached_forward_passes(tiny_splits):
    adapter, splits = tiny_splits
    adapter = adapter.clone()
    with torch.no_grad():  # make the model imperfect so the numbers mean something
        adapter.model.head.weight[0].zero_()
        adapter.model.head.bias[0] = -5.0
    ctx = EvalContext(adapter, splits)
    values = Accuracy().compute(ctx).values
    passes = ctx.forward_passes
    assert passes == 3  # one batch per split
    for split, key in (("forget", "UA"), ("retain", "RA"), ("test", "TA")):
        ds = splits.get(split)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.stack([ds[i][1] for i in range(len(ds))])
        with torch.no_grad():
            acc = float((adapter.model(x).argmax(-1) == y).float().mean() * 100)
        assert values[key] == pytest.approx(100 - acc if key == "UA" else acc)
    assert values["RA"] < 90  # class 0 is never predicted any more
    MIAEfficacy().compute(ctx)
    LossMIA().compute(ctx)
    assert ctx.forward_passes == passes  # the other metrics reuse the same passes


# -- MIA-efficacy ----------------------------------------------------------------------------
def _mia_ctx(forget_probs, seed: int = 0) -> FakeContext:
    rng = np.random.default_rng(seed)
    return FakeContext({
        "retain": confidence_outputs(rng.uniform(0.95, 1.0, 300)),
        "test": confidence_outputs(rng.uniform(0.2, 0.7, 100)),
        "forget": confidence_outputs(forget_probs),
    })


def test_mia_efficacy_counts_forget_examples_predicted_non_member():
    assert MIAEfficacy().compute(_mia_ctx(np.full(40, 0.99))).values == {"MIA_efficacy": 0.0}
    assert MIAEfficacy().compute(_mia_ctx(np.full(40, 0.45))).values == {"MIA_efficacy": 100.0}
    half = np.r_[np.full(10, 0.99), np.full(30, 0.4)]
    m = MIAEfficacy().compute(_mia_ctx(half))
    assert m.values["MIA_efficacy"] == pytest.approx(75.0)
    assert m.details["n_members"] == 100  # as many retain examples as test examples
    assert m.details["n_nonmembers"] == 100


def test_mia_efficacy_uses_the_probability_of_the_true_label():
    # confidently WRONG forget predictions: the max probability is high, but the true
    # label's probability is ~0, which the attack sees as a non-member
    ctx = _mia_ctx(np.full(20, 0.001))
    assert MIAEfficacy().compute(ctx).values["MIA_efficacy"] == 100.0


def test_mia_efficacy_needs_logits():
    loss_only = {"loss": np.zeros(3), "index": np.arange(3)}
    ctx = FakeContext({"forget": loss_only, "retain": loss_only, "test": loss_only})
    with pytest.raises(IncompatibleComponentError, match="'mia'"):
        MIAEfficacy().compute(ctx)


def test_mia_efficacy_is_low_for_a_memorising_model_and_higher_after_retraining():
    train, forget, retain, test = memorisation_data()
    splits = Splits(train=train, forget=forget, retain=retain, test=test,
                    info=DataInfo("classification", 4, (20,)))
    values = {}
    for role, data in (("original", train), ("oracle", retain)):
        adapter = memorisation_classifier(data)
        ctx = EvalContext(adapter, splits)
        values[role] = {**Accuracy().compute(ctx).values, **MIAEfficacy().compute(ctx).values}
    assert values["original"]["UA"] == 0.0 and values["original"]["TA"] < 75  # memorised
    assert values["original"]["MIA_efficacy"] <= 10
    assert values["oracle"]["MIA_efficacy"] >= values["original"]["MIA_efficacy"] + 20


# -- loss MIA ---------------------------------------------------------------------------------
def _loss_ctx(forget_losses, test_losses, **extra) -> FakeContext:
    def out(losses):
        return {"loss": np.asarray(losses, dtype=np.float32), "index": np.arange(len(losses))}

    return FakeContext({"forget": out(forget_losses), "test": out(test_losses),
                        **{k: out(v) for k, v in extra.items()}})


def test_loss_mia_auc_is_one_when_forget_losses_are_far_lower():
    rng = np.random.default_rng(0)
    m = LossMIA().compute(_loss_ctx(rng.uniform(0, 0.1, 50), rng.uniform(1, 3, 80)))
    assert m.values == {"mia_auc": 1.0}
    roc = m.details["roc"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and roc["fpr"][-1] == 1.0
    assert len(roc["fpr"]) == len(roc["tpr"])


def test_loss_mia_auc_is_one_half_for_the_same_distribution():
    rng = np.random.default_rng(1)
    same = rng.exponential(size=200)
    assert LossMIA().compute(_loss_ctx(same, same)).values["mia_auc"] == pytest.approx(0.5)
    a, b = rng.exponential(size=3000), rng.exponential(size=3000)
    assert LossMIA().compute(_loss_ctx(a, b)).values["mia_auc"] == pytest.approx(0.5, abs=0.03)
    # higher forget losses than held-out: below one half
    assert LossMIA().compute(_loss_ctx(a + 5, b)).values["mia_auc"] < 0.05


def test_loss_mia_nonmember_split_is_configurable():
    ctx = _loss_ctx([0.1, 0.2], [0.0, 0.05], holdout=[1.0, 2.0])
    assert LossMIA().compute(ctx).values["mia_auc"] == 0.0
    assert LossMIA(nonmember_split="holdout").compute(ctx).values["mia_auc"] == 1.0
    with pytest.raises(IncompatibleComponentError, match="nonmember_split"):
        LossMIA(nonmember_split="nope").compute(ctx)


# -- run metrics ------------------------------------------------------------------------------
RESULTS = {
    "original": {"UA": 0.0, "RA": 100.0, "TA": 90.0, "MIA_efficacy": 1.0},
    "unlearned": {"UA": 10.0, "RA": 90.0, "TA": 85.0, "MIA_efficacy": 20.0},
    "oracle": {"UA": 12.0, "RA": 95.0, "TA": 88.0, "MIA_efficacy": 25.0},
}


def test_avg_gap_arithmetic():
    m = AvgGap().compute(RunEvalContext(results=RESULTS, run_info={}))
    assert m.values == {"avg_gap": pytest.approx((2 + 5 + 3 + 5) / 4)}
    assert m.details["gaps"] == {"UA": 2.0, "RA": 5.0, "TA": 3.0, "MIA_efficacy": 5.0}
    assert m.details["original_avg_gap"] == pytest.approx((12 + 5 + 2 + 24) / 4)
    assert AvgGap.requires == ("accuracy", "mia_efficacy") and AvgGap.scope == "run"


def test_avg_gap_needs_an_oracle_and_both_metrics():
    no_oracle = {k: v for k, v in RESULTS.items() if k != "oracle"}
    with pytest.raises(IncompatibleComponentError, match=r"oracle: \{strategy: retrain\}"):
        AvgGap().compute(RunEvalContext(results=no_oracle, run_info={}))
    no_mia = {k: {n: x for n, x in v.items() if n != "MIA_efficacy"}
              for k, v in RESULTS.items()}
    with pytest.raises(IncompatibleComponentError, match="mia_efficacy"):
        AvgGap().compute(RunEvalContext(results=no_mia, run_info={}))


def test_time_reports_seconds_and_their_ratio():
    ctx = RunEvalContext(results=RESULTS, run_info={"unlearn_seconds": 2.0,
                                                    "oracle_seconds": 8.0})
    assert Time().compute(ctx).values == {"unlearn_seconds": 2.0, "oracle_seconds": 8.0,
                                          "rte_ratio": 0.25}
    with pytest.raises(IncompatibleComponentError, match="oracle_seconds"):
        Time().compute(RunEvalContext(results=RESULTS, run_info={"unlearn_seconds": 2.0}))


def test_memory_reports_the_recorded_peaks():
    ctx = RunEvalContext(results={}, run_info={"peak_host_mb": 812.5, "peak_device_mb": 0})
    assert Memory().compute(ctx).values == {"peak_host_mb": 812.5, "peak_device_mb": 0.0}
    with pytest.raises(IncompatibleComponentError, match="peak_device_mb"):
        Memory().compute(RunEvalContext(results={}, run_info={"peak_host_mb": 1.0}))


# -- Markdown reporter --------------------------------------------------------------------------
def test_format_metrics_table():
    metrics = {"unlearned": {"UA": 2.5, "mia_auc": 0.51234}, "original": {"UA": 0.0},
               "run": {"avg_gap": 1.25, "unlearn_seconds": 123.456}}
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    assert lines[0] == "| model | UA | mia_auc |"
    assert lines[2] == "| original | 0.00 | - |"  # roles in report order, gaps marked
    assert lines[3] == "| unlearned | 2.50 | 0.5123 |"
    assert "| avg_gap | 1.25 |" in lines
    assert "| unlearn_seconds | 123.46 |" in lines
    assert format_metrics_table({"run": {"x": math.nan}}).splitlines()[-1] == "| x | nan |"
    # what the pipeline adds beside the values is not a model row
    extra = {**metrics, "details": {"unlearned": {"mia": {}}}, "run_info": {"steps": 3}}
    assert format_metrics_table(extra) == table


def test_markdown_reporter_writes_report(tmp_path):
    # the layout the pipeline gives reporters: values per role, run values, details, facts
    metrics = {**RESULTS, "run": {"avg_gap": 3.75},
               "details": {"unlearned": {"mia": {"roc": {"fpr": [0.0, 1.0]}}}},
               "run_info": {"unlearn_seconds": 1.5, "device": "cpu", "steps": 24}}
    summary = RunSummary(config={"strategy": {"name": "gradient_difference"}, "seed": 3},
                         metrics=metrics)
    paths = MarkdownReporter().report(tmp_path, summary)
    assert paths == [tmp_path / "report.md"]
    text = paths[0].read_text()
    assert "`gradient_difference`" in text
    assert "| model | UA | RA | TA | MIA_efficacy |" in text
    assert "| oracle | 12.00 | 95.00 | 88.00 | 25.00 |" in text
    assert "| avg_gap | 3.75 |" in text
    assert "| unlearn_seconds | 1.50 |" in text and "| device | cpu |" in text
    assert "roc" not in text and "| details" not in text and "| run_info" not in text


def test_loss_metric_is_the_mean_of_the_cached_per_example_losses() -> None:
    import numpy as np
    import torch
    from erasus.builtin.metrics.loss import MeanLoss
    from erasus.data import DataInfo, Splits
    from erasus.evaluation import EvalContext
    from erasus.testing import tiny_classifier_problem

    problem = tiny_classifier_problem(seed=0)
    splits = Splits(train=problem.retain, forget=problem.forget, retain=problem.retain,
                    test=problem.test, info=DataInfo(modality="classification"))
    values = MeanLoss().compute(EvalContext(problem.adapter, splits)).values
    model = problem.adapter.model
    for split, data in (("forget", problem.forget), ("retain", problem.retain),
                        ("test", problem.test)):
        x = torch.stack([data[i][0] for i in range(len(data))])
        y = torch.stack([data[i][1] for i in range(len(data))])
        with torch.no_grad():
            expected = torch.nn.functional.cross_entropy(model(x), y).item()
        assert np.isclose(values[f"{split}_loss"], expected, rtol=1e-5)
    assert values["forget_loss"] < values["test_loss"]  # the model fits its training data
