"""Behaviour of the built-in strategies on small trained classifiers."""

from __future__ import annotations

import inspect

import pytest
import torch
from erasus.adapters import ModelAdapter
from erasus.builtin.strategies.finetune import Finetune
from erasus.builtin.strategies.gradient_ascent import GradientAscent
from erasus.builtin.strategies.gradient_difference import GradientDifference
from erasus.builtin.strategies.random_label import RandomLabel
from erasus.builtin.strategies.retrain import Retrain
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy, RunContext, UnlearnData
from erasus.testing import tiny_classifier_problem
from erasus.testing.tiny import MEMORISATION_RECIPE
from erasus.testing.tiny import loss_and_accuracy as evaluate
from torch.utils.data import TensorDataset
from torch.utils.data.dataloader import default_collate

STRATEGIES = (Retrain, Finetune, GradientAscent, GradientDifference, RandomLabel)


# -- helpers -------------------------------------------------------------------------------
def run(strategy, adapter, forget, retain, seed: int = 0):
    return strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain),
                            RunContext(seed=seed))


@pytest.fixture(scope="module")
def tiny():
    """4-class blobs, MLP trained to 100% on train and test; 24 examples to forget."""
    return tiny_classifier_problem(seed=0)


class Untouchable(torch.utils.data.Dataset):
    """A forget set that fails the test if a strategy reads any of its examples."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        raise AssertionError("the strategy read a forget example")


# -- metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", STRATEGIES)
def test_strategy_metadata_is_explicit(cls):
    assert "paper" in cls.__dict__ and isinstance(cls.paper, Paper)
    assert cls.paper.url.startswith("https://") and cls.paper.year >= 2015
    assert isinstance(cls.needs, frozenset)
    assert issubclass(cls, LossStrategy) and issubclass(cls.Params, LoopParams)
    assert inspect.getdoc(cls).splitlines()[0].strip()
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"


# -- gradient ascent ---------------------------------------------------------------------------
def test_gradient_ascent_raises_forget_loss(tiny):
    adapter = tiny.adapter.clone()
    before, acc_before = evaluate(adapter, tiny.forget)
    history = run(GradientAscent(epochs=5, lr=1e-2), adapter, tiny.forget, None)
    after, acc_after = evaluate(adapter, tiny.forget)
    assert before < 0.05
    assert after > 1.0
    assert acc_after < acc_before - 10
    assert history.num_steps == 5  # 24 forget examples, batch 64: one step per epoch
    for step in history.steps:
        assert step["loss"] == pytest.approx(-step["forget_loss"], rel=1e-5)
        assert step["forget_loss"] >= 0
    # the loss logged at each step is that of the weights before the update: it climbs
    assert history.steps[-1]["forget_loss"] > history.steps[0]["forget_loss"]


def test_gradient_ascent_does_not_need_a_retain_set(tiny):
    assert GradientAscent.needs == frozenset()
    adapter = tiny.adapter.clone()
    run(GradientAscent(epochs=1, lr=1e-3), adapter, tiny.forget, None)


# -- gradient difference -----------------------------------------------------------------------
def test_gradient_difference_forgets_while_keeping_retain_accuracy(tiny):
    _, retain_before = evaluate(tiny.adapter, tiny.retain)
    forget_before, _ = evaluate(tiny.adapter, tiny.forget)
    adapter = tiny.adapter.clone()
    history = run(GradientDifference(epochs=10, lr=5e-3), adapter, tiny.forget, tiny.retain)
    forget_after, forget_acc = evaluate(adapter, tiny.forget)
    _, retain_after = evaluate(adapter, tiny.retain)
    assert forget_after > forget_before + 0.5
    assert forget_acc < 90
    assert retain_after > retain_before - 10

    # the retain term is what keeps utility: plain ascent with the same steps loses more
    ascent = tiny.adapter.clone()
    run(GradientAscent(epochs=10, lr=5e-3), ascent, tiny.forget, None)
    assert evaluate(ascent, tiny.retain)[1] < retain_after - 5

    for step in history.steps:
        assert step["loss"] == pytest.approx(-step["forget_loss"] + step["retain_loss"],
                                             rel=1e-4, abs=1e-6)


def test_gradient_difference_weights_enter_the_loss(tiny):
    strategy = GradientDifference(forget_weight=2.0, retain_weight=0.5)
    adapter = tiny.adapter.clone()
    forget = adapter.prepare_batch(default_collate([tiny.forget[i] for i in range(8)]))
    retain = adapter.prepare_batch(default_collate([tiny.retain[i] for i in range(8)]))
    with torch.no_grad():
        parts = strategy.loss(adapter, forget=forget, retain=retain)
        f = adapter.per_example_loss(forget).mean()
        r = adapter.per_example_loss(retain).mean()
    assert float(parts["forget_loss"]) == pytest.approx(float(f))
    assert float(parts["retain_loss"]) == pytest.approx(float(r))
    assert float(parts["loss"]) == pytest.approx(float(-2.0 * f + 0.5 * r))


def test_gradient_difference_requires_retain(tiny):
    assert GradientDifference.needs == frozenset({"retain"})
    with pytest.raises(IncompatibleComponentError, match="retain"):
        run(GradientDifference(epochs=1), tiny.adapter.clone(), tiny.forget, None)


# -- finetune ---------------------------------------------------------------------------------
def test_finetune_keeps_retain_accuracy_and_never_reads_forget(tiny):
    adapter = tiny.adapter.clone()
    _, before = evaluate(adapter, tiny.retain)
    history = run(Finetune(epochs=3), adapter, Untouchable(len(tiny.forget)), tiny.retain)
    _, after = evaluate(adapter, tiny.retain)
    assert after >= before - 2
    assert history.num_steps == 3 * 4  # 216 retain examples, batch 64


def test_finetune_trains_from_the_current_weights(memorised):
    original, forget, retain = memorised.original, memorised.forget, memorised.retain
    adapter = original.clone()
    run(Finetune(epochs=2, lr=1e-3), adapter, forget, retain)
    # a few small steps from an already fitted model: still fits the retain set perfectly
    # (a re-initialised model could not after 2 epochs)
    assert evaluate(adapter, retain)[1] == pytest.approx(100.0)
    fresh = original.clone()
    fresh.reset_parameters()
    run(Finetune(epochs=2, lr=1e-3), fresh, forget, retain)
    assert evaluate(fresh, retain)[1] < 90


# -- retrain ----------------------------------------------------------------------------------
def test_retrain_from_scratch_forgets_like_held_out_data(memorised):
    original, forget, retain, test = (memorised.original, memorised.forget, memorised.retain,
                                      memorised.test)
    _, forget_acc_original = evaluate(original, forget)
    _, test_acc = evaluate(original, test)
    assert forget_acc_original == 100.0 and test_acc < 75  # memorised, not generalised

    oracle = original.clone()
    run(Retrain(**MEMORISATION_RECIPE), oracle, Untouchable(len(forget)), retain)
    _, retain_acc = evaluate(oracle, retain)
    forget_loss, forget_acc = evaluate(oracle, forget)
    _, oracle_test_acc = evaluate(oracle, test)
    assert retain_acc >= 95
    assert forget_acc <= 85  # no longer memorised...
    assert abs(forget_acc - oracle_test_acc) <= 20  # ...but at the held-out level
    assert forget_loss > 1.0


def test_retrain_reinitialises_deterministically_from_the_seed(tiny):
    strategy = Retrain()
    a, b, c = (tiny.adapter.clone() for _ in range(3))
    data = UnlearnData(forget=tiny.forget, retain=tiny.retain)
    torch.manual_seed(123)
    strategy.prepare(a, data, RunContext(seed=5))
    state = torch.random.get_rng_state()
    strategy.prepare(b, data, RunContext(seed=5))
    strategy.prepare(c, data, RunContext(seed=6))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    wa, wb, wc, w0 = (dict(m.model.named_parameters())["head.weight"]
                      for m in (a, b, c, tiny.adapter))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    assert not torch.equal(wa, w0)
    # after reset the model is untrained: chance-level on the forget set
    assert evaluate(a, tiny.forget)[1] < 60


def test_retrain_trains_an_original_on_the_full_training_set():
    problem = tiny_classifier_problem(seed=1)
    train = problem.forget.dataset
    adapter = problem.adapter.clone()
    adapter.reset_parameters()
    run(Retrain(epochs=10, lr=1e-2), adapter, None, train)
    assert evaluate(adapter, train)[1] >= 95
    assert evaluate(adapter, problem.test)[1] >= 90


# -- random label ------------------------------------------------------------------------------
def test_random_labels_are_fixed_per_index_wrong_and_seeded(tiny):
    adapter = tiny.adapter.clone()
    data = UnlearnData(forget=tiny.forget, retain=tiny.retain)
    a, b, c = RandomLabel(), RandomLabel(), RandomLabel()
    a.prepare(adapter, data, RunContext(seed=0))
    b.prepare(adapter, data, RunContext(seed=0))
    c.prepare(adapter, data, RunContext(seed=1))
    true = torch.stack([tiny.forget[i][1] for i in range(len(tiny.forget))])
    assert torch.equal(a.true_labels, true)
    assert len(a.random_labels) == len(tiny.forget)
    assert bool((a.random_labels != true).all())
    assert bool(((a.random_labels >= 0) & (a.random_labels < 4)).all())
    assert torch.equal(a.random_labels, b.random_labels)
    assert not torch.equal(a.random_labels, c.random_labels)

    # the loss looks labels up by the batch's dataset index, whatever the batch order
    index = [5, 0, 17, 3]
    batch = adapter.prepare_batch(default_collate([tiny.forget[i] for i in index]))
    batch["index"] = torch.tensor(index)
    retain = adapter.prepare_batch(default_collate([tiny.retain[i] for i in range(4)]))
    with torch.no_grad():
        parts = a.loss(adapter, forget=batch, retain=retain)
        expected = torch.nn.functional.cross_entropy(
            adapter.logits(batch), a.random_labels[torch.tensor(index)])
        retain_loss = adapter.per_example_loss(retain).mean()
    assert float(parts["forget_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["loss"]) == pytest.approx(float(expected + retain_loss), rel=1e-5)


def test_random_label_lowers_forget_accuracy(tiny):
    adapter = tiny.adapter.clone()
    _, before = evaluate(adapter, tiny.forget)
    strategy = RandomLabel(epochs=10, lr=1e-2)
    history = run(strategy, adapter, tiny.forget, tiny.retain)
    _, after = evaluate(adapter, tiny.forget)
    assert before == 100.0
    assert after <= before - 20
    # the loss on the random labels is what the strategy minimises: it went down
    assert history.steps[-1]["forget_loss"] < history.steps[0]["forget_loss"] / 2


class _RegressionAdapter(ModelAdapter):
    """An adapter with a per-example loss but no labels or classes."""

    name = "toy_regression"
    modalities = ("regression",)

    def prepare_batch(self, batch):
        return {"x": batch[0], "y": batch[1]}

    def per_example_loss(self, batch):
        return ((self.model(batch["x"]).squeeze(-1) - batch["y"]) ** 2)


def test_random_label_refuses_adapters_without_labels():
    x = torch.randn(16, 3)
    data = TensorDataset(x, x.sum(-1))
    adapter = _RegressionAdapter(torch.nn.Linear(3, 1))
    with pytest.raises(IncompatibleComponentError, match="classification") as info:
        run(RandomLabel(epochs=1), adapter, data, data)
    assert "gradient_ascent" in str(info.value)
    # ...while a strategy that needs only a per-example loss runs on it
    run(GradientDifference(epochs=1), adapter, data, data)


def test_no_loop_hands_a_batch_smaller_than_the_adapters_minimum() -> None:
    """Contrastive adapters declare min_batch_size = 2: a last batch of one is merged."""
    from erasus.data import chunk, index_loader
    from erasus.training import epoch_batches

    assert [len(b) for b in chunk(list(range(65)), 64, min_size=2)] == [65]
    assert [len(b) for b in chunk(list(range(65)), 64)] == [64, 1]
    assert [len(b) for b in chunk(list(range(129)), 64, min_size=2)] == [64, 65]
    batches = epoch_batches(65, 64, seed=0, epoch=0, min_size=2)
    assert sorted(i for b in batches for i in b) == list(range(65)) and len(batches) == 1
    sizes = [len(ix) for ix, _ in index_loader(list(range(257)), batch_size=256,
                                                min_batch_size=2)]
    assert sizes == [257]


def test_index_loader_shuffles_like_a_torch_dataloader_with_the_same_seed() -> None:
    import torch
    from erasus.data import index_loader
    from torch.utils.data import DataLoader

    data = list(range(50))
    ours = [ix.tolist() for ix, _ in index_loader(data, batch_size=16, shuffle=True, seed=3)]
    theirs = [b.tolist() for b in DataLoader(data, batch_size=16, shuffle=True,
                                             generator=torch.Generator().manual_seed(3))]
    assert ours == theirs
