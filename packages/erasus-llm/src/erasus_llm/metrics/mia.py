"""Membership-inference attacks on LLM answers (LOSS, zlib, Min-K%, Min-K%++, reference).

Every attack scores an example so that a HIGHER score means LESS likely a member (the
convention of open-unlearning and MUSE); the AUC is ``roc_auc_score`` of telling the
forget set (members) from a held-out set (non-members) by a low score, so about 1.0 means
the forget set is still recognisable as training data and 0.5 is the ideal after
unlearning. The scores read the cached one-pass token statistics (no extra model run).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field

if TYPE_CHECKING:
    import numpy as np

    from erasus_llm.metrics._cache import TokenStats

__all__ = [
    "MIALoss",
    "MIAMinK",
    "MIAMinKPlusPlus",
    "MIAParams",
    "MIAReference",
    "MIAZlib",
    "MinKParams",
    "attack_scores",
    "loss_score",
    "mia_auc",
    "min_k_plus_plus_score",
    "min_k_score",
    "zlib_score",
]

#: Floor of the vocabulary log-prob variance in Min-K%++ (as open-unlearning), so a
#: near-deterministic next-token distribution does not divide by zero.
MIN_VARIANCE = 1e-6


# -- scores (pure numpy) ----------------------------------------------------------------
def loss_score(logp: Any) -> float:
    """LOSS: the answer's mean token NLL, ``-mean(log p)``."""
    import numpy as np

    return float(-np.mean(np.asarray(logp, dtype=np.float64)))


def zlib_score(logp: Any, text: str) -> float:
    """zlib: the mean token NLL divided by the zlib-compressed length of the text in bytes."""
    return loss_score(logp) / len(zlib.compress(text.encode("utf-8")))


def _lowest_mean(values: Any, k: float) -> float:
    import numpy as np

    values = np.sort(np.asarray(values, dtype=np.float64))
    count = max(1, int(len(values) * k))
    return float(values[:count].mean())


def min_k_score(logp: Any, k: float = 0.4) -> float:
    """Min-K%: minus the mean of the lowest ``k`` fraction of the token log-probs
    (``max(1, int(k * n))`` tokens)."""
    return -_lowest_mean(logp, k)


def min_k_plus_plus_score(logp: Any, mu: Any, sigma: Any, k: float = 0.4) -> float:
    """Min-K%++: each token log-prob standardised as ``(log p(y_t) - mu_t) / sigma_t`` by
    the mean and standard deviation of ``log p`` under the model's own next-token
    distribution (variance floored at :data:`MIN_VARIANCE`), then minus the mean of the
    lowest ``k`` fraction."""
    import numpy as np

    sigma = np.sqrt(np.maximum(np.square(np.asarray(sigma, dtype=np.float64)), MIN_VARIANCE))
    z = (np.asarray(logp, dtype=np.float64) - np.asarray(mu, dtype=np.float64)) / sigma
    return -_lowest_mean(z, k)


