"""Valuation network: data values learned by reinforcement learning (DVRL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.selection import Selection, Selector, SelectorParams

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import SelectionContext

__all__ = ["ValuationNetworkParams", "ValuationNetworkSelector"]


class ValuationNetworkParams(SelectorParams):
    """Parameters of the valuation-network (DVRL) selector."""

    validation: str = Field(
        "test", description="Split the reward is measured on: 'test', 'retain' or an extra "
        "split of the selection context.")
    iterations: int = Field(
        1000, ge=1, description="Reinforcement-learning iterations (one predictor fit and "
        "one estimator update each).")
    batch_size: int = Field(
        256, ge=1, description="Forget examples sampled per iteration (the whole forget set "
        "when it is smaller).")
    hidden: int = Field(64, ge=1, description="Width of the value estimator's hidden layers.")
    layers: int = Field(2, ge=1, description="Hidden layers of the value estimator (ReLU).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate of the value "
                                 "estimator.")
    ridge: float = Field(
        1.0, gt=0, description="L2 penalty of the predictor, a ridge classifier fitted in "
        "closed form on the (standardised) features.")
    window: int = Field(
        20, ge=1, description="Moving-average window T of the reward baseline: "
        "delta <- ((T - 1) delta + reward) / T.")
    threshold: float = Field(
        0.9, gt=0.5, lt=1.0, description="The mean selection probability of a batch is "
        "kept in [1 - threshold, threshold] by a penalty (DVRL's epsilon), so the estimator "
        "cannot select all or nothing.")
    reward: Literal["brier", "accuracy"] = Field(
        "brier", description="Predictor performance on the validation split: minus the "
        "mean squared error between its outputs and the one-hot labels (smooth), or "
        "accuracy.")
    marginal: bool = Field(
        True, description="Give the estimator DVRL's marginal information |onehot(y) - "
        "f_val(x)|, where f_val is a predictor fitted on the validation split.")
    prefer: Literal["high", "low"] = Field(
        "high", description="Select the highest learned values (examples the estimator "
        "keeps) or the lowest (ones it drops: corrupted labels, outliers).")


class ValuationNetworkSelector(Selector):
    """Rank forget examples by values a network learns with reinforcement (DVRL).

    Yoon, Arik & Pfister (2020), "Data Valuation using Reinforcement Learning". A value
    estimator ``h`` (an MLP with ``layers`` ReLU layers of width ``hidden`` and a sigmoid
    output) maps each example's input representation, its one-hot label and (``marginal``)
    DVRL's marginal information ``|onehot(y) - f_val(x)|`` to a selection probability.
    Each iteration samples a mini-batch of ``batch_size`` forget examples, draws a
    selection vector ``s ~ Bernoulli(h(.))`` (an all-zero draw is redrawn with probability
    0.5 each, so the predictor always has data), fits the predictor on the selected
    examples, and rewards the estimator by the predictor's validation performance minus a
    moving-average baseline (window ``window``, started at the performance of a predictor
    fitted on the whole forget set): the REINFORCE loss is
    ``-(reward - baseline) * log pi(s)``, plus a penalty
    ``1000 * (max(mean h - threshold, 0) + max(1 - threshold - mean h, 0))``. The learned
    values are ``h`` on every forget example.

    DVRL leaves the predictor to the user; here it is a ridge classifier (least squares on
    one-hot labels, L2 penalty ``ridge``, a bias column) on the frozen model's standardised
    per-example features (``outputs(features=True)``: a classifier's penultimate
    activations, so it is the model's last layer refitted), solved in closed form with
    per-example weights ``s``, and ``reward`` is minus its mean squared error on the
    validation split (default ``test``) or its accuracy; ``f_val`` is the same predictor
    fitted on the validation split. The estimator is trained by Adam (``learning_rate``)
    on the exact REINFORCE gradient; every random draw (its initialisation, mini-batches,
    selection vectors) comes from ``numpy.random.default_rng(seed)``.
    ``prefer: high`` selects the highest values, ``low`` the lowest; ``info`` holds every
    forget example's value. Classification models only (labels are an input).
    """

    name = "valuation_network"
    modalities = ("classification",)
    needs = frozenset({"test"})
    Params = ValuationNetworkParams
    paper = Paper(
        title="Data Valuation using Reinforcement Learning",
        authors="Jinsung Yoon, Sercan O. Arik, Tomas Pfister",
        year=2020,
        url="https://arxiv.org/abs/1909.11671",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        from erasus.builtin.selectors._valuation import labelled_features, select_by_value

        p: ValuationNetworkParams = self.params  # type: ignore[assignment]
        x, y, xv, yv, num_classes = labelled_features(adapter, forget, collate_fn, context,
                                                      p.validation, self.name)
        values, stats = _dvrl(x, y, xv, yv, num_classes, p, seed)
        return select_by_value(
            self.name, values, prefer=p.prefer, budget=p.budget, seed=seed,
            validation=p.validation, n_validation=len(yv), **stats)


def _fit_predictor(x: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                   ridge: float) -> np.ndarray:
    """A weighted ridge classifier: ``W = (X'SX + ridge I)^-1 X'SY`` (``x`` has a bias column)."""
    import numpy as np

    xs = x * weights[:, None]
    return np.linalg.solve(xs.T @ x + ridge * np.eye(x.shape[1]), xs.T @ targets)


def _performance(w: np.ndarray, x: np.ndarray, targets: np.ndarray, reward: str) -> float:
    out = x @ w
    if reward == "accuracy":
        return float((out.argmax(1) == targets.argmax(1)).mean())
    return float(-((out - targets) ** 2).sum(1).mean())


class _Estimator:
    """The value estimator: a ReLU MLP with a sigmoid output, trained by Adam (numpy).

    Small enough that plain numpy beats an autograd framework's per-call overhead in
    the thousands of tiny REINFORCE steps; weights start as torch's ``nn.Linear`` does,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn from the seeded generator.
    """

    def __init__(self, dims: list[int], lr: float, rng: np.random.Generator) -> None:
        import numpy as np

        self.params: list[np.ndarray] = []
        for a, b in zip(dims[:-1], [*dims[1:]], strict=True):
            bound = 1.0 / np.sqrt(a)
            self.params += [rng.uniform(-bound, bound, (a, b)), rng.uniform(-bound, bound, b)]
        self.lr = lr
        self.m = [np.zeros_like(q) for q in self.params]
        self.v = [np.zeros_like(q) for q in self.params]
        self.t = 0

    def forward(self, z: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits ``[B]`` and the layer inputs (for the backward pass)."""
        import numpy as np

        inputs = []
        h = z
        layers = len(self.params) // 2
        for i in range(layers):
            inputs.append(h)
            h = h @ self.params[2 * i] + self.params[2 * i + 1]
            if i < layers - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0], inputs

    def step(self, inputs: list[np.ndarray], grad_logits: np.ndarray) -> None:
        """Backpropagate ``dLoss/dlogits`` and take one Adam step."""
        import numpy as np

        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        g = grad_logits[:, None]
        for i in reversed(range(len(self.params) // 2)):
            grads[2 * i] = inputs[i].T @ g
            grads[2 * i + 1] = g.sum(0)
            if i > 0:
                g = (g @ self.params[2 * i].T) * (inputs[i] > 0)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for q, grad, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            q -= self.lr * (m / (1 - b1 ** self.t)) / (np.sqrt(v / (1 - b2 ** self.t)) + eps)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.exp(-np.logaddexp(0.0, -a))


def _dvrl(x_np: np.ndarray, y_np: np.ndarray, xv_np: np.ndarray, yv_np: np.ndarray,
          num_classes: int, p: ValuationNetworkParams, seed: int
          ) -> tuple[np.ndarray, dict[str, Any]]:
    import numpy as np

    both = np.concatenate([x_np, xv_np])
    mu, sd = both.mean(0), both.std(0) + 1e-8

    def design(a: np.ndarray) -> np.ndarray:  # standardised features and a bias column
        return np.concatenate([(a - mu) / sd, np.ones((len(a), 1))], axis=1)

    x, xv = design(x_np), design(xv_np)
    eye = np.eye(num_classes)
    y, yv = eye[y_np], eye[yv_np]
    n = x.shape[0]
    parts = [x[:, :-1], y]
    if p.marginal:
        f_val = _fit_predictor(xv, yv, np.ones(len(yv)), p.ridge)
        parts.append(np.abs(y - x @ f_val))
    z = np.concatenate(parts, axis=1)

    rng = np.random.default_rng(int(seed))
    estimator = _Estimator([z.shape[1]] + [p.hidden] * p.layers + [1], p.learning_rate, rng)
    baseline = start = _performance(_fit_predictor(x, y, np.ones(n), p.ridge), xv, yv,
                                    p.reward)
    size = min(p.batch_size, n)
    rewards = []
    for _ in range(p.iterations):
        idx = np.sort(rng.choice(n, size=size, replace=False))
        logits, inputs = estimator.forward(z[idx])
        prob = _sigmoid(logits)
        s = (rng.random(size) < prob).astype(np.float64)
        if not s.any():
            s = (rng.random(size) < 0.5).astype(np.float64)
        perf = _performance(_fit_predictor(x[idx], y[idx], s, p.ridge), xv, yv, p.reward)
        # loss = -(perf - baseline) * log pi(s) + 1000 * (max(mean p - threshold, 0)
        #        + max(1 - threshold - mean p, 0)); d log pi / d logit = s - p
        mean = prob.mean()
        push = float(mean > p.threshold) - float(mean < 1 - p.threshold)
        grad = -(perf - baseline) * (s - prob) + 1e3 * push * prob * (1 - prob) / size
        estimator.step(inputs, grad)
        baseline = ((p.window - 1) * baseline + perf) / p.window
        rewards.append(perf)
    values = _sigmoid(estimator.forward(z)[0])
    stats = {"full_set_performance": float(start),
             "mean_reward_last_window": float(np.mean(rewards[-p.window:]))}
    return values, stats
