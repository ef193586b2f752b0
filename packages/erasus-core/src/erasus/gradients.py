"""Per-example gradients, mean gradients and Hessian-vector products through an adapter.

Gradient-based selectors (influence, TracIn, GradMatch, CRAIG, GLISTER...) and
second-order strategies (Fisher forgetting, SSD, certified removal) all need the gradient
of each example's loss with respect to some of the model's parameters. This module
computes them through :meth:`erasus.adapters.ModelAdapter.per_example_loss`, so they work
for any adapter, one example's loss at a time via ``torch.func`` (``vmap`` over ``grad``)
when the model allows it, and by a plain loop over examples otherwise (models with
batch-norm in training mode, or whose loss needs a partner example, take the loop).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = [
    "flat_params",
    "hvp",
    "iter_example_grads",
    "math_attention",
    "mean_grad",
    "param_names",
    "per_example_grads",
]


def param_names(adapter: ModelAdapter, names: Sequence[str] | str | None = None) -> list[str]:
    """The trainable parameter names to differentiate: all, a parameter group, or a list.

    ``names`` may be ``None`` (every trainable parameter), the name of one of
    ``adapter.parameter_groups()`` (``"head"``...), or explicit parameter names.
    """
    from erasus.errors import IncompatibleComponentError

    trainable = [n for n, p in adapter.model.named_parameters() if p.requires_grad]
    if names is None:
        return trainable
    if isinstance(names, str):
        groups = adapter.parameter_groups()
        if names not in groups:
            raise IncompatibleComponentError(
                f"model '{adapter.name}' has no parameter group '{names}'; groups: "
                f"{', '.join(sorted(groups))}")
        wanted = set(groups[names])
        return [n for n in trainable if n in wanted]
    unknown = sorted(set(names) - set(trainable))
    if unknown:
        raise IncompatibleComponentError(
            f"model '{adapter.name}' has no trainable parameters {', '.join(unknown[:5])}")
    return [n for n in trainable if n in set(names)]


@contextmanager
def math_attention() -> Iterator[None]:
    """Run scaled-dot-product attention on its differentiable math kernel, so that
    Hessian-vector products (double back-propagation) work through transformer models
    (the fused CPU and flash kernels have no second derivative)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch: every kernel is the math one
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def flat_params(adapter: ModelAdapter, names: Sequence[str] | str | None = None
                ) -> torch.Tensor:
    """The named parameters' current values as one flat (detached) vector."""
    import torch

    params = dict(adapter.model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in param_names(adapter, names)])


def _batches(adapter: ModelAdapter, dataset: Any, batch_size: int, collate_fn: Any
             ) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
    from erasus.data import index_loader

    loader = index_loader(dataset, batch_size=batch_size, collate_fn=collate_fn,
                          min_batch_size=adapter.min_batch_size)
    for indices, raw in loader:
        batch = adapter.prepare_batch(raw)
        batch["index"] = indices.to(adapter.device)
        yield indices, batch


def _slice(batch: dict[str, Any], i: int) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if hasattr(value, "shape") and len(value.shape) > 0:
            out[key] = value[i:i + 1]
        else:
            out[key] = value
    return out


