"""The certified linear model: L2-regularised logistic regression with objective perturbation.

Guo et al. (2020) certify removal for linear models trained on the perturbed objective
(sum form, one row ``w_k`` of weights per binary problem)::

    L_b(W; D) = sum_k [ sum_i log(1 + exp(-y_ik w_k^T x_i)) + (lambda n / 2) ||w_k||^2
                        + b_k^T w_k ]

with labels ``y_ik`` in {-1, +1}. Two classes make one binary logistic regression (class
1 against class 0; the classifier's logits are ``[0, w^T x]``, so its cross-entropy IS the
logistic loss); more classes make one-vs-rest logistic regressions, one per class (the
multi-class mode of the paper's code; the logits are ``w_k^T x``). ``x_i`` is the flattened
input with a constant 1 appended for the bias, and the bias is regularised like the rest.

This module holds the objective's gradient and Hessian, a Newton solver that trains to the
exact optimum (float64), the mapping between a ``linear`` zoo network's ``head`` and the
weight rows, and the objective-perturbation state the network carries in its
``perturbation`` buffers (see :mod:`erasus.builtin.models.zoo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = [
    "CertifiedState",
    "check_linear",
    "design",
    "fit",
    "get_weights",
    "gradient",
    "hessian",
    "objective",
    "read_state",
    "residual_norm",
    "set_weights",
    "signs",
    "write_state",
]

_PARAMS = {"head.weight", "head.bias"}
_BUFFERS = ("b", "l2", "sigma", "spent", "n_train")


@dataclass
class CertifiedState:
    """The objective-perturbation state a certified linear model carries.

    ``b``: the perturbation ``[rows, d + 1]``; ``l2``: lambda; ``sigma``: the std ``b`` was
    drawn with; ``spent``: the bound on the gradient residual accumulated by removals since
    the model was (re)trained (starting at the training residual); ``n_train``: the size of
    the data the model is certified on now.
    """

    b: torch.Tensor
    l2: float
    sigma: float
    spent: float
    n_train: int

    @property
    def trained(self) -> bool:
        return self.l2 > 0 and self.n_train > 0


def check_linear(adapter: ModelAdapter, component: str) -> None:
    """Raise unless ``adapter`` holds a ``linear`` zoo network (one linear layer on the
    flattened input, with the objective-perturbation buffers)."""
    from torch import nn

    model = adapter.model
    names = {n for n, _ in model.named_parameters()}
    head = getattr(model, "head", None)
    state = getattr(model, "perturbation", None)
    ok = (isinstance(head, nn.Linear) and head.bias is not None and names == _PARAMS
          and state is not None and all(hasattr(state, b) for b in _BUFFERS)
          and callable(getattr(adapter, "labels", None)))
    if not ok:
        shown = sorted(names)
        raise IncompatibleComponentError(
            f"'{component}' certifies removal only for a single linear layer trained on an "
            "L2-regularised convex loss (logistic regression, Guo et al. 2020); this model "
            f"has parameters {shown[:6]}{' ...' if len(shown) > 6 else ''}. Use model: "
            "{name: classifier, arch: linear} trained with the certified_training strategy "
            "(train: {name: certified_training}); for deep networks use an approximate "
            "strategy (fisher_forgetting, influence_update) or exact retraining (retrain, "
            "sisa)")


def read_state(model: torch.nn.Module) -> CertifiedState:
    """The objective-perturbation state stored in a linear network's buffers."""
    p = model.perturbation
    return CertifiedState(b=p.b.detach().clone(), l2=float(p.l2), sigma=float(p.sigma),
                          spent=float(p.spent), n_train=round(float(p.n_train)))


def write_state(model: torch.nn.Module, state: CertifiedState) -> None:
    """Store ``state`` in a linear network's buffers."""
    import torch

    p = model.perturbation
    with torch.no_grad():
        p.b.copy_(state.b)
        p.l2.fill_(state.l2)
        p.sigma.fill_(state.sigma)
        p.spent.fill_(state.spent)
        p.n_train.fill_(float(state.n_train))


def rows(num_classes: int) -> int:
    """Binary problems of ``num_classes`` classes: 1 for two, else one per class."""
    return 1 if num_classes == 2 else num_classes


def get_weights(model: torch.nn.Module) -> torch.Tensor:
    """The weight rows ``[rows, d + 1]`` (float64; the bias is the last column)."""
    import torch

    head = model.head
    full = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).to(torch.float64)
    if head.out_features == 2:
        return (full[1] - full[0])[None]
    return full.clone()


