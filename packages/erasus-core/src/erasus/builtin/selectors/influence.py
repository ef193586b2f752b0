"""Influence functions: score forget examples through inverse-Hessian-vector products."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin._papers import KOH_2017
from erasus.builtin.selectors._grad_common import (
    ScoreParams,
    forget_data,
    rank,
    target_data,
)
from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, SelectionContext, Selector, resolve_budget

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["Influence", "InfluenceParams", "exact_hessian", "hessian_products"]

# Hessian columns computed per batched double-backward pass (bounds the temporaries).
_COLUMNS = 256


class InfluenceParams(ScoreParams):
    """Parameters of influence-function selection."""

    target: str = Field(
        "self", description="'self': each example's self-influence g_i^T H^-1 g_i; or a "
        "named set ('retain', 'test', 'forget' or an extra split such as "
        "'test_forgotten_class'): the influence -g_T^T H^-1 g_i of up-weighting the "
        "example on that set's mean loss.")
    hessian_on: Literal["retain", "forget+retain"] = Field(
        "retain", description="The data whose mean-loss Hessian H is inverted.")
    method: Literal["auto", "exact", "lissa", "fisher"] = Field(
        "auto", description="How H^-1 v is computed: 'exact' (form H, eigen-solve), "
        "'lissa' (stochastic Neumann recursion), 'fisher' (damped empirical Fisher, "
        "Woodbury solve), or 'auto': exact when the parameters number at most "
        "max_exact_params, else lissa for a named target and fisher for 'self'.")
    parameters: str | None = Field(
        None, description="Parameter group to differentiate (a name from the model's "
        "parameter_groups(), e.g. 'head'); null: every trainable parameter.")
    damping: float = Field(
        0.01, ge=0, description="lambda added to the Hessian: (H + lambda I)^-1 (keeps it "
        "invertible; non-convex models have negative curvature).")
    max_exact_params: int = Field(
        2000, ge=1, description="'auto' forms the exact Hessian up to this many parameters.")
    lissa_depth: int = Field(
        100, ge=1, description="LiSSA: recursion steps (one sampled Hessian-vector product "
        "per step and vector).")
    lissa_repeats: int = Field(
        1, ge=1, description="LiSSA: independent recursions averaged.")
    lissa_batch_size: int = Field(
        16, ge=1, description="LiSSA: examples of the Hessian set sampled per step.")
    lissa_scale: float | None = Field(
        None, gt=0, description="LiSSA: scale s (must exceed the largest eigenvalue of "
        "H + lambda I); null: twice the power-iteration estimate of that eigenvalue.")
    power_iterations: int = Field(
        20, ge=1, description="LiSSA with lissa_scale null: power iterations (each a "
        "Hessian-vector product over the whole Hessian set).")
    fisher_samples: int = Field(
        128, ge=1, description="fisher: examples of the Hessian set (drawn with the seed) "
        "whose per-example gradients form the empirical Fisher.")


def _selected(adapter: ModelAdapter, params: str | None) -> list[torch.Tensor]:
    from erasus.gradients import param_names

    named = dict(adapter.model.named_parameters())
    return [named[n] for n in param_names(adapter, params)]


def hessian_products(adapter: ModelAdapter, dataset: Any, vectors: torch.Tensor, *,
                     params: str | None = None, collate_fn: Any = None,
                     batch_size: int = 64) -> torch.Tensor:
    """``H v_r`` for every row ``v_r`` of ``vectors`` (``[m, P]``), with ``H`` the mean-loss
    Hessian over ``dataset`` w.r.t. ``params``; ``[m, P]`` float64 on the CPU.

    The batched form of :func:`erasus.gradients.hvp`: one forward and gradient pass per
    batch, then the double back-propagation of many vectors at once
    (``is_grads_batched``), vector by vector where the model does not support that.
    Eval mode; the weights are not changed.
    """
    import torch

    from erasus.data import index_loader

    model = adapter.model
    selected = _selected(adapter, params)
    total = sum(q.numel() for q in selected)
    n = len(dataset)
    out = torch.zeros(len(vectors), total, dtype=torch.float64)
    batched = True
    was_training = model.training
    model.eval()
    try:
        loader = index_loader(dataset, batch_size=batch_size, collate_fn=collate_fn,
                              min_batch_size=adapter.min_batch_size)
        for indices, raw in loader:
            batch = adapter.prepare_batch(raw)
            batch["index"] = indices.to(adapter.device)
            loss = adapter.per_example_loss(batch).sum() / n
            grads = torch.autograd.grad(loss, selected, create_graph=True, allow_unused=True)
            flat = torch.cat([(g if g is not None else torch.zeros_like(q)).reshape(-1)
                              for g, q in zip(grads, selected, strict=True)])
            if not flat.requires_grad:
                continue  # the loss is linear in these parameters: no curvature
            for start in range(0, len(vectors), _COLUMNS):
                chunk = vectors[start:start + _COLUMNS].to(device=flat.device,
                                                           dtype=flat.dtype)
                rows = None
                if batched:
                    try:
                        rows = _flat(torch.autograd.grad(
                            flat, selected, grad_outputs=chunk, is_grads_batched=True,
                            retain_graph=True, allow_unused=True), selected, len(chunk))
                    except RuntimeError:
                        batched = False
                if rows is None:
                    rows = torch.stack([_flat(torch.autograd.grad(
                        flat @ v, selected, retain_graph=True, allow_unused=True), selected)
                        for v in chunk])
                out[start:start + len(chunk)] += rows.detach().double().cpu()
    finally:
        model.train(was_training)
    return out


def _flat(parts: Any, selected: list[torch.Tensor], rows: int | None = None
          ) -> torch.Tensor:
    import torch

    lead = () if rows is None else (rows,)
    return torch.cat([(h if h is not None else torch.zeros(*lead, *q.shape,
                                                            device=q.device)).reshape(
        *lead, -1) for h, q in zip(parts, selected, strict=True)], dim=-1)


def exact_hessian(adapter: ModelAdapter, dataset: Any, *, params: str | None = None,
                  collate_fn: Any = None, batch_size: int = 64) -> torch.Tensor:
    """The mean-loss Hessian over ``dataset`` w.r.t. ``params``, ``[P, P]`` float64
    (:func:`hessian_products` of the identity, symmetrised)."""
    import torch

    total = sum(q.numel() for q in _selected(adapter, params))
    eye = torch.eye(total, dtype=torch.float64)
    hessian = hessian_products(adapter, dataset, eye, params=params, collate_fn=collate_fn,
                               batch_size=batch_size)
    return (hessian + hessian.T) / 2


class Influence(Selector):
    """Score each forget example by its influence function (Koh & Liang 2017).

    With ``g_i`` forget example ``i``'s loss gradient (per example, over ``parameters``) and
    ``H`` the Hessian of the mean loss over ``hessian_on`` (the retain set by default),
    damped by ``damping``:

    - ``target: self``: the self-influence ``g_i^T (H + lambda I)^-1 g_i`` (how much the
      example's own loss depends on its presence; large for atypical and mislabelled
      examples);
    - a named set ``T``: ``I_up,loss(z_i, T) = -g_T^T (H + lambda I)^-1 g_i`` with
      ``g_T`` the gradient of ``T``'s mean loss (positive: up-weighting ``z_i`` raises the
      target loss, so removing it lowers it).

    ``(H + lambda I)^-1`` is applied by ``method``: ``exact`` forms ``H`` (double
    back-propagation) and solves through its eigendecomposition (``info`` reports its
    extreme eigenvalues); ``lissa`` runs Agarwal et al.'s stochastic recursion
    ``h <- v + h - (H_batch + lambda I) h / s`` for ``lissa_depth`` steps on minibatches
    drawn with the seed, ``H^-1 v ~ h / s`` (one recursion per vector: a named target needs
    one, ``self`` one per forget example); ``fisher`` replaces ``H`` by the empirical
    Fisher ``(1/m) sum_j g_j g_j^T`` of ``fisher_samples`` Hessian-set examples (the
    Gauss-Newton approximation that Kronecker-factored methods also approximate) and
    solves exactly with the Woodbury identity. ``auto`` uses ``exact`` up to
    ``max_exact_params`` parameters, otherwise ``lissa`` for a named target and ``fisher``
    for ``self`` (whose per-example LiSSA recursions would cost ``n * depth`` products);
    ``info`` records the choice and why. Returns the ``budget`` highest scores, best first.
    The model's weights are never changed.
    """

    name = "influence"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = InfluenceParams
    paper = KOH_2017

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import numpy as np

        from erasus.gradients import math_attention, mean_grad, per_example_grads

        p: InfluenceParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        num_params = sum(q.numel() for q in _selected(adapter, p.parameters))
        method, reason = self._method(num_params, p)
        hessian_set, h_collate = self._hessian_set(dataset, collate_fn, context)
        info: dict[str, Any] = {
            "selector": self.name, "n_forget": n, "k": k, "target": p.target,
            "method": method, "method_reason": reason, "num_params": num_params,
            "parameters": p.parameters or "all", "hessian_on": p.hessian_on,
            "n_hessian": len(hessian_set), "damping": p.damping}
        grads = per_example_grads(adapter, dataset, names=p.parameters, batch_size=p.batch_size,
                                  collate_fn=collate_fn).double().cpu()
        if p.target == "self":
            vectors = grads
        else:
            t_data, t_collate = target_data(p.target, forget=dataset, context=context,
                                            collate_fn=collate_fn, selector=self.name)
            vectors = mean_grad(adapter, t_data, names=p.parameters, batch_size=p.batch_size,
                                collate_fn=t_collate).double().cpu()[None]
        with math_attention():
            if method == "exact":
                solved = self._exact(adapter, hessian_set, h_collate, vectors, p, info)
            elif method == "lissa":
                solved = self._lissa(adapter, hessian_set, h_collate, vectors, p, seed, info)
            else:
                solved = self._fisher(adapter, hessian_set, h_collate, vectors, p, seed, info)
        scores = (grads * solved).sum(1) if p.target == "self" else -(grads @ solved[0])
        indices, top = rank(np.asarray(scores.numpy()), k, self.name)
        return Selection(indices=indices, scores=top, info=info)

    # -- choosing the method and the data ------------------------------------------------
    def _method(self, num_params: int, p: InfluenceParams) -> tuple[str, str]:
        if p.method != "auto":
            return p.method, "chosen by the method parameter"
        if num_params <= p.max_exact_params:
            return "exact", f"{num_params} parameters <= max_exact_params {p.max_exact_params}"
        if p.target != "self":
            return "lissa", (f"{num_params} parameters > max_exact_params "
                             f"{p.max_exact_params}; one inverse-HVP for target "
                             f"'{p.target}'")
        return "fisher", (f"{num_params} parameters > max_exact_params {p.max_exact_params};"
                          " self-influence needs one inverse-HVP per forget example, so the "
                          "Woodbury-solved empirical Fisher rather than per-example LiSSA")

    def _hessian_set(self, forget: Any, collate_fn: Any, context: SelectionContext | None
                     ) -> tuple[Any, Any]:
        from torch.utils.data import ConcatDataset

        retain, r_collate = target_data("retain", forget=forget, context=context,
                                        collate_fn=collate_fn, selector=self.name)
        if self.params.hessian_on == "retain":  # type: ignore[attr-defined]
            return retain, r_collate
        return ConcatDataset([forget, retain]), collate_fn or r_collate

    # -- the three solvers -------------------------------------------------------------
    def _exact(self, adapter: ModelAdapter, data: Any, collate_fn: Any,
               vectors: torch.Tensor, p: InfluenceParams, info: dict[str, Any]
               ) -> torch.Tensor:
        import torch

        hessian = exact_hessian(adapter, data, params=p.parameters, collate_fn=collate_fn,
                                batch_size=p.batch_size)
        evals, evecs = torch.linalg.eigh(hessian)
        shifted = evals + p.damping
        if float(shifted.abs().min()) <= 1e-10 * max(float(shifted.abs().max()), 1e-300):
            raise IncompatibleComponentError(
                f"selector '{self.name}': H + {p.damping} I is singular (an eigenvalue of the "
                f"Hessian is {-p.damping:g}); raise damping")
        info.update(hessian_min_eigenvalue=float(evals[0]),
                    hessian_max_eigenvalue=float(evals[-1]),
                    hessian_negative_eigenvalues=int((evals < 0).sum()))
        return ((vectors @ evecs) / shifted) @ evecs.T

    def _lissa(self, adapter: ModelAdapter, data: Any, collate_fn: Any,
               vectors: torch.Tensor, p: InfluenceParams, seed: int, info: dict[str, Any]
               ) -> torch.Tensor:
        import torch

        from erasus.data import subset
        from erasus.gradients import hvp

        generator = torch.Generator().manual_seed(int(seed))
        scale = p.lissa_scale
        if scale is None:
            # power iteration on H + lambda I over the whole Hessian set
            first = _selected(adapter, p.parameters)[0]
            v = torch.randn(vectors.shape[1], generator=generator, dtype=torch.float64)
            v /= v.norm()
            top = 0.0
            for _ in range(p.power_iterations):
                w = hvp(adapter, data, v.to(device=first.device, dtype=first.dtype),
                        names=p.parameters, batch_size=p.batch_size, collate_fn=collate_fn,
                        damping=p.damping).double().cpu()
                top = float(v @ w)
                norm = float(w.norm())
                if norm == 0.0:
                    break
                v = w / norm
            scale = 2.0 * max(abs(top), p.damping, 1e-8)
            info["lissa_top_eigenvalue"] = top
        size = len(data)
        take = min(p.lissa_batch_size, size)
        total = torch.zeros_like(vectors)
        limit = 1e10 * float(vectors.norm(dim=1).max().clamp_min(1e-30))
        for _ in range(p.lissa_repeats):
            h = vectors.clone()
            for step in range(p.lissa_depth):
                rows = torch.randperm(size, generator=generator)[:take].sort().values
                sample = subset(data, rows.tolist())
                damped = hessian_products(adapter, sample, h, params=p.parameters,
                                          collate_fn=collate_fn,
                                          batch_size=p.batch_size) + p.damping * h
                h = vectors + h - damped / scale
                if not bool(torch.isfinite(h).all()) or float(h.norm(dim=1).max()) > limit:
                    raise IncompatibleComponentError(
                        f"selector '{self.name}': LiSSA diverged at step {step + 1} (scale "
                        f"{scale:g} is below the largest eigenvalue of a sampled H + "
                        f"{p.damping} I, or the Hessian has strongly negative curvature); "
                        "raise lissa_scale or damping, or use method 'exact' / 'fisher'")
            total += h / scale
        info.update(lissa_scale=scale, lissa_depth=p.lissa_depth,
                    lissa_repeats=p.lissa_repeats, lissa_batch_size=take)
        return total / p.lissa_repeats

    def _fisher(self, adapter: ModelAdapter, data: Any, collate_fn: Any,
                vectors: torch.Tensor, p: InfluenceParams, seed: int, info: dict[str, Any]
                ) -> torch.Tensor:
        import numpy as np
        import torch

        from erasus.data import subset
        from erasus.gradients import per_example_grads

        if p.damping <= 0:
            raise IncompatibleComponentError(
                f"selector '{self.name}': method 'fisher' needs damping > 0 (the empirical "
                "Fisher of fewer examples than parameters is singular)")
        size = len(data)
        take = min(p.fisher_samples, size)
        rows = np.sort(np.random.default_rng(int(seed)).choice(size, size=take,
                                                               replace=False))
        sample = data if take == size else subset(data, rows.tolist())
        g = per_example_grads(adapter, sample, names=p.parameters, batch_size=p.batch_size,
                              collate_fn=collate_fn).double().cpu()  # [m, P]
        # (G^T G / m + lam I)^-1 v = (v - G^T (m lam I + G G^T)^-1 G v) / lam
        inner = g @ g.T + take * p.damping * torch.eye(take, dtype=torch.float64)
        coef = torch.linalg.solve(inner, g @ vectors.T)  # [m, r]
        info.update(fisher_samples=take)
        return (vectors - (g.T @ coef).T) / p.damping
