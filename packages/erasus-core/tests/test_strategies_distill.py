"""Behaviour of the distillation strategies (SCRUB, bad teaching) on small trained classifiers."""

from __future__ import annotations

import math
import tempfile

import pytest
import torch
import torch.nn.functional as F
from erasus.builtin.strategies.bad_teacher import BadTeacher
from erasus.builtin.strategies.retrain import Retrain
from erasus.builtin.strategies.scrub import SCRUB, distill_kl
from erasus.checkpoint import CheckpointStore
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy, RunContext, UnlearnData
from erasus.testing.tiny import loss_and_accuracy as evaluate
from erasus.testing.tiny import tiny_classification_data, tiny_classifier_problem
from torch.utils.data import Subset
from torch.utils.data.dataloader import default_collate

#: How far retain and test accuracy (percentage points) may fall below the original's.
RETAIN_BOUND, TEST_BOUND = 3.0, 5.0


def frozen(adapter):
    ref = adapter.clone()
    for p in ref.model.parameters():
        p.requires_grad_(False)
    ref.model.eval()
    return ref


def unlearn(strategy, adapter, forget, retain, *, reference, seed=0, **run):
    return strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain),
                            RunContext(seed=seed, reference=reference, **run))


def flat(adapter) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in adapter.model.parameters()]).clone()


class ClassWise:
    """The tiny separable blobs (test accuracy 100%), forgetting every example of class 0."""

    def __init__(self) -> None:
        problem = tiny_classifier_problem(0)
        train, test = tiny_classification_data(0)
        self.original = problem.adapter
        labels = [int(train[i][1]) for i in range(len(train))]
        self.forget = Subset(train, [i for i, y in enumerate(labels) if y == 0])
        self.retain = Subset(train, [i for i, y in enumerate(labels) if y != 0])
        tlabels = [int(test[i][1]) for i in range(len(test))]
        self.test_kept = Subset(test, [i for i, y in enumerate(tlabels) if y != 0])
        self.test_gone = Subset(test, [i for i, y in enumerate(tlabels) if y == 0])


@pytest.fixture(scope="module")
def classwise() -> ClassWise:
    return ClassWise()


@pytest.mark.parametrize("cls", (SCRUB, BadTeacher))
def test_metadata_is_explicit(cls):
    assert "paper" in cls.__dict__ and isinstance(cls.paper, Paper)
    assert {"reference_model", "retain"} <= cls.needs
    assert cls.modalities == ("classification",)
    assert issubclass(cls, LossStrategy) and issubclass(cls.Params, LoopParams)
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"


def test_distill_kl_is_the_tempered_kl_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    temp = 2.0
    by_hand = 0.0
    for si, ti in zip(s, t, strict=True):
        ps, pt = F.softmax(si / temp, -1), F.softmax(ti / temp, -1)
        by_hand += float((pt * (pt.log() - ps.log())).sum())
    assert float(distill_kl(s, t, temp)) == pytest.approx(by_hand / 2 * temp**2, rel=1e-5)
    assert float(distill_kl(t, t, temp)) == pytest.approx(0.0, abs=1e-7)


# -- SCRUB --------------------------------------------------------------------------------------
STRONG = {"epochs": 10, "msteps": 5, "lr": 1e-2, "forget_batch_size": 4}


def test_scrub_forgets_through_its_max_steps(memorised):
    adapter = memorised.original.clone()
    unlearn(SCRUB(**STRONG), adapter, memorised.forget, memorised.retain,
            reference=memorised.reference())
    memorised.check_forgot(adapter)
    # without max steps it is plain distillation on retain: the forget set stays memorised
    kept = memorised.original.clone()
    unlearn(SCRUB(**{**STRONG, "msteps": 0}), kept, memorised.forget, memorised.retain,
            reference=memorised.reference())
    assert evaluate(kept, memorised.forget)[0] < 0.1
    assert evaluate(kept, memorised.forget)[1] == 100


