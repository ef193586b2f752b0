"""Certified removal (Guo et al., 2020): Newton-step removal from a linear model trained
with objective perturbation, with a certificate, retraining when the budget is spent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import History, Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter, TinyProblem
    from erasus.privacy.certificates import Certificate
    from erasus.privacy.linear import CertifiedState
    from erasus.strategy import RunContext, UnlearnData

__all__ = [
    "GUO_2020",
    "CertifiedHistory",
    "CertifiedLinear",
    "CertifiedRemoval",
    "CertifiedRemovalParams",
    "RemovalStep",
    "certified_tiny_problem",
    "draw_perturbation",
]

GUO_2020 = Paper(
    title="Certified Data Removal from Machine Learning Models",
    authors="Chuan Guo, Tom Goldstein, Awni Hannun, Laurens van der Maaten",
    year=2020,
    url="https://proceedings.mlr.press/v119/guo20c.html",
    venue="ICML",
)


def draw_perturbation(sigma: float, shape: tuple[int, int], seed: int, n: int
                      ) -> torch.Tensor:
    """``b ~ N(0, sigma^2 I)`` of ``shape`` (float64), from a generator seeded by the run
    seed and the training-set size ``n`` (so each retraining in a removal sequence, at a
    smaller ``n``, draws a fresh ``b``)."""
    import torch

    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(n))
    return sigma * torch.randn(shape, generator=g, dtype=torch.float64)


@dataclass
class RemovalStep:
    """One removal: which rows, how, the bound it added and the budget after it."""

    rows: list[int]
    method: Literal["newton", "retrain"]
    bound: float
    spent: float
    budget: float
    seconds: float


class CertifiedLinear:
    """The removal state of a certified linear model over its training data (float64).

    ``x`` ``[n, d + 1]`` and ``y`` ``[n, rows]`` (labels in {-1, +1}) hold every example
    the model is certified on, all active at first; :meth:`remove` deactivates rows by a
    Newton step (or retrains), and ``weights``/``state`` are what to write back to the model
    (:func:`erasus.privacy.linear.set_weights`, :func:`~erasus.privacy.linear.write_state`).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                 state: CertifiedState, *, gamma: float | None = None) -> None:
        import torch

        from erasus.privacy.bounds import LOGISTIC_GAMMA

        self.x = x.to(torch.float64)
        self.y = y.to(torch.float64)
        self.weights = weights.to(torch.float64).clone()
        self.state = state
        self.gamma = LOGISTIC_GAMMA if gamma is None else gamma
        self.active = torch.ones(len(x), dtype=torch.bool)
        self.retrains = 0

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def residual(self) -> float:
        """The actual ``||grad L_b(w; D)||`` on the active data."""
        from erasus.privacy.linear import residual_norm

        a = self.active
        return residual_norm(self.weights, self.x[a], self.y[a], self.state.l2, self.state.b)

    def newton_step(self, rows: list[int]) -> tuple[torch.Tensor, float, torch.Tensor]:
        """``(step, bound, remaining_mask)`` of removing ``rows``: ``step = H^-1 Delta``
        per weight row (Delta: the removed rows' loss gradients plus their share
        ``m lambda w`` of the regulariser; H: the Hessian on the remaining rows) and the
        data-dependent residual bound (Guo et al., Corollary 1), summed over weight rows."""
        import torch

        from erasus.privacy.bounds import newton_residual_bound, spectral_norm
        from erasus.privacy.linear import example_gradients, hessian

        idx = torch.as_tensor(rows, dtype=torch.long)
        remaining = self.active.clone()
        remaining[idx] = False
        x_rem = self.x[remaining]
        l2, w = self.state.l2, self.weights
        delta = example_gradients(w, self.x[idx], self.y[idx]).sum(0) + len(rows) * l2 * w
        norm = spectral_norm(x_rem)
        step = torch.stack([torch.linalg.solve(hessian(w[k], x_rem, l2), delta[k])
                            for k in range(w.shape[0])])
        bound = sum(newton_residual_bound(x_rem, step[k], gamma=self.gamma, x_norm=norm)
                    for k in range(w.shape[0]))
        return step, float(bound), remaining

    def retrain(self, seed: int) -> None:
        """Retrain from scratch on the active rows with a fresh perturbation ``b`` (same
        sigma and lambda); the spent budget restarts at the training residual."""
        from erasus.privacy.linear import fit

        a = self.active
        n = self.n_active
        b = draw_perturbation(self.state.sigma, tuple(self.weights.shape), seed, n)
        self.weights, _ = fit(self.x[a], self.y[a], self.state.l2, b)
        self.state.b = b
        self.state.n_train = n
        self.state.spent = 0.0
        self.state.spent = self.residual()
        self.retrains += 1

    def remove(self, rows: list[int], *, budget: float, seed: int,
               also_on_retrain: list[int] | None = None) -> RemovalStep:
        """Remove ``rows`` by one Newton step if the accumulated bound stays within
        ``budget``; otherwise retrain from scratch without them (and without
        ``also_on_retrain``, rows whose removal is pending anyway)."""
        start = time.perf_counter()
        inactive = [r for r in rows if not bool(self.active[r])]
        if inactive:
            raise ValueError(f"rows {inactive[:5]} were already removed")
        step, bound, remaining = self.newton_step(rows)
        if self.state.spent + bound <= budget:
            self.weights = self.weights + step
            self.active = remaining
            self.state.spent += bound
            self.state.n_train = self.n_active
            method: Literal["newton", "retrain"] = "newton"
        else:
            self.active = remaining
            for r in also_on_retrain or []:
                self.active[r] = False
            self.retrain(seed)
            method, bound = "retrain", 0.0
        return RemovalStep(rows=list(rows), method=method, bound=bound,
                           spent=self.state.spent, budget=budget,
                           seconds=time.perf_counter() - start)


