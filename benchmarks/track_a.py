"""Track A: every registered strategy on the bundled classifier benchmarks (BENCHMARKS.md).

For each data set (``digits``, ``mnist5000``), scenario (random 10% forgetting, class-wise
forgetting of class 0), strategy and seed, runs the same pipeline as ``erasus run`` and
reports UA, RA, TA, MIA-efficacy, Avg. Gap to the retrained oracle, the unlearning time
and its ratio to the oracle's retraining time (RTE ratio), as mean ± std over seeds; then
the best methods of each scenario and the goal check (Avg. Gap <= 1.0 at <= 1/10 of the
retraining time). The strategies are read from the registry when the script runs (every
strategy that supports classification, except those that retrain from scratch:
``retrain`` is the oracle row, ``certified_training`` a training recipe); a
strategy that cannot run in a scenario is listed as ``n/a (reason)``.

    python benchmarks/track_a.py --fast                 # 4 methods, digits, seed 0: minutes
    python benchmarks/track_a.py                        # every strategy, both sets, 3 seeds
    python benchmarks/track_a.py --methods salun scrub --datasets digits --seeds 0 1 2

Writes ``track_a.md`` and ``track_a.json`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import _common as c

NAME = "track_a"
DATASETS = ["digits", "mnist5000"]
FAST_METHODS = ["finetune", "gradient_ascent", "gradient_difference", "random_label"]
METRICS = ["accuracy", "mia_efficacy", "avg_gap", "time"]
VALUES = ["UA", "RA", "TA", "MIA_efficacy"]
GOAL_GAP, GOAL_RTE = 1.0, 0.1

# Each method's defaults are tuned for random forgetting. Class-wise forgetting needs
# stronger settings (as in the SalUn paper, which tunes per scenario); these were chosen by
# a small search on digits, seed 0 only. Keys: a scenario, or "<data set>/<scenario>" for
# settings of one data set (merged over the scenario's).
SCENARIO_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "class 0": {
        "finetune": {"epochs": 10, "lr": 0.05},
        "gradient_ascent": {"lr": 3e-4},
        "gradient_difference": {"lr": 5e-4, "retain_weight": 3.0},
        "random_label": {"lr": 2e-3},
        # searched on digits seeds 0-2 (class 0), by the helper that wrote the methods
        "wga": {"lr": 2e-3},
        "npo": {"lr": 2e-3},
        "simnpo": {"lr": 2e-3},
        "lora": {"lr": 1e-2},
        "scrub": {"lr": 3e-3, "epochs": 3, "forget_batch_size": 8},
        "bad_teacher": {"retain_fraction": 0.6},
        "negative_gradient": {"lr": 1e-3, "alpha": 0.8},
    },
    "mnist5000/random 10%": {"mask_based": {"lr": 0.01}},
}

# Methods that need another model or training recipe than the small CNN trained by
# ``retrain`` get it here (deep-merged into their run config; the original and the oracle
# of those runs are then their own, and the table marks the row). Certified removal is
# defined for a linear model trained with objective perturbation (Guo et al., 2020), its
# oracle is exact retraining of that model; SISA unlearns from an original trained by SISA
# itself (an ensemble, one member per shard), compared with SISA trained from scratch on
# the retain set with the same recipe. Their rows are marked * and left out of the best
# methods and the goal check.
METHOD_CONFIG: dict[str, dict[str, Any]] = {
    "certified_removal": {"model": {"arch": "linear"},
                          "train": {"name": "certified_training"},
                          "oracle": {"strategy": "certified_training"}},
    "sisa": {"model": {"ensemble": 4}, "train": {"name": "sisa", "epochs": 10, "lr": 3e-3},
             "strategy": {"epochs": 10, "lr": 3e-3}, "oracle": {"strategy": "sisa"}},
}


def method_params(dataset: str, scenario: str, method: str) -> dict[str, Any]:
    params = dict(SCENARIO_PARAMS.get(scenario, {}).get(method, {}))
    params.update(SCENARIO_PARAMS.get(f"{dataset}/{scenario}", {}).get(method, {}))
    return params


def config(dataset: str, scenario: str, method: str, seed: int, cache: Path, out: Path
           ) -> dict[str, Any]:
    cfg = c.base_config(
        dataset=dataset, forget=c.SCENARIOS[scenario], seed=seed,
        strategy=c.strategy_section(method, method_params(dataset, scenario, method)),
        metrics=list(METRICS), cache_dir=cache, output_dir=out)
    return c.deep_merge(cfg, METHOD_CONFIG.get(method, {}))


def _record(rec: dict[str, Any], m: dict[str, Any], role: str) -> None:
    for v in VALUES:
        rec.setdefault(v, []).append(m[role][v])


def run(datasets: list[str], scenarios: list[str], methods: list[str], seeds: list[int],
        cache: Path, verbose: bool = False) -> dict[str, Any]:
    """Every run; returns ``results[dataset][scenario][row] = {values..., errors}``."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-track-a-") as tmp:
        c.warm_up(config(datasets[0], scenarios[0], "gradient_difference", seeds[0], cache,
                         Path(tmp)))
        for dataset in datasets:
            for scenario in scenarios:
                rows = results.setdefault(dataset, {}).setdefault(scenario, {})
                for seed in seeds:
                    for method in methods:
                        outcome = c.run_one(config(dataset, scenario, method, seed, cache,
                                                   Path(tmp)), verbose=verbose)
                        rec = rows.setdefault(method, c.new_record())
                        if c.record_failure(rec, seed, outcome,
                                            f"{dataset} / {scenario} / seed {seed} / {method}"):
                            continue
                        m = outcome.metrics
                        assert m is not None
                        if method not in METHOD_CONFIG:
                            for role, row in (("original", "original"),
                                              ("oracle", "retrain (oracle)")):
                                ref = c.reference_record(rows, row, seed)
                                if ref is not None:
                                    _record(ref, m, role)
                                    if role == "oracle":
                                        ref.setdefault("seconds", []).append(
                                            m["run"]["oracle_seconds"])
                        rec["seeds"].append(seed)
                        _record(rec, m, "unlearned")
                        rec.setdefault("avg_gap", []).append(m["run"]["avg_gap"])
                        rec.setdefault("seconds", []).append(m["run"]["unlearn_seconds"])
                        rec.setdefault("rte_ratio", []).append(m["run"]["rte_ratio"])
                        print(f"{dataset} / {scenario} / seed {seed} / {method}: Avg. Gap "
                              f"{m['run']['avg_gap']:.2f}, RTE ratio "
                              f"{m['run']['rte_ratio']:.3f}", flush=True)
    # the reference rows first
    for dataset in results.values():
        for scenario, rows in dataset.items():
            dataset[scenario] = c.keys_first(rows, ["original", "retrain (oracle)"])
    return results


