"""LLM evaluation speed: the full TOFU metric set from one shared cache vs one pass per metric.

Trains (or loads from the benchmark cache) track E's original and oracle on the bundled
fictitious-author set (forget10), unlearns it with NPO, then evaluates the three models
on the whole default TOFU metric set (``METRICS``: forget quality, model utility, ROUGE,
answer probability, truth ratio, the MIA attacks LOSS/zlib/Min-K%/Min-K%++/reference/
GradNorm, privleak, exact memorisation, extraction strength, perplexity) twice in the same
process:

- shared: one ``evaluate_models`` call, as ``erasus run`` does: one evaluation context per
  model, so every (split, answer field) is run through the model once and every greedy
  generation is made once, whatever number of metrics read it;
- naive: one ``evaluate_models`` call per metric, each with fresh contexts, so every
  metric runs the model for itself (the same metric code, hence the same definitions).

It times both (wall clock, after a discarded warm-up evaluation that pays the one-time
imports), counts the model forward passes of each (``run_info.forward_passes``: one per
batch scored, one per generated token step of a batch, one per GradNorm example), checks
that every value agrees between the two (relative tolerance ``RTOL``: the shared cache
batches sequences differently, which moves float32 logits by rounding only) and reports
the time and forward-pass ratios.

    python benchmarks/llm_eval_speed.py --fast     # the same measurement (it takes minutes)
    python benchmarks/llm_eval_speed.py            # also repeats the naive/shared pair 3x

Writes ``llm_eval_speed.md`` and ``llm_eval_speed.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
from track_e import MODEL, TRAIN

NAME = "llm_eval_speed"
SPLIT = "forget10"
RTOL, ATOL = 1e-4, 1e-7
QA = ["forget", "retain_perturbed", "real_authors", "world_facts"]
#: The default TOFU evaluation (open-unlearning's TOFU metric set, on Erasus's names).
METRICS: list[Any] = [
    "forget_quality",
    "model_utility",
    {"name": "rouge", "splits": QA},
    {"name": "answer_prob", "splits": [*QA, "holdout"]},
    {"name": "truth_ratio", "splits": ["forget_perturbed", "retain_perturbed", "real_authors",
                                       "world_facts"]},
    "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_reference",
    "mia_gradnorm",
    "privleak",
    "exact_memorization",
    "extraction_strength",
    {"name": "perplexity", "splits": ["forget", "retain_perturbed"]},
]
UNLEARN = {"name": "npo", "epochs": 5, "lr": 3e-4, "batch_size": 8, "checkpoint_every": 0}


def config(seed: int, cache: Path, out: Path, metrics: list[Any]) -> dict[str, Any]:
    return {"seed": seed, "model": MODEL,
            "data": {"name": "tofu", "forget_split": SPLIT,
                     "knowledge": ["real_authors", "world_facts"]},
            "train": TRAIN, "selector": {"name": "full"}, "strategy": UNLEARN,
            "oracle": {"strategy": "retrain"}, "metrics": metrics, "reporters": [],
            "run": {"output_dir": str(out), "progress": False, "cache_dir": str(cache)}}


def models(seed: int, cache: Path, tmp: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The resolved config (full metric set), the splits and the three models."""
    import erasus
    from erasus.config import load_config
    from erasus.pipeline import load_oracle, load_original
    from erasus.plugins import get_plugin_manager

    # the unlearned model: the pipeline's own NPO run (no metrics but time)
    result = erasus.run(config(seed, cache, tmp, ["time"]), progress=False)
    resolved = load_config(config(seed, cache, tmp, METRICS), get_plugin_manager().registry)
    splits = resolved.data.create().load(seed=seed)
    original, _, _ = load_original(resolved, splits, cache, False)
    oracle, _ = load_oracle(resolved, splits, original, cache, False)
    unlearned = resolved.model.info.cls.load(result.run_dir / "model", resolved.model.params,
                                             splits.info)
    adapters = {"original": original, "unlearned": unlearned, "oracle": oracle}
    for a in adapters.values():
        a.model.eval()
    return resolved, splits, adapters


def flat(result: dict[str, Any]) -> dict[str, float]:
    return {f"{role}/{k}": float(v) for role in ("original", "unlearned", "oracle", "run")
            for k, v in result.get(role, {}).items()}


def evaluate(resolved: Any, splits: Any, adapters: dict[str, Any], naive: bool
             ) -> tuple[dict[str, float], float, int, dict[str, Any]]:
    """Values, seconds, forward passes and per-metric passes (naive) of one evaluation."""
    from erasus.pipeline import evaluate_models
    from erasus.plugins import get_plugin_manager, using_registry

    batch = resolved.config.run.eval_batch_size
    values: dict[str, float] = {}
    per_metric: dict[str, Any] = {}
    passes = 0
    with using_registry(get_plugin_manager().registry):
        start = time.perf_counter()
        groups = [[m] for m in resolved.metrics] if naive else [list(resolved.metrics)]
        for group in groups:
            info: dict[str, Any] = {}
            t0 = time.perf_counter()
            out = evaluate_models(group, splits, adapters, info, batch_size=batch)
            passes += info["forward_passes"]
            if naive:
                per_metric[group[0].info.name] = {
                    "forward_passes": info["forward_passes"],
                    "seconds": time.perf_counter() - t0}
            clash = set(values) & set(flat(out))
            assert not clash, f"two metrics report {clash}"
            values.update(flat(out))
        seconds = time.perf_counter() - start
    return values, seconds, passes, per_metric


