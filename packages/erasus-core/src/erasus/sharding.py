"""Sharded training over processes with PyTorch FSDP2 (ZeRO-3 / ZeRO-2 semantics).

A multi-process run (see :mod:`erasus.distributed`) is data-parallel by default: every
process holds the whole model, its gradients and its optimizer state. With sharding on
(``run.sharding`` in the config, or an accelerate FSDP launch) the *training* state is
split over the processes instead, through ``torch.distributed.fsdp.fully_shard``
(Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel",
which implements the ZeRO partitioning of Rajbhandari et al. 2020):

- ``strategy: full_shard`` (ZeRO-3): parameters, gradients and optimizer state are
  sharded; each wrapped unit's parameters are gathered for its forward and backward and
  freed after.
- ``strategy: shard_grad_op`` (ZeRO-2): gradients and optimizer state are sharded; a
  unit's gathered parameters are kept from its forward to its backward.

Each unit listed in ``wrap`` (module class names; by default the model's
``_no_split_modules``, the decoder layers of a Hugging Face model) is sharded on its own,
and the root module holds the rest.

Only the shared training loop (:func:`erasus.training.train_loop`, which trains the
original, the oracle and every loss-based strategy) is sharded. When a loop starts, a
sharded twin of the adapter's model is built and trained, and the loop's model is the
twin; on a CUDA device the plain model waits in CPU memory meanwhile. When the loop ends,
the twin's parameters are gathered, one at a time, back into the plain model, which then
serves evaluation, one-shot strategies and saving unchanged. A loop's step is the same
as the data-parallel step (each process's share of the batch is weighted by its size and
the gradients are summed), so a sharded run reaches the data-parallel and the
one-process result up to floating-point summation order.

Checkpoints written under sharding hold the gathered weights and the gathered optimizer
state in the unsharded format, so a run can resume sharded or not.

Strategies declare ``shardable``; those that reach into the model's parameters or
layers themselves (hooks, gradient masks, penalties on the weights, their own copies of
the model) are refused with an error rather than run incorrectly.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from erasus import distributed
from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["ShardedModel", "ShardingPlan", "active", "configure", "describe", "plan_from_env",
           "require_shardable", "reset", "sharded_training"]

Kind = Literal["full_shard", "shard_grad_op"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardingPlan:
    """How training is sharded: the FSDP strategy and the module classes sharded as
    their own units (``None``: the model's ``_no_split_modules``, else only the root)."""

    strategy: Kind = "full_shard"
    wrap: tuple[str, ...] | None = None
    #: Where the plan came from, for messages: ``run.sharding`` or the accelerate config.
    source: str = "run.sharding"

    @property
    def reshard_after_forward(self) -> bool:
        return self.strategy == "full_shard"


_ACTIVE: ShardingPlan | None = None
_LAST: dict[str, Any] = {}  # what the last sharded loop looked like (see describe)

# accelerate's FSDP_SHARDING_STRATEGY, by name or by FSDP1's enum number
_STRATEGIES = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD",
               "5": "HYBRID_SHARD_ZERO2"}


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def plan_from_env(environ: Mapping[str, str] | None = None) -> ShardingPlan | None:
    """The plan an ``accelerate launch`` with an FSDP config describes (``None`` without
    one). Options erasus does not implement (DeepSpeed, mixed precision from the launcher,
    hybrid sharding, offload, ...) are refused with an error naming them."""
    env = os.environ if environ is None else environ
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if precision not in ("", "no"):
        raise IncompatibleComponentError(
            f"the accelerate config asks for mixed precision '{precision}', which erasus does "
            "not take from the launcher (its models compute in the dtype they are loaded "
            "in); set mixed_precision: 'no' in the accelerate config and choose the "
            "model's dtype in the run config instead (causal_lm: model.dtype)")
    if _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "?")
        raise IncompatibleComponentError(
            f"launched with an accelerate DeepSpeed config (ZeRO stage {stage}), but erasus "
            "does not drive the DeepSpeed engine; it shards training natively with PyTorch "
            "FSDP2, which partitions like ZeRO: launch with configs/accelerate/fsdp.yaml "
            "(full_shard = ZeRO-3) or configs/accelerate/fsdp_shard_grad_op.yaml "
            "(shard_grad_op = ZeRO-2), or set run.sharding under torchrun")
    if not _flag(env, "ACCELERATE_USE_FSDP"):
        return None
    source = "the accelerate FSDP config"
    if env.get("FSDP_VERSION", "1").strip() == "2":
        raw = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").strip().upper()
        raw = {"TRUE": "FULL_SHARD", "FALSE": "SHARD_GRAD_OP"}.get(raw, raw)
    else:
        raw = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").strip().upper()
    name = _STRATEGIES.get(raw, raw)
    if name not in ("FULL_SHARD", "SHARD_GRAD_OP"):
        raise IncompatibleComponentError(
            f"{source} asks for sharding strategy {name}, which erasus does not implement: "
            "use FULL_SHARD (ZeRO-3) or SHARD_GRAD_OP (ZeRO-2) on one machine, or the "
            "data-parallel config (configs/accelerate/ddp.yaml) for NO_SHARD")
    for var, what in (("FSDP_OFFLOAD_PARAMS", "parameter CPU offload"),
                      ("FSDP_ACTIVATION_CHECKPOINTING", "activation checkpointing")):
        if _flag(env, var):
            raise IncompatibleComponentError(
                f"{source} turns on {what} ({var}), which erasus's sharded training does "
                f"not implement; set it to false in the accelerate config")
    policy = env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP").strip().upper()
    if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP"):
        raise IncompatibleComponentError(
            f"{source} uses auto-wrap policy {policy}; erasus shards by module class: "
            "use TRANSFORMER_BASED_WRAP (with fsdp_transformer_layer_cls_to_wrap, or none "
            "for the model's own _no_split_modules) or NO_WRAP")
    wrap: tuple[str, ...] | None = None
    if policy == "NO_WRAP":
        wrap = ()
    elif env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").strip():
        wrap = tuple(c.strip() for c in env["FSDP_TRANSFORMER_CLS_TO_WRAP"].split(",")
                     if c.strip())
    return ShardingPlan(strategy="full_shard" if name == "FULL_SHARD" else "shard_grad_op",
                        wrap=wrap, source=source)


