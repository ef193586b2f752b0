"""Sharded training memory: per-process memory of unlearning data-parallel vs FSDP2-sharded.

Two processes (``torchrun --nproc_per_node 2``, gloo on the CPU) unlearn the same model
(llm_memory.py's 19M-parameter GPT-2, fresh weights, bundled TOFU-style forget10) with
gradient ascent and Adam through ``erasus.pipeline.unlearn``, in three modes:

- ``data-parallel``: every process holds the whole model, its gradients and Adam's two
  moments (the default multi-process run);
- ``full_shard`` (ZeRO-3) and ``shard_grad_op`` (ZeRO-2): ``run.sharding`` on; each GPT-2
  block is its own FSDP unit.

One process alone is measured too. Per process: the ``unlearning increment``, the peak
RSS sampled every 20 ms during unlearning minus the RSS before it (what training adds:
gradients, optimizer state, the sharded twin, activations, communication buffers), and
the unlearning seconds. On the CPU the plain model stays resident beside the shards (on a
CUDA device it waits in CPU memory and the device holds only the shards), so the
increment is what sharding saves on either. Ratios are to data-parallel's, measured in
the same invocation. Every process runs with ``MALLOC_MMAP_THRESHOLD_=65536``: without
it, FSDP's per-unit gather and reduce buffers fragment glibc's heap and the RSS grows
step after step while the live tensors do not (a CPU-allocator effect, not memory that
training holds).

    python benchmarks/llm_sharding.py            # 3 repeats, medians
    python benchmarks/llm_sharding.py --fast     # once

Writes ``llm_sharding.md`` and ``llm_sharding.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common as c
from llm_memory import DATA, MAX_STEPS, MODEL, release_heap

NAME = "llm_sharding"
MMAP_THRESHOLD = 65536
LOOP = {"batch_size": 8, "lr": 1e-4, "epochs": 1, "max_steps": MAX_STEPS,
        "checkpoint_every": 0}
#: label: (processes, run.sharding strategy or None)
MODES: dict[str, tuple[int, str | None]] = {
    "one process": (1, None),
    "data-parallel": (2, None),
    "full_shard (ZeRO-3)": (2, "full_shard"),
    "shard_grad_op (ZeRO-2)": (2, "shard_grad_op"),
}


def child(mode: str, seed: int) -> dict[str, Any]:
    """One process's measurement (run under torchrun for the two-process modes)."""
    from types import SimpleNamespace

    import torch
    from erasus import distributed, sharding
    from erasus.monitor import current_rss_mb
    from erasus.pipeline import seed_everything, unlearn
    from erasus.plugins import get_plugin_manager
    from erasus.strategy import RunContext

    torch.set_num_threads(1)
    _, strategy_name = MODES[mode]
    _, owned = distributed.setup("cpu")
    try:
        sharding.configure(None if strategy_name is None
                           else SimpleNamespace(strategy=strategy_name, wrap=None))
        reg = get_plugin_manager().registry
        seed_everything(seed)
        dinfo = reg.get("dataset", DATA["name"])
        splits = dinfo.cls(dinfo.params_model(
            **{k: v for k, v in DATA.items() if k != "name"})).load(seed=seed)
        minfo = reg.get("model", MODEL["name"])
        adapter = minfo.cls.build(minfo.params_model(config=MODEL["config"]), splits.info)
        sinfo = reg.get("strategy", "gradient_ascent")
        strategy = sinfo.cls(sinfo.params_model(**LOOP))
        selector = reg.get("selector", "full")
        selector = selector.cls(selector.params_model())
        n_params = sum(p.numel() for p in adapter.model.parameters())
        release_heap()
        distributed.barrier()
        before = current_rss_mb()
        history, _, facts = unlearn(adapter, strategy, selector, splits.forget,
                                    splits.retain, RunContext(seed=seed, progress=False),
                                    info=splits.info, collate_fn=splits.collate_fn)
        info = sharding.describe()
        return {"mode": mode, "rank": distributed.rank(), "parameters": n_params,
                "increment_mb": facts["peak_host_mb"] - before, "rss_before_mb": before,
                "seconds": facts["unlearn_seconds"], "steps": history.num_steps,
                "local_fraction": None if info is None else info.get("local_fraction")}
    finally:
        sharding.reset()
        if owned:
            distributed.teardown()


