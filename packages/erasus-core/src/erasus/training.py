"""The one training loop every loss-based strategy shares.

Per optimizer step it draws ``grad_accum`` batches of the strategy's primary set (and as
many of the paired set), asks the strategy for the loss, and steps the optimizer. It
checks the loss before every update and stops within that step when it is not finite or
exceeds ``max_abs_loss`` (the weights stay those of the last good step, and the last
checkpoint is kept). Batch order depends only on the seed and the epoch, so a run resumed
from a checkpoint continues exactly where the killed one stopped.

Under ``torchrun`` (see :mod:`erasus.distributed`) every process draws the same batches
and computes the loss on its contiguous share of each; the share's loss is weighted by its
size and the gradients are summed across processes before the step, so the step is the
one-process step on the whole batch for losses that are means over examples. Logged
losses are the whole batch's; only rank 0 writes checkpoints and shows progress. With
sharding on (:mod:`erasus.sharding`) the same step is taken on an FSDP-sharded twin of the
model, whose gradients FSDP reduces.

An epoch is one pass over the primary set. The paired set is drawn in its own shuffled
order alongside (batch ``j`` of the primary set with batch ``j`` of the paired set,
wrapping around), so per epoch it contributes as many batches as the primary set has: a
small forget set paired with a large retain set sees a fresh random part of it each epoch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from erasus import distributed, sharding
from erasus.errors import DivergenceError, IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.sharding import ShardedModel
    from erasus.strategy import History, LoopParams, LossStrategy, RunContext, UnlearnData

__all__ = ["epoch_batches", "gradient_norms", "make_optimizer", "make_scheduler",
           "train_loop"]


def make_optimizer(params: LoopParams, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by ``params.optimizer`` over the model's trainable weights."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise IncompatibleComponentError(
            f"{type(model).__name__} has no trainable weights (every parameter has "
            "requires_grad=False; a 4-bit or 8-bit quantized model's weights cannot be "
            "trained): train low-rank adapters on it with strategy lora, or load it "
            "unquantized")
    if params.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum,
                               weight_decay=params.weight_decay)
    if params.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay)


def make_scheduler(params: LoopParams, optimizer: torch.optim.Optimizer, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    import torch

    total = max(1, total_steps)
    if params.scheduler == "linear":
        def factor(step: int) -> float:
            return max(0.0, 1.0 - step / total)
    elif params.scheduler == "cosine":
        def factor(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    else:
        def factor(step: int) -> float:
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, min_size: int = 1
                  ) -> list[list[int]]:
    """The index batches of one epoch over ``n`` examples, shuffled by ``(seed, epoch)``.

    A last batch smaller than ``min_size`` joins the one before it.
    """
    import torch

    from erasus.data import chunk

    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return chunk(torch.randperm(n, generator=g).tolist(), batch_size, min_size)


class _Sets:
    """Fetches collated, canonical batches of the primary and the paired set by index."""

    def __init__(self, adapter: ModelAdapter, data: UnlearnData) -> None:
        from torch.utils.data.dataloader import default_collate

        self.adapter = adapter
        self.collate = data.collate_fn or default_collate

    def batch(self, dataset: Any, indices: list[int]) -> dict[str, Any]:
        import torch

        raw = self.collate([dataset[i] for i in indices])
        batch = self.adapter.prepare_batch(raw)
        batch["index"] = torch.tensor(indices, dtype=torch.long, device=self.adapter.device)
        return batch


def _finite_grads(model: torch.nn.Module) -> bool:
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.detach().abs().max() for g in grads])).all())


def train_loop(strategy: LossStrategy, adapter: ModelAdapter, data: UnlearnData,
               run: RunContext) -> History:
    """Run ``strategy``'s loss on ``adapter`` until its epochs (or ``max_steps``) are done.

    Under sharding (:mod:`erasus.sharding`) the loop trains a sharded twin of the model and
    gathers the result into ``adapter.model`` at the end.
    """
    primary_name, primary, paired_name, paired = _sets_of(strategy, data)
    if primary is None or len(primary) == 0:
        raise IncompatibleComponentError(
            f"strategy '{strategy.name}' trains over the {primary_name} set, which is empty "
            "or missing")
    if paired_name and (paired is None or len(paired) == 0):
        raise IncompatibleComponentError(
            f"strategy '{strategy.name}' needs a non-empty {paired_name} set; provide one "
            f"(data.{paired_name}) or choose a strategy that does not need it")

    plan = sharding.active()
    try:
        if plan is None:
            distributed.broadcast_parameters(adapter.model)
            return _train(strategy, adapter, data, run, None)
        sharding.require_shardable(strategy)
        if run.recorder is not None:
            raise IncompatibleComponentError(
                f"the training record ({type(run.recorder).__name__}) cannot be kept while "
                f"training is sharded ({plan.source}): a strategy that needs the original "
                "model's training record runs data-parallel only (leave run.sharding unset)")
        with sharding.sharded_training(adapter, plan) as sharded:
            return _train(strategy, adapter, data, run, sharded)
    finally:
        adapter.model.eval()


def _sets_of(strategy: LossStrategy, data: UnlearnData
             ) -> tuple[str, Any, str | None, Any]:
    """The name and data of the set an epoch passes over, and of the paired set."""
    paired_name = strategy.pair_with
    return (strategy.epoch_over, getattr(data, strategy.epoch_over), paired_name,
            getattr(data, paired_name) if paired_name else None)


def _train(strategy: LossStrategy, adapter: ModelAdapter, data: UnlearnData,
           run: RunContext, sharded: ShardedModel | None) -> History:
    """The loop itself, on ``adapter.model`` (the sharded twin when ``sharded``)."""
    from erasus.strategy import History

    params: LoopParams = strategy.params  # type: ignore[assignment]
    primary_name, primary, paired_name, paired = _sets_of(strategy, data)
    model = adapter.model
    model.train()
    sets = _Sets(adapter, data)
    batches_per_epoch = len(epoch_batches(len(primary), params.batch_size, run.seed, 0,
                                          adapter.min_batch_size))
    steps_per_epoch = math.ceil(batches_per_epoch / params.grad_accum)
    total_steps = steps_per_epoch * params.epochs
    if params.max_steps is not None:
        total_steps = min(total_steps, params.max_steps)
    optimizer = make_optimizer(params, model)
    scheduler = make_scheduler(params, optimizer, total_steps)

    history = History()
    step, start_epoch, start_batch = 0, 0, 0
    last_good: int | None = None
    store = run.checkpoints
    # rank 0 decides (and recovers an interrupted checkpoint swap) before anyone reads
    if store is not None and distributed.broadcast(store.exists if distributed.is_main()
                                                   else None):
        if sharded is None:
            state = store.load(model, optimizer, scheduler)
        else:  # a checkpoint holds whole tensors: read into the plain model, then shard
            state = store.load(sharded.plain, sharded.optimizer(optimizer), scheduler)
            sharded.load_from_plain()
        step, start_epoch, start_batch = state["step"], state["epoch"], state["batch"]
        history.steps = state["history"]
        history.gradient_norms = state.get("gradient_norms", [])
        history.resumed_from = step
        last_good = step

    recorder = run.recorder
    stop_loss = params.stop_forget_loss
    stop_acc = params.stop_forget_accuracy
    stopped = False
    progress = _progress(run, total_steps, step)
    # per-layer gradient norms for the gradient-flow plot: about 100 snapshots a run
    norms_every = max(1, math.ceil(total_steps / 100)) if run.record_gradient_norms else 0
    # FSDP averages gradients over processes; the loop's weighting wants their sum
    scale = sharded.loss_scale if sharded is not None else 1.0
    try:
        for epoch in range(start_epoch, params.epochs):
            if step >= total_steps or stopped:
                break
            min_size = adapter.min_batch_size
            order = epoch_batches(len(primary), params.batch_size, run.seed, epoch, min_size)
            paired_order = (epoch_batches(len(paired), params.batch_size, run.seed + 7919,
                                          epoch, min_size) if paired is not None else None)
            first = start_batch if epoch == start_epoch else 0
            k = first
            while k < len(order) and step < total_steps:
                group = range(k, min(k + params.grad_accum, len(order)))
                optimizer.zero_grad(set_to_none=True)
                if recorder is not None:
                    recorder.before_step(model)
                logged: dict[str, float] = {}
                for j in group:
                    full = order[j]
                    lo, hi = distributed.share(len(full), min_size)
                    mine = full[lo:hi]
                    # sharded, every process runs every forward (they gather parameters
                    # together): one with an empty share runs a part of the batch at
                    # weight 0
                    run_on = mine or (full[:max(1, min_size)] if sharded else [])
                    pb = sets.batch(primary, run_on) if run_on else None
                    if recorder is not None:  # records every example of the batch
                        recorder.on_batch(adapter, pb if len(mine) == len(full)
                                          else sets.batch(primary, full), epoch)
                    parts: dict[str, Any] = {}
                    if pb is not None:
                        batches: dict[str, Any] = {"forget": None, "retain": None,
                                                   primary_name: pb}
                        if paired_order is not None and paired_name:
                            batches[paired_name] = sets.batch(
                                paired, _paired_share(paired_order[j % len(paired_order)],
                                                      lo, hi, len(full)))
                        parts = strategy.loss(adapter, **batches)
                    weight = len(mine) / len(full)
                    values = _batch_values(parts if mine else {}, weight)
                    value = values.get("loss", math.nan)
                    if not math.isfinite(value) or abs(value) > params.max_abs_loss:
                        _diverged(strategy, step + 1, value, params, last_good)
                    if parts:
                        (parts["loss"] * (weight * scale / len(group))).backward()
                    for name, part in values.items():
                        logged[name] = logged.get(name, 0.0) + part / len(group)
                if sharded is None:  # sharded, FSDP has reduced them in backward
                    distributed.all_reduce_gradients(model)
                if norms_every and (step % norms_every == 0 or step + 1 == total_steps):
                    history.gradient_norms.append(
                        {"step": step + 1, "norms": gradient_norms(model) if sharded is None
                         else sharded.grad_norms()})
                if not (_finite_grads(model) if sharded is None else sharded.finite_grads()):
                    _diverged(strategy, step + 1, float("nan"), params, last_good,
                              what="gradient")
                if params.grad_clip is not None:
                    import torch

                    torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
                used_lr = float(optimizer.param_groups[0]["lr"])
                optimizer.step()
                distributed.average_buffers(model)
                scheduler.step()
                step += 1
                if recorder is not None:
                    recorder.after_step(model, step, used_lr)
                k = group.stop
                logged["lr"] = float(optimizer.param_groups[0]["lr"])
                logged["epoch"] = float(epoch)
                logged["step"] = float(step)
                history.steps.append(logged)
                if run.on_step is not None:
                    run.on_step(step, logged)
                progress.advance(note=f"loss {logged.get('loss', 0):.4f}")
                if store is not None and params.checkpoint_every and (
                        step % params.checkpoint_every == 0 or step == total_steps):
                    next_epoch, next_batch = (epoch, k) if k < len(order) else (epoch + 1, 0)
                    saved, saved_optimizer = model, optimizer
                    if sharded is not None:  # gathered by every process, written by one
                        sharded.gather_into_plain()
                        saved = sharded.plain
                        saved_optimizer = sharded.optimizer(optimizer).gathered()
                    if distributed.is_main():
                        store.save(saved, saved_optimizer, scheduler,
                                   {"step": step, "epoch": next_epoch, "batch": next_batch,
                                    "history": history.steps,
                                    "gradient_norms": history.gradient_norms})
                    last_good = step
                if stop_loss is not None and logged.get("forget_loss", -math.inf) >= stop_loss:
                    history.stopped_early = f"forget_loss reached {stop_loss:g} at step {step}"
                    stopped = True
                    break
            if recorder is not None and (k >= len(order) or stopped):
                recorder.end_epoch(model, epoch, step)
            if stop_acc is not None and not stopped and data.forget is not None:
                accuracy = _forget_accuracy(strategy, adapter, data)
                model.train()
                if accuracy <= stop_acc:
                    history.stopped_early = (f"forget accuracy {accuracy:.4f} <= {stop_acc:g} "
                                             f"after epoch {epoch}")
                    stopped = True
    finally:
        progress.close()
    return history


def gradient_norms(model: torch.nn.Module) -> dict[str, float]:
    """The L2 norm of each trainable parameter's gradient, by parameter name (those
    without a gradient this step are left out)."""
    return {name: float(p.grad.detach().norm()) for name, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def _paired_share(indices: list[int], lo: int, hi: int, n: int) -> list[int]:
    """This process's share of a paired batch: the same fraction of it as its share
    ``[lo, hi)`` of the ``n`` primary examples, so both parts of a loss are weighted
    alike; all of it when that would be empty (fewer paired examples than processes)."""
    m = len(indices)
    return indices[round(lo * m / n):round(hi * m / n)] or indices


def _batch_values(parts: dict[str, Any], weight: float) -> dict[str, float]:
    """The loss parts of the whole batch: this process's, weighted by its share, summed
    over processes (a process with an empty share contributes nothing)."""
    values = {name: float(part.detach()) * weight for name, part in parts.items()}
    if distributed.world_size() == 1:
        return values
    merged: dict[str, float] = {}
    for shard in distributed.gather(values):
        for name, part in shard.items():
            merged[name] = merged.get(name, 0.0) + part
    return merged


def _forget_accuracy(strategy: LossStrategy, adapter: ModelAdapter, data: UnlearnData
                     ) -> float:
    """Accuracy on the forget set (for ``stop_forget_accuracy``); classifiers only."""
    import torch

    from erasus.data import index_loader

    labels_fn = getattr(adapter, "labels", None)
    if not callable(labels_fn):
        raise IncompatibleComponentError(
            f"stop_forget_accuracy needs a classification model adapter (labels()); "
            f"'{adapter.name}' has none: use stop_forget_loss with strategy "
            f"'{strategy.name}' instead")
    model = adapter.model
    model.eval()
    right = total = 0
    with torch.no_grad():
        for _, raw in index_loader(data.forget, batch_size=256, collate_fn=data.collate_fn,
                                   min_batch_size=adapter.min_batch_size):
            batch = adapter.prepare_batch(raw)
            logits = adapter.outputs(batch)["logits"]
            right += int((logits.argmax(-1) == labels_fn(batch)).sum())
            total += len(logits)
    return right / max(1, total)


def _diverged(strategy: LossStrategy, step: int, value: float, params: LoopParams,
              last_good: int | None, what: str = "loss") -> None:
    kept = (f"the last good checkpoint (step {last_good}) is kept" if last_good is not None
            else "no checkpoint had been written yet")
    raise DivergenceError(
        f"strategy '{strategy.name}' diverged at step {step}: {what} = {value} "
        f"(limit |loss| <= {params.max_abs_loss:g}); the update was not applied and {kept}. "
        "Lower lr, set grad_clip, or raise max_abs_loss if such losses are expected.",
        step=step, last_good_step=last_good)


def _progress(run: RunContext, total: int, completed: int) -> Any:
    from erasus.progress import progress_bar

    return progress_bar(run.progress, run.description, total, completed)
