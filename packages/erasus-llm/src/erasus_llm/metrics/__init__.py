"""TOFU / MUSE-style LLM metrics, all read from one cached forward pass per (model, split).

The log-prob metrics (answer probability, truth ratio, forget quality, the MIA attacks,
privleak, memorisation, perplexity) share :func:`erasus_llm.metrics._cache.token_stats`;
the ROUGE metrics (rouge, model_utility, verbmem) share the greedy generations of
:mod:`erasus_llm.metrics._generation`.
Modules import torch only inside functions.
"""

from __future__ import annotations

from erasus_llm.metrics.forget_quality import ForgetQuality, forget_quality, load_truth_ratios
from erasus_llm.metrics.gradnorm import MIAGradNorm
from erasus_llm.metrics.harness import LMEvalAccuracy
from erasus_llm.metrics.knowmem import KnowMem
from erasus_llm.metrics.memorization import (
    ExactMemorization,
    ExtractionStrength,
    exact_memorization,
    extraction_strength,
)
from erasus_llm.metrics.mia import (
    MIALoss,
    MIAMinK,
    MIAMinKPlusPlus,
    MIAReference,
    MIAZlib,
    loss_score,
    mia_auc,
    min_k_plus_plus_score,
    min_k_score,
    zlib_score,
)
from erasus_llm.metrics.model_utility import ModelUtility, harmonic_mean
from erasus_llm.metrics.multiple_choice import MCAccuracy, mc_prompt
from erasus_llm.metrics.perplexity import Perplexity, perplexity
from erasus_llm.metrics.privleak import PrivLeak, privleak
from erasus_llm.metrics.probability import (
    AnswerProb,
    answer_probability,
    normalised_probability,
)
from erasus_llm.metrics.quantization import QuantizationRobustness, rtn_quantize
from erasus_llm.metrics.relearning import RelearnRobustness
from erasus_llm.metrics.rouge import Rouge, rouge_l
from erasus_llm.metrics.truth_ratio import TruthRatio, closer_to_one, true_better, truth_ratios
from erasus_llm.metrics.verbmem import VerbMem

#: Every metric class this package registers, in registration order.
METRICS = (AnswerProb, TruthRatio, ForgetQuality, ModelUtility, Rouge, MIALoss, MIAZlib,
           MIAMinK, MIAMinKPlusPlus, MIAReference, MIAGradNorm, PrivLeak, ExactMemorization,
           ExtractionStrength, Perplexity, VerbMem, KnowMem, MCAccuracy, LMEvalAccuracy,
           RelearnRobustness, QuantizationRobustness)

__all__ = [
    "METRICS",
    "AnswerProb",
    "ExactMemorization",
    "ExtractionStrength",
    "ForgetQuality",
    "KnowMem",
    "LMEvalAccuracy",
    "MCAccuracy",
    "MIAGradNorm",
    "MIALoss",
    "MIAMinK",
    "MIAMinKPlusPlus",
    "MIAReference",
    "MIAZlib",
    "ModelUtility",
    "Perplexity",
    "PrivLeak",
    "QuantizationRobustness",
    "RelearnRobustness",
    "Rouge",
    "TruthRatio",
    "VerbMem",
    "answer_probability",
    "closer_to_one",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "harmonic_mean",
    "load_truth_ratios",
    "loss_score",
    "mc_prompt",
    "mia_auc",
    "min_k_plus_plus_score",
    "min_k_score",
    "normalised_probability",
    "perplexity",
    "privleak",
    "rouge_l",
    "rtn_quantize",
    "true_better",
    "truth_ratios",
    "zlib_score",
]