def measure(mode: str, seed: int) -> list[dict[str, Any]]:
    procs, _ = MODES[mode]
    # large blocks from mmap, returned to the OS when freed: FSDP's per-unit gather and
    # reduce buffers otherwise fragment glibc's heap, and the RSS then grows with every
    # step although the live tensors do not (the same setting for every mode)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    cmd = [sys.executable, __file__, "--child", mode, "--seed", str(seed)]
    if procs > 1:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        cmd = [torchrun or "torchrun", "--nproc_per_node", str(procs), *cmd[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or len(lines) != procs:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-1:])
        return [{"mode": mode, "error": tail or f"exit code {proc.returncode}"}]
    return sorted(lines, key=lambda x: x["rank"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="default 3; --fast: 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "--output", dest="out", type=Path, default=c.RESULTS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.seed)), flush=True)
        return
    repeats = args.repeats or (1 if args.fast else 3)
    runs: dict[str, list[list[dict[str, Any]]]] = {m: [] for m in MODES}
    for r in range(repeats):
        for mode in MODES:  # interleaved, so drift of the machine hits every mode alike
            out = measure(mode, args.seed)
            runs[mode].append(out)
            print(f"repeat {r + 1} / {mode}: " + (
                f"n/a ({out[0]['error']})" if "error" in out[0] else ", ".join(
                    f"rank {x['rank']} +{x['increment_mb']:.0f} MiB {x['seconds']:.1f}s"
                    for x in out)), flush=True)
    report(args.out, runs, repeats, args.fast, args.seed)


def report(out_dir: Path, runs: dict[str, list[list[dict[str, Any]]]], repeats: int,
           fast: bool, seed: int) -> None:
    def med(mode: str, key: str) -> float | None:
        # per repeat the largest of the processes (the one that sets the memory needed)
        ok = [max(x[key] for x in rep) for rep in runs[mode] if "error" not in rep[0]]
        return statistics.median(ok) if ok else None

    base_inc, base_sec = med("data-parallel", "increment_mb"), med("data-parallel",
                                                                   "seconds")
    rows, summary = [], {}
    for mode, (procs, strategy) in MODES.items():
        inc, sec = med(mode, "increment_mb"), med(mode, "seconds")
        if inc is None:
            err = runs[mode][0][0]["error"]
            rows.append([mode, str(procs), c.na(err), "", "", "", ""])
            summary[mode] = {"error": err}
            continue
        frac = next((x["local_fraction"] for rep in runs[mode] for x in rep
                     if x.get("local_fraction") is not None), None)
        ratio_inc = inc / base_inc if base_inc else None
        ratio_sec = sec / base_sec if base_sec else None
        summary[mode] = {"processes": procs, "sharding": strategy, "increment_mb": inc,
                         "seconds": sec, "increment_ratio": ratio_inc,
                         "seconds_ratio": ratio_sec, "local_fraction": frac}
        rows.append([mode, str(procs), "-" if frac is None else f"{frac:.2f}",
                     f"{inc:.0f}", "-" if ratio_inc is None else f"{ratio_inc:.2f}",
                     f"{sec:.1f}", "-" if ratio_sec is None else f"{ratio_sec:.2f}"])
    params = next((x["parameters"] for v in runs.values() for rep in v for x in rep
                   if "parameters" in x), 0)
    text = "\n".join([
        f"Configuration: {'fast' if fast else 'full'}; {repeats} repeat(s), medians of the "
        f"larger process's figure; {c.machine()}. Model: GPT-2 {json.dumps(MODEL['config'])} "
        f"({params / 1e6:.1f}M parameters, fresh weights), bundled TOFU-style forget10; "
        f"gradient ascent, {MAX_STEPS} Adam steps of batch size 8 through "
        "erasus.pipeline.unlearn; two processes over gloo (torchrun). Unlearning increment: "
        "peak RSS sampled every 20 ms during unlearning minus the RSS before it, per "
        "process, with MALLOC_MMAP_THRESHOLD_=65536 (freed large blocks go back to the OS; "
        "without it glibc heap fragmentation from FSDP's gather buffers grows the RSS each "
        "step). Ratios are to data-parallel's. Local fraction: the share of the parameter "
        "values (so of the gradients and Adam's moments) a process holds while training.",
        "",
        *c.table(["mode", "processes", "local fraction", "unlearning increment (MiB)",
                  "increment ratio", "time (s)", "time ratio"], rows)])
    print(text)
    c.write_results(out_dir, NAME, text, {
        "configuration": {"fast": fast, "repeats": repeats, "seed": seed, "model": MODEL,
                          "data": DATA, "loop": LOOP, "modes": MODES,
                          "machine": c.machine()},
        "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
