"""rmu: the seeded control vector, the updated weights, the frozen activations without a
model copy, and unlearning on the tiny trained GPT-2 measured against the oracle."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance as c
from erasus_llm.strategies import RMU, control_vector
from erasus_llm.strategies.rmu import masked_mse
from torch.utils.data.dataloader import default_collate

#: Settings for a full run on the tiny problem (6 forget facts: one batch per epoch): the
#: defaults, spelled out.
RUN = {"epochs": 100, "lr": 1e-2, "alpha": 30.0, "steering_coeff": 20.0}


def _batch(adapter, dataset):
    return adapter.prepare_batch(default_collate([dataset[i] for i in range(len(dataset))]))


def _forget_mse(strategy, adapter, problem):
    batch = _batch(adapter, problem.forget)
    with torch.no_grad():
        h = strategy.activations(adapter, batch)
    return float(masked_mse(h, strategy.control, strategy._positions(batch)))


def test_control_vector_is_fixed_per_seed():
    a = control_vector(64, 20.0, seed=5)
    assert torch.equal(a, control_vector(64, 20.0, seed=5))
    assert not torch.equal(a, control_vector(64, 20.0, seed=6))
    assert float(a.norm()) == pytest.approx(20.0, rel=1e-5)
    assert bool((a >= 0).all())  # uniform [0, 1) direction, as in the paper's code


def test_masked_mse_hand_computed():
    a = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]])
    b = torch.tensor([0.0, 1.0])
    mask = torch.tensor([[1, 0]])
    assert float(masked_mse(a, b, mask)) == pytest.approx((1 + 1) / 2)


def test_run_control_vector_and_no_model_copy(problem):
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    s1, s2, s3 = RMU(), RMU(), RMU()
    s1.prepare(problem.adapter.clone(), data, RunContext(seed=1))
    s2.prepare(problem.adapter.clone(), data, RunContext(seed=1))
    s3.prepare(problem.adapter.clone(), data, RunContext(seed=2))
    assert torch.equal(s1.control, s2.control) and not torch.equal(s1.control, s3.control)
    assert float(s1.control.norm()) == pytest.approx(s1.params.steering_coeff, rel=1e-5)
    # what it keeps: the control vector and the original values of the updated weights
    assert not any(isinstance(v, torch.nn.Module) for v in vars(s1).values())
    assert sorted(s1.frozen) == [f"transformer.h.{i}.mlp.c_proj.{w}" for i in (0, 1)
                                 for w in ("bias", "weight")]
    kept = sum(t.numel() for t in s1.frozen.values())
    total = sum(t.numel() for t in problem.adapter.model.parameters())
    assert kept < 0.2 * total


def test_unlearns_toward_the_oracle_updating_only_the_chosen_weights(problem,
                                                                     oracle_forget_loss):
    original = problem.adapter
    forget0 = c.mean_loss(original, problem.forget)
    retain0 = c.mean_loss(original, problem.retain)
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    adapter = original.clone()
    strategy = RMU(**RUN)
    strategy.prepare(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                     RunContext(seed=0))
    mse0 = _forget_mse(strategy, adapter, problem)
    strategy.unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain),
                     RunContext(seed=0))
    # the forget activations moved toward the control vector
    mse1 = _forget_mse(strategy, adapter, problem)
    assert mse1 < 0.5 * mse0, (mse0, mse1)
    # ... and the retain activations stayed with the frozen model's
    batch = _batch(adapter, problem.retain)
    with torch.no_grad():
        frozen = strategy.activations(adapter, batch, frozen=True)
        now = strategy.activations(adapter, batch)
        reference = strategy.activations(original, batch)
    # the frozen activations are exactly the original model's (no model copy needed)
    assert torch.allclose(frozen, reference, atol=1e-5)
    assert float(masked_mse(now, frozen, strategy._positions(batch))) < 0.02 * mse0
    # the behaviour: forget answers lose most of their likelihood, retain answers keep theirs
    forget1 = c.mean_loss(adapter, problem.forget)
    retain1 = c.mean_loss(adapter, problem.retain)
    assert forget1 >= forget0 + 0.5 * (oracle_forget_loss - forget0), (forget0, forget1)
    assert retain1 <= 0.15, (retain0, retain1)  # retain answer probability >= 0.86
    # only the MLP output projections of layers 0 and 1 changed; flags are restored
    after = adapter.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(strategy.frozen)
    assert all(p.requires_grad for p in adapter.model.parameters())


@pytest.mark.parametrize(("params", "match"), [
    ({"layer": 5}, "out of range"),
    ({"layer": 0, "update_layers": [1]}, "at or below"),
    ({"stop_forget_loss": 1.0}, "stop_forget_loss"),
])
def test_bad_layers_are_refused(problem, params, match):
    with pytest.raises(IncompatibleComponentError, match=match):
        RMU(**params).unlearn(problem.adapter.clone(),
                              UnlearnData(forget=problem.forget, retain=problem.retain),
                              RunContext(seed=0))


def test_update_choices_select_weights(problem):
    adapter = problem.adapter
    names = RMU(layer=-1, update="mlp", update_layers=[1]).trainable_names(adapter)
    assert names == [f"transformer.h.1.mlp.{m}.{w}" for m in ("c_fc", "c_proj")
                     for w in ("weight", "bias")]
    layer = RMU(update="layer", update_layers=[0]).trainable_names(adapter)
    assert layer and all(n.startswith("transformer.h.0.") for n in layer)


def test_needs_a_retain_set(problem):
    with pytest.raises(IncompatibleComponentError, match="retain"):
        RMU().unlearn(problem.adapter.clone(), UnlearnData(forget=problem.forget),
                      RunContext(seed=0))
