"""Shared plumbing of the benchmark runners (track A, F, backdoor): configs, safe runs,
per-seed result records and their table rows, statistics, result files and the common
command-line choices.

Every runner executes the same pipeline as ``erasus run`` (one ``erasus.run(config)`` per
data set, scenario, method and seed), offline and on one torch thread, with a private
model cache (``run.cache_dir``) so the original and the oracle of a (data set, scenario,
seed) are trained once and reused by every method. A method that cannot run in a
scenario is reported as ``n/a (reason)``; the runner goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# one thread and no network, before torch is imported anywhere
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "erasus-bench-cache"

#: The scenarios of track A (BENCHMARKS.md): 10% random forgetting and one class.
SCENARIOS: dict[str, dict[str, Any]] = {
    "random 10%": {"kind": "random", "fraction": 0.1},
    "class 0": {"kind": "class", "class_id": 0},
}


def setup_torch() -> None:
    import torch

    torch.set_num_threads(1)


def registry() -> Any:
    """The registry of every installed plugin (the built-in one included)."""
    from erasus.plugins import get_plugin_manager

    return get_plugin_manager().registry


def supports(info: Any, modality: str = "classification") -> bool:
    return "any" in info.modalities or modality in info.modalities


def registered(kind: str, modality: str = "classification",
               exclude: tuple[str, ...] = ()) -> list[str]:
    """Names of the registered components of ``kind`` usable on ``modality``, in
    registry order, without ``exclude``."""
    return [i.name for i in registry().entries(kind)
            if supports(i, modality) and i.name not in exclude]


def unlearning_methods(modality: str = "classification") -> list[str]:
    """The registered strategies that are unlearning methods on ``modality``: every one but
    those that retrain from scratch (``effect = "retrain_from_scratch"``: ``retrain``,
    ``certified_training``), which are oracles and training recipes."""
    out = []
    for info in registry().entries("strategy"):
        effect = getattr(info.cls, "effect", None)
        effects = effect if isinstance(effect, tuple) else (effect,)
        if supports(info, modality) and "retrain_from_scratch" not in effects:
            out.append(info.name)
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def strategy_section(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{name, **params}``, with checkpoints off for strategies of the shared loop."""
    section: dict[str, Any] = {"name": name}
    try:
        fields = registry().get("strategy", name).params_model.model_fields
    except Exception:  # an unknown name: the run reports it
        fields = {}
    if "checkpoint_every" in fields:
        section["checkpoint_every"] = 0
    section.update(params or {})
    return section


