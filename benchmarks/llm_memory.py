"""LLM unlearning memory: peak host memory of NPO, DPO, IdkDPO, ... against gradient ascent.

Methods that compare with a reference model (NPO, DPO, IdkDPO) are often implemented
with a second, frozen copy of the model; Erasus precomputes the reference
log-likelihoods once instead. The goal (BENCHMARKS.md): their peak memory at most 1.15x
that of gradient ascent with the same model, data and batch size, with and without LoRA.

Each method runs in its own subprocess (so peaks do not mix): the child builds a
somewhat larger tiny GPT-2 (``MODEL``: about 19M parameters, 6 layers, width 512; fresh
weights, since memory does not depend on what the model learnt), loads the bundled
TOFU-style set (forget10: 50 forget questions, 500 retain), and runs the strategy through
``erasus.pipeline.unlearn`` (the pipeline's own unlearning call; Adam, batch size 8,
``MAX_STEPS`` optimizer steps: the peak is reached in the first steps). Measured, per
child:

- ``peak RSS``: the process's lifetime peak resident set size, ``resource.getrusage``
  ``ru_maxrss`` (includes Python, torch and the data: the same for every method);
- ``unlearning increment``: the peak RSS sampled every 20 ms during unlearning
  (``erasus.monitor.ResourceMonitor``, the ``peak_host_mb`` of a run's metrics.json)
  minus the RSS just before it: what the method itself adds (gradients, optimizer state,
  activations, precomputed reference values, a reference copy if there were one).

tracemalloc is not used: it sees Python allocations only, not torch's tensor storage.
"live reference" rows are NPO and DPO as usually implemented (a frozen copy of the model
kept and run on every batch for the reference log-likelihoods; benchmark-only classes),
for comparison with Erasus's precomputed ones.

Ratios are to gradient ascent's (LoRA rows: to LoRA gradient ascent's), with the method
pairs that draw the same batches: forget-only methods (NPO with ``retain_weight: 0``,
SimNPO likewise, DPO) against GA; methods that add a retain batch to each forget batch
(NPO+RT, IdkDPO) against gradient difference, which does the same with plain NLL.

    python benchmarks/llm_memory.py --fast      # 9 methods (live-reference NPO/DPO too), once
    python benchmarks/llm_memory.py             # every method, 3 repeats (median)

Writes ``llm_memory.md`` and ``llm_memory.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common as c

NAME = "llm_memory"
MODEL = {"name": "causal_lm", "config": {"model_type": "gpt2", "n_embd": 512, "n_layer": 6,
                                         "n_head": 8, "n_inner": 2048}}
DATA = {"name": "tofu", "forget_split": "forget10",
        "knowledge": ["real_authors", "world_facts"]}
MAX_STEPS = 6
_LOOP = {"batch_size": 8, "lr": 1e-4, "epochs": 1, "max_steps": MAX_STEPS,
         "checkpoint_every": 0}
#: label: (strategy, params, the label of the baseline it is compared with).
METHODS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "GA": ("gradient_ascent", _LOOP, None),
    "NPO": ("npo", {**_LOOP, "retain_weight": 0.0}, "GA"),
    "SimNPO": ("simnpo", {**_LOOP, "retain_weight": 0.0}, "GA"),
    "DPO": ("dpo", _LOOP, "GA"),
    "UNDIAL (top_k 64)": ("undial", {**_LOOP, "top_k": 64}, "GA"),
    "GradDiff": ("gradient_difference", _LOOP, None),
    "NPO+RT": ("npo", {**_LOOP, "retain_weight": 2.0}, "GradDiff"),
    "IdkDPO": ("idk_dpo", _LOOP, "GradDiff"),
}
for _label in ("GA", "NPO", "DPO", "GradDiff", "IdkDPO"):
    _name, _params, _base = METHODS[_label]
    METHODS[f"LoRA-{_label}"] = (
        "lora", {"strategy": _name, "strategy_params": _params, "lr": 1e-3},
        None if _base is None else f"LoRA-{_base}")
#: The usual implementation, for comparison: a frozen copy of the model kept in memory
#: and run on every batch for the reference log-likelihoods (open-unlearning's ref_model),
#: instead of Erasus's log-likelihoods precomputed once. Benchmark-only classes
#: (:func:`live_reference`), not registered strategies.
METHODS["NPO (live reference)"] = ("npo", METHODS["NPO"][1], "GA")
METHODS["DPO (live reference)"] = ("dpo", _LOOP, "GA")
LIVE = {"NPO (live reference)", "DPO (live reference)"}
FAST = ["GA", "NPO", "NPO (live reference)", "DPO", "DPO (live reference)", "GradDiff",
        "IdkDPO", "LoRA-GA", "LoRA-NPO"]


#: Answer sets each step runs through the model (forget; DPO: refusal and forget answer;
#: + retain): activations grow with them, whatever the reference costs.
SETS = {"gradient_ascent": 1, "npo": 1, "simnpo": 1, "dpo": 2, "undial": 1,
        "gradient_difference": 2, "idk_dpo": 3}


def sets(label: str) -> int:
    name, params, _ = METHODS[label]
    inner = params.get("strategy", name) if name == "lora" else name
    inner_params = params.get("strategy_params", params) if name == "lora" else params
    return SETS[inner] + (1 if inner == "npo" and inner_params.get("retain_weight") else 0)


def live_reference(name: str) -> type:
    """NPO or DPO keeping a frozen reference copy of the model, run on every batch."""
    import torch
    from erasus.builtin.strategies.npo import NPO, npo_loss, target_likelihood
    from erasus_llm.strategies._common import qa_batch
    from erasus_llm.strategies.dpo import DPO

    def keep_reference(self: Any, adapter: Any) -> None:
        self.ref = adapter.clone()
        for p in self.ref.model.parameters():
            p.requires_grad_(False)
        self.ref.model.eval()

    class LiveNPO(NPO):
        def prepare(self, adapter: Any, data: Any, run: Any) -> None:
            super(NPO, self).prepare(adapter, data, run)  # not NPO's precomputation
            keep_reference(self, adapter)

        def forget_terms(self, adapter: Any, forget: dict[str, Any]) -> Any:
            lik = target_likelihood(adapter, forget)
            with torch.no_grad():
                ref = target_likelihood(self.ref, forget).log_prob
            loss = npo_loss(lik.log_prob, ref, self.params.beta)
            return loss, {"npo_loss": loss, "forget_loss": lik.mean_loss()}

    class LiveDPO(DPO):
        def prepare(self, adapter: Any, data: Any, run: Any) -> None:
            super().prepare(adapter, data, run)  # the refusals (and the precomputed values,
            keep_reference(self, adapter)       # replaced per batch below)

        def preference_terms(self, adapter: Any, forget: dict[str, Any]) -> Any:
            idx = forget["index"].tolist()
            with torch.no_grad():
                values = []
                for batch in (qa_batch(self.ref, self.chosen, idx), forget):
                    losses, mask = self.ref.token_losses(batch)
                    values.append(-(losses * mask.to(losses.dtype)).sum(dim=1).float().cpu())
            n = len(self.chosen)
            self.ref_chosen, self.ref_rejected = torch.zeros(n), torch.zeros(n)
            self.ref_chosen[idx], self.ref_rejected[idx] = values
            return super().preference_terms(adapter, forget)

    return {"npo": LiveNPO, "dpo": LiveDPO}[name]
GOAL = 1.15


def release_heap() -> None:
    """Collect garbage and hand freed heap back to the OS, so that reused free memory
    cannot hide growth measured from here."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(label: str, seed: int) -> dict[str, Any]:
    """One method's measurement (runs in its own process)."""
    import torch
    from erasus.monitor import current_rss_mb
    from erasus.pipeline import seed_everything, unlearn
    from erasus.plugins import get_plugin_manager
    from erasus.strategy import RunContext

    torch.set_num_threads(1)
    try:  # imported up front by every child: a lazy import is not the method's memory
        import peft  # noqa: F401
    except ImportError:
        pass
    reg = get_plugin_manager().registry
    name, params, _ = METHODS[label]
    seed_everything(seed)
    dinfo = reg.get("dataset", DATA["name"])
    splits = dinfo.cls(dinfo.params_model(**{k: v for k, v in DATA.items() if k != "name"})
                       ).load(seed=seed)
    minfo = reg.get("model", MODEL["name"])
    adapter = minfo.cls.build(minfo.params_model(config=MODEL["config"]), splits.info)
    sinfo = reg.get("strategy", name)
    cls = live_reference(name) if label in LIVE else sinfo.cls
    strategy = cls(sinfo.params_model(**params))
    selector = reg.get("selector", "full")
    selector = selector.cls(selector.params_model())
    n_params = sum(p.numel() for p in adapter.model.parameters())
    release_heap()
    before = current_rss_mb()
    history, _, facts = unlearn(adapter, strategy, selector, splits.forget, splits.retain,
                                RunContext(seed=seed, progress=False), info=splits.info,
                                collate_fn=splits.collate_fn)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    return {"label": label, "strategy": name, "params": params, "parameters": n_params,
            "rss_before_mb": before, "unlearn_peak_mb": facts["peak_host_mb"],
            "increment_mb": facts["peak_host_mb"] - before, "peak_rss_mb": maxrss,
            "steps": history.num_steps, "seconds": facts["unlearn_seconds"]}


