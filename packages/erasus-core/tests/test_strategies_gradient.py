"""Behaviour of the gradient-family, history-based and LoRA strategies on small trained models.

The main fixture is a memorisation problem (``memorised``, from conftest.py): four heavily
overlapping Gaussian classes (:func:`erasus.testing.tiny.memorisation_data`), so
the original (trained on forget + retain) fits its forget examples perfectly while the
oracle retrained without them gets them right only at about test accuracy. "Forgetting"
is then measurable: the forget loss and accuracy must move from the original's towards
the oracle's while retain and test accuracy stay within a stated bound.
"""

from __future__ import annotations

import math

import pytest
import torch
from erasus.adapters import ModelAdapter, TinyProblem
from erasus.builtin.models.classifier import ClassifierAdapter
from erasus.builtin.strategies.amnesiac import Amnesiac, undo_updates
from erasus.builtin.strategies.finetune import Finetune
from erasus.builtin.strategies.lora import LoRA, LoRAParams, loss_strategies
from erasus.builtin.strategies.negative_gradient import NegativeGradient
from erasus.builtin.strategies.npo import NPO, npo_loss, sequence_log_probs
from erasus.builtin.strategies.retrain import Retrain
from erasus.builtin.strategies.simnpo import SimNPO, simnpo_loss
from erasus.builtin.strategies.wga import WGA, wga_loss
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy, RunContext, UnlearnData
from erasus.testing.tiny import loss_and_accuracy as evaluate
from erasus.testing.tiny import (
    memorisation_classifier,
    memorisation_data,
    record_training,
)
from torch.utils.data.dataloader import default_collate

LOSS_BASED = (NegativeGradient, NPO, SimNPO, WGA, Amnesiac)
#: How far test accuracy (percentage points) may fall below the original's.
TEST_BOUND = 5.0


# -- helpers and fixtures -----------------------------------------------------------------
def unlearn(strategy, adapter, forget, retain, *, seed=0, **run):
    return strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain),
                            RunContext(seed=seed, **run))