def test_scrub_alternates_phases_and_both_change_the_weights(memorised):
    adapter = memorised.original.clone()
    trace: list[tuple[str, float]] = []
    last = [flat(adapter)]

    def on_step(step, logged):
        now = flat(adapter)
        trace.append(("max" if "forget_kl" in logged else "min",
                      float((now - last[0]).abs().max())))
        last[0] = now
        assert logged["step"] == step == len(trace)  # numbered across phases

    p = {"epochs": 3, "msteps": 2, "forget_batch_size": 8, "batch_size": 64}
    history = unlearn(SCRUB(**p), adapter, memorised.forget, memorised.retain,
                      reference=memorised.reference(), on_step=on_step)
    per_max, per_min = math.ceil(20 / 8), math.ceil(180 / 64)
    expected = (["max"] * per_max + ["min"] * per_min) * 2 + ["min"] * per_min
    assert [phase for phase, _ in trace] == expected
    assert history.num_steps == len(expected)
    assert [s["epoch"] for s in history.steps] == \
        [0.0] * (per_max + per_min) + [1.0] * (per_max + per_min) + [2.0] * per_min
    # the weights move in both kinds of phase
    assert max(d for phase, d in trace if phase == "max") > 0
    assert max(d for phase, d in trace if phase == "min") > 0
    # max steps raise the KL to the teacher on the forget set: the loss is -KL
    for step in history.steps:
        if "forget_kl" in step:
            assert step["loss"] == pytest.approx(-step["forget_kl"])
        else:
            assert step["loss"] == pytest.approx(step["retain_loss"] + 0.5 * step["retain_kl"],
                                                 rel=1e-5)


