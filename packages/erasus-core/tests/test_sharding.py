"""Sharded training (erasus.sharding): the plan an accelerate FSDP launch describes, the
refusals, and checkpoints written and read by two sharded gloo processes. The end-to-end
runs (sharded vs one process) are in test_distributed.py."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from erasus import sharding
from erasus.errors import IncompatibleComponentError
from erasus.sharding import ShardingPlan, plan_from_env

FSDP = {"ACCELERATE_USE_FSDP": "true"}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"ACCELERATE_USE_FSDP": "false"}, None),
    # FSDP2 configs (fsdp_version: 2) say it with fsdp_reshard_after_forward
    ({**FSDP, "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true"},
     ShardingPlan("full_shard")),
    ({**FSDP, "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false"},
     ShardingPlan("shard_grad_op")),
    # FSDP1 configs name the strategy, or give its enum number
    ({**FSDP, "FSDP_SHARDING_STRATEGY": "1"}, ShardingPlan("full_shard")),
    ({**FSDP, "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP"}, ShardingPlan("shard_grad_op")),
    ({**FSDP, "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer, LlamaMLP"},
     ShardingPlan("full_shard", wrap=("LlamaDecoderLayer", "LlamaMLP"))),
    ({**FSDP, "FSDP_AUTO_WRAP_POLICY": "NO_WRAP"}, ShardingPlan("full_shard", wrap=())),
])
def test_the_plan_of_an_accelerate_launch(env: dict[str, str],
                                          expected: ShardingPlan | None) -> None:
    plan = plan_from_env(env)
    if expected is None:
        assert plan is None
    else:
        assert plan is not None
        assert (plan.strategy, plan.wrap) == (expected.strategy, expected.wrap)
        assert plan.source == "the accelerate FSDP config"
        assert plan.reshard_after_forward == (expected.strategy == "full_shard")


@pytest.mark.parametrize(("env", "says"), [
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
     ["DeepSpeed config (ZeRO stage 3)", "configs/accelerate/fsdp.yaml",
      "full_shard = ZeRO-3", "fsdp_shard_grad_op.yaml"]),
    ({**FSDP, "FSDP_SHARDING_STRATEGY": "NO_SHARD"},
     ["NO_SHARD", "configs/accelerate/ddp.yaml"]),
    ({**FSDP, "FSDP_SHARDING_STRATEGY": "4"}, ["HYBRID_SHARD", "FULL_SHARD"]),
    ({**FSDP, "FSDP_OFFLOAD_PARAMS": "true"}, ["parameter CPU offload",
                                               "FSDP_OFFLOAD_PARAMS"]),
    ({**FSDP, "FSDP_ACTIVATION_CHECKPOINTING": "true"}, ["activation checkpointing"]),
    ({**FSDP, "FSDP_AUTO_WRAP_POLICY": "SIZE_BASED_WRAP"},
     ["SIZE_BASED_WRAP", "TRANSFORMER_BASED_WRAP"]),
    # data-parallel launches too: erasus does not autocast behind the model's dtype
    ({"ACCELERATE_MIXED_PRECISION": "bf16"}, ["mixed precision 'bf16'",
                                              "mixed_precision: 'no'", "model.dtype"]),
])
def test_what_is_not_implemented_is_refused_by_name(env: dict[str, str],
                                                    says: list[str]) -> None:
    with pytest.raises(IncompatibleComponentError) as info:
        plan_from_env(env)
    for part in says:
        assert part in str(info.value)


def test_one_process_is_not_sharded_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    section = SimpleNamespace(strategy="full_shard", wrap=None)
    with caplog.at_level(logging.WARNING, logger="erasus.sharding"):
        assert sharding.configure(section, environ={}) is None
    assert sharding.active() is None and sharding.describe() is None
    assert "needs several processes" in caplog.text and "torchrun" in caplog.text


@pytest.fixture
def sharded_on(monkeypatch: pytest.MonkeyPatch) -> ShardingPlan:
    plan = ShardingPlan("full_shard")
    monkeypatch.setattr(sharding, "_ACTIVE", plan)
    return plan


def _builtin_strategy(name: str) -> type:
    from erasus.plugins import get_plugin_manager

    return get_plugin_manager(entrypoints=False).registry.get("strategy", name).cls


@pytest.mark.parametrize("name", ["l1_sparse", "salun", "sparse_aware", "lora"])
def test_strategies_that_reach_into_the_weights_are_refused(name: str,
                                                            sharded_on: ShardingPlan) -> None:
    cls = _builtin_strategy(name)
    with pytest.raises(IncompatibleComponentError) as info:
        sharding.require_shardable(cls)
    message = str(info.value)
    assert f"strategy '{name}' cannot train a sharded model" in message
    assert "(sharding from run.sharding)" in message and "data-parallel" in message


@pytest.mark.parametrize("name", ["gradient_ascent", "gradient_difference", "npo", "scrub",
                                  "retrain", "ssd"])
def test_loss_and_one_shot_strategies_may_run_sharded(name: str,
                                                      sharded_on: ShardingPlan) -> None:
    sharding.require_shardable(_builtin_strategy(name))


def test_the_training_record_is_refused_under_sharding(sharded_on: ShardingPlan) -> None:
    from erasus.builtin.strategies.gradient_ascent import GradientAscent
    from erasus.strategy import RunContext, UnlearnData
    from erasus.testing.tiny import memorisation_classifier, memorisation_data
    from erasus.training import train_loop

    _, forget, retain, _ = memorisation_data()
    adapter = memorisation_classifier()
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    with pytest.raises(IncompatibleComponentError, match=r"training record .* cannot be kept "
                       r"while training is sharded"):
        train_loop(GradientAscent(GradientAscent.Params()), adapter,
                   UnlearnData(forget=forget, retain=retain),
                   RunContext(recorder=object()))  # type: ignore[arg-type]
    assert all((adapter.model.state_dict()[k] == v).all() for k, v in before.items())


def test_wrapping_a_class_the_model_lacks_names_the_classes_it_has() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with pytest.raises(IncompatibleComponentError) as info:
        sharding._wrap_classes(model, ShardingPlan(wrap=("LlamaDecoderLayer",)))
    assert "['LlamaDecoderLayer']" in str(info.value)
    assert "'Linear'" in str(info.value) and "'ReLU'" in str(info.value)
    assert sharding._wrap_classes(model, ShardingPlan(wrap=("Linear",))) == {"Linear"}
    assert sharding._wrap_classes(model, ShardingPlan()) == set()  # no _no_split_modules


CHECKPOINT_SCRIPT = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from erasus import distributed
    from erasus.checkpoint import CheckpointStore
    from erasus.sharding import ShardedModel, ShardingPlan

    dist.init_process_group("gloo")
    directory, strategy = sys.argv[1], sys.argv[2]

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(6, 6)

        def forward(self, x):
            return torch.tanh(self.linear(x))

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(Block(), Block(), torch.nn.Linear(6, 3))

    def step(net, opt, seed):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        lo, hi = distributed.share(8)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[lo:hi]), y[lo:hi]) * (hi - lo) / 8
        (loss * distributed.world_size()).backward()
        opt.step()

    plan = ShardingPlan(strategy, wrap=("Block",))
    a = ShardedModel(model(), plan, "cpu")
    opt_a = torch.optim.Adam(a.twin.parameters(), lr=0.01)
    assert abs(a.local_fraction - 0.5) < 0.1, a.local_fraction
    for seed in range(3):
        step(a.twin, opt_a, seed)
    # a checkpoint holds whole tensors: gathered by both processes, written by rank 0
    a.gather_into_plain()
    gathered = a.optimizer(opt_a).gathered()
    sched = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda s: 1.0)
    store = CheckpointStore(directory)
    if dist.get_rank() == 0:
        store.save(a.plain, gathered, sched, {"step": 3})
        assert all(not hasattr(v, "device_mesh") for s in gathered.state["state"].values()
                   for v in s.values())
    dist.barrier()
    # a fresh sharded model and optimizer resume from it ...
    b = ShardedModel(model(), plan, "cpu")
    opt_b = torch.optim.Adam(b.twin.parameters(), lr=0.01)
    store.load(b.plain, b.optimizer(opt_b),
               torch.optim.lr_scheduler.LambdaLR(opt_b, lambda s: 1.0))
    b.load_from_plain()
    # ... and so does one unsharded process: the format is the unsharded one
    plain = model()
    opt_p = torch.optim.Adam(plain.parameters(), lr=0.01)
    store.load(plain, opt_p, torch.optim.lr_scheduler.LambdaLR(opt_p, lambda s: 1.0))
    step(a.twin, opt_a, 3)
    step(b.twin, opt_b, 3)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    opt_p.zero_grad()
    torch.nn.functional.cross_entropy(plain(x), y).backward()
    opt_p.step()
    a.gather_into_plain()
    b.gather_into_plain()
    for (name, pa), pb, pp in zip(a.plain.named_parameters(), b.plain.parameters(),
                                  plain.parameters()):
        assert torch.equal(pa, pb), name
        assert torch.allclose(pa, pp, atol=1e-6), (name, (pa - pp).abs().max())
    moved = max(float((p - q).abs().max()) for p, q in zip(plain.parameters(),
                                                           model().parameters()))
    assert moved > 1e-3, moved
    print("rank", dist.get_rank(), "ok")
    dist.destroy_process_group()
''')


@pytest.mark.parametrize("strategy", ["full_shard", "shard_grad_op"])
def test_a_sharded_checkpoint_resumes_sharded_or_not(strategy: str, tmp_path: Path) -> None:
    """Two gloo processes: three Adam steps sharded, a checkpoint, then the fourth step
    taken by the original, by a fresh sharded model resumed from the checkpoint and by
    one unsharded process resumed from it all agree."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    (tmp_path / "check.py").write_text(CHECKPOINT_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "check.py",
                           str(tmp_path / "ckpt"), strategy], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("ok") == 2
