"""The Python API: :class:`erasus.Unlearner` on a tiny classifier and on the digits benchmark.

The unlearner must never modify the model it is given, must select positions in the
dataset whatever loader wraps it, must accept dict (Hugging Face style) batches, and must
give the same unlearned weights as ``erasus.run`` for the same configuration and seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import erasus
import pytest
from erasus.errors import ConfigError, ErasusError, IncompatibleComponentError
from erasus.plugins import get_plugin_manager

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
# enough to forget on the tiny problem: UA goes from 0 to well above it
FORGET_HARD = {"epochs": 10, "lr": 1e-2, "batch_size": 64}


@pytest.fixture(scope="module")
def pm() -> Any:
    return get_plugin_manager(entrypoints=False)


@pytest.fixture(scope="module")
def problem() -> Any:
    from erasus.testing import tiny_classifier_problem

    return tiny_classifier_problem()


def snapshot(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def mean_loss(model: Any, dataset: Any) -> float:
    import torch
    import torch.nn.functional as F

    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def test_fit_unlearns_a_copy_and_leaves_the_input_model_alone(problem: Any, pm: Any) -> None:
    model = problem.adapter.model
    before = snapshot(model)
    forget_loss_before = mean_loss(model, problem.forget)
    unlearner = erasus.Unlearner(model, strategy="gradient_difference", selector="random",
                                 budget=0.5, plugin_manager=pm, **FORGET_HARD)
    result = unlearner.fit(problem.forget, problem.retain)
    unlearned, history = result
    assert result.model is unlearned and result.history is history

    assert unlearned is not model
    assert same_weights(snapshot(model), before), "the input model was modified"
    assert not same_weights(snapshot(unlearned), before)
    assert mean_loss(model, problem.forget) == forget_loss_before
    assert mean_loss(unlearned, problem.forget) > 10 * forget_loss_before

    assert history.num_steps == 10  # 12 selected examples, one batch per epoch
    assert [s["step"] for s in history.steps] == [float(i) for i in range(1, 11)]
    assert history.steps[-1]["forget_loss"] > history.steps[0]["forget_loss"]

    indices = [int(i) for i in unlearner.selection_.indices]
    assert len(indices) == len(set(indices)) == math.ceil(0.5 * len(problem.forget))
    assert all(0 <= i < len(problem.forget) for i in indices)
    assert len(unlearner.selection_.scores) == len(indices)


def test_loaders_give_the_same_selection_and_weights_as_datasets(problem: Any,
                                                                 pm: Any) -> None:
    import torch
    from torch.utils.data import DataLoader

    def fit(forget: Any, retain: Any, **extra: Any) -> tuple[list[int], dict[str, Any]]:
        unlearner = erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                                     selector="random", budget=0.5, plugin_manager=pm,
                                     epochs=3, lr=1e-2, **extra)
        model, _ = unlearner.fit(forget, retain)
        return [int(i) for i in unlearner.selection_.indices], snapshot(model)

    sel_ds, w_ds = fit(problem.forget, problem.retain, batch_size=4)
    g = torch.Generator().manual_seed(123)
    sel_dl, w_dl = fit(DataLoader(problem.forget, batch_size=4, shuffle=True, generator=g),
                       DataLoader(problem.retain, batch_size=4, shuffle=True, generator=g))
    assert sel_dl == sel_ds
    # the loaders' batch size was adopted, their shuffling ignored: same training
    assert same_weights(w_dl, w_ds)
    # (and the batch size matters, so the comparison above is not vacuous)
    _, w_big = fit(problem.forget, problem.retain, batch_size=64)
    assert not same_weights(w_big, w_ds)


class DictDataset:
    """Hugging Face style items: ``{"pixel_values": x, "labels": y}``."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, y = self.base[i]
        return {"pixel_values": x, "labels": y}


def test_dict_batches_train_like_tuple_batches(problem: Any, pm: Any) -> None:
    def fit(forget: Any, retain: Any) -> tuple[Any, Any]:
        unlearner = erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                                     plugin_manager=pm, **FORGET_HARD)
        return unlearner.fit(forget, retain)

    model, history = fit(DictDataset(problem.forget), DictDataset(problem.retain))
    assert history.num_steps == 10
    assert mean_loss(model, problem.forget) > 10 * mean_loss(problem.adapter.model,
                                                             problem.forget)
    tuple_model, tuple_history = fit(problem.forget, problem.retain)
    assert same_weights(snapshot(model), snapshot(tuple_model))
    assert history.steps == tuple_history.steps


def test_unknown_parameter_is_a_config_error_with_a_suggestion(problem: Any, pm: Any) -> None:
    with pytest.raises(ConfigError) as info:
        erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                         plugin_manager=pm, epochz=3)
    (problem_,) = info.value.problems
    assert problem_.path == "epochz"
    assert "did you mean 'epochs'" in problem_.message


def test_bad_names_and_values_are_config_errors(problem: Any, pm: Any) -> None:
    with pytest.raises(ConfigError) as info:
        erasus.Unlearner(problem.adapter.model, strategy="gradient_diference",
                         selector="randm", plugin_manager=pm)
    text = str(info.value)
    assert "did you mean 'gradient_difference'" in text and "did you mean 'random'" in text
    with pytest.raises(ConfigError) as info:
        erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                         plugin_manager=pm, lr=-1.0)
    assert [p.path for p in info.value.problems] == ["strategy.lr"]
    with pytest.raises(ConfigError) as info:
        erasus.Unlearner(problem.adapter.model, selector="random", budget=0.0,
                         plugin_manager=pm)
    assert [p.path for p in info.value.problems] == ["selector.budget"]


