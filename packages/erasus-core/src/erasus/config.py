"""Run configuration: YAML in, validated and resolved against the registry out.

Each component section names a registered component and gives its parameters beside the
name (``strategy: {name: gradient_difference, epochs: 5, lr: 1.0e-3}``); the parameters
are validated against the component's own ``Params`` model. Every problem is reported at
once, one line each, with its dotted key path and a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from erasus.components import ComponentInfo
from erasus.errors import (
    ComponentNotFoundError,
    ConfigError,
    ConfigProblem,
    did_you_mean,
)

__all__ = [
    "ComponentSection",
    "ResolvedComponent",
    "ResolvedConfig",
    "RunConfig",
    "RunSection",
    "ShardingSection",
    "apply_overrides",
    "config_hash",
    "load_config",
    "load_yaml",
    "problems_from_validation",
    "resolve_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ComponentSection(BaseModel):
    """A component by registered name; every other key is one of its parameters."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Registered name of the component.")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OracleSection(BaseModel):
    """The retrained oracle: a strategy run on the retain data, or a stored model."""

    model_config = ConfigDict(extra="allow")

    strategy: str = Field("retrain", description="Strategy that builds the oracle.")
    path: str | None = Field(None, description="Directory of a stored oracle model instead.")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ShardingSection(_Strict):
    """Shard the training state over the processes of a multi-process run (FSDP2)."""

    strategy: Literal["full_shard", "shard_grad_op"] = Field(
        "full_shard", description="full_shard (ZeRO-3): parameters, gradients and optimizer "
        "state are sharded; shard_grad_op (ZeRO-2): gradients and optimizer state only.")
    wrap: list[str] | None = Field(
        None, description="Module class names sharded as their own units (default: the "
        "model's _no_split_modules, e.g. its decoder layers; [] shards the root only).")


class RunSection(_Strict):
    """Where and how a run executes."""

    output_dir: str = Field("runs", description="Parent directory of run directories.")
    name: str | None = Field(None, description="Run directory name (default: config stem + time).")
    device: str = Field("cpu", description="Torch device: cpu, cuda, cuda:1, mps or auto.")
    cache_dir: str | None = Field(
        None, description="Cache of trained originals/oracles (default: ERASUS_CACHE_DIR or "
        "~/.cache/erasus).")
    eval_batch_size: int = Field(256, ge=1, description="Batch size of evaluation passes.")
    progress: bool | None = Field(
        None, description="Show progress bars (default: only on an interactive terminal).")
    sharding: ShardingSection | None = Field(
        None, description="Multi-process runs: shard training with FSDP2 instead of "
        "holding the whole model, its gradients and optimizer state in every process "
        "(default: data-parallel; an accelerate FSDP launch sets it).")


class RunConfig(_Strict):
    """The whole run configuration (the YAML file's top level)."""

    seed: int = Field(0, description="Seed of every random choice in the run.")
    model: ComponentSection = Field(description="The model adapter and its parameters.")
    data: ComponentSection = Field(description="The dataset provider and its parameters.")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="Recipe for training the original model when model.path is not given: "
        "`name` picks the training strategy (default retrain; e.g. sisa for a sharded "
        "ensemble, certified_training for objective perturbation), the other keys are its "
        "parameters. An oracle with the same strategy reuses them.")
    selector: ComponentSection = Field(
        default_factory=lambda: ComponentSection(name="full"),
        description="Coreset selector applied to the forget set.")
    strategy: ComponentSection = Field(description="The unlearning strategy and its parameters.")
    oracle: OracleSection | None = Field(
        default_factory=OracleSection,
        description="The retrained oracle to compare against (null: none).")
    metrics: list[str | ComponentSection] = Field(
        default_factory=lambda: ["accuracy"], description="Metrics to compute.")
    reporters: list[str | ComponentSection] | None = Field(
        None, description="Reporters to run (default: every installed reporter).")
    tracking: ComponentSection | None = Field(None, description="Experiment tracker.")
    run: RunSection = Field(default_factory=RunSection, description="Execution settings.")

    @model_validator(mode="before")
    @classmethod
    def _sections_as_mappings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("model", "data", "selector", "strategy"):
                if isinstance(data.get(key), str):
                    data = {**data, key: {"name": data[key]}}
        return data


