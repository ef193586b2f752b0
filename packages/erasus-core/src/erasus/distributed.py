"""Data-parallel runs over ``torch.distributed`` (DDP semantics, without the wrapper).

``torchrun --nproc_per_node N -m erasus run CONFIG`` starts N processes; each runs the
whole pipeline on the same seed, so everything outside the training loop (selection,
one-shot strategies, the data) is computed identically on every process. The shared
training loop (:func:`erasus.training.train_loop`) splits every batch into contiguous
shares, one per process; each process weights its share's loss by the share's size
(``len(share) / len(batch)``) and the gradients are summed across processes before the
optimizer step, so for losses that are means over examples the step equals the
one-process step on the whole batch (up to floating-point summation order). Weights are
broadcast from rank 0 when a loop starts and floating-point buffers (BatchNorm running
statistics) are averaged after every step, so all processes hold the same model, as DDP
does. Evaluation splits each forward pass over examples the same way and gathers the
per-example outputs on every process.

Gradients are reduced explicitly rather than through ``DistributedDataParallel``: a
strategy's loss may run the model several times per step (forget and retain batches, a
reference pass), use only some parameters, or go through a PEFT wrapper, none of which
DDP's bucketed hooks handle without ``find_unused_parameters`` and static-graph caveats.

Only rank 0 writes the run directory, the model cache and checkpoints and calls trackers
and reporters; the other ranks write to a scratch directory that is removed at the end.
The processes must share a file system (one machine, or a shared ``run.cache_dir``).

With one process (no ``WORLD_SIZE`` above 1 in the environment) every function here is a
no-op, so the single-process path is unchanged. Sharded training (FSDP2, ``run.sharding``
or an accelerate FSDP launch) is :mod:`erasus.sharding`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "all_reduce_gradients",
    "average_buffers",
    "barrier",
    "broadcast",
    "broadcast_parameters",
    "gather",
    "gather_shards",
    "is_main",
    "rank",
    "setup",
    "share",
    "teardown",
    "world_size",
]

T = TypeVar("T")


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes of the run (1 when not distributed)."""
    if not _initialized():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def rank() -> int:
    """This process's rank: the group's, else the launcher's ``RANK`` (0 when neither)."""
    if not _initialized():
        return int(os.environ.get("RANK", "0") or 0)
    import torch.distributed as dist

    return dist.get_rank()


def is_main() -> bool:
    """Whether this process writes outputs (rank 0, or the only process)."""
    return rank() == 0


def setup(device: str) -> tuple[str, bool]:
    """Join the process group that ``torchrun`` (or ``accelerate launch``) describes.

    Reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` from the
    environment; with a world size above 1 it initialises ``torch.distributed`` (NCCL on
    CUDA, gloo otherwise). Returns this process's device (``cuda:LOCAL_RANK`` for a CUDA
    device) and whether this call created the group (the caller then tears it down).
    """
    import torch

    from erasus.errors import IncompatibleComponentError

    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return device, False
    import torch.distributed as dist

    if not dist.is_available():
        raise IncompatibleComponentError(
            f"WORLD_SIZE is {size} but this torch build has no torch.distributed; run one "
            "process (plain `erasus run`) or install a torch build with distributed support")
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if dist.is_initialized():
        return device, False
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return device, True


def teardown() -> None:
    """Leave the process group (after a final barrier)."""
    if _initialized():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it, on every process (any picklable value)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    size = world_size()
    if size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def share(n: int, min_size: int = 1) -> tuple[int, int]:
    """The ``[start, stop)`` of this process's contiguous share of ``n`` items.

    Items are split as evenly as possible over at most ``n // min_size`` processes (so no
    non-empty share is smaller than ``min_size``); the remaining processes get an empty
    share. With one process the share is everything.
    """
    size = world_size()
    if size == 1:
        return 0, n
    active = max(1, min(size, n // max(1, min_size)))
    r = rank()
    if r >= active:
        return n, n
    base, extra = divmod(n, active)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def gather_shards(parts: list[T]) -> list[T]:
    """Concatenate every process's list (computed on its :func:`share`) in rank order."""
    if world_size() == 1:
        return parts
    return [item for chunk in gather(parts) for item in chunk]


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum the gradients of every process into each process's ``.grad``.

    A parameter that got no gradient on any process keeps ``grad = None`` (optimizers skip
    it, as in one process); one that got a gradient somewhere gets the sum, with zeros
    standing in for the processes where it had none.
    """
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32,
                       device=device)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    if not live:
        return
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in live:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():  # one collective per dtype
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        offset = 0
        for p in group:
            count = p.grad.numel()
            p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
            offset += count


def average_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across processes."""
    size = world_size()
    if size == 1:
        return
    import torch.distributed as dist

    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data)
            buf.data.div_(size)
