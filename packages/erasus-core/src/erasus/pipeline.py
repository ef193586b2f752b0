"""The run pipeline: one code path for ``erasus run`` and :func:`erasus.run`.

1. load the config, apply overrides, validate and resolve every component;
2. load the data; load the model (or train the original, cached by config hash);
3. build the oracle (cached) when one is configured;
4. select the coreset of the forget set;
5. unlearn (progress, checkpoints, resume, divergence guard);
6. evaluate the original, the unlearned and the oracle model with one cached forward
   pass per (model, split);
7. write the run directory and publish it with one rename.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus import distributed, sharding
from erasus._version import __version__
from erasus.config import ResolvedComponent, ResolvedConfig, config_hash, load_config
from erasus.errors import DivergenceError, ErasusError, IncompatibleComponentError
from erasus.evaluation import ROLES, EvalContext, Measurement, RunEvalContext
from erasus.monitor import ResourceMonitor
from erasus.plugins import using_registry
from erasus.rundir import RunDirectory

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.data import Splits
    from erasus.plugins import ErasusPluginManager
    from erasus.record import Recorder, TrainingRecord
    from erasus.reporting import ReportContext, Reporter, RunSummary
    from erasus.selection import Selection, SelectionContext, Selector
    from erasus.strategy import History, RunContext, Strategy

__all__ = ["Run", "RunResult", "evaluate", "evaluate_models", "run", "run_reporters",
           "seed_everything", "unlearn"]

log = logging.getLogger("erasus")
#: Each training step's logged values, as structured records for ``log.jsonl`` only: they
#: do not propagate, so an application's logging configuration never prints them.
steps_log = logging.getLogger("erasus.steps")
steps_log.propagate = False


@dataclass
class Run:
    """What lifecycle hooks see of a run in progress."""

    config: dict[str, Any]
    run_dir: Path
    seed: int
    plugin_manager: Any = None


@dataclass
class RunResult:
    """A finished run: its directory, metrics, training history and coreset selection."""

    run_dir: Path
    metrics: dict[str, Any]
    history: History
    selection: Selection
    config: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise IncompatibleComponentError(
            f"run.device is '{name}' but no CUDA device is available; use run.device=cpu")
    return name


def _cache_dir(resolved: ResolvedConfig) -> Path:
    configured = resolved.config.run.cache_dir or os.environ.get("ERASUS_CACHE_DIR")
    return Path(configured or Path.home() / ".cache" / "erasus").expanduser()


# -- the models ------------------------------------------------------------------------
def _cached_model(cache: Path, key: dict[str, Any], resolved: ResolvedConfig,
                  info: Any, make: Any) -> tuple[ModelAdapter, float, bool, Path]:
    """Load the model cached under ``key`` or make it with ``make(directory)`` and cache it.

    ``make`` receives the (temporary) cache directory, where it may write more than the
    model (the training record); returns the model, its seconds and its cache directory.
    In a multi-process run rank 0 decides whether the cache holds the model; when it does
    not, every process trains it (the training loop is data-parallel) and only rank 0
    writes the cache, the others train into a scratch directory.
    """
    import json
    import shutil
    import tempfile

    digest = config_hash({**key, "erasus": __version__})
    directory = cache / "models" / digest
    meta_file = directory / "meta.json"
    if not distributed.is_main():
        if distributed.broadcast(None):
            return _load_cached(directory, resolved, info, key)
        with tempfile.TemporaryDirectory(prefix="erasus-rank-") as scratch:
            adapter, seconds = make(Path(scratch))
        distributed.barrier()  # rank 0 has published the cache entry (and its record)
        return adapter, seconds, False, directory
    if distributed.broadcast(meta_file.is_file()):
        return _load_cached(directory, resolved, info, key)
    tmp = directory.with_name(f".{digest}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    adapter, seconds = make(tmp)
    adapter.save(tmp)
    (tmp / "meta.json").write_text(json.dumps({"seconds": seconds, "key": key}, default=str))
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, directory)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.barrier()
    return adapter, seconds, False, directory


def _load_cached(directory: Path, resolved: ResolvedConfig, info: Any, key: dict[str, Any]
                 ) -> tuple[ModelAdapter, float, bool, Path]:
    import json

    meta = json.loads((directory / "meta.json").read_text())
    adapter = resolved.model.info.cls.load(directory, resolved.model.params, info)
    log.info("loaded cached %s model from %s", key["role"], directory)
    return adapter, float(meta["seconds"]), True, directory


def _train_key(resolved: ResolvedConfig) -> dict[str, Any]:
    return {"name": resolved.train.info.name, **resolved.train.params.model_dump(mode="json")}


def _model_key(resolved: ResolvedConfig) -> dict[str, Any]:
    section = resolved.to_dict()
    return {"model": section["model"], "data": section["data"], "seed": resolved.config.seed}


def _train(strategy: Strategy, adapter: ModelAdapter, forget: Any, retain: Any,
           splits: Splits, seed: int, progress: bool, description: str,
           recorder: Recorder | None = None) -> float:
    """Run ``strategy`` on ``adapter`` (training the original or the oracle); its seconds."""
    from erasus.strategy import RunContext, UnlearnData

    with ResourceMonitor() as mon:
        strategy.unlearn(adapter, UnlearnData(forget=forget, retain=retain, info=splits.info,
                                              collate_fn=splits.collate_fn),
                         RunContext(seed=seed, progress=progress, description=description,
                                    recorder=recorder))
    return mon.seconds


def load_original(resolved: ResolvedConfig, splits: Splits, cache: Path,
                  progress: bool, record: frozenset[str] = frozenset()
                  ) -> tuple[ModelAdapter, float | None, TrainingRecord | None]:
    """The original model: loaded from ``model.path`` or trained on the train split.

    With ``record`` (kinds of :data:`erasus.record.RECORD_KINDS`), training also writes a
    training record next to the cached model, which is returned as the third value.
    """
    from erasus.record import Recorder, TrainingRecord

    adapter_cls = resolved.model.info.cls
    path = getattr(resolved.model.params, "path", None)
    if path:
        return adapter_cls.load(path, resolved.model.params, splits.info), None, None

    def make(directory: Path) -> tuple[ModelAdapter, float]:
        seed_everything(resolved.config.seed)
        adapter = adapter_cls.build(resolved.model.params, splits.info)
        recorder = (Recorder(directory / "record", record, len(splits.train))
                    if record else None)
        seconds = _train(resolved.train.create(), adapter, None, splits.train, splits,
                         resolved.config.seed, progress, "training the original", recorder)
        if recorder is not None:
            recorder.finish()
        return adapter, seconds

    key = {**_model_key(resolved), "role": "original",
           "train": _train_key(resolved)}
    if record:
        key["record"] = sorted(record)
    adapter, seconds, _, directory = _cached_model(cache, key, resolved, splits.info, make)
    return adapter, seconds, TrainingRecord(directory / "record") if record else None


def load_oracle(resolved: ResolvedConfig, splits: Splits, original: ModelAdapter,
                cache: Path, progress: bool) -> tuple[ModelAdapter | None, float | None]:
    """The oracle: a stored model, or the oracle strategy run on the retain data (cached)."""
    if resolved.oracle is None:
        return None, None
    opath = resolved.config.oracle.path if resolved.config.oracle else None
    if opath:
        return resolved.model.info.cls.load(opath, resolved.model.params, splits.info), None

    def make(directory: Path) -> tuple[ModelAdapter, float]:
        seed_everything(resolved.config.seed)
        adapter = original.clone()
        # from scratch on the retain set, as the original on the train set: no forget set
        seconds = _train(resolved.oracle.create(), adapter, None, splits.retain,
                         splits, resolved.config.seed, progress, "training the oracle")
        return adapter, seconds

    key = {**_model_key(resolved), "role": "oracle",
           "original": getattr(resolved.model.params, "path", None) or
           _train_key(resolved),
           "strategy": resolved.oracle.info.name,
           "params": resolved.oracle.params.model_dump(mode="json")}
    adapter, seconds, _, _ = _cached_model(cache, key, resolved, splits.info, make)
    return adapter, seconds


# -- select and unlearn (shared with the Python API) ------------------------------------
def unlearn(adapter: ModelAdapter, strategy: Strategy, selector: Selector, forget: Any,
            retain: Any, run: RunContext, *, info: Any = None, collate_fn: Any = None,
            reference: ModelAdapter | None = None,
            context: SelectionContext | None = None
            ) -> tuple[History, Selection, dict[str, float]]:
    """Select the coreset of ``forget`` and unlearn it from ``adapter`` (in place).

    ``context`` gives the selector the other sets and the training record (its
    ``forget_train_indices`` also reach the strategy); ``run.record`` the strategy.
    """
    import inspect

    from erasus.data import subset
    from erasus.record import record_kinds, require_record
    from erasus.selection import SelectionContext
    from erasus.strategy import LossStrategy, UnlearnData, quantized_model_problem

    needs = type(strategy).needs
    why = quantized_model_problem(type(strategy), adapter.quantization, adapter.name)
    if why:
        raise IncompatibleComponentError(why)
    if "retain" in needs and (retain is None or len(retain) == 0):
        raise IncompatibleComponentError(
            f"strategy '{strategy.name}' needs retain data; pass a retain set or choose a "
            "strategy that needs only the forget set (gradient_ascent)")
    for kind in sorted(record_kinds(needs)):
        require_record(run.record, kind, f"strategy {strategy.name}")
    if context is None:
        context = SelectionContext(retain=retain, info=info, record=run.record,
                                   collate_fn=collate_fn)
    if context.record is None:
        context.record = run.record
    for kind in sorted(record_kinds(selector.runtime_needs())):
        require_record(context.record, kind, f"selector {selector.name}")
    kwargs: dict[str, Any] = {}
    if "context" in inspect.signature(selector.select).parameters:
        kwargs["context"] = context
    from erasus.progress import progress_bar

    with ResourceMonitor() as sel_mon, \
            progress_bar(run.progress, f"selecting ({selector.name})"):
        selection = selector.select(adapter, forget, seed=run.seed, collate_fn=collate_fn,
                                    **kwargs)
    positions = [int(i) for i in selection.indices]
    whole = len(positions) == len(forget) and positions == list(range(len(forget)))
    coreset = forget if whole else subset(forget, positions)
    train_idx = context.forget_train_indices
    if "reference_model" in needs:
        ref = reference if reference is not None else adapter.clone()
        for p in ref.model.parameters():
            p.requires_grad_(False)
        ref.model.eval()
        run.reference = ref
    data = UnlearnData(forget=coreset, retain=retain, info=info, collate_fn=collate_fn,
                       forget_train_indices=[int(train_idx[i]) for i in positions]
                       if train_idx else None)
    with ResourceMonitor() as mon:
        history = strategy.unlearn(adapter, data, run)
    adapter.model.eval()
    facts = {"selection_seconds": sel_mon.seconds, "unlearn_seconds": mon.seconds,
             "peak_host_mb": mon.peak_host_mb, "peak_device_mb": mon.peak_device_mb,
             "steps": float(history.num_steps)}
    loop = strategy.params
    if isinstance(strategy, LossStrategy) and hasattr(loop, "batch_size"):
        # examples through the model per optimizer step (the time metric's FLOP estimate)
        sets = 2 if type(strategy).pair_with else 1
        facts["examples_per_step"] = float(loop.batch_size * loop.grad_accum * sets)
    return history, selection, facts


# -- evaluation --------------------------------------------------------------------------
def _as_measurement(value: Measurement | dict[str, float]) -> Measurement:
    return value if isinstance(value, Measurement) else Measurement(values=dict(value))


def evaluate_models(metrics: list[ResolvedComponent], splits: Splits,
                    adapters: dict[str, ModelAdapter | None], run_info: dict[str, Any],
                    *, batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """Every metric on every model; forward passes are shared through one context each."""
    from erasus.progress import progress_bar

    results: dict[str, dict[str, float]] = {}
    details: dict[str, dict[str, Any]] = {}
    instances = [(m, m.create()) for m in metrics]
    model_metrics = [(rc, m) for rc, m in instances if getattr(m, "scope", "model") == "model"]
    run_metrics = [(rc, m) for rc, m in instances if getattr(m, "scope", "model") == "run"]
    roles = [r for r in ROLES if adapters.get(r) is not None]
    total = len(roles) * len(model_metrics) + (len(run_metrics) if "unlearned" in roles
                                                else 0)
    contexts: dict[str, EvalContext] = {}
    with progress_bar(progress, "evaluating", total) as bar:
        for role in roles:
            adapter = adapters[role]
            assert adapter is not None
            ctx = contexts[role] = EvalContext(adapter, splits, role=role,
                                               batch_size=batch_size)
            values: dict[str, float] = {}
            for rc, metric in model_metrics:
                bar.advance(0, note=f"{rc.info.name} ({role})")
                m = _as_measurement(metric.compute(ctx))
                values.update(m.values)
                if m.details:
                    details.setdefault(role, {})[rc.info.name] = m.details
                bar.advance()
            results[role] = values
        run_values: dict[str, float] = {}
        if "unlearned" in results:
            # run metrics get the models' contexts too, so they reuse the cached passes
            run_ctx = RunEvalContext(results=results, run_info=run_info, splits=splits,
                                     contexts=contexts)
            for rc, metric in run_metrics:
                bar.advance(0, note=rc.info.name)
                m = _as_measurement(metric.compute(run_ctx))
                run_values.update(m.values)
                if m.details:
                    details.setdefault("run", {})[rc.info.name] = m.details
                bar.advance()
    run_info["forward_passes"] = sum(c.forward_passes for c in contexts.values())
    return {**results, "run": run_values, "details": details}


def _environment() -> dict[str, str]:
    """The interpreter, torch and platform a run ran on (recorded in ``run_info``)."""
    import platform

    import torch

    return {"python_version": platform.python_version(), "torch_version": torch.__version__,
            "platform": platform.platform()}


# -- reports -----------------------------------------------------------------------------
def run_reporters(reporters: list[Reporter], run_dir: Path, summary: RunSummary,
                  context: ReportContext | None = None, *, progress: bool = False
                  ) -> dict[str, str]:
    """Each reporter, in ascending ``order``: its ``collect`` (when ``context`` holds the
    models) then its ``report``. A reporter that fails is logged and skipped, never fatal
    to the run; returns ``{reporter name: error}`` for those that failed."""
    from erasus.progress import progress_bar

    errors: dict[str, str] = {}
    ordered = sorted(reporters, key=lambda r: type(r).order)
    with progress_bar(progress, "reporting", len(ordered)) as bar:
        for reporter in ordered:
            bar.advance(0, note=reporter.name)
            try:
                if context is not None:
                    reporter.collect(run_dir, context)
                reporter.report(run_dir, summary)
            except Exception as exc:  # the run's results stay; the report is incomplete
                errors[reporter.name] = f"{type(exc).__name__}: {exc}"
                # the reporters after it (an HTML page) can say what failed
                run_info = summary.get("metrics", {}).setdefault("run_info", {})
                run_info.setdefault("reporter_errors", {})[reporter.name] = \
                    errors[reporter.name]
                log.error("reporter '%s' failed: %s", reporter.name, errors[reporter.name],
                          exc_info=log.isEnabledFor(logging.DEBUG))
            bar.advance()
    return errors


# -- the whole run ---------------------------------------------------------------------
class _RunLog:
    """Sends the ``erasus`` logger to the run directory for the run: ``run.log`` (text) and
    ``log.jsonl`` (one JSON object a line: ``time``, ``level``, ``logger``, ``message``,
    and for each training step ``event: "step"``, ``step`` and its logged ``values``)."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.json_handler = logging.FileHandler(path.with_name("log.jsonl"))
        self.json_handler.setFormatter(_JSONFormatter())

    def __enter__(self) -> _RunLog:
        log.addHandler(self.handler)
        log.addHandler(self.json_handler)
        steps_log.addHandler(self.json_handler)
        self._levels = (log.level, steps_log.level)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        steps_log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: Any) -> None:
        steps_log.removeHandler(self.json_handler)
        for handler in (self.handler, self.json_handler):
            log.removeHandler(handler)
            handler.close()
        log.setLevel(self._levels[0])
        steps_log.setLevel(self._levels[1])


