"""GLISTER: the coreset whose gradient step most raises the validation log-likelihood."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.selectors._features import (
    FeatureSelectorParams,
    forget_data,
    make_selection,
)
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, SelectionContext, Selector, resolve_budget

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["Glister", "GlisterParams"]


class GlisterParams(FeatureSelectorParams):
    """Parameters of GLISTER selection."""

    validation: str = Field(
        "retain", description="The set whose log-likelihood the selection maximises: "
        "'retain' (default), 'test', or the name of an extra split of the benchmark "
        "(given to the Python API as splits={name: dataset}).")
    lr: float = Field(
        0.01, gt=0, description="Step size eta of the simulated gradient step "
        "theta_S = theta - eta * sum_{i in S} grad loss_i (the training learning rate in "
        "the paper).")
    param_group: str | list[str] | None = Field(
        None, description="Parameters the step updates: None for every trainable "
        "parameter, the name of one of the model's parameter groups ('head' on a "
        "classifier is the paper's last-layer approximation), or a list of parameter names.")
    refresh_every: int = Field(
        1, ge=1, description="Recompute the validation gradient at theta_S after this many "
        "additions (1: after every one, the exact greedy Taylor scheme).")


def _validation_set(context: SelectionContext | None, name: str) -> Any:
    from erasus.data import unwrap

    if context is None:
        raise IncompatibleComponentError(
            f"selector 'glister' needs a validation set (validation: {name!r}) but was given "
            "no selection context; run it through the pipeline or Unlearner.fit with that "
            f"set (retain=..., test=... or splits={{{name!r}: ...}})")
    data = context.split(name)
    if data is None or len(unwrap(data)[0]) == 0:
        have = [s for s in ("retain", "test") if context.split(s) is not None]
        have += [s for s, d in context.extra.items() if d is not None]
        raise IncompatibleComponentError(
            f"selector 'glister' needs the validation set {name!r}, which is "
            f"{'empty' if data is not None else 'missing'}; available sets: "
            f"{', '.join(have) or 'none'}. Set selector.validation to one of them, or pass "
            f"that set (retain=..., test=... or splits={{{name!r}: ...}})")
    return unwrap(data)[0]


def _load_flat(adapter: ModelAdapter, names: list[str], flat: torch.Tensor) -> None:
    import torch

    params = dict(adapter.model.named_parameters())
    offset = 0
    with torch.no_grad():
        for pname in names:
            param = params[pname]
            size = param.numel()
            param.copy_(flat[offset:offset + size].view_as(param))
            offset += size


class Glister(Selector):
    """GLISTER: greedily pick the examples whose gradient step best lowers the validation loss.

    Computes each forget example's loss gradient ``g_i`` with respect to ``param_group``
    (``erasus.gradients.per_example_grads``, eval mode) and the mean validation-loss
    gradient ``v`` on the ``validation`` set (``mean_grad``). GLISTER maximises the
    validation log-likelihood after one gradient step on the subset,
    ``LL_V(theta - lr * sum_{i in S} g_i)``; with the first-order Taylor expansion at the
    current subset's parameters ``theta_S``, adding example ``e`` raises it by
    ``lr * g_e . v(theta_S)``. The greedy adds the unselected example with the largest such
    gain (ties to the lowest index), then moves ``theta_S`` by ``-lr * g_e`` and recomputes
    ``v(theta_S)`` (every ``refresh_every`` additions) on a private copy of the model: the
    model passed in is never changed. This is GLISTER-ONLINE's greedy Taylor approximation
    with the training gradients taken at the current weights; the optional diversity
    regulariser of the paper is not used. Deterministic: the seed is unused.

    Score of a selected example: its Taylor gain when chosen (the estimated drop in the
    validation loss). ``info`` has the ``order``, the ``validation`` set and the number of
    validation-gradient ``refreshes``. Works on any adapter with a per-example loss; needs
    the validation set from the selection context (the pipeline passes the benchmark's
    splits) and raises ``IncompatibleComponentError`` naming the available sets when it is
    missing (``needs`` lists ``retain``, the default validation set). Memory: the
    ``n x P`` forget gradients (``P`` parameters differentiated: choose a small
    ``param_group`` on large models) and one copy of the model.
    """

    name = "glister"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = GlisterParams
    paper = Paper(
        title="GLISTER: Generalization based Data Subset Selection for Efficient and "
        "Robust Learning",
        authors="Krishnateja Killamsetty, Durga Sivasubramanian, Ganesh Ramakrishnan, "
        "Rishabh Iyer",
        year=2021,
        url="https://arxiv.org/abs/2012.10630",
        venue="AAAI",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import numpy as np
        import torch

        from erasus.gradients import flat_params, mean_grad, param_names, per_example_grads

        p: GlisterParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        validation = _validation_set(context, p.validation)
        val_collate = collate_fn or (context.collate_fn if context is not None else None)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        names = param_names(adapter, p.param_group)
        grads = per_example_grads(adapter, dataset, names=names, batch_size=p.batch_size,
                                  collate_fn=collate_fn).detach()
        g = grads.double().cpu().numpy()
        v = mean_grad(adapter, validation, names=names, batch_size=p.batch_size,
                      collate_fn=val_collate).double().cpu().numpy()
        theta = flat_params(adapter, names)
        step = np.zeros(g.shape[1])
        free = np.ones(n, dtype=bool)
        shadow: ModelAdapter | None = None
        order: list[int] = []
        gains: list[float] = []
        refreshes = 0
        for t in range(k):
            gain = p.lr * (g @ v)
            gain[~free] = -np.inf
            j = int(np.argmax(gain))
            order.append(j)
            gains.append(float(gain[j]))
            free[j] = False
            step += g[j]
            if (t + 1) % p.refresh_every == 0 and t + 1 < k:
                if shadow is None:
                    shadow = adapter.clone()
                moved = theta - p.lr * torch.as_tensor(step, dtype=theta.dtype,
                                                       device=theta.device)
                _load_flat(shadow, names, moved)
                v = mean_grad(shadow, validation, names=names, batch_size=p.batch_size,
                              collate_fn=val_collate).double().cpu().numpy()
                refreshes += 1
        return make_selection(order, gains, {
            "selector": self.name, "n_forget": n, "k": k, "validation": p.validation,
            "lr": p.lr, "refreshes": refreshes})