def configure(section: Any = None, environ: Mapping[str, str] | None = None
              ) -> ShardingPlan | None:
    """Set the run's plan from the config's ``run.sharding`` section (an object with
    ``strategy`` and ``wrap``) or, without one, the accelerate launch; ``None`` turns
    sharding off. Sharding needs more than one process; with one it stays off."""
    global _ACTIVE
    plan = plan_from_env(environ)
    if section is not None:
        plan = ShardingPlan(strategy=section.strategy,
                            wrap=None if section.wrap is None else tuple(section.wrap))
    if plan is not None and distributed.world_size() == 1:
        log.warning("sharding (from %s) needs several processes; this is one, so training "
                    "is not sharded (launch with torchrun --nproc_per_node N)", plan.source)
        plan = None
    _ACTIVE = plan
    return plan


def reset() -> None:
    """Turn sharding off (at the end of a run)."""
    global _ACTIVE
    _ACTIVE = None
    _LAST.clear()


def describe() -> dict[str, Any] | None:
    """The run's sharding for ``run_info``: strategy, source, and the FSDP units and this
    process's fraction of the parameter values in the last sharded loop."""
    if _ACTIVE is None:
        return None
    return {"strategy": _ACTIVE.strategy, "source": _ACTIVE.source, **_LAST}


def active() -> ShardingPlan | None:
    """The plan of the current run, or ``None`` (not sharded)."""
    return _ACTIVE


def require_shardable(strategy: Any) -> None:
    """Raise when sharding is on and ``strategy`` cannot train a sharded model."""
    plan = _ACTIVE
    if plan is None or getattr(strategy, "shardable", False):
        return
    name = getattr(strategy, "name", type(strategy).__name__)
    raise IncompatibleComponentError(
        f"strategy '{name}' cannot train a sharded model (sharding from {plan.source}): it "
        "reaches into the model's parameters or layers itself (hooks, gradient masks, "
        "weight penalties or its own model copies), which FSDP splits across processes. "
        "Run it data-parallel (leave run.sharding unset, launch with torchrun or "
        "configs/accelerate/ddp.yaml), or train it as a LoRA adapter on one device")


def _wrap_classes(model: torch.nn.Module, plan: ShardingPlan) -> set[str]:
    names = plan.wrap
    if names is None:
        names = tuple(getattr(model, "_no_split_modules", None) or ())
    present = {type(m).__name__ for m in model.modules()}
    missing = [n for n in names if n not in present]
    if missing:
        raise IncompatibleComponentError(
            f"sharding ({plan.source}) wraps module class(es) {missing}, which model "
            f"{type(model).__name__} does not have; its module classes are "
            f"{sorted(present)}")
    return set(names)