class _JSONFormatter(logging.Formatter):
    """One JSON object per record (the structured run log)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage()}
        for key in ("event", "step", "values"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=float)


class _SafeTracker:
    """Calls a tracker; a tracker failure is logged and reported, never fatal to the run."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.error: str | None = None
        self._ended = False

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.tracker is None:
            return
        if self.error is not None:
            if method == "end" and not self._ended:  # let it close its run, once
                self._ended = True
                try:
                    self.tracker.end("failed")
                except Exception:
                    pass
            return
        try:
            getattr(self.tracker, method)(*args, **kwargs)
        except Exception as exc:  # reported in the log and metrics.json; the run goes on
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("tracker '%s' failed in %s: %s; tracking disabled for this run",
                        self.tracker.name, method, self.error)


def run(config: str | Path | dict[str, Any], *, overrides: list[str] | tuple[str, ...] = (),
        output: str | Path | None = None, resume: bool = False,
        plugin_manager: ErasusPluginManager | None = None,
        progress: bool | None = None) -> RunResult:
    """Execute a run config end to end and return its result (see the module docstring).

    Args:
        config: a YAML path or a config mapping.
        overrides: ``key.path=value`` strings applied before validation.
        output: the run directory to write (default: ``run.output_dir/<stem>-<time>``).
        resume: continue the interrupted run of this config (its partial directory).
        plugin_manager: a plugin manager (default: a fresh one with installed plugins).
        progress: show progress bars (default: the config's ``run.progress``, else only
            on an interactive terminal).
    """
    from erasus.plugins import get_plugin_manager

    pm = plugin_manager or get_plugin_manager()
    resolved = load_config(config, pm.registry, overrides)
    resolved_dict = resolved.to_dict()
    if progress is None:
        progress = resolved.config.run.progress
    if progress is None:
        progress = sys.stderr.isatty()
    device, owned_group = distributed.setup(_device(resolved.config.run.device))
    try:
        sharding.configure(resolved.config.run.sharding)
        sharding.require_shardable(resolved.strategy.info.cls)  # before any training
        return _run_in_directory(resolved, resolved_dict, pm, device, progress,
                                 stem=Path(config).stem if isinstance(config, (str, Path))
                                 else "run", output=output, resume=resume)
    finally:
        sharding.reset()
        if owned_group:
            distributed.teardown()


