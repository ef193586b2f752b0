"""SISA: the partition, the ensemble, sharded sliced training and exact shard unlearning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from erasus.errors import IncompatibleComponentError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained():
    """The conformance suite's SISA problem: 3 MLP shards x 2 slices on 240 blob points."""
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.builtin.strategies.sisa import _tiny_sisa_problem

    torch.set_num_threads(1)
    return _tiny_sisa_problem(ClassifierAdapter, 0)


def _train_set(problem):
    from torch.utils.data import ConcatDataset

    return ConcatDataset([problem.forget, problem.retain])


def _split(train, forget_idx):
    from torch.utils.data import Subset

    gone = set(forget_idx)
    return (Subset(train, list(forget_idx)),
            Subset(train, [i for i in range(len(train)) if i not in gone]))


def _unlearn(problem, forget_idx, strategy=None, record=None):
    from erasus.builtin.strategies.sisa import Sisa
    from erasus.strategy import RunContext, UnlearnData

    strategy = strategy or Sisa(**problem.strategy_params["sisa"])
    adapter = problem.adapter.clone()
    forget, retain = _split(_train_set(problem), forget_idx)
    history = strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain,
                                                    forget_train_indices=list(forget_idx)),
                               RunContext(seed=0, record=record if record is not None
                                          else problem.record))
    return adapter, history, strategy


def _accuracy(model, dataset):
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


# -- partition ---------------------------------------------------------------------------
def test_partition_is_a_seeded_balanced_partition_by_training_index():
    from erasus.partition import SisaPartition, sisa_partition

    p = sisa_partition(103, shards=4, slices=3, seed=7)
    everything = [i for k in range(4) for i in p.shard(k)]
    assert sorted(everything) == list(range(103))  # disjoint and complete
    sizes = [len(p.shard(k)) for k in range(4)]
    assert max(sizes) - min(sizes) <= 1
    assert all(len(part) in (8, 9) for shard in p.assignment for part in shard)
    assert sisa_partition(103, 4, 3, 7) == p
    assert sisa_partition(103, 4, 3, 8) != p
    i = p.assignment[2][1][0]
    assert p.locate(i) == (2, 1)
    assert p.affected([p.assignment[2][2][0], i, p.assignment[0][2][1]]) == {0: 2, 2: 1}
    assert p.upto(2, 1, removed=[i]) == list(p.assignment[2][0]) + list(p.assignment[2][1][1:])
    assert SisaPartition.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="cannot fill"):
        sisa_partition(5, 2, 3, 0)


# -- ensemble ----------------------------------------------------------------------------
def test_ensemble_aggregates_softmax_mean_and_majority_vote():
    from erasus.ensemble import aggregate

    logits = torch.tensor([[[3.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]], [[0.0, 2.5, 0.0]]])
    mean = aggregate(logits, "softmax_mean").exp()
    assert torch.allclose(mean, torch.softmax(logits, -1).mean(0))
    vote = aggregate(logits, "majority_vote")
    assert int(vote.argmax()) == 1  # two of three members vote for class 1
    assert torch.allclose(vote.exp().sum(-1), torch.ones(1))
    # a tie (one vote each) goes to the higher mean probability
    tie = torch.tensor([[[5.0, 0.0]], [[0.0, 0.1]]])
    assert int(aggregate(tie, "majority_vote").argmax()) == 0
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(logits, "median")


def test_classifier_builds_saves_and_loads_an_ensemble(tmp_path):
    from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
    from erasus.data import DataInfo
    from erasus.ensemble import Ensemble

    info = DataInfo("classification", num_classes=3, input_shape=(5,))
    adapter = ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=8, ensemble=3,
                                                       aggregation="majority_vote"), info)
    assert isinstance(adapter.model, Ensemble) and len(adapter.model) == 3
    adapter.save(tmp_path)
    loaded = ClassifierAdapter.load(tmp_path)
    assert isinstance(loaded.model, Ensemble) and loaded.model.aggregation == "majority_vote"
    x = torch.randn(6, 5)
    assert torch.equal(loaded.model(x), adapter.model(x))
    assert adapter.features({"inputs": x}).shape == (6, 3 * 8)


