"""LiRA: the likelihood-ratio membership attack with shadow models (Carlini et al.)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["LiRA", "LiRAParams", "logit_confidence", "tpr_at_fpr"]

#: The false-positive rates LiRA reports the true-positive rate at (0.1% and 1%).
FPRS = {"0_001": 0.001, "0_01": 0.01}


class LiRAParams(MetricParams):
    """Parameters of LiRA."""

    n_shadow: int = Field(8, ge=2, description="Shadow models to train (even: each example "
                          "is in the training set of exactly half of them).")
    seed: int = Field(0, description="Seed of the shadow training sets and of each shadow's "
                      "initialisation and batch order.")
    nonmember_split: str = Field(
        "test", description="Held-out split whose examples are the non-members; the shadows "
        "train on random halves of train + this split.")
    variance: Literal["auto", "per_example", "global"] = Field(
        "auto", description="'per_example': each example's own IN and OUT standard "
        "deviations; 'global': one pooled within-example deviation per side, the paper's "
        "advice for fewer than 64 shadows; 'auto': global below 64 shadows, else per "
        "example.")
    shadow_train: dict[str, Any] = Field(
        default_factory=dict, description="Training recipe of the shadows: parameters of "
        "the retrain strategy (epochs, lr, batch_size...). Match the original's train: "
        "section so the shadows mimic it.")

    @field_validator("n_shadow")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"n_shadow must be even (got {value}): each example is a member "
                             "of exactly half the shadows")
        return value

    @field_validator("shadow_train")
    @classmethod
    def _recipe(cls, value: dict[str, Any]) -> dict[str, Any]:
        from erasus.builtin.strategies.retrain import RetrainParams

        RetrainParams(**value)  # unknown or invalid keys fail at config time
        return value


def logit_confidence(out: dict[str, Any]) -> Any:
    """``phi = log(p / (1 - p))`` of the true-label softmax probability ``p``, per example.

    Computed stably as ``z_y - logsumexp_{k != y} z_k`` from the logits ``z``.
    """
    import numpy as np

    logits = np.asarray(out["logits"], dtype=np.float64)
    labels = np.asarray(out["labels"], dtype=np.int64)
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1)
    rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return true - rest


def tpr_at_fpr(fpr: Any, tpr: Any, target: float) -> float:
    """The highest true-positive rate of a ROC curve at a false-positive rate <= ``target``."""
    import numpy as np

    ok = np.asarray(fpr) <= target
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


class _Shadows:
    """The shadows' phi on the target examples, and which shadows trained on each."""

    def __init__(self, phi: Any, keep: Any, n_forget: int) -> None:
        self.phi = phi  # [n_shadow, n_targets]
        self.keep = keep  # [n_shadow, n_targets] bool
        self.n_forget = n_forget


