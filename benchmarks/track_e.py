"""Track E: LLM unlearning on the bundled TOFU-style fictitious-author set (BENCHMARKS.md).

For each forget split (forget01/05/10: the last 1, 5 or 10% of the 50 authors, so 5, 25
or 50 questions), method and seed, runs the same pipeline as ``erasus run`` with the
model and data of ``configs/llm/tofu_bundled_npo.yaml``: a tiny GPT-2 trained from
scratch on all authors plus the real-author and world-fact pairs (the original), the same
recipe on the retain data alone (the oracle), then the method. It reports TOFU's forget
quality (KS-test p-value of the forget-set truth ratios against the oracle's), model
utility and its ratio to the oracle's, MUSE's privleak (Min-K%, 0 is ideal), the forget
set's ROUGE-L recall (greedy answers), the unlearning time and its ratio to the oracle's
training time (RTE ratio), as mean ± std over seeds.

Methods: GA (gradient_ascent), GradDiff (gradient_difference), NPO, SimNPO, IdkDPO, RMU,
UNDIAL, and the LoRA variants (the ``lora`` strategy wrapping a loss-based method through
peft, adapters merged afterwards) of the loss-based ones; a method that cannot run is
listed as ``n/a (reason)``. Settings are in ``METHODS`` (and the json). The goal (from
the benchmark plan): a method with forget quality >= 0.05 while keeping model utility >=
95% of the oracle's; the script says per forget split which methods meet it.

    python benchmarks/track_e.py --fast          # forget10, seed 0, the 7 non-LoRA methods
    python benchmarks/track_e.py                 # forget01/05/10 x every method x seeds 0 1 2
    python benchmarks/track_e.py --methods NPO LoRA-NPO --splits forget05 --seeds 0
    python benchmarks/track_e.py --search        # the lr search that chose METHODS' lr

Writes ``track_e.md`` and ``track_e.json`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import _common as c

NAME = "track_e"
SPLITS = ["forget01", "forget05", "forget10"]
GOAL_FQ, GOAL_UTILITY = 0.05, 0.95

#: The model, data and training recipe of configs/llm/tofu_bundled_npo.yaml.
MODEL = {"name": "causal_lm", "config": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2,
                                         "n_head": 2}}
TRAIN = {"epochs": 30, "lr": 3.0e-3, "batch_size": 16}
METRICS: list[Any] = ["forget_quality", "model_utility", {"name": "rouge", "splits": ["forget"]},
                      "privleak", "time"]

#: Every method: (registered strategy, its parameters). Shared budget: 5 epochs over the
#: forget set in batches of 8 (TOFU's recipe is 5-10 epochs; RMU's steering loss converges
#: slower: it keeps its default 100, whose steps stop at the steered layer and cost
#: little). The learning rates were picked by ``--search`` (forget10, seed 0,
#: lr in SEARCH_LRS; see :func:`choose`); the retain weights and betas are each method's
#: defaults.
_BASE = {"epochs": 5, "batch_size": 8}
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "GA": ("gradient_ascent", {**_BASE, "lr": 1e-4}),
    "GradDiff": ("gradient_difference", {**_BASE, "lr": 2e-4}),
    "NPO": ("npo", {**_BASE, "lr": 5e-4}),
    "SimNPO": ("simnpo", {**_BASE, "lr": 3e-4}),
    "IdkDPO": ("idk_dpo", {**_BASE, "lr": 5e-4}),
    "RMU": ("rmu", {**_BASE, "epochs": 100, "lr": 1e-3}),
    "UNDIAL": ("undial", {**_BASE, "lr": 5e-5}),
}
#: The loss-based methods that also run through ``lora`` (rank 8, alpha 16 on every
#: linear/Conv1D layer of the tiny GPT-2, adapters merged afterwards), with lora's own lr
#: (searched on 10x the full-model grid, since only the adapters train).
LORA_LR = {"GA": 5e-4, "GradDiff": 1e-3, "NPO": 5e-3, "SimNPO": 2e-3, "IdkDPO": 5e-3,
           "UNDIAL": 5e-4}
for _label, _lr in LORA_LR.items():
    _name, _params = METHODS[_label]
    _inner = {k: v for k, v in _params.items() if k != "lr"}
    METHODS[f"LoRA-{_label}"] = ("lora", {"strategy": _name, "strategy_params": _inner,
                                          "lr": _lr})
FAST_METHODS = [m for m in METHODS if not m.startswith("LoRA-")]
SEARCH_LRS = [5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3]


def config(split: str, method: str, seed: int, cache: Path, out: Path,
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    name, defaults = METHODS[method]
    return {
        "seed": seed,
        "model": MODEL,
        "data": {"name": "tofu", "forget_split": split,
                 "knowledge": ["real_authors", "world_facts"]},
        "train": TRAIN,
        "selector": {"name": "full"},
        "strategy": c.strategy_section(name, params if params is not None else defaults),
        "oracle": {"strategy": "retrain"},
        "metrics": METRICS,
        "reporters": [],
        "run": {"output_dir": str(out), "progress": False, "cache_dir": str(cache)},
    }


def facts(m: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The table's values of the unlearned model, the original and the oracle."""
    run, info = m["run"], m["run_info"]
    out = {}
    for role in ("original", "unlearned", "oracle"):
        r = m[role]
        out[role] = {"utility": r["model_utility"], "rouge": r["forget_rouge_l_recall"],
                     "utility_ratio": r["model_utility"] / m["oracle"]["model_utility"]}
    out["original"] |= {"fq": run["forget_quality_original"],
                        "privleak": run["privleak_original"],
                        "seconds": info["original_seconds"]}
    out["oracle"] |= {"fq": 1.0, "privleak": 0.0, "seconds": info["oracle_seconds"]}
    out["unlearned"] |= {"fq": run["forget_quality"], "privleak": run["privleak"],
                         "seconds": info["unlearn_seconds"], "rte_ratio": run["rte_ratio"]}
    return out


