"""Representer points: score forget examples by their weight in the last layer's
representer decomposition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin.selectors._grad_common import (
    ScoreParams,
    classifier_outputs,
    forget_data,
    rank,
    target_data,
)
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, SelectionContext, Selector, resolve_budget

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["Representer", "RepresenterFit", "RepresenterParams", "fit_representer"]


class RepresenterParams(ScoreParams):
    """Parameters of representer-point selection."""

    target: str = Field(
        "self", description="'self': each example's importance ||alpha_i|| * ||f_i||; or a "
        "named set ('retain', 'test', 'forget' or an extra split): the mean representer "
        "value of the example toward that set's predicted-class logits.")
    lam: float = Field(
        0.01, gt=0, description="L2 penalty lambda of the last-layer fine-tuning (the "
        "paper's regulariser); alpha_i = -1/(2 lambda n) dL/dlogits.")
    fit_on: Literal["forget+retain", "forget"] = Field(
        "forget+retain", description="The training points of the decomposition (the "
        "model's training data is forget + retain): the last layer is fine-tuned on them "
        "and n is their number.")
    max_iter: int = Field(
        500, ge=1, description="L-BFGS iterations of the last-layer fine-tuning.")


@dataclass
class RepresenterFit:
    """The fine-tuned last layer and its representer decomposition.

    ``weight`` is ``[C, d + 1]`` (the bias is the weight of a constant feature 1) and
    ``features`` the training points' augmented features ``[n, d + 1]``, so
    ``logits(x) = weight @ [f(x), 1] = sum_i alpha_i ([f_i, 1] . [f(x), 1])``.
    """

    weight: torch.Tensor
    alpha: torch.Tensor
    features: torch.Tensor
    lam: float
    grad_norm: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The fine-tuned last layer's logits for raw features ``[m, d]``."""
        return _augment(features) @ self.weight.T

    def representer_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The same logits rebuilt from the decomposition ``sum_i alpha_i k(f_i, f)``."""
        return (_augment(features) @ self.features.T) @ self.alpha


def _augment(features: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)


def fit_representer(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    lam: float, *, max_iter: int = 500) -> RepresenterFit:
    """Fine-tune a linear last layer on fixed features to a stationary point of
    ``(1/n) sum_i CE(W [f_i, 1], y_i) + lam ||W||^2`` and return its decomposition
    ``W = sum_i alpha_i [f_i, 1]^T`` with ``alpha_i = -(softmax(W [f_i,1]) - onehot(y_i))
    / (2 lam n)`` (Yeh et al., Theorem 3.1). The objective is strictly convex, so L-BFGS
    (strong-Wolfe line search, float64, from zero) reaches the unique minimiser;
    ``grad_norm`` is the objective's gradient norm there."""
    import torch
    import torch.nn.functional as F

    x = _augment(features.double())
    y = labels.long()
    n = len(x)
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                            tolerance_change=1e-14, history_size=50,
                            line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T, y) + lam * (weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(objective)
    objective()
    assert weight.grad is not None
    grad_norm = float(weight.grad.norm())
    w = weight.detach()
    probs = torch.softmax(x @ w.T, dim=1)
    alpha = -(probs - F.one_hot(y, num_classes).double()) / (2.0 * lam * n)
    return RepresenterFit(weight=w, alpha=alpha, features=x, lam=lam,
                          grad_norm=grad_norm)


class Representer(Selector):
    """Score forget examples by representer values of the last layer (Yeh et al. 2018).

    Reads each example's penultimate features ``f_i`` and logits from the model
    (``adapter.outputs(..., features=True)``), checks that the logits are an affine
    function of the features (else the decomposition does not apply: an error), then, as
    in the paper, fine-tunes the last layer on the fixed features of the training points
    (``fit_on``: forget + retain by default) with the L2 penalty ``lam`` to a stationary
    point, where the representer theorem holds exactly::

        logits(x_t) = sum_i alpha_i (f_i . f_t),  alpha_i = -1/(2 lam n) dL(x_i, y_i)/dlogits

    (features augmented with a constant 1 for the bias; ``alpha_i`` is a vector over
    classes). Scores of forget example ``i``: ``target: self`` -> its importance
    ``||alpha_i||_2 * ||f_i||_2`` (large for examples the layer fits against, such as
    mislabelled ones); a named set ``T`` -> its mean representer value toward the targets'
    predicted classes, ``(1/|T|) sum_t alpha_{i, c_t} (f_i . f_t)`` (positive: excitatory).
    ``info`` reports the fine-tuned layer's agreement with the model's predictions.
    Classification models with features only. Returns the ``budget`` highest scores.
    """

    name = "representer"
    modalities = ("classification",)
    needs = frozenset({"retain"})
    Params = RepresenterParams
    paper = Paper(
        title="Representer Point Selection for Explaining Deep Neural Networks",
        authors="Chih-Kuan Yeh, Joon Sik Kim, Ian E.H. Yen, Pradeep Ravikumar",
        year=2018,
        url="https://arxiv.org/abs/1811.09720",
        venue="NeurIPS",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import torch

        p: RepresenterParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        outs = [self._outputs(adapter, dataset, collate_fn, p)]
        if p.fit_on == "forget+retain":
            retain, retain_collate = target_data("retain", forget=dataset, context=context,
                                                 collate_fn=collate_fn, selector=self.name)
            outs.append(self._outputs(adapter, retain, retain_collate, p))
        feats = torch.cat([o["features"] for o in outs])
        logits = torch.cat([o["logits"] for o in outs])
        labels = torch.cat([o["labels"] for o in outs])
        self._check_affine(feats, logits, adapter)
        fit = fit_representer(feats, labels, logits.shape[1], p.lam, max_iter=p.max_iter)
        agreement = float((fit.logits(feats).argmax(1) == logits.argmax(1)).double().mean())
        alpha, f_forget = fit.alpha[:n], feats[:n]
        if p.target == "self":
            scores = alpha.norm(dim=1) * _augment(f_forget).norm(dim=1)
        else:
            data, t_collate = target_data(p.target, forget=dataset, context=context,
                                          collate_fn=collate_fn, selector=self.name)
            t_feats = self._outputs(adapter, data, t_collate, p)["features"]
            kernel = _augment(f_forget) @ _augment(t_feats).T  # [n, m]
            predicted = fit.logits(t_feats).argmax(1)  # [m]
            scores = (alpha[:, predicted] * kernel).mean(dim=1)
        indices, top = rank(scores.numpy(), k, self.name)
        return Selection(indices=indices, scores=top, info={
            "selector": self.name, "n_forget": n, "k": k, "target": p.target,
            "lam": p.lam, "fit_on": p.fit_on, "n_fit": len(feats),
            "fit_gradient_norm": fit.grad_norm, "fit_prediction_agreement": agreement})

    def _outputs(self, adapter: ModelAdapter, data: Any, collate_fn: Any,
                 p: RepresenterParams) -> dict[str, torch.Tensor]:
        return classifier_outputs(adapter, data, collate_fn=collate_fn,
                                  batch_size=p.batch_size, selector=self.name, features=True)

    def _check_affine(self, feats: torch.Tensor, logits: torch.Tensor,
                      adapter: ModelAdapter) -> None:
        import torch

        x = _augment(feats)
        if len(x) <= x.shape[1]:
            return  # too few points to tell; any logits fit exactly
        coef = torch.linalg.lstsq(x, logits, driver="gelsd").solution  # rank-deficient ok
        residual = float((x @ coef - logits).norm() / logits.norm().clamp_min(1e-12))
        if residual > 1e-3:
            raise IncompatibleComponentError(
                f"selector '{self.name}': the logits of model '{adapter.name}' are not an "
                f"affine function of its features (relative residual {residual:.2g}), so the "
                "representer decomposition of the last layer does not apply; the adapter's "
                "features must be the input of its final linear layer")