def mia_auc(member_scores: Any, nonmember_scores: Any) -> float:
    """ROC-AUC of calling the LOW scores members (members labelled 1, ranked by ``-score``)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    members = np.asarray(member_scores, dtype=np.float64)
    others = np.asarray(nonmember_scores, dtype=np.float64)
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(others))])
    return float(roc_auc_score(labels, -np.concatenate([members, others])))


def attack_scores(stats: TokenStats, attack: str, k: float = 0.4) -> np.ndarray:
    """One attack's score of every sequence of ``stats`` (``loss``, ``zlib``, ``min_k``,
    ``min_k_plus_plus``)."""
    import numpy as np

    if attack == "loss":
        scores = [loss_score(lp) for lp in stats.logp]
    elif attack == "zlib":
        scores = [zlib_score(lp, t) for lp, t in zip(stats.logp, stats.texts, strict=True)]
    elif attack == "min_k":
        scores = [min_k_score(lp, k) for lp in stats.logp]
    elif attack == "min_k_plus_plus":
        scores = [min_k_plus_plus_score(lp, m, s, k)
                  for lp, m, s in zip(stats.logp, stats.mu, stats.sigma, strict=True)]
    else:
        raise ValueError(f"unknown attack {attack!r}")
    return np.asarray(scores, dtype=np.float64)


# -- metrics ----------------------------------------------------------------------------
class MIAParams(MetricParams):
    """Parameters every LLM membership attack takes."""

    forget_split: str = Field("forget", description="Split of the members (the forget set).")
    holdout_split: str = Field("holdout", description="Split of the non-members: questions "
                               "the model never trained on (TOFU's holdout set).")
    field: str = Field("answer", description="Item field holding the text scored: an "
                       "answer after its question, or 'text' for plain-text items (MUSE's "
                       "privleak splits), scored whole.")


class MinKParams(MIAParams):
    """Parameters of the Min-K% attacks."""

    k: float = Field(0.4, gt=0, le=1, description="Fraction of the lowest-scoring tokens "
                     "averaged (MUSE's 0.4).")


def _stats_pair(ctx: Any, p: MIAParams, metric: str) -> tuple[TokenStats, TokenStats]:
    from erasus_llm.metrics._cache import token_stats

    return (token_stats(ctx, p.forget_split, p.field, metric=metric),
            token_stats(ctx, p.holdout_split, p.field, metric=metric))


class _TokenAttack(Metric):
    """A model-scope attack whose score is a function of the cached token statistics."""

    modalities = ("text",)
    needs = frozenset()
    scope = "model"
    attack: ClassVar[str] = ""

    def compute(self, ctx: Any) -> Measurement:
        p = self.params
        members, others = _stats_pair(ctx, p, self.name)
        k = getattr(p, "k", 0.4)
        m_scores = attack_scores(members, self.attack, k)
        o_scores = attack_scores(others, self.attack, k)
        return Measurement(values={self.outputs[0]: mia_auc(m_scores, o_scores)},
                           details={"forget_scores": m_scores.tolist(),
                                    "holdout_scores": o_scores.tolist()})


class MIALoss(_TokenAttack):
    """LOSS attack (Yeom et al. 2018) on answers: score = mean answer-token NLL; ROC-AUC of
    forget (members) vs ``holdout_split`` (non-members)."""

    name = "mia_loss"
    Params = MIAParams
    paper = Paper(title="Privacy Risk in Machine Learning: Analyzing the Connection to "
                  "Overfitting", authors="Samuel Yeom, Irene Giacomelli, Matt Fredrikson, "
                  "Somesh Jha", year=2018, url="https://arxiv.org/abs/1709.01604",
                  venue="IEEE CSF")
    outputs = ("mia_loss_auc",)
    attack = "loss"


class MIAZlib(_TokenAttack):
    """zlib attack (Carlini et al. 2021): score = mean answer-token NLL / zlib-compressed
    length (bytes) of the answer text; ROC-AUC forget vs holdout."""

    name = "mia_zlib"
    Params = MIAParams
    paper = Paper(title="Extracting Training Data from Large Language Models",
                  authors="Nicholas Carlini, Florian Tramèr, Eric Wallace, Matthew Jagielski "
                  "et al.", year=2021, url="https://arxiv.org/abs/2012.07805",
                  venue="USENIX Security")
    outputs = ("mia_zlib_auc",)
    attack = "zlib"


class MIAMinK(_TokenAttack):
    """Min-K% Prob (Shi et al. 2024): score = minus the mean of the lowest ``k`` (0.4)
    fraction of answer-token log-probs; ROC-AUC forget vs holdout."""

    name = "mia_min_k"
    Params = MinKParams
    paper = Paper(title="Detecting Pretraining Data from Large Language Models",
                  authors="Weijia Shi, Anirudh Ajith, Mengzhou Xia, Yangsibo Huang, Daogao "
                  "Liu, Terra Blevins, Danqi Chen, Luke Zettlemoyer", year=2024,
                  url="https://arxiv.org/abs/2310.16789", venue="ICLR")
    outputs = ("mia_min_k_auc",)
    attack = "min_k"


class MIAMinKPlusPlus(_TokenAttack):
    """Min-K%++ (Zhang et al. 2025): token log-probs standardised by the mean and standard
    deviation of ``log p`` under the model's own next-token distribution, then Min-K%
    (``k`` = 0.4); ROC-AUC forget vs holdout. The moments come from the same cached pass."""

    name = "mia_min_k_plus_plus"
    Params = MinKParams
    paper = Paper(title="Min-K%++: Improved Baseline for Detecting Pre-Training Data from "
                  "Large Language Models", authors="Jingyang Zhang, Jingwei Sun, Eric Yeats, "
                  "Yang Ouyang, Martin Kuo, Jianyi Zhang, Hao Frank Yang, Hai Li",
                  year=2025, url="https://arxiv.org/abs/2404.02936", venue="ICLR")
    outputs = ("mia_min_k_plus_plus_auc",)
    attack = "min_k_plus_plus"


class MIAReferenceParams(MIAParams):
    """Parameters of the reference attack."""

    reference: str = Field("original", description="Role of the reference model whose loss "
                           "is subtracted (the original model, as in open-unlearning).")


class MIAReference(Metric):
    """Reference-model attack (Carlini et al. 2021): score = the model's mean answer NLL
    minus the reference model's; ROC-AUC forget vs holdout.

    A run metric: the reference is the ``reference`` role's model (default the original,
    before unlearning), read from its evaluation context's cached pass. Reported for the
    unlearned model (``mia_reference_auc``) and the oracle (``mia_reference_auc_oracle``,
    when the run has one).
    """

    name = "mia_reference"
    modalities = ("text",)
    needs = frozenset()
    Params = MIAReferenceParams
    paper = MIAZlib.paper
    outputs = ("mia_reference_auc", "mia_reference_auc_oracle")
    scope = "run"

    def _losses(self, ctx: Any, role: str) -> tuple[np.ndarray, np.ndarray]:
        members, others = _stats_pair(ctx.context(role, self.name), self.params, self.name)
        return attack_scores(members, "loss"), attack_scores(others, "loss")

    def compute(self, ctx: Any) -> Measurement:
        p: MIAReferenceParams = self.params  # type: ignore[assignment]
        ref_m, ref_o = self._losses(ctx, p.reference)
        values, details = {}, {}
        contexts = getattr(ctx, "contexts", {}) or {}
        for role, key in (("unlearned", "mia_reference_auc"),
                          ("oracle", "mia_reference_auc_oracle")):
            if role == "oracle" and role not in contexts:
                continue
            m, o = self._losses(ctx, role)
            if len(m) != len(ref_m) or len(o) != len(ref_o):
                raise IncompatibleComponentError(
                    f"metric '{self.name}': the {role} and {p.reference} models were scored "
                    "on different splits")
            values[key] = mia_auc(m - ref_m, o - ref_o)
            details[role] = {"forget_scores": (m - ref_m).tolist(),
                             "holdout_scores": (o - ref_o).tolist()}
        return Measurement(values=values, details=details)