class LiRA(Metric):
    """Likelihood-ratio membership attack (LiRA), online and offline, on forget vs held-out.

    Shadow models (Carlini et al., 2022): the pool is ``train + nonmember_split`` of the
    benchmark; each pool example is assigned to exactly ``n_shadow / 2`` shadows (a
    seeded random split, as in the authors' code), so every shadow trains on about half
    the pool. A shadow is a copy of the evaluated model's architecture, re-initialised
    with ``reset_parameters()`` under a seeded torch RNG and trained with the ``retrain``
    strategy's recipe (``shadow_train``) through the shared training loop. Shadows are
    trained once per metric instance and reused for every model it evaluates (original,
    unlearned, oracle).

    The statistic is the logit-scaled confidence ``phi = log(p / (1 - p))`` of the
    true-label softmax probability. For each target (forget and non-member examples),
    Gaussians are fitted to the phi of the shadows that trained on it (IN) and of those
    that did not (OUT): per-example means, and per-example standard deviations or, with
    fewer than 64 shadows (``variance: auto``), one within-example deviation pooled over
    the examples per side, as the paper advises for few shadows (per-example deviations
    from a handful of values are too noisy). With the evaluated model's phi (from the
    context's cached logits; the model is not run again):

    - online: ``score = log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
    - offline: ``score = (phi - mu_out) / s_out``, the one-sided test ``Pr[Z < phi]``
      under the OUT Gaussian (same ranking as the paper's ``1 - Pr[Z > phi]``).

    Members are the forget examples, non-members those of ``nonmember_split``. Reported
    for each: ROC AUC and the TPR at 0.1% and 1% FPR (fractions; ``lira_offline_*`` for
    the offline attack). With fewer than 1,000 non-members a 0.1% FPR is not resolvable
    and that TPR is the one at zero false positives (``min_fpr`` in the details). The
    paper's query augmentations (flips, shifts) are not used: they are image-specific.
    Classification models only (the statistic needs logits and labels).
    """

    name = "lira"
    modalities = ("classification",)
    needs = frozenset()
    Params = LiRAParams
    paper = Paper(
        title="Membership Inference Attacks From First Principles",
        authors="Nicholas Carlini, Steve Chien, Milad Nasr, Shuang Song, Andreas Terzis, "
        "Florian Tramèr",
        year=2022,
        url="https://arxiv.org/abs/2112.03253",
        venue="IEEE Symposium on Security and Privacy",
    )
    outputs = ("lira_auc", "lira_tpr_at_fpr_0_001", "lira_tpr_at_fpr_0_01",
               "lira_offline_auc", "lira_offline_tpr_at_fpr_0_001",
               "lira_offline_tpr_at_fpr_0_01")
    scope = "model"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._shadows: dict[int, _Shadows] = {}
        #: Shadow models trained by this instance (each at most once).
        self.shadows_trained = 0

    # -- shadows ------------------------------------------------------------------------
    def _target_outputs(self, ctx: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        from erasus.builtin.metrics._membership import member_outputs

        def check(split: str, out: dict[str, Any]) -> None:
            if "logits" not in out or "labels" not in out:
                raise IncompatibleComponentError(
                    "metric 'lira' needs logits and labels (its statistic is the logit-scaled "
                    f"true-label confidence), but the outputs on '{split}' have only "
                    f"{', '.join(sorted(out))}; use a classification adapter, or the "
                    "loss-based 'mia'")

        p: LiRAParams = self.params  # type: ignore[assignment]
        return member_outputs(ctx, self.name, p.nonmember_split, count="labels", check=check)

    def shadows(self, ctx: Any) -> _Shadows:
        """The shadows' statistics for the context's benchmark (trained on first use)."""
        key = id(ctx.splits)
        if key not in self._shadows:
            self._shadows[key] = self._train_shadows(ctx)
        return self._shadows[key]

    def _train_shadows(self, ctx: Any) -> _Shadows:
        import numpy as np
        import torch
        from torch.utils.data import ConcatDataset

        from erasus.builtin.strategies.retrain import Retrain, RetrainParams
        from erasus.data import Splits, subset
        from erasus.evaluation import EvalContext
        from erasus.strategy import RunContext, UnlearnData

        p: LiRAParams = self.params  # type: ignore[assignment]
        splits = ctx.splits
        if splits is None:
            raise IncompatibleComponentError(
                "metric 'lira' trains shadow models on the benchmark's data, but the "
                "evaluation context has no splits")
        forget_idx = [int(i) for i in splits.forget_indices]
        if len(forget_idx) != len(splits.forget):
            raise IncompatibleComponentError(
                "metric 'lira' needs the forget examples' positions in train "
                "(Splits.forget_indices) to know which shadows trained on them")
        held_out = splits.get(p.nonmember_split)
        n_train = len(splits.train)
        pool = ConcatDataset([splits.train, held_out])
        targets = np.concatenate([np.asarray(forget_idx, dtype=np.int64),
                                  n_train + np.arange(len(held_out))])
        # each pool example is IN for exactly half the shadows (the authors' split)
        rng = np.random.default_rng(int(p.seed))
        order = rng.uniform(size=(p.n_shadow, len(pool))).argsort(axis=0)
        keep = order < p.n_shadow // 2
        recipe = RetrainParams(**p.shadow_train)
        target_splits = Splits(train=pool, forget=splits.forget, retain=splits.retain,
                               test=held_out, info=splits.info, collate_fn=splits.collate_fn)
        phis = []
        for k in range(p.n_shadow):
            seed = int(p.seed) * 10_007 + k
            shadow = ctx.adapter.clone()
            train_k = subset(pool, np.flatnonzero(keep[k]).tolist())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                Retrain(recipe).unlearn(
                    shadow, UnlearnData(forget=None, retain=train_k, info=splits.info,
                                        collate_fn=splits.collate_fn),
                    RunContext(seed=seed, description=f"LiRA shadow {k + 1}/{p.n_shadow}"))
            self.shadows_trained += 1
            sctx = EvalContext(shadow, target_splits, role=f"shadow{k}",
                               batch_size=getattr(ctx, "batch_size", 256))
            forget_out, held_out_out = sctx.outputs("forget"), sctx.outputs("test")
            phis.append(np.concatenate([logit_confidence(forget_out),
                                        logit_confidence(held_out_out)]))
            del shadow, sctx
        return _Shadows(np.stack(phis), keep[:, targets], len(forget_idx))

    # -- the attack --------------------------------------------------------------------
    def compute(self, ctx: Any) -> Measurement:
        import numpy as np
        from scipy.stats import norm

        from erasus.builtin.metrics._membership import roc

        p: LiRAParams = self.params  # type: ignore[assignment]
        forget_out, held_out_out = self._target_outputs(ctx)
        observed = np.concatenate([logit_confidence(forget_out),
                                   logit_confidence(held_out_out)])
        sh = self.shadows(ctx)
        if sh.phi.shape[1] != len(observed):
            raise IncompatibleComponentError(
                "metric 'lira': the evaluated splits differ from those the shadows were "
                "trained for; use one metric instance per benchmark")
        keep = sh.keep
        half = p.n_shadow // 2
        phi_in = sh.phi.T[keep.T].reshape(-1, half)  # [n_targets, half]
        phi_out = sh.phi.T[~keep.T].reshape(-1, half)
        mu_in, mu_out = phi_in.mean(axis=1), phi_out.mean(axis=1)
        variance = p.variance
        if variance == "auto":
            variance = "per_example" if p.n_shadow >= 64 else "global"
        if variance == "per_example":
            sd_in, sd_out = phi_in.std(axis=1), phi_out.std(axis=1)
        else:
            sd_in = np.full(len(mu_in), np.sqrt(phi_in.var(axis=1).mean()))
            sd_out = np.full(len(mu_out), np.sqrt(phi_out.var(axis=1).mean()))
        floor = 1e-3  # a shadow side with identical phi would give a zero deviation
        sd_in, sd_out = np.maximum(sd_in, floor), np.maximum(sd_out, floor)
        online = (norm.logpdf(observed, mu_in, sd_in) - norm.logpdf(observed, mu_out, sd_out))
        offline = (observed - mu_out) / sd_out
        values: dict[str, float] = {}
        details: dict[str, Any] = {"n_members": int(sh.n_forget),
                                   "n_nonmembers": int(len(observed) - sh.n_forget),
                                   "n_shadow": int(p.n_shadow), "variance": variance,
                                   "min_fpr": 1.0 / max(1, len(observed) - sh.n_forget)}
        for prefix, scores in (("lira", online), ("lira_offline", offline)):
            values[f"{prefix}_auc"], fpr, tpr = roc(scores[:sh.n_forget], scores[sh.n_forget:])
            for key, target in FPRS.items():
                values[f"{prefix}_tpr_at_fpr_{key}"] = tpr_at_fpr(fpr, tpr, target)
            details[f"{prefix}_roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        return Measurement(values=values, details=details)
