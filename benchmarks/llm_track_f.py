"""Track F on the LLM: unlearn a coreset of TOFU's forget10 chosen by each selector, measure
on the FULL forget set (BENCHMARKS.md track F, with track E's model, data and method).

The model, data and recipe are track E's (``configs/llm/tofu_bundled_npo.yaml``: a tiny
GPT-2 trained from scratch on the bundled fictitious authors; the oracle retrained on the
retain authors). NPO with track E's settings first unlearns the whole forget set
(selector ``full``: the reference); then, for every selector registered for text (read
from the registry when the script runs; ``random`` among them) and budget (5%, 10% and
25% of the 50 forget questions), the selector picks the coreset and NPO unlearns only it
(the same number of epochs over the smaller set, so fewer steps). Every metric is computed
on the whole forget set, as always.

- efficacy: the forget-quality gain over the original, and how far privleak moved toward
  0 (``|privleak_original| - |privleak|``); relative efficacy = coreset / full-set value;
- utility: model utility / the oracle's;
- relative time: (selection + unlearning) / the full set's.

    python benchmarks/llm_track_f.py --fast   # 4 selectors, seed 0
    python benchmarks/llm_track_f.py          # every text selector, seeds 0 1 2

Writes ``llm_track_f.md`` and ``llm_track_f.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import _common as c
import track_e

NAME = "llm_track_f"
BUDGETS = [0.05, 0.10, 0.25]
FAST_SELECTORS = ["random", "highest_loss", "gradient_norm", "kcenter"]
METHOD = "NPO"


def config(selector: dict[str, Any], seed: int, cache: Path, out: Path) -> dict[str, Any]:
    cfg = track_e.config("forget10", METHOD, seed, cache, out)
    cfg["selector"] = selector
    return cfg


def facts(m: dict[str, Any]) -> dict[str, float]:
    run, info = m["run"], m["run_info"]
    return {"fq": run["forget_quality"], "fq_original": run["forget_quality_original"],
            "privleak": run["privleak"], "privleak_original": run["privleak_original"],
            "utility_ratio": m["unlearned"]["model_utility"] / m["oracle"]["model_utility"],
            "rouge": m["unlearned"]["forget_rouge_l_recall"],
            "seconds": float(info.get("selection_seconds", 0.0)) + info["unlearn_seconds"],
            "steps": float(info.get("steps", 0.0))}


def run(selectors: list[str], seeds: list[int], cache: Path, verbose: bool
        ) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-llm-track-f-") as tmp:
        c.warm_up(config({"name": "full"}, seeds[0], cache, Path(tmp)))
        for seed in seeds:
            full = c.run_one(config({"name": "full"}, seed, cache, Path(tmp)), verbose=verbose)
            rec = rows.setdefault("full", c.new_record())
            if c.record_failure(rec, seed, full, f"seed {seed} / full"):
                continue
            assert full.metrics is not None
            ref = facts(full.metrics)
            _add(rec, seed, ref, ref)
            for budget in BUDGETS:
                for name in selectors:
                    label = f"{name} {budget:.0%}"
                    o = c.run_one(config({"name": name, "budget": budget}, seed, cache,
                                         Path(tmp)), verbose=verbose)
                    rec = rows.setdefault(label, c.new_record())
                    if c.record_failure(rec, seed, o, f"seed {seed} / {label}"):
                        continue
                    assert o.metrics is not None
                    f = facts(o.metrics)
                    _add(rec, seed, f, ref)
                    print(f"seed {seed} / {label}: FQ {f['fq']:.3g} (full {ref['fq']:.3g}), "
                          f"privleak {f['privleak']:.1f} (full {ref['privleak']:.1f}), "
                          f"utility {f['utility_ratio']:.2f} x oracle, {f['seconds']:.1f}s",
                          flush=True)
    return rows


def _add(rec: dict[str, Any], seed: int, f: dict[str, float], ref: dict[str, float]) -> None:
    gain = f["fq"] - f["fq_original"]
    moved = abs(f["privleak_original"]) - abs(f["privleak"])
    ref_moved = abs(ref["privleak_original"]) - abs(ref["privleak"])
    rec["seeds"].append(seed)
    for key, value in (("fq", f["fq"]), ("fq_gain", gain), ("privleak", f["privleak"]),
                       ("privleak_moved", moved), ("utility_ratio", f["utility_ratio"]),
                       ("rouge", f["rouge"]), ("seconds", f["seconds"]),
                       ("rel_privleak", moved / ref_moved if ref_moved > 0 else float("nan")),
                       ("rel_time", f["seconds"] / ref["seconds"] if ref["seconds"] else
                        float("nan"))):
        rec.setdefault(key, []).append(value)


def markdown(rows: dict[str, Any], seeds: list[int], fast: bool) -> str:
    n = len(seeds)
    lines = [
        f"Configuration: {'fast' if fast else 'full'}; seeds {', '.join(map(str, seeds))}; "
        f"{c.machine()}. Track E's tiny GPT-2 on the bundled TOFU-style forget10 (50 "
        f"questions), method {METHOD} {track_e.METHODS[METHOD][1]}; each row unlearns the "
        "selector's coreset of the given budget and is evaluated on the whole forget set. "
        "FQ: forget quality (KS p-value vs the oracle's truth ratios); privleak moved: "
        "|privleak of the original| - |privleak| (toward 0 is forgetting); relative: the "
        "coreset's value / the full set's; utility: model utility / the oracle's; time: "
        "selection + unlearning seconds. Values are mean ± std over seeds.", ""]
    header = ["selection", "forget quality", "FQ gain", "privleak", "privleak moved",
              "relative privleak moved", "utility / oracle", "forget ROUGE-L", "time (s)",
              "relative time"]

    def cells(rec: dict[str, Any]) -> list[str]:
        return [c.fmt(rec["fq"], 3), c.fmt(rec["fq_gain"], 3), c.fmt(rec["privleak"], 1),
                c.fmt(rec["privleak_moved"], 1), c.fmt(rec["rel_privleak"]),
                c.fmt(rec["utility_ratio"]), c.fmt(rec["rouge"]), c.fmt(rec["seconds"], 1),
                c.fmt(rec["rel_time"])]

    lines += c.table(header, [c.result_row(name, rec, n, cells, len(header))
                              for name, rec in rows.items()])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.common_args(parser, NAME)
    parser.add_argument("--selectors", nargs="+", help="selectors (default: every text "
                        "selector but full; --fast: " + ", ".join(FAST_SELECTORS) + ")")
    args = parser.parse_args()
    c.setup_torch()
    selectors = args.selectors or (FAST_SELECTORS if args.fast else
                                   c.registered("selector", "text", exclude=("full",)))
    seeds = args.seeds or ([0] if args.fast else [0, 1, 2])
    rows = run(selectors, seeds, Path(args.cache_dir), args.verbose)
    text = markdown(rows, seeds, args.fast)
    print(text)
    c.write_results(Path(args.out), NAME, text, {"rows": rows, "seeds": seeds,
                                                 "selectors": selectors,
                                                 "budgets": BUDGETS, "fast": args.fast})


if __name__ == "__main__":
    main()