# -- loading -----------------------------------------------------------------------------
def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([ConfigProblem("", f"config file '{path}' does not exist")])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem("", f"YAML syntax error{where}: {problem}")],
                          source=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", "the top level must be a mapping of keys")],
                          source=str(path))
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]
                    ) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a copy of ``data``."""
    data = copy.deepcopy(data)
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(ConfigProblem("--set", f"'{item}' is not of the form key.path=value"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and i == 0:
                child = node[part] = {"name": child}
            if not isinstance(child, dict):
                problems.append(ConfigProblem(".".join(parts[: i + 1]),
                                              f"is not a mapping; cannot set '{key}'"))
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return data


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic names union branches ("str", "ComponentSection"); they are not keys.
    return tuple(p for p in loc if not (isinstance(p, str) and (p[:1].isupper() or p == "str")))


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known field names of the (nested) model at ``loc`` (for suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and
                                         issubclass(current, BaseModel)):
            return []
        f = current.model_fields.get(part)
        if f is None:
            return []
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        current = next((c for c in candidates if isinstance(c, type) and
                        issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def problems_from_validation(exc: ValidationError, model: type[BaseModel],
                             prefix: str = "") -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per pydantic error, with suggestions for unknown keys."""
    problems = []
    seen = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        path = _loc(loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        if err["type"] == "extra_forbidden":
            key = loc[-1] if loc else "?"
            hint = did_you_mean(str(key), _fields_at(model, loc[:-1]))
            message = f"unknown key '{key}'{hint}"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        if (path, message) not in seen:
            seen.add((path, message))
            problems.append(ConfigProblem(path, message))
    return problems


# -- resolution against the registry ---------------------------------------------------
@dataclass
class ResolvedComponent:
    """A config section bound to its registry entry and validated parameters."""

    info: ComponentInfo
    params: BaseModel
    path: str

    def create(self) -> Any:
        return self.info.cls(self.params)


@dataclass
class ResolvedConfig:
    """A validated config with every component resolved (what the pipeline runs)."""

    config: RunConfig
    raw: dict[str, Any]
    model: ResolvedComponent
    data: ResolvedComponent
    selector: ResolvedComponent
    strategy: ResolvedComponent
    train: ResolvedComponent
    oracle: ResolvedComponent | None
    metrics: list[ResolvedComponent]
    reporters: list[ResolvedComponent]
    tracker: ResolvedComponent | None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config (every default filled in), as written to disk."""
        def section(rc: ResolvedComponent) -> dict[str, Any]:
            return {"name": rc.info.name, **rc.params.model_dump(mode="json")}

        out: dict[str, Any] = {
            "seed": self.config.seed,
            "model": section(self.model),
            "data": section(self.data),
            "train": ({"name": self.train.info.name} if self.train.info.name != "retrain"
                      else {}) | self.train.params.model_dump(mode="json"),
            "selector": section(self.selector),
            "strategy": section(self.strategy),
            "oracle": None,
            "metrics": [section(m) for m in self.metrics],
            "reporters": [section(r) for r in self.reporters],
            "tracking": section(self.tracker) if self.tracker else None,
            "run": self.config.run.model_dump(mode="json"),
        }
        if self.oracle is not None:
            out["oracle"] = {"strategy": self.oracle.info.name,
                             "path": self.config.oracle.path if self.config.oracle else None,
                             **self.oracle.params.model_dump(mode="json")}
        return out

    def hash(self) -> str:
        return config_hash(self.to_dict())


def config_hash(data: Any) -> str:
    """A short stable hash of JSON-able data (keys sorted)."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _resolve(registry: Any, kind: str, name: str, params: dict[str, Any], path: str,
             problems: list[ConfigProblem], name_key: str = "name"
             ) -> ResolvedComponent | None:
    try:
        info = registry.get(kind, name)
    except ComponentNotFoundError as exc:
        problems.append(ConfigProblem(f"{path}.{name_key}", str(exc)))
        return None
    try:
        validated = info.params_model(**params)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, info.params_model, prefix=path))
        return None
    except TypeError as exc:
        problems.append(ConfigProblem(path, str(exc)))
        return None
    return ResolvedComponent(info=info, params=validated, path=path)


def _as_section(item: str | ComponentSection) -> ComponentSection:
    return ComponentSection(name=item) if isinstance(item, str) else item