class StubAdapter(ModelAdapter):
    """An adapter whose token losses are given: for checking loss formulas by hand."""

    name = "stub"
    modalities = ("text",)

    def __init__(self, losses: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__(torch.nn.Linear(1, 1))
        self.losses, self.mask = losses, mask

    def token_losses(self, batch):
        return self.losses, self.mask

    def per_example_loss(self, batch):
        m = self.mask.to(self.losses.dtype)
        return (self.losses * m).sum(1) / m.sum(1)


# -- metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", (*LOSS_BASED, LoRA))
def test_metadata_is_explicit(cls):
    assert "paper" in cls.__dict__ and isinstance(cls.paper, Paper)
    assert cls.paper.url.startswith("https://")
    assert isinstance(cls.needs, frozenset)
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"
    if cls in LOSS_BASED:
        assert issubclass(cls, LossStrategy) and issubclass(cls.Params, LoopParams)


def test_token_losses_default_is_one_target_per_example(memorised):
    adapter = memorised.original
    batch = adapter.prepare_batch(default_collate([memorised.forget[i] for i in range(5)]))
    losses, mask = adapter.token_losses(batch)
    assert losses.shape == mask.shape == (5, 1) and bool(mask.all())
    assert torch.equal(losses[:, 0], adapter.per_example_loss(batch))


# -- negative_gradient (NegGrad+) ---------------------------------------------------------------
def test_negative_gradient_forgets_memorised_examples(memorised):
    adapter = memorised.original.clone()
    unlearn(NegativeGradient(epochs=5, lr=1e-3), adapter, memorised.forget, memorised.retain)
    memorised.check_forgot(adapter)


def test_negative_gradient_is_one_convex_objective_over_the_retain_set(memorised):
    p = {"epochs": 2, "lr": 1e-3, "alpha": 0.7}
    history = unlearn(NegativeGradient(**p), memorised.original.clone(), memorised.forget,
                      memorised.retain)
    # epochs pass over the 180 retain examples (3 batches of 64), not the 20 forget ones
    assert history.num_steps == 2 * math.ceil(180 / 64)
    for step in history.steps:
        assert step["loss"] == pytest.approx(
            0.7 * step["retain_loss"] - 0.3 * step["forget_loss"], rel=1e-5, abs=1e-7)
    # alpha = 1 leaves only the retain term: exactly fine-tuning with the same recipe
    a, b = memorised.original.clone(), memorised.original.clone()
    unlearn(NegativeGradient(epochs=2, lr=1e-3, alpha=1.0, optimizer="sgd"), a,
            memorised.forget, memorised.retain)
    unlearn(Finetune(epochs=2, lr=1e-3, optimizer="sgd"), b, memorised.forget,
            memorised.retain)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


# -- npo ----------------------------------------------------------------------------------------
def test_npo_reference_is_the_original_and_precomputed(memorised):
    adapter = memorised.original.clone()
    strategy = NPO(epochs=1)
    strategy.prepare(adapter, UnlearnData(forget=memorised.forget, retain=memorised.retain),
                     RunContext(seed=0))
    batch = adapter.prepare_batch(default_collate(
        [memorised.forget[i] for i in range(len(memorised.forget))]))
    with torch.no_grad():
        expected = -memorised.original.per_example_loss(batch)
    assert torch.allclose(strategy.ref_log_prob, expected, atol=1e-6)
    # no resident copy of a model: the strategy holds tensors only
    assert not [k for k, v in vars(strategy).items()
                if isinstance(v, (ModelAdapter, torch.nn.Module))]


def test_npo_loss_matches_the_formula_by_hand():
    log_p = torch.tensor([-0.5, -2.0, -0.1])
    ref = torch.tensor([-0.2, -0.3, -0.1])
    beta = 0.7
    by_hand = sum(math.log(1 + math.exp(beta * (lp - rp)))
                  for lp, rp in zip(log_p.tolist(), ref.tolist(), strict=True)) * 2 / beta / 3
    assert float(npo_loss(log_p, ref, beta)) == pytest.approx(by_hand, rel=1e-6)
    # at the reference the loss is (2 / beta) log 2, and its gradient is ascent's
    lp = ref.clone().requires_grad_(True)
    npo_loss(lp, ref, beta).backward()
    assert torch.allclose(lp.grad, torch.full((3,), 1 / 3))


def test_npo_step_loss_is_the_npo_of_the_sequence_log_likelihood():
    # two examples, target lengths 3 and 1: log p is minus the SUM of token losses
    losses = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    adapter = StubAdapter(losses, mask)
    strategy = NPO(beta=0.5, retain_weight=0.0)
    strategy.ref_log_prob = torch.tensor([-0.3, -2.0])
    parts = strategy.loss(adapter, forget={"index": torch.tensor([0, 1])}, retain=None)
    by_hand = (2 / 0.5) * 0.5 * (math.log(1 + math.exp(0.5 * (-1.2 + 0.3)))
                                 + math.log(1 + math.exp(0.5 * (-1.0 + 2.0))))
    assert float(parts["loss"]) == pytest.approx(by_hand, rel=1e-6)
    assert float(parts["forget_loss"]) == pytest.approx((0.4 + 1.0) / 2)


def test_npo_forgets_memorised_examples(memorised):
    adapter = memorised.original.clone()
    history = unlearn(NPO(epochs=20, lr=1e-3), adapter, memorised.forget, memorised.retain)
    memorised.check_forgot(adapter)
    assert "retain_loss" in history.steps[0]  # NPO+RT by default


def test_plain_npo_needs_no_retain_set_and_npo_rt_says_so(memorised):
    adapter = memorised.original.clone()
    history = unlearn(NPO(epochs=1, retain_weight=0.0), adapter, memorised.forget, None)
    assert "retain_loss" not in history.steps[0]
    with pytest.raises(IncompatibleComponentError, match="retain_weight"):
        unlearn(NPO(epochs=1), memorised.original.clone(), memorised.forget, None)


# -- simnpo -------------------------------------------------------------------------------------
def test_simnpo_loss_is_length_normalised_and_reference_free():
    losses = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    strategy = SimNPO(beta=2.0, gamma=0.5, retain_weight=0.0)
    parts = strategy.loss(StubAdapter(losses, mask), forget={"index": torch.tensor([0, 1])},
                          retain=None)

    def term(log_p: float, length: int) -> float:  # -(2/b) log sigmoid(-(b/|y|) log p - g)
        return -(2 / 2.0) * math.log(1 / (1 + math.exp(-(-(2.0 / length) * log_p - 0.5))))

    by_hand = (term(-1.2, 3) + term(-1.0, 1)) / 2
    assert float(parts["loss"]) == pytest.approx(by_hand, rel=1e-6)
    assert float(simnpo_loss(torch.tensor([-1.2, -1.0]), torch.tensor([3.0, 1.0]), 2.0, 0.5)
                 ) == pytest.approx(by_hand, rel=1e-6)
    # the same mean token loss gives the same loss whatever the length
    same = SimNPO(beta=2.0, retain_weight=0.0).loss(
        StubAdapter(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.0, 0.0, 0.0]]),
                    torch.tensor([[True] * 4, [True, False, False, False]])),
        forget={"index": torch.tensor([0, 1])}, retain=None)
    single = SimNPO(beta=2.0, retain_weight=0.0).loss(
        StubAdapter(torch.tensor([[0.5]]), torch.tensor([[True]])),
        forget={"index": torch.tensor([0])}, retain=None)
    assert float(same["loss"]) == pytest.approx(float(single["loss"]), rel=1e-6)