def base_config(*, dataset: str, forget: dict[str, Any], seed: int, strategy: dict[str, Any],
                metrics: list[Any], cache_dir: Path, output_dir: Path,
                selector: dict[str, Any] | None = None, data: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The run config every benchmark builds on: the small CNN, the retrained oracle."""
    return {
        "seed": seed,
        "model": {"name": "classifier", "arch": "small_cnn"},
        "data": {"name": dataset, "forget": forget, **(data or {})},
        "selector": selector or {"name": "full"},
        "strategy": strategy,
        "oracle": {"strategy": "retrain"},
        "metrics": metrics,
        "reporters": [],
        "run": {"output_dir": str(output_dir), "progress": False,
                "cache_dir": str(cache_dir)},
    }


@dataclass
class Outcome:
    """One run: its metrics, or why it could not run."""

    metrics: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    coreset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.metrics is not None


def reason(exc: BaseException) -> str:
    """A one-line reason for a failed run."""
    text = " ".join(str(exc).split())
    if len(text) > 220:
        text = text[:217] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_one(config: dict[str, Any], *, verbose: bool = False) -> Outcome:
    """``erasus.run(config)``; any failure becomes ``Outcome(error=...)``."""
    import erasus

    start = time.perf_counter()
    try:
        result = erasus.run(config, progress=False)
    except Exception as exc:  # reported as "n/a (reason)", the benchmark goes on
        if verbose:
            traceback.print_exc()
        return Outcome(error=reason(exc), seconds=time.perf_counter() - start)
    return Outcome(metrics=result.metrics, seconds=time.perf_counter() - start,
                   coreset=len(result.selection.indices))


def warm_up(config: dict[str, Any]) -> None:
    """Run ``config`` once and discard it: the first run of a process pays one-time costs
    (lazy imports, allocator warm-up) that would otherwise count in its timings; it also
    trains and caches that scenario's original and oracle."""
    outcome = run_one(config)
    print(f"warm-up run: {'done' if outcome.ok else outcome.error} "
          f"({outcome.seconds:.1f}s)", flush=True)


# -- result records ----------------------------------------------------------------------------
# A table row's record: {"seeds": [...], "errors": [{"seed", "error"}], value: [one per seed]}.
def lr_search(label: str, lrs: list[float], make_config: Any, summarise: Any,
              describe: Any, *, verbose: bool = False) -> dict[float, dict[str, Any]]:
    """Run ``make_config(lr)`` for every lr: ``{lr: summarise(metrics)}`` (``{"error":
    ...}`` for a failed run), printing ``label lr X: describe(summary)`` for each."""
    out: dict[float, dict[str, Any]] = {}
    for lr in lrs:
        o = run_one(make_config(lr), verbose=verbose)
        if not o.ok:
            out[lr] = {"error": o.error}
            print(f"{label} lr {lr:g}: n/a ({o.error})", flush=True)
            continue
        assert o.metrics is not None
        out[lr] = summarise(o.metrics)
        print(f"{label} lr {lr:g}: {describe(out[lr])}", flush=True)
    return out


def new_record(**fields: Any) -> dict[str, Any]:
    """An empty record (``fields`` first, then no seeds and no errors)."""
    return {**fields, "seeds": [], "errors": []}


def record_failure(rec: dict[str, Any], seed: int, outcome: Outcome, where: str) -> bool:
    """Whether ``outcome`` failed; if so its reason is added to ``rec``'s errors and printed
    as ``where: n/a (reason)``."""
    if outcome.ok:
        return False
    rec["errors"].append({"seed": seed, "error": outcome.error})
    print(f"{where}: n/a ({outcome.error})", flush=True)
    return True


def reference_record(rows: dict[str, Any], name: str, seed: int) -> dict[str, Any] | None:
    """The record ``rows[name]`` of a reference model (the original, the oracle: the same
    for every method of a seed) with ``seed`` added, or ``None`` when it already has it."""
    ref = rows.setdefault(name, new_record())
    if seed in ref["seeds"]:
        return None
    ref["seeds"].append(seed)
    return ref


def keys_first(rows: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """``rows`` with the keys of ``order`` (those present) first, the others after."""
    return {k: rows[k] for k in order if k in rows} | \
        {k: v for k, v in rows.items() if k not in order}


def result_row(label: str, rec: dict[str, Any], n_seeds: int,
               cells: Callable[[dict[str, Any]], list[str]], width: int) -> list[str]:
    """A table row of ``width`` cells: ``label`` and ``cells(rec)``, the label noting the
    seeds that failed; ``n/a (reason)`` when no seed ran."""
    if not rec["seeds"]:
        err = rec["errors"][0]["error"] if rec["errors"] else "not run"
        return [label, na(err)] + [""] * (width - 2)
    if rec["errors"]:
        label += f" ({len(rec['seeds'])}/{n_seeds} seeds; n/a: {rec['errors'][0]['error']})"
    return [label.replace("|", "/"), *cells(rec)]


# -- statistics and formatting ---------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)


def fmt(values: list[float] | None, digits: int = 2) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "-"
    if len(values) == 1:  # one seed: no spread to show
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def na(error: str) -> str:
    """A table cell for a method that could not run (pipes would break the table)."""
    return f"n/a ({error.replace('|', '/')})"


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def write_results(out: Path, name: str, markdown: str, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {out / (name + '.md')} and {out / (name + '.json')}", flush=True)


def machine() -> str:
    import platform

    import erasus

    return (f"Erasus {erasus.__version__}, Python {platform.python_version()}, "
            f"{platform.machine()} ({os.cpu_count()} CPU cores visible), one torch thread")


def common_args(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--fast", action="store_true",
                        help="the fast configuration (a few methods, one seed, one data set)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="run seeds (default: 0 1 2; --fast: 0)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="data sets (default: digits mnist5000; --fast: digits)")
    parser.add_argument("--out", "--output", dest="out", type=Path, default=RESULTS,
                        help=f"where {name}.md and {name}.json go (default: benchmarks/results)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="model cache: originals and oracles are trained once and reused "
                        f"(default: {DEFAULT_CACHE})")
    parser.add_argument("--verbose", action="store_true",
                        help="print the traceback of every failed run")


def chosen(named: list[str] | None, fast: bool, fast_names: list[str],
           available: list[str]) -> list[str]:
    """The components to run: those named on the command line (unknown names are reported
    as n/a by the run), else with ``--fast`` the registered ones of ``fast_names``, else
    every one ``available``."""
    if named:
        return named
    if fast:
        return [m for m in fast_names if m in available]
    return available


def seeds_and_datasets(args: argparse.Namespace, datasets: list[str]
                       ) -> tuple[list[int], list[str]]:
    """The seeds and data sets of :func:`common_args`: as given, else 0 and digits with
    ``--fast``, else 0, 1, 2 and ``datasets``."""
    seeds = args.seeds or ([0] if args.fast else [0, 1, 2])
    return seeds, args.datasets or (["digits"] if args.fast else datasets)