# -- training ----------------------------------------------------------------------------
def test_training_checkpoints_every_slice_and_the_aggregate_is_accurate(trained):
    from erasus.builtin.strategies.sisa import STATE_DIR, SisaState

    state = SisaState.from_record(trained.record)
    assert (trained.record.directory / STATE_DIR / "sisa.json").is_file()
    part = state.partition
    assert (part.shards, part.slices, part.n) == (3, 2, 240)
    assert sorted(state.checkpoints) == [(k, r) for k in range(3) for r in range(3)]
    members = trained.adapter.model.members
    for k in range(3):  # the model holds each shard's last checkpoint
        last = state.weights(k, 2)
        assert all(torch.equal(members[k].state_dict()[n], t) for n, t in last.items())
        assert not torch.equal(state.weights(k, 1)["head.weight"], last["head.weight"])
    test = trained.test
    ensemble_acc = _accuracy(trained.adapter.model, test)
    member_accs = [_accuracy(m, test) for m in members]
    assert ensemble_acc >= 0.9
    assert ensemble_acc >= min(member_accs)


# -- unlearning --------------------------------------------------------------------------
def test_unlearning_retrains_only_the_affected_shard_exactly(trained):
    from erasus.builtin.strategies.sisa import SisaState, _member_adapter, train_shard

    state = SisaState.from_record(trained.record)
    part = state.partition
    forget_idx = sorted(part.assignment[1][1][:4])  # shard 1, second slice only
    adapter, history, strategy = _unlearn(trained, forget_idx)
    before = trained.adapter.model.members
    after = adapter.model.members
    for k in (0, 2):  # unaffected shards: bit for bit
        assert all(torch.equal(a, b) for a, b in zip(before[k].state_dict().values(),
                                                     after[k].state_dict().values(),
                                                     strict=True))
    assert not torch.equal(before[1].head.weight, after[1].head.weight)
    # it restarted from the checkpoint after slice 1: only slice 2 was retrained
    assert [(h["shard"], h["slice"]) for h in history.steps] == [(1.0, 2.0)]

    # the retrained shard equals training shard 1 from scratch without the forget points
    member = _member_adapter(trained.adapter.clone(), 1)
    member.model.load_state_dict(state.weights(1, 0))
    gone = set(forget_idx)
    slices = [[i for i in s if i not in gone] for s in part.assignment[1]]
    train_shard(member, _train_set(trained), slices, recipe=state.recipe, seed=part.seed, k=1)
    assert all(torch.equal(a, b) for a, b in zip(member.model.state_dict().values(),
                                                 after[1].state_dict().values(), strict=True))
    assert strategy.state.removed == forget_idx
    assert torch.equal(strategy.state.weights(1, 2)["head.weight"], after[1].head.weight)
    assert torch.equal(strategy.state.weights(0, 2)["head.weight"],
                       state.weights(0, 2)["head.weight"])


def test_unlearning_raises_the_forget_loss_and_keeps_test_accuracy(trained):
    from erasus.testing.conformance import mean_loss

    forget_idx = list(range(24))  # spread over every shard
    adapter, _, _ = _unlearn(trained, forget_idx)
    forget, _ = _split(_train_set(trained), forget_idx)
    assert mean_loss(adapter, forget) > 2 * mean_loss(trained.adapter, forget)
    assert _accuracy(adapter.model, trained.test) >= _accuracy(trained.adapter.model,
                                                                trained.test) - 0.05