def _local(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def _full(t: Any) -> Any:
    """The whole tensor of a (possibly sharded) tensor, a collective for a DTensor; any
    other value as it is."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


class ShardedModel:
    """A sharded twin of a plain model, and the copies between the two."""

    def __init__(self, plain: torch.nn.Module, plan: ShardingPlan, device: str) -> None:
        import torch
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        self.plain = plain
        self.plan = plan
        mesh = init_device_mesh(torch.device(device).type, (distributed.world_size(),))
        # the twin is built with its parameters on the meta device (no storage; tied
        # parameters stay tied), sharded there, and only its shards are then allocated
        # and filled from the plain model: no process ever holds a second whole copy
        memo: dict[int, Any] = {
            id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"),
                                      requires_grad=p.requires_grad)
            for p in plain.parameters()}
        self.twin = copy.deepcopy(plain, memo)
        classes = _wrap_classes(self.twin, plan)
        units = [m for m in self.twin.modules()
                 if type(m).__name__ in classes and m is not self.twin]
        for unit in units:
            fully_shard(unit, mesh=mesh, reshard_after_forward=plan.reshard_after_forward)
        fully_shard(self.twin, mesh=mesh, reshard_after_forward=plan.reshard_after_forward)
        self.twin.to_empty(device=device)
        self.load_from_plain()
        self.units = len(units) + 1
        total = sum(p.numel() for p in self.twin.parameters())
        local = sum(_local(p).numel() for p in self.twin.parameters())
        #: The fraction of the parameter values (and so of the gradients and optimizer
        #: state) this process holds while training: about 1 / processes.
        self.local_fraction = local / max(1, total)

    @property
    def loss_scale(self) -> float:
        """FSDP averages gradients over processes; the loop wants their sum."""
        return float(distributed.world_size())

    def gather_into_plain(self) -> None:
        """Copy the twin's weights (gathered one tensor at a time) into the plain model.
        A collective: every process calls it."""
        import torch

        plain = dict(self.plain.named_parameters())
        buffers = dict(self.plain.named_buffers())
        with torch.no_grad():
            for name, p in self.twin.named_parameters():
                plain[name].copy_(_full(p.detach()))
            for name, b in self.twin.named_buffers():
                buffers[name].copy_(b)

    def load_from_plain(self) -> None:
        """Shard the plain model's weights into the twin (when it is built, and after a
        checkpoint was read into the plain model)."""
        import torch
        from torch.distributed.tensor import DTensor, distribute_tensor

        plain = dict(self.plain.named_parameters())
        buffers = dict(self.plain.named_buffers())
        with torch.no_grad():
            for name, p in self.twin.named_parameters():
                full = plain[name].detach().to(_local(p).device, p.dtype)
                if isinstance(p, DTensor):
                    full = distribute_tensor(full, p.device_mesh, p.placements)
                p.copy_(full)
            for name, b in self.twin.named_buffers():
                b.copy_(buffers[name])

    def finite_grads(self) -> bool:
        """Whether every process's gradient shards are finite (agreed by all)."""
        import torch

        grads = [_local(p.grad) for p in self.twin.parameters() if p.grad is not None]
        ok = all(bool(torch.isfinite(g).all()) for g in grads if g.numel())
        return all(distributed.gather(ok))

    def grad_norms(self) -> dict[str, float]:
        """The whole-tensor gradient norm of each trainable parameter (a collective)."""
        return {name: float(_full(p.grad.detach().norm()))
                for name, p in self.twin.named_parameters()
                if p.requires_grad and p.grad is not None}

    def optimizer(self, optimizer: torch.optim.Optimizer) -> _GatheredOptimizer:
        """``optimizer`` seen with whole tensors: what checkpoints save and load."""
        return _GatheredOptimizer(optimizer)


class _GatheredOptimizer:
    """An optimizer over sharded parameters whose ``state_dict`` holds whole tensors (the
    unsharded format) and whose ``load_state_dict`` takes one and shards it."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        sd = self.optimizer.state_dict()
        sd["state"] = {k: {n: _full(v) for n, v in s.items()}
                       for k, s in sd["state"].items()}
        return sd

    def gathered(self) -> _Gathered:
        """The state as it is now, gathered (a collective): what a checkpoint saves."""
        return _Gathered(self.state_dict())

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        from torch.distributed.tensor import DTensor, distribute_tensor

        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state = {}
        for k, s in sd["state"].items():
            p = params[int(k)]
            state[k] = {n: (distribute_tensor(v.to(_local(p).device), p.device_mesh,
                                              p.placements)
                            if isinstance(p, DTensor) and v.shape == p.shape else v)
                        for n, v in s.items()}
        self.optimizer.load_state_dict({**sd, "state": state})


@dataclass(frozen=True)
class _Gathered:
    """A gathered optimizer state, offered to a checkpoint store as ``state_dict()``."""

    state: dict[str, Any]

    def state_dict(self) -> dict[str, Any]:
        return self.state


@contextmanager
def sharded_training(adapter: ModelAdapter, plan: ShardingPlan) -> Iterator[ShardedModel]:
    """Train ``adapter``'s sharded twin inside the block (``adapter.model`` is the twin);
    on leaving normally the trained weights are gathered into the plain model, which is
    ``adapter.model`` again. On an error the plain model keeps its weights from before
    the block."""
    plain = adapter.model
    device = str(adapter.device)
    offload = device.startswith("cuda")
    distributed.broadcast_parameters(plain)
    if offload:  # the plain copy waits in CPU memory; the accelerator holds shards only
        plain.to("cpu")
    sharded = ShardedModel(plain, plan, device)
    log.info("training sharded over %d processes (%s, from %s): %d FSDP units, this "
             "process holds %.1f%% of the parameter values", distributed.world_size(),
             plan.strategy, plan.source, sharded.units, 100 * sharded.local_fraction)
    _LAST.update(units=sharded.units, local_fraction=round(sharded.local_fraction, 4))
    adapter.model = sharded.twin
    try:
        yield sharded
        sharded.gather_into_plain()
    finally:
        adapter.model = plain
        del sharded.twin
        if offload:
            plain.to(device)
