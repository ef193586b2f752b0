"""Track F: the coreset effect: unlearn on a coreset of the forget set chosen by each
selector, measure on the FULL forget set (BENCHMARKS.md).

For each data set, scenario and seed, the chosen strategy (default
``gradient_difference``, with track A's per-scenario settings) first unlearns the whole
forget set (selector ``full``: the reference). Then, for every registered selector (read
from the registry when the script runs; ``random`` among them) and budget (5%, 10%, 25%
of the forget set), the selector picks the coreset, the strategy unlearns only it, and
the pipeline's metrics are computed as always on the splits, that is on the whole forget
set (the script checks this in every run: the MIA-efficacy details count the forget
examples evaluated). Time is the selection's plus the unlearning's.

- efficacy = the forgetting on the full forget set: UA gain over the original model
  (UA_unlearned - UA_original, in points), and the MIA-efficacy gain likewise;
- relative efficacy = coreset gain / full-set gain (per seed; n/a when the full-set run
  did not forget at all); relative time = coreset total time / full-set total time;
- goal: a 10% coreset reaching >= 90% of the full-set efficacy (UA gain) at <= 20% of
  the full-set time; the script says plainly whether any selector got there.

    python benchmarks/track_f.py --fast       # 3 selectors, digits, class 0, seed 0
    python benchmarks/track_f.py              # every selector, both sets and scenarios
    python benchmarks/track_f.py --strategy best   # track A's best method per scenario

Writes ``track_f.md`` and ``track_f.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import _common as c
from track_a import SCENARIO_PARAMS, method_params

NAME = "track_f"
DATASETS = ["digits", "mnist5000"]
BUDGETS = [0.05, 0.1, 0.25]
FAST_SELECTORS = ["random", "kcenter", "herding"]
METRICS = ["accuracy", "mia_efficacy", "avg_gap", "time"]
GOAL_BUDGET, GOAL_EFFICACY, GOAL_TIME = 0.1, 0.9, 0.2


def config(dataset: str, scenario: str, strategy: str, selector: dict[str, Any], seed: int,
           cache: Path, out: Path) -> dict[str, Any]:
    return c.base_config(
        dataset=dataset, forget=c.SCENARIOS[scenario], seed=seed, selector=selector,
        strategy=c.strategy_section(strategy, method_params(dataset, scenario, strategy)),
        metrics=list(METRICS), cache_dir=cache, output_dir=out)


def facts(outcome: c.Outcome) -> dict[str, float]:
    m = outcome.metrics
    assert m is not None
    info = m["run_info"]
    u, o = m["unlearned"], m["original"]
    return {"UA": u["UA"], "RA": u["RA"], "TA": u["TA"], "MIA_efficacy": u["MIA_efficacy"],
            "avg_gap": m["run"]["avg_gap"], "ua_gain": u["UA"] - o["UA"],
            "mia_gain": u["MIA_efficacy"] - o["MIA_efficacy"],
            "selection_seconds": float(info.get("selection_seconds") or 0.0),
            "unlearn_seconds": float(info["unlearn_seconds"]),
            "total_seconds": float(info.get("selection_seconds") or 0.0) +
            float(info["unlearn_seconds"]),
            "coreset": float(outcome.coreset or 0),
            "evaluated_forget": float(m["details"]["unlearned"]["mia_efficacy"]["n_forget"])}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def best_strategy(track_a: Path, dataset: str, scenario: str) -> str:
    data = json.loads(track_a.read_text())
    top = data["summary"].get(f"{dataset}/{scenario}", {}).get("top") or []
    if not top:
        raise SystemExit(f"--strategy best: {track_a} has no ranked method for {dataset} / "
                         f"{scenario}; run track A first or name a strategy")
    return str(top[0][0])


def run(datasets: list[str], scenarios: list[str], selectors: list[str], budgets: list[float],
        seeds: list[int], strategy: str, cache: Path, track_a: Path,
        verbose: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-track-f-") as tmp:
        c.warm_up(config(datasets[0], scenarios[0], "gradient_difference", {"name": "full"},
                         seeds[0], cache, Path(tmp)))
        for dataset in datasets:
            for scenario in scenarios:
                method = (best_strategy(track_a, dataset, scenario) if strategy == "best"
                          else strategy)
                scen: dict[str, Any] = {"strategy": method, "full": {}, "rows": {},
                                        "verified": True}
                results.setdefault(dataset, {})[scenario] = scen
                for seed in seeds:
                    full = c.run_one(config(dataset, scenario, method, {"name": "full"}, seed,
                                            cache, Path(tmp)), verbose=verbose)
                    if not full.ok:
                        scen["full"].setdefault("errors", []).append(
                            {"seed": seed, "error": full.error})
                        print(f"{dataset} / {scenario} / seed {seed}: full-set {method} "
                              f"n/a ({full.error})", flush=True)
                        continue
                    ref = facts(full)
                    scen["full"].setdefault("seeds", []).append(seed)
                    for k, v in ref.items():
                        scen["full"].setdefault(k, []).append(v)
                    print(f"{dataset} / {scenario} / seed {seed}: full set ({int(ref['coreset'])}"
                          f" examples) UA gain {ref['ua_gain']:.2f}, "
                          f"{ref['total_seconds']:.2f}s", flush=True)
                    for name in selectors:
                        for budget in budgets:
                            key = f"{name} {budget:g}"
                            rec = scen["rows"].setdefault(
                                key, c.new_record(selector=name, budget=budget))
                            out = c.run_one(config(dataset, scenario, method,
                                                   {"name": name, "budget": budget}, seed,
                                                   cache, Path(tmp)), verbose=verbose)
                            if c.record_failure(rec, seed, out, f"  {key}"):
                                continue
                            f = facts(out)
                            # the metrics must have seen the whole forget set, the
                            # strategy only the coreset
                            ok = (f["evaluated_forget"] == ref["coreset"]
                                  and f["coreset"] < ref["coreset"])
                            scen["verified"] = bool(scen["verified"] and ok)
                            f["rel_efficacy_ua"] = _ratio(f["ua_gain"], ref["ua_gain"])
                            f["rel_efficacy_mia"] = _ratio(f["mia_gain"], ref["mia_gain"])
                            f["rel_time"] = _ratio(f["total_seconds"], ref["total_seconds"])
                            rec["seeds"].append(seed)
                            for k, v in f.items():
                                rec.setdefault(k, []).append(v)
                            rel = f["rel_efficacy_ua"]
                            print(f"  {key}: {int(f['coreset'])} examples, UA gain "
                                  f"{f['ua_gain']:.2f} (x{rel if rel is None else round(rel, 2)}"
                                  f" of full), time x{f['rel_time'] or float('nan'):.2f}",
                                  flush=True)
    return results


def _mean(values: list[Any] | None) -> float:
    if not values:
        return float("nan")
    return c.mean_std([v for v in values if v is not None])[0]


def goal(scen: dict[str, Any], n_seeds: int) -> dict[str, Any]:
    rows = [(k, r) for k, r in scen["rows"].items()
            if r["budget"] == GOAL_BUDGET and len(r["seeds"]) == n_seeds]
    scored = [(k, _mean(r.get("rel_efficacy_ua")), _mean(r.get("rel_time"))) for k, r in rows]
    scored = [s for s in scored if not math.isnan(s[1]) and not math.isnan(s[2])]
    winners = [s for s in scored if s[1] >= GOAL_EFFICACY and s[2] <= GOAL_TIME]
    if winners:
        k, e, t = max(winners, key=lambda s: s[1])
        return {"met": True, "text": f"met by {k}: {100 * e:.0f}% of full-set efficacy at "
                f"{100 * t:.0f}% of its time", "best": k}
    if not scored:
        return {"met": False, "text": "not met: no 10% coreset run gave a relative efficacy "
                "(the full-set run forgot nothing, or every selector failed)"}
    k, e, t = max(scored, key=lambda s: s[1])
    in_time = [s for s in scored if s[2] <= GOAL_TIME]
    text = (f"not met: the most effective 10% coreset ({k}) reached {100 * e:.0f}% of "
            f"full-set efficacy at {100 * t:.0f}% of its time")
    if in_time:
        k2, e2, t2 = max(in_time, key=lambda s: s[1])
        text += (f"; within 20% of the time the best was {k2} ({100 * e2:.0f}% at "
                 f"{100 * t2:.0f}%)")
    else:
        text += "; no 10% coreset ran within 20% of the full-set time"
    return {"met": False, "text": text}


def _cells(rec: dict[str, Any]) -> list[str]:
    """A coreset row's cells after its label (see ``markdown``'s header)."""
    rel_e = [v for v in rec["rel_efficacy_ua"] if v is not None]
    rel_t = [v for v in rec["rel_time"] if v is not None]
    return [f"{_mean(rec['coreset']):.0f}", c.fmt(rec["UA"]), c.fmt(rec["RA"]),
            c.fmt(rec["TA"]), c.fmt(rec["MIA_efficacy"]), c.fmt(rec["avg_gap"]),
            c.fmt(rec["ua_gain"]), c.fmt(rel_e) if rel_e else "n/a", c.fmt(rel_t),
            c.fmt(rec["total_seconds"], 3)]


def markdown(results: dict[str, Any], seeds: list[int], fast: bool) -> tuple[str, dict]:
    n = len(seeds)
    header = ["selector budget", "coreset", "UA", "RA", "TA", "MIA-efficacy", "Avg. Gap",
              "UA gain", "rel. efficacy", "rel. time", "time (s)"]
    lines = [
        f"Configuration: {'fast' if fast else 'full'}; seeds {', '.join(map(str, seeds))}; "
        f"{c.machine()}. The strategy unlearns only the coreset; UA, RA, TA, MIA-efficacy and "
        "Avg. Gap are measured on the full forget set, retain and test sets. Efficacy = UA "
        "gain over the original (points); relative efficacy and relative time are per seed "
        "against the full-set run of the same seed (time = selection + unlearning). "
        f"Strategy settings: track A's, {json.dumps(SCENARIO_PARAMS)}.", ""]
    summary: dict[str, Any] = {}
    headline = []
    for dataset, scenarios in results.items():
        for scenario, scen in scenarios.items():
            g = goal(scen, n)
            summary[f"{dataset}/{scenario}"] = g
            headline.append([dataset, scenario, scen["strategy"], g["text"]])
    lines += ["### Headline", "",
              f"Goal: a {GOAL_BUDGET:.0%} coreset reaching >= {GOAL_EFFICACY:.0%} of "
              f"full-set efficacy at <= {GOAL_TIME:.0%} of full-set time.", ""]
    lines += c.table(["data set", "scenario", "strategy", "goal check"], headline,
                     ["---"] * 4)
    lines.append("")
    for dataset, scenarios in results.items():
        for scenario, scen in scenarios.items():
            full = scen["full"]
            lines += [f"### {dataset}: {scenario} ({scen['strategy']})", ""]
            if not full.get("seeds"):
                err = (full.get("errors") or [{"error": "not run"}])[0]["error"]
                lines += [f"Full-set unlearning could not run: {c.na(err)}.", ""]
                continue
            size = int(full["coreset"][0])
            check = ("verified in every run" if scen["verified"] else
                     "NOT verified: some run evaluated another number of forget examples")
            lines += [f"Full forget set: {size} examples; evaluation on the full forget set "
                      f"{check}.", ""]
            body = [["full set (reference)", f"{size}", c.fmt(full["UA"]), c.fmt(full["RA"]),
                     c.fmt(full["TA"]), c.fmt(full["MIA_efficacy"]), c.fmt(full["avg_gap"]),
                     c.fmt(full["ua_gain"]), "1", "1", c.fmt(full["total_seconds"], 3)]]
            body += [c.result_row(key, rec, n, _cells, len(header))
                     for key, rec in scen["rows"].items()]
            lines += c.table(header, body)
            lines.append("")
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.common_args(parser, NAME)
    parser.add_argument("--selectors", nargs="+", default=None,
                        help="selectors (default: every registered one but 'full'; --fast: "
                        f"{' '.join(FAST_SELECTORS)})")
    parser.add_argument("--budgets", type=float, nargs="+", default=BUDGETS,
                        help="coreset sizes as fractions of the forget set")
    parser.add_argument("--strategy", default="gradient_difference",
                        help="the unlearning strategy, or 'best': track A's best per scenario")
    parser.add_argument("--track-a", type=Path, default=c.RESULTS / "track_a.json",
                        help="track A's results, for --strategy best")
    parser.add_argument("--scenarios", nargs="+", default=None, choices=list(c.SCENARIOS),
                        help="scenarios (default: both; --fast: class 0)")
    args = parser.parse_args(argv)
    c.setup_torch()

    selectors = c.chosen(args.selectors, args.fast, FAST_SELECTORS,
                         c.registered("selector", exclude=("full",)))
    seeds, datasets = c.seeds_and_datasets(args, DATASETS)
    scenarios = args.scenarios or (["class 0"] if args.fast else list(c.SCENARIOS))
    print(f"track F: strategy {args.strategy}; selectors {', '.join(selectors)}; budgets "
          f"{', '.join(f'{b:g}' for b in args.budgets)}; data sets {', '.join(datasets)}; "
          f"scenarios {', '.join(scenarios)}; seeds {', '.join(map(str, seeds))}", flush=True)
    results = run(datasets, scenarios, selectors, args.budgets, seeds, args.strategy,
                  args.cache_dir, args.track_a, args.verbose)
    text, summary = markdown(results, seeds, args.fast)
    print(text)
    c.write_results(args.out, NAME, text, {
        "configuration": {"fast": args.fast, "seeds": seeds, "datasets": datasets,
                          "scenarios": scenarios, "selectors": selectors,
                          "budgets": args.budgets, "strategy": args.strategy,
                          "machine": c.machine()},
        "results": results, "summary": summary})


if __name__ == "__main__":
    main()
