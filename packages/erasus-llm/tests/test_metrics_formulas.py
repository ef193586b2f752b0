"""Each LLM metric formula against values computed by hand on small arrays."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
from erasus.errors import IncompatibleComponentError
from erasus_llm.metrics import (
    answer_probability,
    closer_to_one,
    exact_memorization,
    extraction_strength,
    forget_quality,
    harmonic_mean,
    load_truth_ratios,
    loss_score,
    mia_auc,
    min_k_plus_plus_score,
    min_k_score,
    normalised_probability,
    perplexity,
    privleak,
    rouge_l,
    true_better,
    truth_ratios,
    zlib_score,
)

LOG = math.log


def test_answer_probability_is_the_length_normalised_probability():
    # tokens with probabilities 0.5 and 0.125: (0.5 * 0.125) ** (1/2) = 0.25
    assert answer_probability([(LOG(0.5) + LOG(0.125)) / 2])[0] == pytest.approx(0.25)


def test_normalised_probability_divides_by_answer_plus_perturbations():
    out = normalised_probability([LOG(0.6)], [np.array([LOG(0.2), LOG(0.1)])])
    assert out[0] == pytest.approx(0.6 / (0.6 + 0.2 + 0.1))


def test_truth_ratio_uses_the_geometric_mean_of_the_perturbed_answers():
    # perturbed 0.1 and 0.4: geometric mean 0.2; correct 0.5 -> TR 0.4
    tr = truth_ratios([LOG(0.5), LOG(0.1)], [np.array([LOG(0.1), LOG(0.4)]),
                                             np.array([LOG(0.2)])])
    assert tr == pytest.approx([0.4, 2.0])


def test_both_truth_ratio_aggregations():
    tr = [0.4, 2.0]
    assert closer_to_one(tr) == pytest.approx((0.4 + 0.5) / 2)  # mean(min(TR, 1/TR))
    assert true_better(tr) == pytest.approx((0.6 + 0.0) / 2)  # mean(max(0, 1 - TR))


def test_forget_quality_is_the_ks_p_value():
    same = np.linspace(0.1, 2.0, 20)
    assert forget_quality(same, same) == pytest.approx(1.0)
    # two disjoint samples of 20: the exact two-sided p-value is 2 / C(40, 20)
    apart = forget_quality(np.linspace(0.1, 0.2, 20), np.linspace(5, 6, 20))
    assert apart == pytest.approx(2 / math.comb(40, 20), rel=1e-6)


def test_harmonic_mean():
    assert harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / 7)
    assert harmonic_mean([1.0, 0.0, 0.5]) == 0.0


def test_mia_scores():
    logp = [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert loss_score(logp) == pytest.approx(3.0)
    assert min_k_score(logp, 0.4) == pytest.approx(4.5)  # int(5 * 0.4) = 2 lowest: -5, -4
    assert min_k_score(logp, 0.1) == pytest.approx(5.0)  # at least one token
    assert zlib_score([-2.0, -4.0], "aaaa") == pytest.approx(3.0 / len(zlib.compress(b"aaaa")))
    # z = ((-1 + 2) / 0.5, (-3 + 2) / 2) = (2, -0.5); the lowest half: -0.5
    assert min_k_plus_plus_score([-1.0, -3.0], [-2.0, -2.0], [0.5, 2.0], 0.5) == \
        pytest.approx(0.5)
    # a zero deviation is floored at sqrt(1e-6)
    assert min_k_plus_plus_score([-1.0], [-1.5], [0.0], 1.0) == pytest.approx(-500.0)


def test_mia_auc_calls_low_scores_members():
    assert mia_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert mia_auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert mia_auc([0.1, 0.3], [0.2, 0.4]) == pytest.approx(0.75)


def test_privleak():
    assert privleak(0.75, 0.5) == pytest.approx(-50.0)
    assert privleak(0.5, 0.5) == pytest.approx(0.0)
    assert privleak(0.3, 0.6) == pytest.approx((0.7 - 0.4) / 0.4 * 100)


def test_memorization():
    assert exact_memorization([True, False, True, True]) == 0.75
    # greedy decoding recovers the answer from the prefix of length 2 on: 1 - 2/4
    assert extraction_strength([True, False, True, True]) == 0.5
    assert extraction_strength([True, True, True]) == 1.0
    assert extraction_strength([True, True, False]) == 0.0


def test_perplexity_is_token_weighted():
    assert perplexity([np.array([LOG(0.5), LOG(0.5)]), np.array([LOG(0.25)])]) == \
        pytest.approx(16 ** (1 / 3))


def test_rouge_l_recall_and_f1():
    recall, f1 = rouge_l(["the cat sat on the mat"], ["the cat on the mat"])
    assert recall == [pytest.approx(5 / 6)]  # LCS: "the cat on the mat"
    assert f1 == [pytest.approx(10 / 11)]  # 2PR / (P + R) with P = 1


def test_rouge_l_stems_for_tofu_and_not_for_muse():
    # "sitting" and "sits" share the stem "sit": a match only with stemming
    stemmed, _ = rouge_l(["the cat sits"], ["the cat sitting"])
    exact, _ = rouge_l(["the cat sits"], ["the cat sitting"], stemmer=False)
    assert stemmed == [pytest.approx(1.0)]
    assert exact == [pytest.approx(2 / 3)]


@pytest.mark.parametrize("content", [
    [0.5, 1.5],
    {"truth_ratios": [0.5, 1.5]},
    {"details": {"run": {"forget_quality": {"oracle_truth_ratios": [0.5, 1.5]}}}},
    {"forget_truth_ratio": {"value_by_index": {"1": {"score": 1.5}, "0": {"score": 0.5}}}},
])
def test_load_truth_ratios_layouts(tmp_path, content):
    path = tmp_path / "oracle.json"
    path.write_text(json.dumps(content))
    assert load_truth_ratios(path).tolist() == [0.5, 1.5]


def test_load_truth_ratios_errors(tmp_path):
    with pytest.raises(IncompatibleComponentError, match="does not exist"):
        load_truth_ratios(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"something": 1}))
    with pytest.raises(IncompatibleComponentError, match="no per-question truth ratios"):
        load_truth_ratios(bad)


def test_round_to_nearest_quantization():
    import torch
    from erasus_llm.metrics import rtn_quantize

    w = torch.tensor([[1.0, -0.6, 0.3, 0.0]])
    # 4 bits: scale 1/7; -4.2 rounds to -4, 2.1 to 2
    assert rtn_quantize(w, 4)[0].tolist() == pytest.approx([1.0, -4 / 7, 2 / 7, 0.0])
    # groups of 2 columns: the second group's scale is 0.3 / 127, so 0.3 stays exact
    out = rtn_quantize(w, 8, group_size=2)
    assert out[0, 2].item() == pytest.approx(0.3) and out[0, 1].item() == \
        pytest.approx(round(-0.6 * 127) / 127)