def test_sequential_requests_use_the_updated_state(trained, tmp_path):
    from erasus.builtin.strategies.sisa import Sisa, SisaState
    from erasus.strategy import RunContext, UnlearnData

    part = SisaState.from_record(trained.record).partition
    first = sorted(part.assignment[0][1][:2])
    adapter, _, strategy = _unlearn(trained, first)
    second = sorted(part.assignment[2][1][:2])
    train = _train_set(trained)
    gone = set(first) | set(second)
    from torch.utils.data import Subset

    retain = Subset(train, [i for i in range(len(train)) if i not in gone])
    record = strategy.state.save_record(tmp_path / "after-first")
    fresh = Sisa(**trained.strategy_params["sisa"])
    fresh.unlearn(adapter, UnlearnData(forget=Subset(train, second), retain=retain,
                                       forget_train_indices=second),
                  RunContext(seed=0, record=record))
    assert fresh.state.removed == sorted(gone)
    # asking to remove an example that is already gone is refused
    with pytest.raises(IncompatibleComponentError, match="already removed"):
        Sisa(**trained.strategy_params["sisa"]).unlearn(
            adapter, UnlearnData(forget=Subset(train, first), retain=retain,
                                 forget_train_indices=first),
            RunContext(seed=0, record=fresh.state.save_record(tmp_path / "after-second")))


def test_sisa_refuses_what_it_cannot_unlearn_exactly(trained):
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.builtin.strategies.sisa import Sisa
    from erasus.strategy import RunContext, UnlearnData
    from erasus.testing.conformance import tiny_problem
    from torch.utils.data import Subset

    recipe = trained.strategy_params["sisa"]
    plain = tiny_problem(ClassifierAdapter, 0)
    data = UnlearnData(forget=plain.forget, retain=plain.retain,
                       forget_train_indices=list(range(len(plain.forget))))
    with pytest.raises(IncompatibleComponentError, match="ensemble: 3"):
        Sisa(**recipe).unlearn(plain.adapter, data, RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="SISA training state"):
        Sisa(**recipe).unlearn(trained.adapter.clone(), data, RunContext(seed=0))
    with pytest.raises(IncompatibleComponentError, match="recipe"):
        _unlearn(trained, [0], strategy=Sisa(**{**recipe, "epochs": 3}))
    train = _train_set(trained)
    shuffled = Subset(train, list(range(len(train) - 1, 0, -1)))  # retain out of order
    with pytest.raises(IncompatibleComponentError, match="not the one the model was trained"):
        Sisa(**recipe).unlearn(trained.adapter.clone(), UnlearnData(
            forget=Subset(train, [0]), retain=shuffled, forget_train_indices=[0]),
            RunContext(seed=0, record=trained.record))
    tampered = trained.adapter.clone()
    with torch.no_grad():
        tampered.model.members[0].head.bias.add_(0.1)
    forget, retain = _split(train, [0])
    with pytest.raises(IncompatibleComponentError, match="changed after SISA training"):
        Sisa(**recipe).unlearn(tampered, UnlearnData(forget=forget, retain=retain,
                                                     forget_train_indices=[0]),
                               RunContext(seed=0, record=trained.record))


def test_erasus_run_trains_sisa_and_unlearns_with_the_bundled_config(tmp_path):
    """configs/sisa.yaml end to end (train: {name: sisa}), on a smaller recipe."""
    import erasus
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.ensemble import Ensemble

    small = [f"{section}.{key}={value}" for section in ("train", "strategy")
             for key, value in (("epochs", 2), ("slices", 2))]
    result = erasus.run(ROOT / "configs" / "sisa.yaml", output=tmp_path / "run",
                        overrides=[f"run.cache_dir={tmp_path / 'cache'}", "run.progress=false",
                                   "reporters=[]", "metrics=[accuracy]", *small])

    model = ClassifierAdapter.load(result.run_dir / "model")
    assert isinstance(model.model, Ensemble) and len(model.model) == 4
    shards = {step["shard"] for step in result.history.steps}
    assert shards and shards <= {0.0, 1.0, 2.0, 3.0}
    assert result.metrics["unlearned"]["TA"] > 80