class Untouchable(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        raise AssertionError("the strategy read a forget example")


def test_scrub_must_use_the_forget_set(memorised):
    ref = memorised.reference()
    with pytest.raises(AssertionError, match="read a forget example"):
        unlearn(SCRUB(epochs=1, msteps=1), memorised.original.clone(), Untouchable(),
                memorised.retain, reference=ref)
    with pytest.raises(IncompatibleComponentError, match="forget set"):
        unlearn(SCRUB(), memorised.original.clone(), [], memorised.retain, reference=ref)
    with pytest.raises(IncompatibleComponentError, match="reference model"):
        unlearn(SCRUB(), memorised.original.clone(), memorised.forget, memorised.retain,
                reference=None)


def test_scrub_needs_class_logits(memorised):
    adapter = memorised.original.clone()
    outputs = adapter.outputs
    adapter.outputs = lambda batch, features=False: {"loss": outputs(batch)["loss"]}
    with pytest.raises(IncompatibleComponentError, match="logits"):
        unlearn(SCRUB(), adapter, memorised.forget, memorised.retain,
                reference=memorised.reference())


@pytest.mark.parametrize("kill_at", [2, 3, 4, 6, 7, 9])
def test_scrub_resumes_in_the_phase_where_it_stopped(memorised, kill_at):
    # phases: max (3 steps), min (3), max (3), min (3): kills inside and at phase ends
    p = {"epochs": 2, "msteps": 2, "forget_batch_size": 8, "checkpoint_every": 1}
    ref = memorised.reference()
    full = memorised.original.clone()
    total = unlearn(SCRUB(**p), full, memorised.forget, memorised.retain,
                    reference=ref).num_steps
    assert total == 12

    class Killed(Exception):
        pass

    def kill(step, logged):
        if step == kill_at:
            raise Killed

    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(Killed):
            unlearn(SCRUB(**p), memorised.original.clone(), memorised.forget,
                    memorised.retain, reference=ref, checkpoints=CheckpointStore(tmp),
                    on_step=kill)
        resumed = memorised.original.clone()
        history = unlearn(SCRUB(**p), resumed, memorised.forget, memorised.retain,
                          reference=ref, checkpoints=CheckpointStore(tmp))
    assert history.resumed_from == kill_at - 1
    assert history.num_steps == total
    assert [s["step"] for s in history.steps] == [float(i) for i in range(1, total + 1)]
    assert torch.equal(flat(resumed), flat(full))


# -- bad teacher --------------------------------------------------------------------------------
def test_bad_teacher_forgets_a_class_and_keeps_the_others(classwise):
    adapter = classwise.original.clone()
    assert evaluate(adapter, classwise.forget)[1] == 100
    assert evaluate(adapter, classwise.test_gone)[1] == 100
    unlearn(BadTeacher(epochs=20, lr=5e-3), adapter, classwise.forget, classwise.retain,
            reference=frozen(classwise.original))
    # the retrained oracle never predicts the forgotten class (0%); a random teacher's
    # outputs carry no knowledge of it: accuracy on it falls to about chance (25%)
    assert evaluate(adapter, classwise.forget)[1] <= 50
    assert evaluate(adapter, classwise.test_gone)[1] <= 50
    assert evaluate(adapter, classwise.forget)[0] > 1.0
    assert evaluate(adapter, classwise.retain)[1] >= 100 - RETAIN_BOUND
    assert evaluate(adapter, classwise.test_kept)[1] >= 100 - TEST_BOUND


def test_bad_teacher_distils_a_random_teacher_on_forget_and_the_original_on_retain(classwise):
    original = classwise.original
    strategy = BadTeacher(retain_fraction=0.3, temperature=2.0)
    run = RunContext(seed=3, reference=frozen(original))
    strategy.prepare(original.clone(), UnlearnData(forget=classwise.forget,
                                                   retain=classwise.retain), run)
    n_forget, n_retain = len(classwise.forget), len(classwise.retain)
    assert len(strategy.mixed) == n_forget + round(0.3 * n_retain)
    assert strategy.mixed[0][1] == classwise.forget[0][1]  # forget examples come first
    assert strategy.competent is run.reference
    # the incompetent teacher: the same network re-initialised with the run seed
    again = original.clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        again.reset_parameters()
    assert torch.equal(flat(strategy.incompetent), flat(again))
    assert not torch.equal(flat(strategy.incompetent), flat(original))
    # one batch: a forget example (index 0) and a retain example (index n_forget)
    student = original.clone()
    with torch.no_grad():
        for p in student.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    items = [strategy.mixed[0], strategy.mixed[n_forget]]
    batch = student.prepare_batch(default_collate(items))
    batch["index"] = torch.tensor([0, n_forget])
    parts = strategy.loss(student, forget=None, retain=batch)
    with torch.no_grad():
        s = student.logits(batch)
        bad, good = strategy.incompetent.logits(batch), original.logits(batch)
    # KL(teacher || student) of the temperature-2 softmaxes (not scaled by T^2), averaged
    ps, pt_bad, pt_good = (F.log_softmax(s / 2, -1), F.log_softmax(bad / 2, -1),
                           F.log_softmax(good / 2, -1))
    by_hand = float(((pt_bad[0].exp() * (pt_bad[0] - ps[0])).sum()
                     + (pt_good[1].exp() * (pt_good[1] - ps[1])).sum()) / 2)
    assert float(parts["loss"].detach()) == pytest.approx(by_hand, rel=1e-5)
    assert {"forget_kl", "retain_kl", "forget_loss"} <= set(parts)


def test_bad_teacher_is_reproducible_and_leaves_the_reference_alone(classwise):
    ref = frozen(classwise.original)
    before = flat(ref)
    a, b = classwise.original.clone(), classwise.original.clone()
    for adapter in (a, b):
        unlearn(BadTeacher(epochs=1), adapter, classwise.forget, classwise.retain,
                reference=ref, seed=5)
    assert torch.equal(flat(a), flat(b))
    assert torch.equal(flat(ref), before)


def test_oracle_of_the_class_wise_setting(classwise):
    """The comparison above is fair: retraining without class 0 never predicts it."""
    oracle = classwise.original.clone()
    Retrain(epochs=60, lr=1e-2, batch_size=64, scheduler="constant").unlearn(
        oracle, UnlearnData(forget=None, retain=classwise.retain), RunContext(seed=0))
    assert evaluate(oracle, classwise.test_gone)[1] == 0
    assert evaluate(oracle, classwise.test_kept)[1] >= 95