def iter_example_grads(adapter: ModelAdapter, dataset: Any, *,
                       names: Sequence[str] | str | None = None, batch_size: int = 64,
                       collate_fn: Any = None, loss_fn: Any = None
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(indices, grads)`` per batch: ``grads[i]`` is example ``indices[i]``'s
    flattened loss gradient with respect to ``names`` (shape ``[batch, P]``).

    ``loss_fn(adapter, batch) -> per-example losses`` replaces the adapter's training loss
    (a margin, a KL term...). The model is put in eval mode (dropout off, batch-norm
    statistics frozen) while the gradients are computed, and restored afterwards.
    """

    loss_fn = loss_fn or (lambda a, b: a.per_example_loss(b))
    model = adapter.model
    chosen = param_names(adapter, names)
    was_training = model.training
    model.eval()
    try:
        for indices, batch in _batches(adapter, dataset, batch_size, collate_fn):
            yield indices, _example_grads(adapter, batch, chosen, loss_fn)
    finally:
        model.train(was_training)


def _example_grads(adapter: ModelAdapter, batch: dict[str, Any], chosen: list[str],
                   loss_fn: Any) -> torch.Tensor:
    import torch

    model = adapter.model
    all_params = dict(model.named_parameters())
    selected = [all_params[n] for n in chosen]
    n = adapter.batch_size(batch)
    if adapter.min_batch_size <= 1:
        try:
            return _vmap_grads(adapter, batch, chosen, loss_fn)
        except Exception:
            pass
    rows = []
    if adapter.min_batch_size > 1:
        # the loss of one example depends on its batch (contrastive): d loss_i / d theta
        for i in range(n):
            losses = loss_fn(adapter, batch)
            grads = torch.autograd.grad(losses[i], selected, allow_unused=True)
            rows.append(_flatten(grads, selected))
        return torch.stack(rows)
    for i in range(n):
        losses = loss_fn(adapter, _slice(batch, i))
        grads = torch.autograd.grad(losses.sum(), selected, allow_unused=True)
        rows.append(_flatten(grads, selected))
    return torch.stack(rows)


def _flatten(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
             ) -> torch.Tensor:
    import torch

    return torch.cat([(g if g is not None else torch.zeros_like(p)).detach().reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def _vmap_grads(adapter: ModelAdapter, batch: dict[str, Any], chosen: list[str],
                loss_fn: Any) -> torch.Tensor:
    import torch
    from torch.func import grad, vmap

    model = adapter.model
    params = {n: p.detach() for n, p in model.named_parameters() if n in set(chosen)}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    tensor_keys = [k for k, v in batch.items() if hasattr(v, "shape") and len(v.shape) > 0]
    others = {k: v for k, v in batch.items() if k not in tensor_keys}

    def example_loss(p: dict[str, torch.Tensor], *row: torch.Tensor) -> torch.Tensor:
        example = {k: v.unsqueeze(0) for k, v in zip(tensor_keys, row, strict=True)}
        example.update(others)
        # every call into the model (model(x), model.features, model.head via the
        # adapter) sees the functional tensors while the parameters are swapped
        with _swapped(model, {**frozen, **p}):
            return loss_fn(adapter, example).sum()

    fn = grad(example_loss)
    grads = vmap(fn, in_dims=(None, *([0] * len(tensor_keys))))(
        params, *[batch[k] for k in tensor_keys])
    return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in chosen], dim=1)


class _swapped:
    """Temporarily replace a module's parameters by given tensors (for ``torch.func``)."""

    def __init__(self, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        self.model = model
        self.tensors = tensors
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name, tensor in self.tensors.items():
            module, attr = self._owner(name)
            self.saved[name] = module._parameters[attr]
            del module._parameters[attr]
            setattr(module, attr, tensor)

    def __exit__(self, *exc: Any) -> None:
        for name, param in self.saved.items():
            module, attr = self._owner(name)
            delattr(module, attr)
            module._parameters[attr] = param

    def _owner(self, name: str) -> tuple[Any, str]:
        *path, attr = name.split(".")
        module = self.model
        for part in path:
            module = getattr(module, part)
        return module, attr


def per_example_grads(adapter: ModelAdapter, dataset: Any, *,
                      names: Sequence[str] | str | None = None, batch_size: int = 64,
                      collate_fn: Any = None, loss_fn: Any = None) -> torch.Tensor:
    """All per-example gradients of ``dataset`` as one ``[n, P]`` tensor, in dataset order."""
    import torch

    rows: dict[int, torch.Tensor] = {}
    for indices, grads in iter_example_grads(adapter, dataset, names=names,
                                             batch_size=batch_size, collate_fn=collate_fn,
                                             loss_fn=loss_fn):
        for i, g in zip(indices.tolist(), grads, strict=True):
            rows[int(i)] = g
    return torch.stack([rows[i] for i in range(len(rows))])


def mean_grad(adapter: ModelAdapter, dataset: Any, *,
              names: Sequence[str] | str | None = None, batch_size: int = 256,
              collate_fn: Any = None, loss_fn: Any = None, create_graph: bool = False
              ) -> torch.Tensor:
    """The gradient of the mean loss over ``dataset`` (one flat vector; eval mode)."""
    import torch

    loss_fn = loss_fn or (lambda a, b: a.per_example_loss(b))
    model = adapter.model
    chosen = param_names(adapter, names)
    params = dict(model.named_parameters())
    selected = [params[n] for n in chosen]
    n = len(dataset)
    total: torch.Tensor | None = None
    was_training = model.training
    model.eval()
    try:
        for _, batch in _batches(adapter, dataset, batch_size, collate_fn):
            loss = loss_fn(adapter, batch).sum() / n
            grads = torch.autograd.grad(loss, selected, allow_unused=True,
                                        create_graph=create_graph)
            flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                              for g, p in zip(grads, selected, strict=True)])
            total = flat if total is None else total + flat
    finally:
        model.train(was_training)
    assert total is not None
    return total if create_graph else total.detach()


def hvp(adapter: ModelAdapter, dataset: Any, vector: torch.Tensor, *,
        names: Sequence[str] | str | None = None, batch_size: int = 256,
        collate_fn: Any = None, loss_fn: Any = None, damping: float = 0.0) -> torch.Tensor:
    """``(H + damping I) v``: the mean-loss Hessian over ``dataset`` times ``vector``.

    Exact (double back-propagation, batch by batch), never forming ``H``; attention runs
    on its math kernel, the one with a second derivative.
    """
    import torch

    loss_fn = loss_fn or (lambda a, b: a.per_example_loss(b))
    model = adapter.model
    chosen = param_names(adapter, names)
    params = dict(model.named_parameters())
    selected = [params[n] for n in chosen]
    n = len(dataset)
    out = torch.zeros_like(vector)
    was_training = model.training
    model.eval()
    try:
        with math_attention():
            for _, batch in _batches(adapter, dataset, batch_size, collate_fn):
                loss = loss_fn(adapter, batch).sum() / n
                grads = torch.autograd.grad(loss, selected, create_graph=True, allow_unused=True)
                flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                  for g, p in zip(grads, selected, strict=True)])
                hv = torch.autograd.grad(flat @ vector, selected, allow_unused=True)
                out += torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                                  for h, p in zip(hv, selected, strict=True)]).detach()
    finally:
        model.train(was_training)
    return out + damping * vector