def _run_in_directory(resolved: ResolvedConfig, resolved_dict: dict[str, Any], pm: Any,
                      device: str, progress: bool, *, stem: str, output: str | Path | None,
                      resume: bool) -> RunResult:
    """Create (or resume) the run directory, execute, publish.

    In a multi-process run rank 0 owns the run directory; the other ranks work in a
    scratch directory that is removed at the end, read rank 0's checkpoint when resuming,
    and neither track nor call the run hooks.
    """
    import shutil
    import tempfile

    main = distributed.is_main()
    scratch: Path | None = None
    # created before the run directory: a tracker that cannot start (its package is
    # missing) stops the run before anything is written
    tracker = _SafeTracker(resolved.tracker.create() if resolved.tracker and main else None)
    if main:
        rd = RunDirectory.create(output=output, parent=resolved.config.run.output_dir,
                                 stem=resolved.config.run.name or stem,
                                 config_hash=config_hash(resolved_dict), resume=resume)
    final_of_main, checkpoint_dir = distributed.broadcast(
        (rd.final, rd.work / "checkpoint") if main else None)
    if not main:
        scratch = Path(tempfile.mkdtemp(prefix=f"erasus-rank{distributed.rank()}-"))
        rd = RunDirectory.create(output=scratch / "run", parent=scratch, stem="run",
                                 config_hash="", resume=False)
    try:
        rd.write_yaml("config.resolved.yaml", resolved_dict)
        run_obj = Run(config=resolved_dict, run_dir=rd.work, seed=resolved.config.seed,
                      plugin_manager=pm)
        with _RunLog(rd.work / "run.log"):
            log.info("erasus %s: run %s (resume=%s, process %d of %d)", __version__,
                     final_of_main, resume, distributed.rank() + 1, distributed.world_size())
            try:
                with using_registry(pm.registry):
                    result = _execute(resolved, resolved_dict, rd, run_obj, pm, tracker,
                                      progress, device, checkpoint_dir)
            except DivergenceError as exc:
                rd.set_status("diverged", step=exc.step, last_good_step=exc.last_good_step)
                log.error("%s", exc)
                tracker("end", "failed")
                raise
            except ErasusError:
                rd.set_status("failed")
                tracker("end", "failed")
                raise
            except BaseException as exc:  # a bug or an interrupt: the tracker hears of it
                tracker("end", "killed" if isinstance(exc, KeyboardInterrupt) else "failed")
                raise
        rd.publish()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    result.run_dir = final_of_main
    run_obj.run_dir = final_of_main
    if main:
        pm.hook.erasus_run_end(run=run_obj, metrics=result.metrics)
    distributed.barrier()  # the run directory is complete before any process returns
    return result


