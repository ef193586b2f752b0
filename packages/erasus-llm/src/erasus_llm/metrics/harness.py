"""Multiple-choice accuracy through lm-evaluation-harness itself (WMDP, MMLU...)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from erasus.errors import IncompatibleComponentError, MissingDependencyError
from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field, field_validator

from erasus_llm.metrics.multiple_choice import MCAccuracy

__all__ = ["LMEvalAccuracy", "LMEvalAccuracyParams", "local_task_config"]

BUNDLED = "bundled"
_INSTALL = ("metric 'lm_eval_accuracy' runs lm-evaluation-harness, which is not installed: "
            "pip install \"erasus-llm[lm-eval]\" (or use mc_accuracy, the built-in evaluator "
            "of the same scoring)")


class LMEvalAccuracyParams(MetricParams):
    """Parameters of lm-evaluation-harness accuracy."""

    tasks: list[str] = Field(default_factory=lambda: ["wmdp_bio"], min_length=1,
                             description="lm-evaluation-harness multiple-choice tasks, e.g. "
                             "wmdp_bio, wmdp_cyber, wmdp_chem.")
    data_dir: str | None = Field(
        BUNDLED, description="Where the tasks' data is: a directory holding each task's "
        "file in the published layout (<dataset_name>.jsonl/.json/.parquet or "
        "<dataset_name>/test-*.parquet, e.g. wmdp-bio.jsonl); 'bundled': the package's "
        "WMDP-style set (wmdp_bio only); null: the task's own hub dataset through the "
        "datasets cache (offline only when cached).")
    batch_size: int = Field(8, ge=1, description="Requests per forward pass.")
    limit: int | None = Field(None, ge=1, description="Score only the first N questions of "
                              "each task (for quick checks).")

    @field_validator("tasks")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"tasks repeat: {value}")
        return value


_MANAGERS: dict[type, Any] = {}


def _task_manager(cls: type) -> Any:
    """The harness's task index (built once per process: it reads every task's YAML)."""
    if cls not in _MANAGERS:
        _MANAGERS[cls] = cls()
    return _MANAGERS[cls]


def local_task_config(manager: Any, task: str, data_dir: str | None) -> dict[str, Any] | str:
    """lm-evaluation-harness's own config of ``task`` (prompt, choices, description, metric
    unchanged) with its dataset read from ``data_dir``; the task name when ``data_dir`` is
    None. Raises naming the task or the files looked for."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index.get(task)
    if entry is None or getattr(entry, "yaml_path", None) is None:
        wmdp = sorted(n for n in manager.all_tasks if n.startswith(task.split("_")[0]))[:8]
        raise IncompatibleComponentError(
            f"metric 'lm_eval_accuracy': '{task}' is not an lm-evaluation-harness task "
            f"defined by a YAML file{'; similar: ' + ', '.join(wmdp) if wmdp else ''}")
    if data_dir is None:
        return task
    config = dict(load_yaml(entry.yaml_path, resolve_func=True))
    if config.get("output_type") != "multiple_choice":
        raise IncompatibleComponentError(
            f"metric 'lm_eval_accuracy': task '{task}' is a {config.get('output_type')} task, "
            "not multiple_choice")
    name = str(config.get("dataset_name") or task)
    split = str(config.get("test_split") or "test")
    if data_dir == BUNDLED:
        if task != "wmdp_bio":
            raise IncompatibleComponentError(
                f"metric 'lm_eval_accuracy': the bundled set is WMDP-style biology "
                f"(wmdp_bio) only; for '{task}' set data_dir to a directory holding its files")
        from erasus_llm.wmdp import BUNDLED_WMDP

        root = BUNDLED_WMDP
    else:
        root = Path(data_dir).expanduser()
    candidates = [(root / f"{name}.jsonl", "json"), (root / f"{name}.json", "json"),
                  (root / f"{name}.parquet", "parquet")]
    found = [(p, kind) for p, kind in candidates if p.is_file()]
    files = sorted((root / name).glob(f"{split}-*.parquet"))
    if found:
        data_files: Any = str(found[0][0])
        kind = found[0][1]
    elif files:
        data_files, kind = [str(f) for f in files], "parquet"
    else:
        looked = ", ".join(str(p) for p, _ in candidates)
        raise IncompatibleComponentError(
            f"metric 'lm_eval_accuracy': no data for task '{task}' in {root} (looked for "
            f"{looked} and {root / name}/{split}-*.parquet)")
    config.update(dataset_path=kind, dataset_name=None,
                  dataset_kwargs={"data_files": {split: data_files}})
    return config


class LMEvalAccuracy(Metric):
    """Multiple-choice accuracy computed by lm-evaluation-harness itself (Gao et al.'s
    harness, the scorer WMDP reports with, Li et al. 2024).

    Each task keeps the harness's own definition (prompt template, description, answer
    letters, ``acc``); only where its data comes from changes: ``data_dir`` (the
    published files of a local copy, or the bundled WMDP-style set), or the task's hub
    dataset through the datasets cache. ``<task>_accuracy`` is the harness's ``acc``; the
    details keep each question's choice log-likelihoods. ``mc_accuracy`` scores the same
    requests with the shared one-pass cache, without the harness installed.
    """

    name = "lm_eval_accuracy"
    modalities = ("text",)
    adapters = ("causal_lm",)  # the harness's HFLM scores a causal LM's continuations
    needs = frozenset()
    Params = LMEvalAccuracyParams
    paper = MCAccuracy.paper
    outputs = ("wmdp_bio_accuracy",)
    scope = "model"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.outputs = tuple(f"{t}_accuracy" for t in self.params.tasks)  # type: ignore[misc]

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._base import check_adapter

        check_adapter(self, ctx.adapter, "runs lm-evaluation-harness's causal-LM scorer")
        try:
            from lm_eval import simple_evaluate
            from lm_eval.models.huggingface import HFLM
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise MissingDependencyError(_INSTALL) from None
        p: LMEvalAccuracyParams = self.params  # type: ignore[assignment]
        adapter = ctx.adapter
        quiet = logging.getLogger("lm_eval")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        model = adapter.model
        was_training = model.training
        try:
            manager = _task_manager(TaskManager)
            specs = [local_task_config(manager, t, p.data_dir) for t in p.tasks]
            try:
                tasks = manager.load(specs)["tasks"]
            except Exception as exc:  # datasets' errors for missing data have no common base
                raise IncompatibleComponentError(
                    f"metric 'lm_eval_accuracy': the data of {p.tasks} is not available "
                    f"({type(exc).__name__}: {exc}); set data_dir to a local copy of the "
                    "published files (or 'bundled' for the WMDP-style set)") from None
            lm = HFLM(pretrained=model, tokenizer=adapter.tokenizer, batch_size=p.batch_size,
                      device=str(adapter.device), max_length=adapter.max_length)
            results = simple_evaluate(model=lm, tasks=list(tasks.values()),
                                      task_manager=manager, limit=p.limit, log_samples=True,
                                      bootstrap_iters=0)
        finally:
            quiet.setLevel(level)
            model.train(was_training)
        ctx.forward_passes = getattr(ctx, "forward_passes", 0) + sum(
            len(results["samples"].get(t, [])) for t in p.tasks)
        values, details = {}, {}
        for task in p.tasks:
            values[f"{task}_accuracy"] = float(results["results"][task]["acc,none"])
            samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
            details[task] = {"loglik": [[float(r[0][0]) for r in s["resps"]] for s in samples],
                             "answers": [s["target"] for s in samples]}
        return Measurement(values=values, details=details)
