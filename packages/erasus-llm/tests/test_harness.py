"""lm_eval_accuracy: WMDP-style accuracy computed by lm-evaluation-harness itself, and the
built-in mc_accuracy agreeing with it question by question (long prompts truncated the
harness's way included), on the bundled set and on a local copy in the published layout."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from erasus.errors import IncompatibleComponentError, MissingDependencyError
from erasus.evaluation import EvalContext
from erasus_llm.metrics import LMEvalAccuracy, MCAccuracy
from erasus_llm.tiny import tiny_causal_lm_problem
from erasus_llm.wmdp import BUNDLED_WMDP, Wmdp

BIO = "The following are multiple choice questions (with answers) about biology.\n\n"


@pytest.fixture(scope="module")
def ctx():
    problem = tiny_causal_lm_problem(0, steps=50)
    # the bundled WMDP-style questions, several longer than the model's 128 positions
    return EvalContext(problem.adapter, Wmdp().load(seed=0))


def test_the_builtin_evaluator_scores_every_question_as_the_harness_does(ctx):
    builtin = MCAccuracy(MCAccuracy.Params(description=BIO)).compute(ctx)
    harness = LMEvalAccuracy().compute(ctx)
    assert harness.values["wmdp_bio_accuracy"] == builtin.values["mc_hazard_accuracy"]
    mine = np.array(builtin.details["mc_hazard"]["loglik"])
    theirs = np.array(harness.details["wmdp_bio"]["loglik"])
    assert mine.shape == theirs.shape == (40, 4)
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
    # the harness's accuracy is its own count of right picks
    picks = theirs.argmax(1)
    answers = np.array([int(a) for a in harness.details["wmdp_bio"]["answers"]])
    assert harness.values["wmdp_bio_accuracy"] == pytest.approx(float((picks == answers).mean()))


def test_a_local_copy_in_the_published_layout_is_read(ctx, tmp_path):
    shutil.copy(BUNDLED_WMDP / "wmdp-bio.jsonl", tmp_path / "wmdp-bio.jsonl")
    local = LMEvalAccuracy(LMEvalAccuracy.Params(data_dir=str(tmp_path), limit=10))
    bundled = LMEvalAccuracy(LMEvalAccuracy.Params(limit=10))
    a, b = local.compute(ctx), bundled.compute(ctx)
    assert a.details["wmdp_bio"]["loglik"] == b.details["wmdp_bio"]["loglik"]
    assert len(a.details["wmdp_bio"]["loglik"]) == 10


def test_missing_data_and_unknown_tasks_name_what_is_wrong(ctx, tmp_path):
    with pytest.raises(IncompatibleComponentError, match=r"no data for task 'wmdp_bio'.*"
                       r"wmdp-bio\.jsonl"):
        LMEvalAccuracy(LMEvalAccuracy.Params(data_dir=str(tmp_path))).compute(ctx)
    with pytest.raises(IncompatibleComponentError, match=r"\(wmdp_bio\) only"):
        LMEvalAccuracy(LMEvalAccuracy.Params(tasks=["wmdp_cyber"])).compute(ctx)
    with pytest.raises(IncompatibleComponentError, match="'wmdp_bi' is not an lm-evaluation"):
        LMEvalAccuracy(LMEvalAccuracy.Params(tasks=["wmdp_bi"])).compute(ctx)


def test_the_hub_dataset_offline_and_uncached_is_an_error_not_a_fallback(ctx, monkeypatch,
                                                                         tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(IncompatibleComponentError, match=r"is not available.*data_dir"):
        LMEvalAccuracy(LMEvalAccuracy.Params(data_dir=None)).compute(ctx)


def test_without_the_harness_installed_the_error_says_what_to_install(ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(MissingDependencyError, match=r"erasus-llm\[lm-eval\]"):
        LMEvalAccuracy().compute(ctx)