def _execute(resolved: ResolvedConfig, resolved_dict: dict[str, Any], rd: RunDirectory,
             run_obj: Run, pm: Any, tracker: _SafeTracker, progress: bool, device: str,
             checkpoint_dir: Path) -> RunResult:
    from erasus.checkpoint import CheckpointStore
    from erasus.reporting import ReportContext, RunSummary
    from erasus.strategy import RunContext

    seed = resolved.config.seed
    main = distributed.is_main()
    tracker("start", resolved_dict)
    if main:
        pm.hook.erasus_run_start(run=run_obj)
    seed_everything(seed)
    cache = _cache_dir(resolved)

    splits = resolved.data.create().load(seed=seed)
    log.info("data '%s': %d train, %d forget, %d retain, %d test", resolved.data.info.name,
             len(splits.train), len(splits.forget), len(splits.retain), len(splits.test))
    from erasus.record import record_kinds
    from erasus.selection import SelectionContext

    selector = resolved.selector.create()
    kinds = record_kinds(selector.runtime_needs() | resolved.strategy.info.needs)
    original, original_seconds, record = load_original(resolved, splits, cache, progress,
                                                       kinds)
    oracle, oracle_seconds = load_oracle(resolved, splits, original, cache, progress)
    original.to(device)
    if oracle is not None:
        oracle.to(device)

    def on_step(step: int, losses: dict[str, float]) -> None:
        if main:
            steps_log.info("step %d", step, extra={"event": "step", "step": step,
                                                   "values": losses})
            pm.hook.erasus_step_end(run=run_obj, step=step, losses=losses)
        tracker("log_metrics", losses, step=step)

    seed_everything(seed)
    unlearned = original.clone()
    strategy = resolved.strategy.create()
    ctx = RunContext(seed=seed, checkpoints=CheckpointStore(checkpoint_dir),
                     on_step=on_step, progress=progress,
                     description=f"unlearning ({resolved.strategy.info.name})", record=record,
                     record_gradient_norms=any("gradient_norms" in rc.info.cls.records
                                               for rc in resolved.reporters))
    context = SelectionContext(retain=splits.retain, test=splits.test, extra=splits.extra,
                               info=splits.info, record=record,
                               forget_train_indices=list(splits.forget_indices) or None,
                               collate_fn=splits.collate_fn)
    history, selection, facts = unlearn(
        unlearned, strategy, selector, splits.forget, splits.retain, ctx,
        info=splits.info, collate_fn=splits.collate_fn, reference=original, context=context)
    log.info("unlearning took %.2fs over %d steps", facts["unlearn_seconds"],
             history.num_steps)

    run_info: dict[str, Any] = {**facts, "original_seconds": original_seconds,
                                "oracle_seconds": oracle_seconds, "device": device,
                                "processes": distributed.world_size(),
                                "sharding": sharding.describe(),
                                "erasus_version": __version__, **_environment()}
    metrics = evaluate_models(resolved.metrics, splits,
                              {"original": original, "unlearned": unlearned, "oracle": oracle},
                              run_info, batch_size=resolved.config.run.eval_batch_size,
                              progress=progress)
    metrics["run_info"] = run_info
    if tracker.error:
        metrics["run_info"]["tracker_error"] = tracker.error

    forget_positions = [int(i) for i in selection.indices]
    source = splits.forget_indices
    selection_record = {**selection.to_dict(),
                        "train_indices": [int(source[i]) for i in forget_positions]
                        if source else None}
    rd.write_json("history.json", history.to_dict())
    rd.write_json("selection.json", selection_record)
    if main:
        unlearned.save(rd.work / "model")
        summary = RunSummary(config=resolved_dict, metrics=metrics, history=history.to_dict(),
                             selection=selection_record)
        context = ReportContext(models={"original": original, "unlearned": unlearned,
                                        "oracle": oracle}, splits=splits, seed=seed,
                                batch_size=resolved.config.run.eval_batch_size)
        errors = run_reporters([rc.create() for rc in resolved.reporters], rd.work, summary,
                               context, progress=progress)
        if errors:
            run_info["reporter_errors"] = errors
    rd.write_json("metrics.json", metrics)
    tracker("log_metrics", {f"{role}/{k}": v for role in (*ROLES, "run")
                            for k, v in metrics.get(role, {}).items()})
    tracker("log_artifact", rd.work)
    tracker("end", "finished")
    if tracker.error and run_info.get("tracker_error") != tracker.error:
        run_info["tracker_error"] = tracker.error  # it failed at the end: record it too
        rd.write_json("metrics.json", metrics)
    import shutil

    distributed.barrier()  # no process still reads the checkpoint
    if main:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return RunResult(run_dir=rd.work, metrics=metrics, history=history, selection=selection,
                     config=resolved_dict)


