"""Framework overhead: gradient-difference steps through ``erasus run`` vs a plain loop.

For each model (the digits classifier; the tiny causal LM when erasus-llm is installed),
the same gradient-difference steps run through ``erasus run`` and through a hand-written
PyTorch loop: same starting weights (saved once to a directory that both load), same
data, optimizer, learning rate, batch size and number of steps. Trials alternate
(erasus, plain, erasus, plain...) and each runs in a fresh subprocess so their peak
memory is their own. Prints the median unlearning-phase time of each, their ratio (goal:
at most 1.05) and peak host memory, measured in one invocation. Each trial first runs one
forward/backward pass outside the timed region, so one-time process start-up costs are
not counted as overhead on either side (the first optimizer a process builds imports
``torch._dynamo``, over a second here). Both timed regions include building the optimizer.

    python benchmarks/overhead.py [--repeats 5] [--steps 300] [--models classifier llm]

The "ratio" is that of each process's first run; the "steady-state ratio" that of the same
run repeated in the same process, where one-time costs are gone (what remains is the
per-step overhead). The erasus side is timed as the run records it
(``run_info.unlearn_seconds``: selection excluded, the strategy's whole training loop
included, with checkpoints off and no progress bar); the whole ``erasus run`` wall time
(data loading, evaluation, writing the run directory) is printed beside it for context.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


# -- the two sides, per model ------------------------------------------------------------
def _classifier_data(seed: int) -> Any:
    from erasus.builtin.datasets.digits import Digits

    return Digits().load(seed=seed)


def _classifier_config(model_dir: str, steps: int, out: str) -> dict[str, Any]:
    return {
        "seed": 0,
        "model": {"name": "classifier", "arch": "small_cnn", "path": model_dir},
        "data": {"name": "digits"},
        "strategy": {"name": "gradient_difference", "epochs": 10_000, "max_steps": steps,
                     "lr": 2e-4, "batch_size": 64, "checkpoint_every": 0},
        "oracle": None,
        "metrics": ["loss"],
        "reporters": [],
        "run": {"output_dir": out, "progress": False},
    }


def _llm_config(model_dir: str, steps: int, out: str) -> dict[str, Any]:
    return {
        "seed": 0,
        "model": {"name": "causal_lm", "path": model_dir},
        "data": {"name": "synthetic_qa"},
        "strategy": {"name": "gradient_difference", "epochs": 10_000, "max_steps": steps,
                     "lr": 2e-4, "batch_size": 8, "checkpoint_every": 0},
        "oracle": None,
        "metrics": ["loss"],
        "reporters": [],
        "run": {"output_dir": out, "progress": False},
    }


MODELS = {"classifier": _classifier_config, "llm": _llm_config}


def prepare(model: str, workdir: Path) -> str:
    """Train/save the starting model once; both sides load it from this directory."""
    import erasus

    model_dir = workdir / f"{model}-original"
    if model == "classifier":
        cfg = {"seed": 0, "model": {"name": "classifier", "arch": "small_cnn"},
               "data": {"name": "digits"}, "strategy": {"name": "finetune", "max_steps": 1},
               "oracle": None, "metrics": ["loss"], "reporters": [],
               "run": {"output_dir": str(workdir), "progress": False}}
    else:
        cfg = {"seed": 0, "model": {"name": "causal_lm"}, "data": {"name": "synthetic_qa"},
               "strategy": {"name": "finetune", "max_steps": 1}, "oracle": None,
               "metrics": ["loss"], "reporters": [],
               "run": {"output_dir": str(workdir), "progress": False}}
    # The run trains the original with the train recipe; its `original` is what we want,
    # so save that one rather than the (finetuned) unlearned model.
    from erasus.config import load_config
    from erasus.pipeline import _cache_dir, load_original
    from erasus.plugins import get_plugin_manager

    pm = get_plugin_manager()
    resolved = load_config(cfg, pm.registry)
    splits = resolved.data.create().load(seed=0)
    original, _, _ = load_original(resolved, splits, _cache_dir(resolved), progress=False)
    original.save(model_dir)
    del erasus
    return str(model_dir)


def _load(model: str, model_dir: str) -> tuple[Any, Any]:
    """The saved starting model (through its adapter) and the data splits."""
    if model == "classifier":
        from erasus.builtin.models.classifier import ClassifierAdapter

        splits = _classifier_data(0)
        return ClassifierAdapter.load(model_dir, info=splits.info), splits
    from erasus.plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    splits = registry.create("dataset", "synthetic_qa").load(seed=0)
    return registry.get("model", "causal_lm").cls.load(model_dir, info=splits.info), splits


def warm_up(model: str, model_dir: str) -> None:
    """One forward/backward pass on a throwaway copy, outside the timed region.

    The first pass of a process pays one-time costs (kernel and autograd initialisation)
    that are not framework overhead; both sides take them here, before timing starts.
    """
    import torch
    from torch.utils.data.dataloader import default_collate

    adapter, splits = _load(model, model_dir)
    collate = splits.collate_fn or default_collate
    batch = adapter.prepare_batch(collate([splits.forget[i] for i in range(4)]))
    adapter.per_example_loss(batch).mean().backward()
    # the first optimizer of a process imports torch._dynamo (over a second on this CPU)
    torch.optim.Adam(adapter.model.parameters(), lr=0.0).step()


def trial_erasus(model: str, model_dir: str, steps: int) -> dict[str, Any]:
    import erasus

    warm_up(model, model_dir)

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = erasus.run(MODELS[model](model_dir, steps, out), progress=False)
        wall = time.perf_counter() - start
    info = result.metrics["run_info"]
    return {"seconds": info["unlearn_seconds"], "peak_host_mb": info["peak_host_mb"],
            "wall": wall, "steps": result.history.num_steps,
            "last_loss": result.history.steps[-1]["loss"]}


def trial_plain(model: str, model_dir: str, steps: int) -> dict[str, Any]:
    """A hand-written loop: DataLoaders, Adam, -forget CE + retain CE, nothing else."""
    import itertools

    import torch
    from erasus.monitor import ResourceMonitor
    from torch.utils.data import DataLoader

    warm_up(model, model_dir)
    torch.manual_seed(0)
    adapter, splits = _load(model, model_dir)
    batch_size = 64 if model == "classifier" else 8
    net = adapter.model
    net.train()
    forget = DataLoader(splits.forget, batch_size=batch_size, shuffle=True,
                        collate_fn=splits.collate_fn)
    retain = itertools.cycle(DataLoader(splits.retain, batch_size=batch_size, shuffle=True,
                                        collate_fn=splits.collate_fn))
    done = 0
    last = float("nan")
    with ResourceMonitor() as mon:
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        while done < steps:
            for raw_forget in forget:
                fb = adapter.prepare_batch(raw_forget)
                rb = adapter.prepare_batch(next(retain))
                loss = (-adapter.per_example_loss(fb).mean()
                        + adapter.per_example_loss(rb).mean())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                last = float(loss.detach())
                done += 1
                if done == steps:
                    break
    return {"seconds": mon.seconds, "peak_host_mb": mon.peak_host_mb, "wall": mon.seconds,
            "steps": done, "last_loss": last}


# -- driver ------------------------------------------------------------------------------
def _subprocess(side: str, model: str, model_dir: str, steps: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), "--trial", side, "--models", model, "--model-dir",
         model_dir, "--steps", str(steps)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trial", choices=["erasus", "plain"])
    parser.add_argument("--model-dir")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.trial:
        fn = trial_erasus if args.trial == "erasus" else trial_plain
        first = fn(args.models[0], args.model_dir, args.steps)
        # the same run again in the same process: one-time costs (lazy imports, first-use
        # initialisation inside the timed phase) are gone, what is left is per step
        first["steady_seconds"] = fn(args.models[0], args.model_dir, args.steps)["seconds"]
        print(json.dumps(first))
        return

    from erasus.plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    models = args.models or ["classifier"] + (["llm"] if "causal_lm" in
                                             registry.names("model") else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            model_dir = prepare(model, Path(tmp))
            results: dict[str, list[dict[str, Any]]] = {"erasus": [], "plain": []}
            for _ in range(args.repeats):
                for side in ("erasus", "plain"):
                    results[side].append(_subprocess(side, model, model_dir, args.steps))
            med = {side: statistics.median(r["seconds"] for r in rs)
                   for side, rs in results.items()}
            steady = {side: statistics.median(r["steady_seconds"] for r in rs)
                      for side, rs in results.items()}
            mem = {side: max(r["peak_host_mb"] for r in rs) for side, rs in results.items()}
            wall = statistics.median(r["wall"] for r in results["erasus"])
            rows.append((model, args.steps, med["erasus"], med["plain"],
                         med["erasus"] / med["plain"], steady["erasus"] / steady["plain"],
                         mem["erasus"], mem["plain"], wall))
    print(f"Median over {args.repeats} alternating trials each, one torch thread.\n")
    print("| model | steps | erasus (s) | plain loop (s) | ratio | steady-state ratio | "
          "peak host MiB erasus | peak host MiB plain | whole `erasus run` (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, steps, e, p, ratio, steady_ratio, me, mp, wall in rows:
        print(f"| {model} | {steps} | {e:.2f} | {p:.2f} | {ratio:.3f} | {steady_ratio:.3f} "
              f"| {me:.0f} | {mp:.0f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
