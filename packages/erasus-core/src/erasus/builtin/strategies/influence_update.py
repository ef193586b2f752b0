"""Influence (Newton) update: remove the forget set's influence in one second-order step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin._papers import KOH_2017
from erasus.strategy import Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["InfluenceUpdate", "InfluenceUpdateParams"]


class InfluenceUpdateParams(StrategyParams):
    """Parameters of the influence update (defaults suit the digits benchmark)."""

    hessian: Literal["woodfisher", "exact"] = Field(
        "woodfisher", description="The retain-loss curvature to invert: 'woodfisher' (the "
        "empirical Fisher of per-example gradients, inverted exactly with the Woodbury "
        "identity) or 'exact' (the Hessian, through conjugate gradient on Hessian-vector "
        "products).")
    damping: float = Field(
        0.1, gt=0, description="Added to the curvature's diagonal (lambda * I) before "
        "inverting.")
    scale: float = Field(1.0, gt=0, description="Multiplies the step (1: the Newton step).")
    parameters: str | None = Field(
        None, description="The parameter group to update (a name from the adapter's "
        "parameter_groups, e.g. 'head'); None: every trainable parameter.")
    cg_iters: int = Field(100, ge=1, description="Most conjugate-gradient iterations "
                          "(hessian='exact').")
    cg_tol: float = Field(1e-6, gt=0, description="Stop conjugate gradient when the "
                          "residual norm is below this times the right-hand side's.")
    batch_size: int = Field(64, ge=1, description="Examples per batch of gradients.")


class InfluenceUpdate(Strategy):
    """One influence (Newton) step: ``theta += (1/n) H^-1 sum_{z in forget} grad loss(z)``.

    At the current (original) weights, ``g = (1/n) sum_{z in forget} grad loss(z)`` with
    ``n`` the retain-set size, and ``H`` the curvature of the mean retain-set loss plus
    ``damping * I``. Since the full training loss has zero gradient at a trained optimum,
    the retained objective's gradient there is ``-g`` and this is the Newton step to the
    model retrained without the forget set (Koh & Liang's influence of up-weighting the
    forget examples by ``-1/n``). ``hessian = "exact"`` solves ``H x = g`` by conjugate
    gradient on exact Hessian-vector products (``erasus.gradients.hvp``) and raises if it
    meets non-positive curvature (raise ``damping``); ``hessian = "woodfisher"``
    replaces the Hessian with the empirical Fisher ``F = (1/N) G^T G + damping * I`` of the
    retain set's per-example gradients ``G`` (N x P) and applies its inverse exactly with
    the Woodbury identity, ``F^-1 g = (g - G^T (N damping I + G G^T)^-1 G g) / damping``
    (the batch form of WoodFisher's rank-one recursion; memory N x P). The weights then
    move by ``scale * x``.

    Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML
    2017; the inverse-Fisher variant follows Singh & Alistarh, "WoodFisher: Efficient
    Second-Order Approximation for Neural Network Compression", NeurIPS 2020.
    """

    name = "influence_update"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = InfluenceUpdateParams
    paper = KOH_2017
    effect = "raise_forget_loss"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The flat update applied (over ``names``), set by unlearn().
        self.step: torch.Tensor | None = None
        self.names: list[str] | None = None

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch

        from erasus.builtin.strategies._importance import scatter
        from erasus.errors import IncompatibleComponentError
        from erasus.gradients import mean_grad, param_names
        from erasus.strategy import History

        p: InfluenceUpdateParams = self.params  # type: ignore[assignment]
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                "strategy 'influence_update' needs the retain set's curvature; provide a "
                "non-empty retain set")
        names = param_names(adapter, p.parameters)
        g = mean_grad(adapter, data.forget, names=names, batch_size=p.batch_size,
                      collate_fn=data.collate_fn) * (len(data.forget) / len(data.retain))
        if p.hessian == "exact":
            x = self._conjugate_gradient(adapter, data, names, g)
        else:
            x = self._woodfisher(adapter, data, names, g)
        self.names = names
        self.step = p.scale * x
        params = dict(adapter.model.named_parameters())
        with torch.no_grad():
            for name, delta in scatter(adapter, names, self.step).items():
                params[name].add_(delta.to(params[name]))
        return History()

    def _conjugate_gradient(self, adapter: ModelAdapter, data: UnlearnData,
                            names: list[str], g: torch.Tensor) -> torch.Tensor:
        import torch

        from erasus.errors import IncompatibleComponentError
        from erasus.gradients import hvp

        p: InfluenceUpdateParams = self.params  # type: ignore[assignment]
        x = torch.zeros_like(g)
        r = g.clone()
        d = r.clone()
        rs = torch.dot(r, r)
        target = p.cg_tol * float(torch.linalg.vector_norm(g))
        for _ in range(p.cg_iters):
            if float(rs.sqrt()) <= target:
                break
            hd = hvp(adapter, data.retain, d, names=names, batch_size=p.batch_size,
                     collate_fn=data.collate_fn, damping=p.damping)
            curvature = torch.dot(d, hd)
            if float(curvature) <= 0:
                raise IncompatibleComponentError(
                    f"strategy 'influence_update' (hessian='exact'): the damped retain-set "
                    f"Hessian is not positive definite at these weights (curvature "
                    f"{float(curvature):.3g} along a search direction); raise damping "
                    f"(now {p.damping:g}) or use hessian='woodfisher', which is always "
                    "positive definite")
            step = rs / curvature
            x = x + step * d
            r = r - step * hd
            rs_new = torch.dot(r, r)
            d = r + (rs_new / rs) * d
            rs = rs_new
        return x

    def _woodfisher(self, adapter: ModelAdapter, data: UnlearnData, names: list[str],
                    g: torch.Tensor) -> torch.Tensor:
        import torch

        from erasus.gradients import per_example_grads

        p: InfluenceUpdateParams = self.params  # type: ignore[assignment]
        grads = per_example_grads(adapter, data.retain, names=names, batch_size=p.batch_size,
                                  collate_fn=data.collate_fn).to(torch.float64)
        n = grads.shape[0]
        gg = g.to(torch.float64)
        gram = grads @ grads.T
        gram.diagonal().add_(n * p.damping)
        coef = torch.linalg.solve(gram, grads @ gg)
        return ((gg - grads.T @ coef) / p.damping).to(g.dtype)
