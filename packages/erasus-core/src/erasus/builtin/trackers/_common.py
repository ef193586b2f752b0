"""What both trackers record: the flattened config, component tags, versions, run files."""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

#: Config sections whose ``name`` identifies the run's components, as tag suffixes.
COMPONENT_SECTIONS = ("strategy", "selector", "model", "data")
#: Entries of a working run directory that are not part of the published run.
TRANSIENT = frozenset({"checkpoint", "run_state.json"})
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial$")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (``strategy.lr``).

    Lists of mappings (``metrics``, ``reporters``) are indexed (``metrics.0.name``); other
    lists stay whole, as one value.
    """
    if isinstance(config, dict):
        if not config and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(config, (list, tuple)) and any(isinstance(v, dict) for v in config):
        out = {}
        for i, value in enumerate(config):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: config}


def as_text(value: Any) -> str:
    """A config value as a string: text as is, containers as compact JSON, others ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def component_names(config: dict[str, Any]) -> dict[str, str]:
    """The registry names of the run's strategy, selector, model and data, where set."""
    out = {}
    for section in COMPONENT_SECTIONS:
        value = config.get(section)
        if isinstance(value, dict) and value.get("name") is not None:
            out[section] = str(value["name"])
    return out


def erasus_versions() -> dict[str, str]:
    """Installed distributions named ``erasus`` or ``erasus-*``, with their versions."""
    out = {}
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if name == "erasus" or name.startswith("erasus-"):
            out[name] = dist.version
    return dict(sorted(out.items()))


def numeric(values: dict[str, Any]) -> dict[str, float]:
    """The entries that are numbers (not booleans, not None), as floats."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}



def published_name(run_dir: Path) -> str:
    """The run directory's published name: ``.NAME.partial`` (still being written) is NAME."""
    match = _PARTIAL.match(run_dir.name)
    return match.group("name") if match else run_dir.name


def run_entries(run_dir: Path, *, include_model: bool = True) -> Iterator[Path]:
    """The top-level files and folders of a run directory that the published run keeps."""
    for entry in sorted(Path(run_dir).iterdir()):
        if entry.name in TRANSIENT or (entry.name == "model" and not include_model):
            continue
        yield entry