def set_weights(model: torch.nn.Module, weights: torch.Tensor) -> None:
    """Write weight rows into the head (two classes: logits ``[0, w^T x]``)."""
    import torch

    head = model.head
    if head.out_features == 2:
        weights = torch.cat([torch.zeros_like(weights), weights], 0)
    with torch.no_grad():
        head.weight.copy_(weights[:, :-1].to(head.weight.dtype))
        head.bias.copy_(weights[:, -1].to(head.bias.dtype))


def design(adapter: ModelAdapter, dataset: Any, collate_fn: Any = None,
           batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, labels)``: the flattened inputs with a constant 1 column (float64) and the
    class labels of ``dataset``, in dataset order."""
    import torch

    from erasus.data import index_loader

    xs, ys = [], []
    for _, raw in index_loader(dataset, batch_size=batch_size, collate_fn=collate_fn):
        batch = adapter.prepare_batch(raw)
        x = batch["inputs"].reshape(len(batch["inputs"]), -1).to(torch.float64).cpu()
        xs.append(torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1))
        ys.append(adapter.labels(batch).cpu())  # type: ignore[attr-defined]
    if not xs:
        return torch.zeros(0, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys)


def signs(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[n, rows]`` labels in {-1, +1}: class 1 vs 0 for two classes, else one-vs-rest."""
    import torch

    if num_classes == 2:
        return (labels.to(torch.float64) * 2 - 1)[:, None]
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float64)
    return onehot * 2 - 1


def objective(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float,
              b: torch.Tensor) -> torch.Tensor:
    """``L_b`` per row ``[rows]`` (sum form)."""
    import torch

    z = y * (x @ w.T)
    n = x.shape[0]
    return (torch.nn.functional.softplus(-z).sum(0) + 0.5 * l2 * n * (w * w).sum(1)
            + (b * w).sum(1))


def gradient(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float,
             b: torch.Tensor | None) -> torch.Tensor:
    """``grad L_b`` per row ``[rows, d + 1]`` (sum form; ``b=None`` leaves it out)."""
    import torch

    z = y * (x @ w.T)
    coef = (torch.sigmoid(z) - 1.0) * y
    g = coef.T @ x + l2 * x.shape[0] * w
    return g if b is None else g + b


def example_gradients(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each example's loss gradient ``[n, rows, d + 1]`` (no regulariser)."""
    import torch

    coef = (torch.sigmoid(y * (x @ w.T)) - 1.0) * y
    return coef[:, :, None] * x[:, None, :]


def hessian(w_row: torch.Tensor, x: torch.Tensor, l2: float) -> torch.Tensor:
    """The Hessian ``[d + 1, d + 1]`` of one row's objective on ``x`` (sum form)."""
    import torch

    p = torch.sigmoid(x @ w_row)
    s = p * (1.0 - p)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    return x.T @ (s[:, None] * x) + l2 * x.shape[0] * eye


def residual_norm(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float,
                  b: torch.Tensor) -> float:
    """``||grad L_b(W; D)||`` over all rows: zero at the exact optimum."""
    return float(gradient(w, x, y, l2, b).norm())


def fit(x: torch.Tensor, y: torch.Tensor, l2: float, b: torch.Tensor, *,
        tol: float = 1e-12, max_iter: int = 100, start: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, int]:
    """The exact minimiser of ``L_b`` by Newton's method (per row, backtracking line
    search), float64; stops when the gradient norm is at most ``tol * n``.

    Returns ``(weights, iterations)``; raises if it does not converge.
    """
    import torch

    if l2 <= 0:
        raise ValueError(f"l2 must be > 0 (a strongly convex objective), got {l2}")
    n = x.shape[0]
    w = (torch.zeros_like(b) if start is None else start.clone()).to(torch.float64)
    iterations = 0
    for k in range(w.shape[0]):
        xk, yk, bk = x, y[:, k:k + 1], b[k:k + 1]
        wk = w[k:k + 1].clone()
        for _ in range(max_iter):
            g = gradient(wk, xk, yk, l2, bk)
            if float(g.norm()) <= tol * max(n, 1):
                break
            iterations += 1
            step = torch.linalg.solve(hessian(wk[0], xk, l2), g[0])[None]
            f0 = float(objective(wk, xk, yk, l2, bk))
            slope = float((g * step).sum())
            t = 1.0
            while t > 1e-12:
                cand = wk - t * step
                f1 = float(objective(cand, xk, yk, l2, bk))
                if f1 <= f0 - 1e-4 * t * slope + 1e-13 * abs(f0):
                    break
                t /= 2
            wk = wk - t * step
        else:
            final = float(gradient(wk, xk, yk, l2, bk).norm())
            if final > 1e-6 * max(n, 1):
                raise RuntimeError(f"Newton's method did not converge in {max_iter} "
                                   f"iterations (gradient norm {final:.3g})")
        w[k] = wk[0]
    return w, iterations