@dataclass
class CertifiedHistory(History):
    """A :class:`~erasus.strategy.History` that also holds the issued certificates."""

    certificates: list[Certificate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["certificates"] = [c.to_dict() for c in self.certificates]
        return out


class CertifiedRemovalParams(StrategyParams):
    """Parameters of certified removal (the guarantee; lambda and sigma come from training)."""

    epsilon: float = Field(1.0, gt=0, description="epsilon of the (epsilon, delta)-certified "
                           "removal guarantee.")
    delta: float = Field(1e-4, gt=0, lt=1, description="delta of the guarantee.")
    removal_batch: int = Field(1, ge=1, description="Forget examples removed per Newton "
                               "step, in forget-set order (1: one at a time, the tightest "
                               "bound; larger: fewer Hessian solves, a bound growing about "
                               "quadratically in the batch).")


class CertifiedRemoval(Strategy):
    """Remove the forget set from a certified linear model by Newton steps, with a
    certificate (Guo et al., 2020); retrain from scratch when the budget is spent.

    The model must be trained by ``certified_training``: a single linear layer at the
    optimum of ``L_b(w; D) = sum_i l(w^T x_i, y_i) + (lambda n / 2) ||w||^2 + b^T w``
    (logistic loss, objective perturbation ``b ~ N(0, sigma^2 I)``; lambda, sigma and
    ``b`` are stored in the model). For each batch of ``removal_batch`` forget examples, in
    order, the weights take the Newton step ``w- = w + H^-1 Delta``, where ``Delta`` is the
    removed examples' loss gradient plus their share ``m lambda w`` of the regulariser and
    ``H`` the Hessian of the objective on the remaining data. Each step adds Guo et al.'s
    data-dependent bound ``gamma ||X'|| ||H^-1 Delta|| ||X' H^-1 Delta||`` (``gamma = 1/4``)
    to the bound spent on the gradient residual ``||grad L_b(w-; D')||``. While the spent
    bound stays within the budget ``sigma * epsilon / sqrt(2 log(1.5 / delta))`` the
    removal is ``(epsilon, delta)``-certified; when a step would exceed it, the model is
    retrained from scratch on the remaining data (every requested example left out) with
    a fresh ``b``, and the budget restarts.

    Before removing, it checks that the model is at the certified optimum of the data it
    is given (``forget + retain`` must be the data it was trained on or last certified on:
    the gradient residual is recomputed and must be within the bound spent so far), so a
    model changed after training, or the wrong data, is refused. The model's
    ``perturbation`` buffers are updated (``b`` after a retrain, the bound spent, the data
    size), so a saved model carries its budget to later requests. Each request issues a
    :class:`~erasus.privacy.certificates.Certificate` (in ``history.certificates`` and
    ``history.json``); :func:`erasus.privacy.verification.verify` checks it.

    It refuses any model that is not a ``linear`` classifier trained this way.
    """

    name = "certified_removal"
    modalities = ("classification",)
    #: Runs only on the classifier adapter (its ensemble / linear arch).
    adapters = ("classifier",)
    needs = frozenset({"retain"})
    Params = CertifiedRemovalParams
    paper = GUO_2020
    effect = "raise_forget_loss"

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext
                ) -> CertifiedHistory:
        import torch

        from erasus.privacy import linear
        from erasus.privacy.bounds import residual_budget
        from erasus.privacy.certificates import Certificate, model_hash, tensor_hash

        linear.check_linear(adapter, self.name)
        p: CertifiedRemovalParams = self.params  # type: ignore[assignment]
        model = adapter.model
        state = linear.read_state(model)
        if not state.trained:
            raise IncompatibleComponentError(
                f"'{self.name}' needs a model trained by certified_training (objective "
                "perturbation and L2; this linear model holds no such state: lambda = 0). "
                "Train the original with train: {name: certified_training}")
        if data.forget is None or len(data.forget) == 0:
            raise IncompatibleComponentError(f"'{self.name}' got an empty forget set")
        num_classes = adapter.num_classes  # type: ignore[attr-defined]
        xf, lf = linear.design(adapter, data.forget, data.collate_fn)
        xr, lr = linear.design(adapter, data.retain, data.collate_fn)
        x = torch.cat([xf, xr])
        y = linear.signs(torch.cat([lf, lr]), num_classes)
        m, n = len(xf), len(x)
        if state.n_train != n:
            raise IncompatibleComponentError(
                f"'{self.name}': the model is certified on {state.n_train} examples, but "
                f"forget + retain hold {n}. Pass exactly the data the model was trained (or "
                "last certified) on, split into the examples to remove and the rest")
        engine = CertifiedLinear(x, y, linear.get_weights(model), state)
        start_residual = engine.residual()
        if start_residual > state.spent * (1 + 1e-6) + 1e-9:
            raise IncompatibleComponentError(
                f"'{self.name}': the model is not at the certified optimum of forget + "
                f"retain (gradient residual {start_residual:.4g} > the {state.spent:.4g} "
                "certified so far); it was changed after certified training, or the data "
                "is not what it was trained on. Retrain it with certified_training")
        budget = residual_budget(p.epsilon, p.delta, state.sigma)
        history = CertifiedHistory()
        first_spent = state.spent
        method: Literal["newton", "retrain"] = "newton"
        for k in range(0, m, p.removal_batch):
            rows = list(range(k, min(k + p.removal_batch, m)))
            pending = list(range(rows[-1] + 1, m))
            step = engine.remove(rows, budget=budget, seed=run.seed, also_on_retrain=pending)
            history.steps.append({"step_bound": step.bound, "spent": step.spent,
                                  "budget": budget, "removed": float(len(rows)),
                                  "retrained": float(step.method == "retrain"),
                                  "step": float(len(history.steps) + 1)})
            if run.on_step is not None:
                run.on_step(len(history.steps), history.steps[-1])
            if step.method == "retrain":
                method = "retrain"
                break
        linear.set_weights(model, engine.weights)
        linear.write_state(model, engine.state)
        model.eval()
        removed = (list(data.forget_train_indices) if data.forget_train_indices is not None
                   else list(range(m)))
        history.certificates.append(Certificate(
            removed=[int(i) for i in removed],
            index_space="train" if data.forget_train_indices is not None else "forget",
            method=method, residual_bound=engine.state.spent,
            request_bound=0.0 if method == "retrain" else engine.state.spent - first_spent,
            epsilon=p.epsilon, delta=p.delta, sigma=state.sigma, l2=state.l2,
            gamma=engine.gamma, budget=budget, n_remaining=engine.n_active,
            model_hash=model_hash(model), perturbation_hash=tensor_hash(engine.state.b),
            extra={"newton_steps": sum(1 for s in history.steps if not s["retrained"]),
                   "start_residual": start_residual}))
        return history

    @classmethod
    def conformance_problem(cls, adapter_cls: type, seed: int = 0) -> TinyProblem | None:
        """A certified-trained linear classifier on tiny data (the conformance suites run
        ``certified_removal`` on it instead of the classifier's MLP, which it refuses)."""
        from erasus.builtin.models.classifier import ClassifierAdapter

        if not issubclass(adapter_cls, ClassifierAdapter):
            return None
        return certified_tiny_problem(adapter_cls, seed)