def ranking(rows: dict[str, Any], n_seeds: int) -> list[tuple[str, float, float]]:
    """``(method, mean Avg. Gap, mean RTE ratio)`` of the methods that ran on every seed,
    best (lowest gap) first. Methods with their own model or recipe (METHOD_CONFIG, marked
    *) are left out: their gap is to their own oracle, not to the small CNN's."""
    out = []
    for name, rec in rows.items():
        if "avg_gap" not in rec or len(rec["seeds"]) < n_seeds or name in METHOD_CONFIG:
            continue
        gap, _ = c.mean_std(rec["avg_gap"])
        rte, _ = c.mean_std(rec["rte_ratio"])
        if not math.isnan(gap):
            out.append((name, gap, rte))
    return sorted(out, key=lambda t: t[1])


def goal(rows: dict[str, Any], n_seeds: int) -> dict[str, Any]:
    """The best method within 1/10 of retraining time, and whether its gap is <= 1.0."""
    fast = [r for r in ranking(rows, n_seeds) if r[2] <= GOAL_RTE]
    if not fast:
        return {"met": False, "best": None, "text": "no method ran within 1/10 of the "
                "retraining time on every seed"}
    name, gap, rte = fast[0]
    met = gap <= GOAL_GAP
    return {"met": met, "best": name, "avg_gap": gap, "rte_ratio": rte,
            "text": f"{'met' if met else 'not met'}: best within 1/10 of retraining time is "
                    f"{name}, Avg. Gap {gap:.2f} at RTE ratio {rte:.3f}"}