def measure(label: str, seed: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", label, "--seed", str(seed)],
                          capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-1:])
        return {"label": label, "error": tail or f"exit code {proc.returncode}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=f"methods {', '.join(FAST)}, once")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    parser.add_argument("--repeats", type=int, default=None, help="default 3; --fast: 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "--output", dest="out", type=Path, default=c.RESULTS)
    parser.add_argument("--rebuild", type=Path, default=None,
                        help="rewrite the tables from an earlier llm_memory.json (no runs)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.seed)), flush=True)
        return
    if args.rebuild:
        old = json.loads(args.rebuild.read_text())
        cfg = old["configuration"]
        runs = old["runs"]
        report(args.out, runs, list(runs), cfg["repeats"], cfg["fast"], cfg["seed"])
        return
    methods = args.methods or (FAST if args.fast else list(METHODS))
    # the baselines are measured whenever a method is compared with them
    for m in list(methods):
        for base in (METHODS[m][2], same_sets(m)):
            if base and base not in methods:
                methods.insert(0, base)
    repeats = args.repeats or (1 if args.fast else 3)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in range(repeats):
        for m in methods:  # interleaved, so drift of the machine hits every method alike
            out = measure(m, args.seed)
            runs[m].append(out)
            print(f"repeat {r + 1} / {m}: " + (f"n/a ({out['error']})" if "error" in out else
                  f"peak RSS {out['peak_rss_mb']:.0f} MiB, unlearning +"
                  f"{out['increment_mb']:.0f} MiB, {out['seconds']:.1f}s"), flush=True)
    report(args.out, runs, methods, repeats, args.fast, args.seed)


def same_sets(label: str) -> str | None:
    """The plain baseline that runs as many answer sets per step (GA: 1, GradDiff: 2; the
    LoRA ones for LoRA rows), or None."""
    base = {1: "GA", 2: "GradDiff"}.get(sets(label))
    if base is None:
        return None
    base = f"LoRA-{base}" if label.startswith("LoRA-") else base
    return None if base == label or base not in METHODS else base


def report(out_dir: Path, runs: dict[str, list[dict[str, Any]]], methods: list[str],
           repeats: int, fast: bool, seed: int) -> None:
    def med(m: str | None, key: str) -> float | None:
        ok = [x[key] for x in runs.get(m or "", []) if "error" not in x]
        return statistics.median(ok) if ok else None

    def ratio(m: str, base: str | None) -> float | None:
        if not base or not med(base, "increment_mb"):
            return None
        return med(m, "increment_mb") / med(base, "increment_mb")  # type: ignore[operator]

    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows, summary = [], {}
    for m in methods:
        name, params, base = METHODS[m]
        errs = [x["error"] for x in runs[m] if "error" in x]
        if med(m, "peak_rss_mb") is None:
            rows.append([m, c.na(errs[0])] + [""] * 7)
            summary[m] = {"error": errs[0]}
            continue
        peak, inc = med(m, "peak_rss_mb"), med(m, "increment_mb")
        ratio_peak = peak / med(base, "peak_rss_mb") if base and med(base, "peak_rss_mb") \
            else None
        ratio_inc, same = ratio(m, base), same_sets(m)
        ratio_same = ratio(m, same) if same != base else None
        summary[m] = {"strategy": name, "baseline": base, "answer_sets": sets(m),
                      "peak_rss_mb": peak, "increment_mb": inc, "peak_ratio": ratio_peak,
                      "increment_ratio": ratio_inc, "same_sets_baseline": same,
                      "same_sets_ratio": ratio_same,
                      "meets_goal": None if ratio_inc is None else ratio_inc <= GOAL}
        rows.append([m, str(sets(m)), base or "-", f"{peak:.0f}", f"{inc:.0f}",
                     cell(ratio_peak), cell(ratio_inc),
                     "-" if ratio_inc is None else ("yes" if ratio_inc <= GOAL else "no"),
                     "-" if ratio_same is None else f"{ratio_same:.3f} ({same})"])
    params = next((x["parameters"] for v in runs.values() for x in v if "parameters" in x), 0)
    compared = {m: s for m, s in summary.items() if s.get("increment_ratio") is not None}
    failed = [f"{m} {s['increment_ratio']:.2f}x" for m, s in compared.items()
              if s["increment_ratio"] > GOAL]
    verdict = ("no method compared" if not compared else
               "met by every method" if not failed else
               f"not met by {', '.join(failed)}")
    text = "\n".join([
        f"Configuration: {'fast' if fast else 'full'}; {repeats} repeat(s), medians; "
        f"{c.machine()}. Model: GPT-2 {json.dumps(MODEL['config'])} ({params / 1e6:.1f}M "
        f"parameters, fresh weights), bundled TOFU-style forget10; each method in its own "
        f"subprocess, {MAX_STEPS} Adam steps of batch size 8 through erasus.pipeline.unlearn. "
        "Peak RSS: the process's ru_maxrss; unlearning increment: peak RSS sampled every "
        "20 ms during unlearning minus the RSS before it. Ratios are of the increments, to "
        "the baseline's (LoRA rows to the LoRA baseline's); the last column compares with "
        "the plain method that runs as many answer sets per step. Settings: "
        + json.dumps({m: {"strategy": s, **p} for m, (s, p, _) in METHODS.items()
                      if m in methods}), "",
        f"Goal: at most {GOAL}x gradient ascent's memory (NPO, DPO/IdkDPO; with LoRA too). "
        f"Goal check (unlearning increment): {verdict}. \"live reference\" rows keep a "
        "frozen copy of the model and run it on every batch (the usual implementation) "
        "instead of Erasus's reference log-likelihoods precomputed once; \"answer sets / "
        "step\" counts the answer batches each step runs through the model (DPO: refusal "
        "and forget answer; IdkDPO: and a retain batch), whose activations any "
        "implementation pays.", "",
        *c.table(["method", "answer sets / step", "baseline", "peak RSS (MiB)",
                  "unlearning increment (MiB)", "peak ratio", "increment ratio",
                  f"<= {GOAL}x", "increment ratio, same answer sets"], rows)])
    print(text)
    c.write_results(out_dir, NAME, text, {
        "configuration": {"fast": fast, "repeats": repeats, "seed": seed,
                          "model": MODEL, "data": DATA, "max_steps": MAX_STEPS,
                          "methods": {m: {"strategy": s, "params": p, "baseline": b}
                                      for m, (s, p, b) in METHODS.items() if m in methods},
                          "measurement": "ru_maxrss (peak RSS) and RSS sampled every 20 ms "
                          "during unlearning minus the RSS before it (increment)",
                          "machine": c.machine()},
        "summary": summary, "verdict": verdict, "runs": runs})


if __name__ == "__main__":
    main()