_TINY: dict[tuple[type, int], Any] = {}
#: The tiny linear problem's certified training: strong enough L2 and budget that the 24
#: removals of the conformance suite are Newton steps.
TINY_TRAINING = {"l2": 0.05, "sigma": 1.0}


def certified_tiny_problem(adapter_cls: type, seed: int = 0) -> TinyProblem:
    """A tiny binary problem for the conformance suites: a ``linear`` classifier trained by
    ``certified_training`` on two Gaussian blobs (inputs scaled to unit norm, as Guo et al.
    scale features), with 10% of the training set to forget."""
    from torch.utils.data import ConcatDataset, Subset, TensorDataset

    from erasus.adapters import TinyProblem
    from erasus.builtin.strategies.certified_training import CertifiedTraining
    from erasus.data import DataInfo
    from erasus.strategy import RunContext, UnlearnData
    from erasus.testing.tiny import tiny_classification_data

    key = (adapter_cls, int(seed))
    if key not in _TINY:
        import torch

        def unit(ds: Any) -> Any:
            x, y = ds.tensors
            return TensorDataset(x / x.norm(dim=1, keepdim=True), y)

        train, test = (unit(d) for d in tiny_classification_data(seed, num_classes=2))
        info = DataInfo(modality="classification", num_classes=2, input_shape=(10,))
        adapter = adapter_cls.build(adapter_cls.Params(arch="linear"), info)
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))
        n_forget = len(train) // 10
        forget = Subset(train, sorted(perm[:n_forget].tolist()))
        retain = Subset(train, sorted(perm[n_forget:].tolist()))
        CertifiedTraining(**TINY_TRAINING).unlearn(
            adapter, UnlearnData(forget=None, retain=ConcatDataset([forget, retain]),
                                 info=info), RunContext(seed=seed))
        problem = TinyProblem(adapter, forget, retain, test, info=info,
                              strategy_params={"certified_training": dict(TINY_TRAINING)})
        problem.forget_train_indices = list(range(n_forget))
        _TINY[key] = problem
    cached = _TINY[key]
    out = TinyProblem(cached.adapter.clone(), cached.forget, cached.retain, cached.test,
                      cached.collate_fn, cached.info, cached.extra, cached.strategy_params)
    out.forget_train_indices = cached.forget_train_indices
    return out