def markdown(results: dict[str, Any], seeds: list[int], fast: bool) -> tuple[str, dict]:
    n = len(seeds)
    special = {m: cfg for m, cfg in METHOD_CONFIG.items()}
    lines = [
        f"Configuration: {'fast' if fast else 'full'}; seeds {', '.join(map(str, seeds))}; "
        f"{c.machine()}. Values are mean ± std over seeds; Avg. Gap is to the retrained "
        "oracle; time is the unlearning's wall-clock seconds and RTE ratio its ratio to the "
        "oracle's retraining time. Method settings: defaults, except "
        f"{json.dumps(SCENARIO_PARAMS)}; methods with their own model or recipe "
        f"(marked *): {json.dumps(special)}. A method that cannot run is listed as "
        "n/a (reason).", ""]
    summary: dict[str, Any] = {}
    lines += ["### Best methods and the goal", "",
              f"Goal: Avg. Gap <= {GOAL_GAP} at no more than {GOAL_RTE:g} of the retraining "
              "time (the SalUn paper reports 1.15 at about 1/16 on CIFAR-10).", ""]
    best_rows = []
    for dataset, scenarios in results.items():
        for scenario, rows in scenarios.items():
            top = ranking(rows, n)[:3]
            g = goal(rows, n)
            summary[f"{dataset}/{scenario}"] = {"top": top, "goal": g}
            best = ", ".join(f"{m} {gap:.2f} (RTE {rte:.3f})" for m, gap, rte in top) or "-"
            best_rows.append([dataset, scenario, best, g["text"]])
    lines += c.table(["data set", "scenario", "best 3 by Avg. Gap (RTE ratio)", "goal check"],
                     best_rows, ["---", "---", "---", "---"])
    lines.append("")
    header = ["method", "UA", "RA", "TA", "MIA-efficacy", "Avg. Gap", "time (s)", "RTE ratio"]

    def cells(rec: dict[str, Any]) -> list[str]:
        return [*(c.fmt(rec[v]) for v in VALUES), c.fmt(rec.get("avg_gap")),
                c.fmt(rec.get("seconds")), c.fmt(rec.get("rte_ratio"), 3)]

    for dataset, scenarios in results.items():
        for scenario, rows in scenarios.items():
            lines += [f"### {dataset}: {scenario}", ""]
            body = [c.result_row(f"{name} *" if name in METHOD_CONFIG else name, rec, n, cells,
                                 len(header)) for name, rec in rows.items()]
            lines += c.table(header, body)
            lines.append("")
    return "\n".join(lines), summary


def main(argv: list[str] | None = None, name: str = NAME) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.common_args(parser, name)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="strategies (default: every registered one; --fast: "
                        f"{' '.join(FAST_METHODS)})")
    parser.add_argument("--scenarios", nargs="+", default=list(c.SCENARIOS),
                        choices=list(c.SCENARIOS), help="scenarios (default: both)")
    args = parser.parse_args(argv)
    c.setup_torch()

    methods = c.chosen(args.methods, args.fast, FAST_METHODS, c.unlearning_methods())
    seeds, datasets = c.seeds_and_datasets(args, DATASETS)
    print(f"track A: {len(methods)} methods ({', '.join(methods)}), data sets "
          f"{', '.join(datasets)}, scenarios {', '.join(args.scenarios)}, seeds "
          f"{', '.join(map(str, seeds))}", flush=True)
    results = run(datasets, args.scenarios, methods, seeds, args.cache_dir, args.verbose)
    text, summary = markdown(results, seeds, args.fast)
    print(text)
    c.write_results(args.out, name, text, {
        "configuration": {"fast": args.fast, "seeds": seeds, "datasets": datasets,
                          "scenarios": args.scenarios, "methods": methods,
                          "scenario_params": SCENARIO_PARAMS, "method_config": METHOD_CONFIG,
                          "machine": c.machine()},
        "results": results, "summary": summary})


if __name__ == "__main__":
    main()