def test_a_strategy_needing_retain_data_says_so(problem: Any, pm: Any) -> None:
    unlearner = erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                                 plugin_manager=pm, epochs=1)
    with pytest.raises(IncompatibleComponentError, match="retain"):
        unlearner.fit(problem.forget)
    # a forget-only strategy needs no retain set
    _, history = erasus.Unlearner(problem.adapter.model, strategy="gradient_ascent",
                                  plugin_manager=pm, epochs=1).fit(problem.forget)
    assert history.num_steps == 1


def _accuracy(model: Any, dataset: Any) -> float:
    import torch

    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
    with torch.no_grad():
        return 100.0 * int((model(x).argmax(-1) == y).sum()) / len(y)


def _loss_auc(model: Any, members: Any, nonmembers: Any) -> float:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    def losses(dataset: Any) -> Any:
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        y = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
        with torch.no_grad():
            return F.cross_entropy(model(x), y, reduction="none").numpy()

    m, n = losses(members), losses(nonmembers)
    labels = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    return float(roc_auc_score(labels, -np.concatenate([m, n])))


def test_evaluate_matches_a_direct_computation(problem: Any, pm: Any) -> None:
    unlearner = erasus.Unlearner(problem.adapter.model, strategy="gradient_difference",
                                 plugin_manager=pm, **FORGET_HARD)
    with pytest.raises(ErasusError, match="fit"):
        unlearner.evaluate(problem.forget, problem.retain, problem.test)  # before fit()
    model, _ = unlearner.fit(problem.forget, problem.retain)
    results = unlearner.evaluate(problem.forget, problem.retain, problem.test,
                                 metrics=["accuracy", "mia"])
    assert {"original", "unlearned"} <= set(results)
    assert "oracle" not in results
    for role, net in (("original", problem.adapter.model), ("unlearned", model)):
        net.eval()
        values = results[role]
        assert values["UA"] == pytest.approx(100.0 - _accuracy(net, problem.forget), abs=1e-6)
        assert values["RA"] == pytest.approx(_accuracy(net, problem.retain), abs=1e-6)
        assert values["TA"] == pytest.approx(_accuracy(net, problem.test), abs=1e-6)
        assert values["mia_auc"] == pytest.approx(
            _loss_auc(net, problem.forget, problem.test), abs=1e-9)
    assert results["unlearned"]["UA"] > results["original"]["UA"]


def test_the_api_and_run_give_the_same_unlearned_model(tmp_path: Path, pm: Any,
                                                       tmp_path_factory: Any) -> None:
    from erasus.config import load_config
    from erasus.pipeline import _cache_dir, load_original
    from safetensors.torch import load_file

    overrides = ["strategy.name=gradient_difference", "strategy.epochs=1", "oracle=null",
                 "metrics=[accuracy]", "selector.name=random", "selector.budget=0.5",
                 f"run.cache_dir={tmp_path_factory.getbasetemp() / 'cache'}"]
    result = erasus.run(QUICKSTART, overrides=overrides, output=tmp_path / "run",
                        plugin_manager=pm, progress=False)

    resolved = load_config(QUICKSTART, pm.registry, overrides)
    splits = resolved.data.create().load(seed=resolved.config.seed)
    original, _, _ = load_original(resolved, splits, _cache_dir(resolved), False)
    original_weights = snapshot(original.model)
    strategy_params = resolved.strategy.params.model_dump()
    unlearner = erasus.Unlearner(original, strategy="gradient_difference", selector="random",
                                 budget=0.5, seed=resolved.config.seed, plugin_manager=pm,
                                 **strategy_params)
    model, history = unlearner.fit(splits.forget, splits.retain)

    assert same_weights(snapshot(original.model), original_weights)
    assert [int(i) for i in unlearner.selection_.indices] == \
        [int(i) for i in result.selection.indices]
    assert history.steps == result.history.steps
    assert same_weights(snapshot(model), load_file(str(result.run_dir / "model" /
                                                       "model.safetensors")))
    values = unlearner.evaluate(splits.forget, splits.retain, splits.test,
                                metrics=["accuracy"])
    for role in ("original", "unlearned"):
        for key in ("UA", "RA", "TA"):
            assert values[role][key] == result.metrics[role][key]


def test_a_batch_without_labels_gets_an_error_naming_the_model_and_the_keys() -> None:
    import torch
    from erasus.builtin.models.classifier import inputs_and_labels
    from erasus.errors import IncompatibleComponentError

    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    assert inputs_and_labels({"pixel_values": x, "label": y}, "classifier") == (x, y)
    assert inputs_and_labels((x, y), "classifier") == (x, y)
    with pytest.raises(IncompatibleComponentError,
                       match=r"videomae batches need an input key \(video\) and a label key"):
        inputs_and_labels({"video": x}, "videomae", ("video",), ("labels",))
    with pytest.raises(IncompatibleComponentError, match="got str"):
        inputs_and_labels("x", "classifier")