def resolve_config(data: dict[str, Any], registry: Any, *, source: str | None = None
                   ) -> ResolvedConfig:
    """Validate ``data`` and bind every section to its registered component."""
    problems: list[ConfigProblem] = []
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, RunConfig)
        # Check the sections that are fine too, so every problem is reported at once.
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        try:
            config = RunConfig.model_validate({k: v for k, v in data.items() if k not in bad})
        except ValidationError:
            raise ConfigError(problems, source=source) from None
    model = _resolve(registry, "model", config.model.name, config.model.params, "model",
                     problems)
    if model is not None:
        _check_model_path(model, getattr(model.params, "path", None), "model.path", problems)
    dataset = _resolve(registry, "dataset", config.data.name, config.data.params, "data",
                       problems)
    selector = _resolve(registry, "selector", config.selector.name, config.selector.params,
                        "selector", problems)
    strategy = _resolve(registry, "strategy", config.strategy.name, config.strategy.params,
                        "strategy", problems)
    train_params = dict(config.train)
    train_name = train_params.pop("name", "retrain")
    if not isinstance(train_name, str):
        problems.append(ConfigProblem("train.name", "must be a strategy name"))
        train_name = "retrain"
    train = _resolve(registry, "strategy", train_name, train_params, "train", problems)
    oracle = None
    if config.oracle is not None:
        # An oracle of the train strategy reuses its recipe; if that is broken, it is
        # reported once, at train.
        reuse = train is not None and config.oracle.strategy == train_name
        oparams = {**(train_params if reuse else {}), **config.oracle.params}
        oracle = _resolve(registry, "strategy", config.oracle.strategy, oparams, "oracle",
                          problems, name_key="strategy")
        if model is not None:
            _check_model_path(model, config.oracle.path, "oracle.path", problems)
    metrics = []
    for i, item in enumerate(config.metrics):
        sec = _as_section(item)
        rc = _resolve(registry, "metric", sec.name, sec.params, f"metrics[{i}]", problems)
        if rc is not None:
            metrics.append(rc)
    names = {m.info.name for m in metrics}
    for i, m in enumerate(metrics):
        missing = [r for r in getattr(m.info.cls, "requires", ()) if r not in names]
        if missing:
            problems.append(ConfigProblem(
                f"metrics[{i}]", f"metric '{m.info.name}' needs metric(s) "
                f"{', '.join(missing)} in the list too"))
    reporters = []
    if config.reporters is None:
        for info in registry.entries("reporter"):
            reporters.append(ResolvedComponent(info=info, params=info.params_model(),
                                               path="reporters"))
    else:
        for i, item in enumerate(config.reporters):
            sec = _as_section(item)
            rc = _resolve(registry, "reporter", sec.name, sec.params, f"reporters[{i}]",
                          problems)
            if rc is not None:
                reporters.append(rc)
    tracker = None
    if config.tracking is not None:
        tracker = _resolve(registry, "tracker", config.tracking.name, config.tracking.params,
                           "tracking", problems)
    if model is not None:
        for component in (strategy, selector, train, oracle):
            if component is not None:
                _check_modality(component, model, problems)
        for metric in metrics:
            # metrics: only an adapter restriction (``adapters``) is checked here
            if tuple(getattr(metric.info.cls, "adapters", ()) or ()):
                _check_modality(metric, model, problems)
        _check_quantized(model, strategy, oracle, config, problems)
    if problems:
        raise ConfigError(problems, source=source)
    assert model and dataset and selector and strategy and train
    return ResolvedConfig(config=config, raw=data, model=model, data=dataset,
                          selector=selector, strategy=strategy, train=train, oracle=oracle,
                          metrics=metrics, reporters=reporters, tracker=tracker, source=source)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _check_model_path(model: ResolvedComponent, path: str | None, key: str,
                      problems: list[ConfigProblem]) -> None:
    """A model path must be an existing directory (or a hub id, if the adapter loads those)."""
    if not path or Path(path).is_dir():
        return
    if path.startswith("package:") and getattr(model.info.cls, "accepts_package_paths", False):
        return
    hub_ok = getattr(model.info.cls, "accepts_hub_ids", False)
    if hub_ok and _HUB_ID.match(path) and ".." not in path:
        return
    hint = " (or a hub id such as owner/name)" if hub_ok else ""
    problems.append(ConfigProblem(key, f"model directory '{path}' does not exist; give a "
                                       f"local directory written by save(){hint}"))


def _check_quantized(model: ResolvedComponent, strategy: ResolvedComponent | None,
                     oracle: ResolvedComponent | None, config: Any,
                     problems: list[ConfigProblem]) -> None:
    """A model loaded quantized (its ``quantization`` parameter) can only be unlearned by
    a strategy that trains adapters, and cannot train the oracle."""
    from erasus.strategy import quantized_model_problem

    quantization = getattr(model.params, "quantization", None)
    if not quantization:
        return
    if strategy is not None:
        why = quantized_model_problem(strategy.info.cls, quantization, model.info.name)
        if why:
            problems.append(ConfigProblem("strategy.name", why))
    if oracle is not None and not config.oracle.path:
        problems.append(ConfigProblem(
            "oracle.path", f"model '{model.info.name}' is loaded quantized (quantization: "
            f"{quantization}), so the oracle cannot be trained from it; give oracle.path (a "
            "model trained on the retain set) or load the model without quantization"))


def _check_modality(component: ResolvedComponent, model: ResolvedComponent,
                    problems: list[ConfigProblem]) -> None:
    supported = component.info.modalities
    model_modalities = model.info.modalities
    only = tuple(getattr(component.info.cls, "adapters", ()) or ())
    if only and model.info.name not in only:
        problems.append(ConfigProblem(
            f"{component.path}.name",
            f"{component.info.kind} '{component.info.name}' runs only on model "
            f"{' or '.join(repr(a) for a in only)}, not '{model.info.name}'"))
        return
    if "any" in supported or any(m in supported for m in model_modalities):
        return
    problems.append(ConfigProblem(
        f"{component.path}.name",
        f"{component.info.kind} '{component.info.name}' supports modalities "
        f"{', '.join(supported)}, but model '{model.info.name}' is "
        f"{', '.join(model_modalities)}"))


def load_config(source: str | Path | dict[str, Any], registry: Any,
                overrides: list[str] | tuple[str, ...] = ()) -> ResolvedConfig:
    """Load (from a path or a dict), apply overrides, validate and resolve a config."""
    if isinstance(source, (str, Path)):
        data = load_yaml(source)
        name = str(source)
    else:
        data = copy.deepcopy(source)
        name = None
    data = apply_overrides(data, overrides)
    return resolve_config(data, registry, source=name)