def compare(shared: dict[str, float], naive: dict[str, float]) -> dict[str, Any]:
    assert shared.keys() == naive.keys(), (sorted(shared.keys() ^ naive.keys()))
    worst, where = 0.0, None
    bad = []
    for k in shared:
        a, b = shared[k], naive[k]
        if math.isnan(a) and math.isnan(b):
            continue
        if not math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL):
            bad.append((k, a, b))
        d = abs(a - b) / max(abs(a), abs(b), 1e-12)
        if d > worst:
            worst, where = d, k
    return {"values": len(shared), "max_rel_diff": worst, "max_rel_diff_at": where,
            "mismatches": bad}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="one shared/naive pair")
    parser.add_argument("--repeats", type=int, default=None,
                        help="shared/naive pairs to time (default 3; --fast: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "--output", dest="out", type=Path, default=c.RESULTS)
    parser.add_argument("--cache-dir", type=Path, default=c.DEFAULT_CACHE)
    args = parser.parse_args(argv)
    c.setup_torch()
    repeats = args.repeats or (1 if args.fast else 3)
    with tempfile.TemporaryDirectory(prefix="erasus-llm-eval-") as tmp:
        resolved, splits, adapters = models(args.seed, args.cache_dir, Path(tmp))
        # warm-up: lazy imports (rouge-score, scipy, zlib...) and allocator growth
        evaluate(resolved, splits, {"original": adapters["original"]}, naive=False)
        runs = []
        for i in range(repeats):
            s_vals, s_sec, s_pass, _ = evaluate(resolved, splits, adapters, naive=False)
            n_vals, n_sec, n_pass, per = evaluate(resolved, splits, adapters, naive=True)
            check = compare(s_vals, n_vals)
            runs.append({"shared_seconds": s_sec, "naive_seconds": n_sec,
                         "shared_passes": s_pass, "naive_passes": n_pass,
                         "per_metric": per, "agreement": check})
            print(f"pair {i + 1}: shared {s_sec:.1f}s / {s_pass} passes, naive {n_sec:.1f}s / "
                  f"{n_pass} passes; {check['values']} values, max relative difference "
                  f"{check['max_rel_diff']:.2e}", flush=True)
            if check["mismatches"]:
                raise SystemExit(f"shared and naive values differ: {check['mismatches'][:5]}")
    s_sec = statistics.median(r["shared_seconds"] for r in runs)
    n_sec = statistics.median(r["naive_seconds"] for r in runs)
    s_pass, n_pass = runs[0]["shared_passes"], runs[0]["naive_passes"]
    names = [m if isinstance(m, str) else m["name"] for m in METRICS]
    n_values = runs[0]["agreement"]["values"]
    max_diff = max(r["agreement"]["max_rel_diff"] for r in runs)
    lines = [
        f"Configuration: {'fast' if args.fast else 'full'}; {repeats} shared/naive "
        f"pair(s) in one process, median times; {c.machine()}. Models: track E's original, "
        f"oracle and NPO-unlearned tiny GPT-2 on the bundled TOFU-style set ({SPLIT}, seed "
        f"{args.seed}). Metrics ({len(names)}): {', '.join(names)}; {n_values} "
        "values over the three models and the run, every one equal between the two "
        f"evaluations (max relative difference {max_diff:.1e}, "
        f"tolerance {RTOL:g}). A forward pass is one batch scored, one decoding step of a "
        "generation batch, or one example's GradNorm forward/backward.", "",
        *c.table(["evaluation", "time (s)", "forward passes"],
                 [["shared cache (erasus run)", f"{s_sec:.1f}", str(s_pass)],
                  ["naive (fresh cache per metric)", f"{n_sec:.1f}", str(n_pass)],
                  ["ratio naive / shared", f"{n_sec / s_sec:.2f}x",
                   f"{n_pass / s_pass:.2f}x"]]),
        "", "Per metric, naive (its own passes and seconds):", "",
        *c.table(["metric", "forward passes", "time (s)"],
                 [[k, str(v["forward_passes"]), f"{v['seconds']:.1f}"]
                  for k, v in runs[0]["per_metric"].items()]),
    ]
    text = "\n".join(lines)
    print(text)
    c.write_results(args.out, NAME, text, {
        "configuration": {"fast": args.fast, "repeats": repeats, "seed": args.seed,
                          "split": SPLIT, "model": MODEL, "train": TRAIN, "unlearn": UNLEARN,
                          "metrics": METRICS, "rtol": RTOL, "machine": c.machine()},
        "shared_seconds": s_sec, "naive_seconds": n_sec, "shared_forward_passes": s_pass,
        "naive_forward_passes": n_pass, "time_ratio": n_sec / s_sec,
        "forward_pass_ratio": n_pass / s_pass, "runs": runs})


if __name__ == "__main__":
    main()