VALUES = ["fq", "utility", "utility_ratio", "privleak", "rouge", "seconds"]


def run(splits: list[str], methods: list[str], seeds: list[int], cache: Path,
        verbose: bool = False) -> dict[str, Any]:
    """Every run; returns ``results[split][row] = {values..., seeds, errors}``."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-track-e-") as tmp:
        c.warm_up(config(splits[0], "NPO", seeds[0], cache, Path(tmp)))
        for split in splits:
            rows = results.setdefault(split, {})
            for seed in seeds:
                for method in methods:
                    outcome = c.run_one(config(split, method, seed, cache, Path(tmp)),
                                        verbose=verbose)
                    rec = rows.setdefault(method, c.new_record())
                    if c.record_failure(rec, seed, outcome, f"{split} / seed {seed} / {method}"):
                        continue
                    assert outcome.metrics is not None
                    f = facts(outcome.metrics)
                    for role, row in (("original", "original"), ("oracle", "retrain (oracle)")):
                        ref = c.reference_record(rows, row, seed)
                        if ref is not None:
                            for v in VALUES:
                                ref.setdefault(v, []).append(f[role][v])
                    rec["seeds"].append(seed)
                    for v in [*VALUES, "rte_ratio"]:
                        rec.setdefault(v, []).append(f["unlearned"][v])
                    u = f["unlearned"]
                    print(f"{split} / seed {seed} / {method}: FQ {u['fq']:.3g}, utility "
                          f"{u['utility']:.3f} ({u['utility_ratio']:.2f} x oracle), privleak "
                          f"{u['privleak']:.1f}, ROUGE-L {u['rouge']:.2f}, "
                          f"{u['seconds']:.1f}s", flush=True)
            results[split] = c.keys_first(rows, ["original", "retrain (oracle)"])
    return results


def meets(rec: dict[str, Any], n_seeds: int) -> bool | None:
    """Whether a row meets the goal (on the means over seeds); None when it did not run
    on every seed."""
    if len(rec["seeds"]) < n_seeds or "fq" not in rec:
        return None
    fq, _ = c.mean_std(rec["fq"])
    ratio, _ = c.mean_std(rec["utility_ratio"])
    return fq >= GOAL_FQ and ratio >= GOAL_UTILITY


def goal(results: dict[str, Any], n_seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, rows in results.items():
        methods = [m for m, rec in rows.items() if m in METHODS]
        met = [m for m in methods if meets(rows[m], n_seeds)]
        orig = rows.get("original")
        orig_meets = bool(orig and meets(orig, n_seeds))
        text = (f"met by {', '.join(met)}" if met else "not met by any method")
        better: list[str] = []
        if orig_meets:
            # the goal alone does not separate: say which methods moved towards the oracle
            fq0, _ = c.mean_std(orig["fq"])
            pl0, _ = c.mean_std(orig["privleak"])
            better = [m for m in met if c.mean_std(rows[m]["fq"])[0] > fq0 and
                      abs(c.mean_std(rows[m]["privleak"])[0]) < abs(pl0) / 2]
            text += (f"; but the original model itself already meets it (forget quality "
                     f"{fq0:.3g}: on {split}'s few questions the KS test barely separates "
                     "the original from the oracle). Of those, a higher forget quality than "
                     "the original's and privleak less than half as far from 0: "
                     f"{', '.join(better) or 'none'}")
        out[split] = {"met": bool(met), "methods": met, "original_meets": orig_meets,
                      "closer_than_original": better, "text": text}
    return out


def markdown(results: dict[str, Any], seeds: list[int], fast: bool) -> tuple[str, dict]:
    n = len(seeds)
    settings = {m: {"strategy": s, **p} for m, (s, p) in METHODS.items()}
    lines = [
        f"Configuration: {'fast' if fast else 'full'}; forget splits "
        f"{', '.join(results)}; seeds {', '.join(map(str, seeds))}; {c.machine()}. Model: "
        f"tiny GPT-2 {json.dumps(MODEL['config'])} trained from scratch ({json.dumps(TRAIN)}) "
        "on the bundled fictitious-author set plus its real-author and world-fact pairs; "
        "oracle: the same recipe on the retain data. Values are mean ± std over seeds. "
        "FQ: forget quality (KS p-value vs the oracle's truth ratios; the oracle's row is 1 "
        "by definition); utility: TOFU model utility, ratio: unlearned / oracle utility; "
        "privleak: Min-K% (k=0.4), 0 ideal, negative = forget set still recognisable; "
        "ROUGE-L: forget-set ROUGE-L recall of greedy answers; time: unlearning seconds "
        "(original/oracle rows: training seconds), RTE ratio: unlearning / oracle training "
        "time. A method that cannot run is listed as n/a (reason).", "",
        "Method settings: " + json.dumps(settings), ""]
    g = goal(results, n)
    lines += ["### Goal", "",
              f"Goal: a method with forget quality >= {GOAL_FQ} while keeping model utility "
              f">= {GOAL_UTILITY:.0%} of the oracle's (BENCHMARKS.md track E; published anchor "
              "on TOFU forget10 with Llama-3.2-1B: NPO 0.02 at 0.46 / 0.59 of the oracle's "
              "utility).", ""]
    lines += c.table(["forget split", "goal check"], [[s, v["text"]] for s, v in g.items()],
                     ["---", "---"])
    lines.append("")
    header = ["method", "forget quality", "model utility", "utility / oracle", "privleak",
              "forget ROUGE-L", "time (s)", "RTE ratio", "goal"]

    def cells(rec: dict[str, Any]) -> list[str]:
        ok = meets(rec, n)
        return [c.fmt(rec["fq"], 3), c.fmt(rec["utility"], 3), c.fmt(rec["utility_ratio"]),
                c.fmt(rec["privleak"], 1), c.fmt(rec["rouge"]), c.fmt(rec["seconds"], 1),
                c.fmt(rec.get("rte_ratio"), 3), "-" if ok is None else ("yes" if ok else "no")]

    for split, rows in results.items():
        lines += [f"### {split}", ""]
        body = [c.result_row(name, rec, n, cells, len(header)) for name, rec in rows.items()]
        lines += c.table(header, body)
        lines.append("")
    return "\n".join(lines), g


def choose(ok: dict[float, dict[str, float]]) -> float | None:
    """The searched lr closest to the oracle: among the runs that meet the goal, the one
    whose privleak is nearest 0 (forget quality alone hardly separates the runs on 50
    questions: the original already scores about 0.7); else the best forget quality among
    those keeping the utility; else the best utility."""
    goal = {lr: u for lr, u in ok.items()
            if u["utility_ratio"] >= GOAL_UTILITY and u["fq"] >= GOAL_FQ}
    keep = {lr: u for lr, u in ok.items() if u["utility_ratio"] >= GOAL_UTILITY}
    if goal:
        return min(goal, key=lambda lr: abs(goal[lr]["privleak"]))
    if keep:
        return max(keep, key=lambda lr: keep[lr]["fq"])
    return max(ok, key=lambda lr: ok[lr]["utility_ratio"]) if ok else None


def search(methods: list[str], cache: Path, verbose: bool) -> dict[str, Any]:
    """The lr search behind METHODS (forget10, seed 0): every lr of SEARCH_LRS (x10 for
    LoRA), with each method's other settings. Prints one line per run and the choice."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-track-e-") as tmp:
        for method in methods:
            name, params = METHODS[method]
            scale = 10 if name == "lora" else 1
            if name == "rmu":  # its loss is on activations: a larger step is its norm
                lrs = [1e-3, 3e-3, 1e-2, 3e-2]
            else:
                lrs = [lr * scale for lr in SEARCH_LRS]
            out[method] = c.lr_search(
                method, lrs,
                lambda lr, m=method, p=params: config("forget10", m, 0, cache, Path(tmp),
                                                      {**p, "lr": lr}),
                lambda metrics: facts(metrics)["unlearned"],
                lambda u: (f"FQ {u['fq']:.3g}, utility ratio {u['utility_ratio']:.3f}, "
                           f"privleak {u['privleak']:.1f}, ROUGE-L {u['rouge']:.2f}"),
                verbose=verbose)
            best = choose({lr: u for lr, u in out[method].items() if "fq" in u})
            print(f"{method}: chosen lr {best}", flush=True)
            out[method]["chosen"] = best
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.common_args(parser, NAME)
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="methods (default: all; --fast: " + " ".join(FAST_METHODS) + ")")
    parser.add_argument("--splits", nargs="+", default=None, choices=SPLITS,
                        help="forget splits (default: all three; --fast: forget10)")
    parser.add_argument("--search", action="store_true",
                        help="run the lr search (forget10, seed 0) instead of the benchmark")
    args = parser.parse_args(argv)
    c.setup_torch()
    methods = args.methods or (FAST_METHODS if args.fast else list(METHODS))
    if args.search:
        found = search(methods, args.cache_dir, args.verbose)
        (args.out).mkdir(parents=True, exist_ok=True)
        path = args.out / f"{NAME}_search.json"
        path.write_text(json.dumps(found, indent=2, default=str) + "\n")
        print(f"wrote {path}")
        return
    seeds = args.seeds or ([0] if args.fast else [0, 1, 2])
    splits = args.splits or (["forget10"] if args.fast else SPLITS)
    print(f"track E: {len(methods)} methods ({', '.join(methods)}), splits "
          f"{', '.join(splits)}, seeds {', '.join(map(str, seeds))}", flush=True)
    results = run(splits, methods, seeds, args.cache_dir, args.verbose)
    text, summary = markdown(results, seeds, args.fast)
    print(text)
    c.write_results(args.out, NAME, text, {
        "configuration": {"fast": args.fast, "seeds": seeds, "splits": splits,
                          "methods": {m: {"strategy": METHODS[m][0], **METHODS[m][1]}
                                      for m in methods},
                          "model": MODEL, "train": TRAIN, "metrics": METRICS,
                          "goal": {"forget_quality": GOAL_FQ, "utility_ratio": GOAL_UTILITY},
                          "machine": c.machine()},
        "results": results, "goal": summary})


if __name__ == "__main__":
    main()