def evaluate(source: str | Path | dict[str, Any], *, overrides: list[str] | tuple[str, ...] = (),
             plugin_manager: ErasusPluginManager | None = None,
             progress: bool | None = None) -> dict[str, Any]:
    """Evaluate a finished run directory, or the original and oracle models of a config.

    For a run directory, the unlearned model is read from ``RUN_DIR/model`` and run-level
    metrics reuse the run's recorded facts (timings, memory). For a config, only the
    original and the oracle are evaluated and run-level metrics are skipped.
    """

    from erasus.errors import RunDirectoryError
    from erasus.plugins import get_plugin_manager

    pm = plugin_manager or get_plugin_manager()
    run_dir = Path(source) if isinstance(source, (str, Path)) and Path(source).is_dir() \
        else None
    if run_dir is not None:
        cfg = run_dir / "config.resolved.yaml"
        if not cfg.is_file():
            raise RunDirectoryError(f"'{run_dir}' is not a run directory (no "
                                    "config.resolved.yaml)")
        resolved = load_config(cfg, pm.registry, overrides)
    else:
        resolved = load_config(source, pm.registry, overrides)
    if progress is None:
        progress = bool(resolved.config.run.progress) and sys.stderr.isatty()
    seed_everything(resolved.config.seed)
    device, owned_group = distributed.setup(_device(resolved.config.run.device))
    try:
        sharding.configure(resolved.config.run.sharding)
        return _evaluate(resolved, pm, run_dir, device, progress)
    finally:
        sharding.reset()
        if owned_group:
            distributed.teardown()


def _evaluate(resolved: ResolvedConfig, pm: Any, run_dir: Path | None, device: str,
              progress: bool) -> dict[str, Any]:
    import json

    cache = _cache_dir(resolved)
    splits = resolved.data.create().load(seed=resolved.config.seed)
    original, _, _ = load_original(resolved, splits, cache, progress)
    oracle, _ = load_oracle(resolved, splits, original, cache, progress)
    adapters: dict[str, Any] = {"original": original, "oracle": oracle}
    run_info: dict[str, Any] = {}
    if run_dir is not None:
        adapters["unlearned"] = resolved.model.info.cls.load(
            run_dir / "model", resolved.model.params, splits.info)
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():
            run_info = json.loads(metrics_file.read_text()).get("run_info", {})
    for adapter in adapters.values():
        if adapter is not None:
            adapter.to(device)
            adapter.model.eval()
    with using_registry(pm.registry):
        metrics = evaluate_models(resolved.metrics, splits, adapters, run_info,
                                  batch_size=resolved.config.run.eval_batch_size,
                                  progress=progress)
    if run_info:
        metrics["run_info"] = run_info
    return metrics