def test_simnpo_forgets_memorised_examples(memorised):
    adapter = memorised.original.clone()
    unlearn(SimNPO(epochs=20, lr=1e-3), adapter, memorised.forget, memorised.retain)
    memorised.check_forgot(adapter)


# -- wga ----------------------------------------------------------------------------------------
def test_wga_weights_are_stop_gradient_confidences():
    losses = torch.tensor([[0.1, 2.0], [0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    alpha = 0.8
    loss = wga_loss(losses, mask, alpha)
    weights = torch.exp(-alpha * losses.detach())
    assert float(loss.detach()) == pytest.approx(
        float(-(weights * losses.detach() * mask).sum() / 3), rel=1e-6)
    loss.backward()
    # d/dl of -w * l / N with w held constant: -w / N on the target tokens, 0 elsewhere
    assert torch.allclose(losses.grad, -weights * mask / 3)
    # alpha = 0: plain gradient ascent (the mean token loss, negated)
    assert float(wga_loss(losses.detach(), mask, 0.0)) == pytest.approx(-(0.1 + 2.0 + 0.5) / 3)


def test_wga_forgets_memorised_examples(memorised):
    adapter = memorised.original.clone()
    unlearn(WGA(epochs=20, lr=1e-3), adapter, memorised.forget, memorised.retain)
    memorised.check_forgot(adapter)


# -- the per-token contract on a causal language model ------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm():
    llm = pytest.importorskip("erasus_llm.causal_lm")
    torch.manual_seed(0)
    adapter = llm.CausalLMAdapter.build(llm.CausalLMParams())
    data = [{"question": "Who is Ann?", "answer": "A painter from Oslo."},
            {"question": "Where?", "answer": "Here"}]
    return adapter, data


def test_npo_and_simnpo_see_the_answer_length_of_a_language_model(tiny_lm):
    adapter, data = tiny_lm
    batch = adapter.prepare_batch(default_collate(data))
    with torch.no_grad():
        losses, mask = adapter.token_losses(batch)
        mean = adapter.per_example_loss(batch)
    length = mask.sum(1)
    assert length.tolist()[0] > length.tolist()[1] > 1
    assert torch.allclose((losses * mask).sum(1) / length, mean, atol=1e-6)
    # NPO's reference log-likelihood is the SUM over answer tokens, not the mean
    ref = sequence_log_probs(adapter, data, None, batch_size=2)
    assert torch.allclose(ref, -(mean * length), atol=1e-4)
    # SimNPO's forget term depends on log p / |y| = -mean token loss
    parts = SimNPO(retain_weight=0.0).loss(adapter, forget={**batch, "index": torch.arange(2)},
                                           retain=None)
    assert float(parts["forget_loss"].detach()) == pytest.approx(float(mean.mean()), rel=1e-5)


# -- amnesiac -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    """The blobs problem retrained from scratch with every step's update recorded
    (batch 10, 30 epochs: 600 steps), and its oracle."""
    _, forget, retain, test = memorisation_data()
    recipe = {"epochs": 30, "lr": 1e-2, "batch_size": 10, "scheduler": "constant"}
    problem = record_training(TinyProblem(memorisation_classifier(), forget, retain, test,
                                          strategy_params={"retrain": recipe}), {"updates"})
    oracle = memorisation_classifier()
    unlearn(Retrain(**recipe), oracle, None, retain)
    return problem, oracle


def test_undoing_every_update_returns_the_initial_weights(recorded):
    problem, _ = recorded
    adapter = problem.adapter.clone()
    # every step contains some training example, so naming them all undoes all steps
    undone, total = undo_updates(adapter, problem.record.updates(),
                                 range(problem.record.train_size))
    assert undone == total == problem.record.num_steps == 600
    initial = problem.adapter.clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # what record_training's Retrain.prepare does
        initial.reset_parameters()
    for p, q in zip(adapter.model.parameters(), initial.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), float((p - q).abs().max())
    assert not torch.allclose(next(adapter.model.parameters()),
                              next(problem.adapter.model.parameters()))


def test_amnesiac_undoes_the_forget_batches_and_forgets(recorded):
    problem, oracle = recorded
    forget, retain, test = problem.forget, problem.retain, problem.test
    adapter = problem.adapter.clone()
    strategy = Amnesiac(epochs=2, lr=5e-3, batch_size=10)
    strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain,
                                          forget_train_indices=problem.forget_train_indices),
                     RunContext(seed=0, record=problem.record))
    steps = problem.record.step_indices()
    forget_ids = set(problem.forget_train_indices)
    assert strategy.undone_steps == sum(bool(forget_ids & set(s.tolist())) for s in steps)
    assert 0 < strategy.undone_steps < strategy.recorded_steps == 600
    (loss0, acc0), (loss_o, acc_o) = evaluate(problem.adapter, forget), evaluate(oracle, forget)
    loss, acc = evaluate(adapter, forget)
    assert loss0 < 0.01 and acc0 == 100 and acc_o <= 75
    assert loss >= loss0 + 0.1 * (loss_o - loss0) and acc < acc0
    # the repair keeps utility: retain accuracy >= 90%, test within 5 points
    assert evaluate(adapter, retain)[1] >= 90
    assert evaluate(adapter, test)[1] >= evaluate(problem.adapter, test)[1] - TEST_BOUND


def test_amnesiac_without_a_record_of_updates_says_how_to_get_one(memorised):
    with pytest.raises(IncompatibleComponentError, match="training updates"):
        unlearn(Amnesiac(), memorised.original.clone(), memorised.forget, memorised.retain)
    assert "training_updates" in Amnesiac.needs


def test_amnesiac_needs_the_forget_training_indices(recorded):
    problem, _ = recorded
    with pytest.raises(IncompatibleComponentError, match="forget_train_indices"):
        Amnesiac().unlearn(problem.adapter.clone(),
                           UnlearnData(forget=problem.forget, retain=problem.retain),
                           RunContext(seed=0, record=problem.record))


# -- lora ---------------------------------------------------------------------------------------
def test_lora_trains_low_rank_updates_and_merges_them(memorised, tmp_path):
    adapter = memorised.original.clone()
    model = adapter.model
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen_trainable: list[list[str]] = []

    def on_step(step, logged):
        if step == 1:
            seen_trainable.append([n for n, p in model.named_parameters() if p.requires_grad])

    strategy = LoRA(strategy="simnpo", strategy_params={"epochs": 20}, r=2, alpha=4.0)
    unlearn(strategy, adapter, memorised.forget, memorised.retain, on_step=on_step)
    # during training only the low-rank factors were trainable
    assert seen_trainable[0] and all("lora_" in n for n in seen_trainable[0])
    # afterwards: same module, class and state-dict keys; every weight trainable again
    assert adapter.model is model and type(model).__name__ == "_Net"
    assert list(model.state_dict()) == keys
    assert all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    for name in keys:
        delta = after[name] - before[name]
        if name.endswith(".weight"):  # every Linear layer is a default target
            assert 0 < int(torch.linalg.matrix_rank(delta)) <= 2, name
        else:  # biases are not adapted
            assert torch.equal(delta, torch.zeros_like(delta)), name
    memorised.check_forgot(adapter)
    # the merged model saves and loads like any classifier
    adapter.save(tmp_path / "m")
    loaded = ClassifierAdapter.load(tmp_path / "m")
    assert evaluate(loaded, memorised.forget) == evaluate(adapter, memorised.forget)


def test_lora_reference_is_the_adapter_disabled_base_not_a_copy(memorised, monkeypatch):
    """scrub under LoRA distils from the same module with its LoRA layers off: its teacher
    logits are the original's exactly, while the adapters (and so the student) move."""
    from erasus.builtin.strategies import scrub
    from erasus.builtin.strategies.lora import BaseModelView

    original = memorised.original
    adapter = original.clone()
    seen = []
    real = scrub.teacher_logits

    def spy(run, name, batch):
        logits = real(run, name, batch)
        with torch.no_grad():
            student = adapter.outputs(batch)["logits"]
            expected = original.outputs(batch)["logits"]
        seen.append((run.reference, torch.equal(logits, expected),
                     torch.equal(student, expected)))
        return logits

    monkeypatch.setattr(scrub, "teacher_logits", spy)
    unlearn(LoRA(strategy="scrub", strategy_params={"epochs": 3}), adapter,
            memorised.forget, memorised.retain)
    assert seen and all(isinstance(ref, BaseModelView) for ref, _, _ in seen)
    assert all(ref._adapter is adapter for ref, _, _ in seen)  # no copy of the weights
    assert all(same for _, same, _ in seen)                   # the original's function
    assert not all(same_student for _, _, same_student in seen)  # the student did move


def test_lora_bad_teacher_clones_the_base_without_lora_layers(memorised, monkeypatch):
    from erasus.builtin.strategies.bad_teacher import BadTeacher
    from erasus.builtin.strategies.lora import BaseModelView
    from peft.tuners.tuners_utils import BaseTunerLayer

    teachers = []
    real_prepare = BadTeacher.prepare

    def prepare(self, *args, **kwargs):
        real_prepare(self, *args, **kwargs)
        teachers.append((self.competent, self.incompetent))

    monkeypatch.setattr(BadTeacher, "prepare", prepare)
    adapter = memorised.original.clone()
    unlearn(LoRA(strategy="bad_teacher", strategy_params={"epochs": 1}), adapter,
            memorised.forget, memorised.retain)
    good, bad = teachers[-1]
    assert isinstance(good, BaseModelView)
    assert type(bad.model) is type(adapter.model)
    assert not any(isinstance(m, BaseTunerLayer) for m in bad.model.modules())
    assert not any(isinstance(m, BaseTunerLayer) for m in adapter.model.modules())
    assert list(bad.model.state_dict()) == list(adapter.model.state_dict())


def test_lora_target_modules_restrict_the_update(memorised):
    adapter = memorised.original.clone()
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    unlearn(LoRA(target_modules=["head"], strategy_params={"epochs": 2}), adapter,
            memorised.forget, memorised.retain)
    changed = [k for k, v in adapter.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["head.weight"]
    with pytest.raises(IncompatibleComponentError, match="nothing_here"):
        unlearn(LoRA(target_modules=["nothing_here"]), memorised.original.clone(),
                memorised.forget, memorised.retain)


def test_lora_only_wraps_loss_based_strategies():
    choices = loss_strategies()
    assert {"gradient_difference", "npo", "simnpo", "negative_gradient"} <= set(choices)
    assert not {"lora", "retrain", "amnesiac"} & set(choices)
    for bad in ("lora", "retrain", "no_such_strategy"):
        with pytest.raises(ValueError, match=r"choose one of: .*gradient_difference"):
            LoRAParams(strategy=bad)
    with pytest.raises(ValueError, match="strategy_params for 'npo'"):
        LoRAParams(strategy="npo", strategy_params={"no_such_param": 1})
    assert LoRAParams(strategy="npo", lr=None, max_steps=3).inner_overrides() == {"max_steps": 3}


def test_lora_resumes_inside_the_wrapped_loop(memorised, tmp_path):
    from erasus.checkpoint import CheckpointStore

    p = {"strategy": "simnpo", "strategy_params": {"epochs": 6, "checkpoint_every": 1}}
    full = memorised.original.clone()
    assert unlearn(LoRA(**p), full, memorised.forget, memorised.retain).num_steps == 6

    class Killed(Exception):
        pass

    def kill(step, logged):
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        unlearn(LoRA(**p), memorised.original.clone(), memorised.forget, memorised.retain,
                checkpoints=CheckpointStore(tmp_path), on_step=kill)
    resumed = memorised.original.clone()
    history = unlearn(LoRA(**p), resumed, memorised.forget, memorised.retain,
                      checkpoints=CheckpointStore(tmp_path))
    assert history.resumed_from == 3 and history.num_steps == 6
    assert list(resumed.model.state_dict()) == list(full.model.state_dict())
    for a, b in zip(resumed.model.parameters(), full.model.parameters(), strict=True):
        assert torch.equal(a, b)
