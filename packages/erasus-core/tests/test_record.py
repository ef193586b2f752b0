"""The training record, the selection context and the shared loop's early stopping."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.gradients import hvp, mean_grad, per_example_grads
from erasus.hookspecs import hookimpl
from erasus.plugins import get_plugin_manager
from erasus.record import Recorder, TrainingRecord, record_kinds, require_record
from erasus.selection import Selection, Selector, SelectorParams
from erasus.testing.tiny import record_training, tiny_classifier_problem


@pytest.fixture(scope="module")
def recorded():
    return record_training(tiny_classifier_problem(seed=0),
                           {"checkpoints", "correctness", "updates"})


def test_record_kinds_are_read_from_needs():
    assert record_kinds({"retain", "training_checkpoints", "training_updates",
                         "training_bogus"}) == {"checkpoints", "updates"}


def test_the_record_holds_one_checkpoint_per_epoch_and_every_step(recorded):
    record = recorded.record
    n_train = len(recorded.forget) + len(recorded.retain)
    assert record.train_size == n_train
    checkpoints = record.checkpoints()
    assert [c.epoch for c in checkpoints] == list(range(20))  # retrain's 20 epochs
    assert all(c.lr > 0 for c in checkpoints)
    # the last checkpoint is the trained model
    probe = recorded.adapter.clone()
    record.load_checkpoint(checkpoints[-1], probe)
    for (name, a), b in zip(recorded.adapter.model.state_dict().items(),
                            probe.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # every training example appears exactly once per epoch in the step indices
    seen = np.concatenate(record.step_indices())
    assert np.array_equal(np.bincount(seen, minlength=n_train), np.full(n_train, 20))


def test_correctness_is_recorded_for_every_example_every_epoch(recorded):
    table = recorded.record.correctness()
    assert table.shape == (20, recorded.record.train_size)
    assert set(np.unique(table)) <= {0, 1}
    assert table[-1].mean() > table[0].mean()  # the model learned


def test_replaying_the_updates_backwards_returns_the_initial_weights(recorded):
    record = recorded.record
    model = recorded.adapter.clone().model
    params = dict(model.named_parameters())
    with torch.no_grad():
        for _, delta in record.updates():
            for name, d in delta.items():
                params[name] -= d
    fresh = recorded.adapter.clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # record_training's seed: retrain re-initialises with it
        fresh.reset_parameters()
    for name, p in fresh.model.named_parameters():
        assert torch.allclose(params[name], p, atol=1e-5), name


def test_a_missing_record_gives_an_error_that_says_how_to_get_one(recorded):
    with pytest.raises(IncompatibleComponentError,
                       match=r"'selector x' needs the original model's training updates.*"
                             r"leave model\.path unset"):
        require_record(None, "updates", "selector x")
    only_ckpt = record_training(tiny_classifier_problem(seed=0), {"checkpoints"})
    with pytest.raises(IncompatibleComponentError, match="holds only checkpoints"):
        require_record(only_ckpt.record, "correctness", "selector x")
    with pytest.raises(ValueError, match="unknown record kinds"):
        Recorder(recorded.record.directory, {"weights"}, 3)
    with pytest.raises(FileNotFoundError, match=r"record\.json"):
        TrainingRecord(recorded.record.directory / "checkpoints")


class _LastCheckpointLoss(Selector):
    """Test selector: the forget examples with the highest loss at the first checkpoint."""

    name = "first_checkpoint_loss"
    modalities = ("any",)
    needs = frozenset({"training_checkpoints"})
    Params = SelectorParams
    paper = None
    seen: ClassVar[dict[str, Any]] = {}

    def select(self, adapter, forget, *, seed=0, collate_fn=None, context=None):
        from erasus.selection import resolve_budget

        record = require_record(context.record, "checkpoints", self.name)
        _LastCheckpointLoss.seen.update(record=record, train_idx=context.forget_train_indices,
                                        test=context.test, retain=context.retain)
        k = resolve_budget(self.params.budget, len(forget))
        return Selection(indices=np.arange(k), scores=np.ones(k))


class _Plugin:
    @staticmethod
    @hookimpl
    def erasus_register_selectors(register):
        register(_LastCheckpointLoss)


def _config(tmp_path, **selector):
    return {"seed": 0, "model": {"name": "classifier", "arch": "mlp", "hidden": 16},
            "data": {"name": "digits", "forget": {"kind": "random", "fraction": 0.05}},
            "train": {"epochs": 2},
            "selector": {"name": "first_checkpoint_loss", **selector},
            "strategy": {"name": "gradient_ascent", "epochs": 1},
            "metrics": ["accuracy"],
            "run": {"output_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c")}}


def test_the_pipeline_records_what_the_selector_needs_and_passes_the_context(tmp_path):
    import erasus

    pm = get_plugin_manager(plugins=(("recordtest", _Plugin),))
    _LastCheckpointLoss.seen.clear()
    result = erasus.run(_config(tmp_path, budget=3), plugin_manager=pm)
    seen = _LastCheckpointLoss.seen
    assert [c.epoch for c in seen["record"].checkpoints()] == [0, 1]
    from erasus.builtin.datasets.digits import Digits

    splits = Digits(forget={"kind": "random", "fraction": 0.05}).load(seed=0)
    assert seen["train_idx"] == splits.forget_indices
    assert seen["record"].train_size == len(splits.train)
    assert len(seen["test"]) == len(splits.test) and len(seen["retain"]) == len(splits.retain)
    # the selection file maps the coreset to those training indices
    import json

    saved = json.loads(result.run_dir.joinpath("selection.json").read_text())
    assert saved["train_indices"] == splits.forget_indices[:3]


def test_a_given_model_has_no_record_and_the_run_says_so(tmp_path):
    import erasus
    from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
    from erasus.data import DataInfo

    model_dir = tmp_path / "model"
    ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=16),
                            DataInfo("classification", 10, (1, 8, 8))).save(model_dir)
    cfg = _config(tmp_path)
    cfg["model"]["path"] = str(model_dir)
    pm = get_plugin_manager(plugins=(("recordtest", _Plugin),))
    with pytest.raises(IncompatibleComponentError, match="first_checkpoint_loss' needs the "
                       "original model's training checkpoints"):
        erasus.run(cfg, plugin_manager=pm)


def test_early_stopping_on_a_forget_loss_target():
    from erasus.builtin.strategies.gradient_ascent import GradientAscent
    from erasus.strategy import RunContext, UnlearnData

    problem = tiny_classifier_problem(seed=0)
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    full = GradientAscent(epochs=20, lr=1e-2).unlearn(problem.adapter.clone(), data,
                                                      RunContext(seed=0))
    start = full.steps[0]["forget_loss"]
    target = start + 0.5 * (max(s["forget_loss"] for s in full.steps) - start)
    stopped = GradientAscent(epochs=20, lr=1e-2, stop_forget_loss=target).unlearn(
        problem.adapter.clone(), data, RunContext(seed=0))
    assert stopped.num_steps < full.num_steps
    assert stopped.steps[-1]["forget_loss"] >= target
    assert all(s["forget_loss"] < target for s in stopped.steps[:-1])
    assert "forget_loss reached" in stopped.stopped_early


def test_early_stopping_on_forget_accuracy_checks_after_each_epoch():
    from erasus.builtin.strategies.gradient_ascent import GradientAscent
    from erasus.strategy import RunContext, UnlearnData

    problem = tiny_classifier_problem(seed=0)
    adapter = problem.adapter.clone()
    data = UnlearnData(forget=problem.forget, retain=problem.retain)
    history = GradientAscent(epochs=50, lr=1e-2, stop_forget_accuracy=0.5).unlearn(
        adapter, data, RunContext(seed=0))
    assert history.stopped_early and "forget accuracy" in history.stopped_early
    assert history.num_steps < 50
    with torch.no_grad():
        batch = adapter.prepare_batch(
            torch.utils.data.default_collate([problem.forget[i]
                                              for i in range(len(problem.forget))]))
        acc = (adapter.logits(batch).argmax(-1) == batch["labels"]).float().mean()
    assert acc <= 0.5


def test_per_example_gradients_match_a_loop_of_single_example_backward_passes():
    problem = tiny_classifier_problem(seed=0)
    adapter = problem.adapter
    grads = per_example_grads(adapter, problem.forget, batch_size=7)
    for i in (0, 5, len(problem.forget) - 1):
        x, y = problem.forget[i]
        adapter.model.zero_grad()
        loss = adapter.per_example_loss({"inputs": x[None], "labels": y[None]}).sum()
        loss.backward()
        ref = torch.cat([p.grad.reshape(-1) for p in adapter.model.parameters()])
        assert torch.allclose(grads[i], ref, atol=1e-6)
    assert torch.allclose(mean_grad(adapter, problem.forget), grads.mean(0), atol=1e-6)
    head = per_example_grads(adapter, problem.forget, names="head")
    assert head.shape[1] == sum(p.numel() for p in adapter.model.head.parameters())


def test_hvp_matches_the_explicit_hessian_of_the_head():
    problem = tiny_classifier_problem(seed=0)
    adapter = problem.adapter
    x = torch.stack([problem.forget[i][0] for i in range(len(problem.forget))])
    y = torch.stack([problem.forget[i][1] for i in range(len(problem.forget))])
    feats = adapter.model.features(x).detach()
    w0 = torch.cat([adapter.model.head.weight.detach().reshape(-1),
                    adapter.model.head.bias.detach()])
    nw = adapter.model.head.weight.numel()

    def loss(w):
        logits = feats @ w[:nw].reshape(adapter.model.head.weight.shape).T + w[nw:]
        return torch.nn.functional.cross_entropy(logits, y)

    hessian = torch.autograd.functional.hessian(loss, w0)
    v = torch.randn(len(w0), generator=torch.Generator().manual_seed(0))
    got = hvp(adapter, problem.forget, v, names="head", damping=0.1)
    assert torch.allclose(got, hessian @ v + 0.1 * v, atol=1e-5)


def test_a_voting_member_that_needs_a_record_gets_one_through_the_pipeline(tmp_path):
    import erasus

    pm = get_plugin_manager(plugins=(("recordtest", _Plugin),))
    cfg = _config(tmp_path)
    cfg["selector"] = {"name": "voting", "budget": 3,
                       "selectors": [{"name": "first_checkpoint_loss"}, {"name": "random"}]}
    _LastCheckpointLoss.seen.clear()
    from erasus.builtin.selectors.voting import VotingSelector

    selector = VotingSelector(selectors=cfg["selector"]["selectors"], registry=pm.registry)
    assert "training_checkpoints" in selector.runtime_needs()
    erasus.run(cfg, plugin_manager=pm)  # the member resolves in the run's registry
    assert [c.epoch for c in _LastCheckpointLoss.seen["record"].checkpoints()] == [0, 1]
