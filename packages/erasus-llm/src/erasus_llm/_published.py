"""Reading benchmark files in their published layouts, from a local directory or the hub.

One published "file" (a config/split of a hub data set) may be stored as a JSON list, JSON
lines (in a ``.json`` or ``.jsonl`` file, as TOFU publishes them), parquet shards (the
hub's ``<config>/<split>-00000-of-00001.parquet``) or a plain-text document. :func:`find`
looks for each of these layouts under a root directory; :func:`read` returns the records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from erasus.errors import MissingDependencyError

from erasus_llm.datasets import DatasetFormatError

__all__ = ["Records", "find", "hub_patterns", "hub_snapshot", "keep_records", "read",
           "require"]

_SUFFIXES = (".json", ".jsonl", ".parquet", ".txt")


class Records:
    """A list of records (dicts) as a map-style dataset; items are copies."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, list) else v
                for k, v in self.records[index].items()}


def keep_records(items: list[Any]) -> list[Any]:
    """Collate function that keeps a batch as the list of its records.

    PyTorch's default collate transposes a list field (``perturbed_answer``) into a list
    per position; the ``causal_lm`` adapter's ``prepare_batch`` takes a list of dicts.
    """
    return list(items)


def find(root: Path, name: str) -> list[Path]:
    """The files holding ``name`` (e.g. ``forget10`` or ``knowmem/forget_qa``) under root.

    Tried in order: ``name.json``/``.jsonl``/``.parquet``/``.txt``, parquet shards
    ``name-*.parquet`` (the hub's ``config/split-00000-of-00001.parquet``), and a directory
    ``name/`` holding ``train``/``test`` shards or files (a hub config with one split).
    """
    for suffix in _SUFFIXES:
        path = root / f"{name}{suffix}"
        if path.is_file():
            return [path]
    base = root / name
    shards = sorted(base.parent.glob(f"{base.name}-*.parquet")) if base.parent.is_dir() else []
    if shards:
        return shards
    if base.is_dir():
        for split in ("train", "test"):
            found = find(base, split)
            if found:
                return found
        shards = sorted(base.glob("*.parquet"))
        if shards:
            return shards
    return []


def require(root: Path, names: tuple[str, ...], label: str, what: str) -> list[Path]:
    """:func:`find` of the first of ``names`` that exists, or an error naming them all."""
    for name in names:
        found = find(root, name)
        if found:
            return found
    tried = " or ".join(f"{n}.json/.jsonl/.parquet" for n in names)
    raise DatasetFormatError(
        f"{label}: {root} has no {what} file '{names[0]}' ({tried}, or parquet shards "
        f"{names[0]}-*.parquet or {names[0]}/train-*.parquet); point 'path' at a directory "
        "in the published layout")


def _read_parquet(path: Path, label: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(
            f"{label}: reading {path} needs pyarrow (pip install pyarrow), or convert the "
            "file to JSON lines") from None
    return pq.read_table(path).to_pylist()


def _read_json(path: Path, label: str) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    whole: Any = None
    if path.suffix == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON lines in a .json file, as TOFU publishes them
    if isinstance(whole, list):
        return whole
    if isinstance(whole, dict):
        return [whole]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{label}: {path} line {n} is not valid JSON: "
                                         f"{exc.msg}") from None
    return rows


def read(paths: list[Path], label: str, fields: dict[str, type | tuple[type, ...]],
         optional: dict[str, type | tuple[type, ...]] | None = None
         ) -> list[dict[str, Any]]:
    """The records of ``paths``, each checked to hold ``fields`` (and, when present, the
    ``optional`` ones) with the given types; only those fields are kept.

    A ``.txt`` file is one record ``{"text": <the whole file>}``.

    Raises:
        DatasetFormatError: naming the file, the record and the field that is wrong.
    """
    optional = optional or {}
    out: list[dict[str, Any]] = []
    for path in paths:
        if path.suffix == ".parquet":
            rows = _read_parquet(path, label)
        elif path.suffix == ".txt":
            rows = [{"text": path.read_text(encoding="utf-8")}]
        else:
            rows = _read_json(path, label)
        if not rows:
            raise DatasetFormatError(f"{label}: {path} holds no records")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{label}: {path} record {i} is a JSON "
                                         f"{type(row).__name__}, not an object")
            record: dict[str, Any] = {}
            for key, kind in (*fields.items(), *optional.items()):
                if key not in row or row[key] is None:
                    if key in fields:
                        raise DatasetFormatError(
                            f"{label}: {path} record {i} has no '{key}' field (fields: "
                            f"{', '.join(sorted(row))})")
                    continue
                value = row[key]
                if kind is list:
                    ok = isinstance(value, (list, tuple)) and all(isinstance(v, str)
                                                                  for v in value)
                    value = list(value) if ok else value
                else:
                    ok = isinstance(value, kind) and not isinstance(value, bool)
                if not ok:
                    raise DatasetFormatError(
                        f"{label}: {path} record {i}: '{key}' must be "
                        f"{'a list of strings' if kind is list else _kind(kind)}, got "
                        f"{type(value).__name__}")
                record[key] = value
            out.append(record)
    return out


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer"}.get(k.__name__, k.__name__)
                       for k in kinds)


def hub_patterns(names: list[str] | tuple[str, ...]) -> list[str]:
    """Hub file patterns that cover every layout :func:`find` reads for ``names``."""
    return [p for n in names for p in (f"{n}.*", f"{n}-*", f"{n}/*")]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_snapshot(repo_id: str, label: str, patterns: list[str] | None = None) -> Path:
    """A local copy of hub data set ``repo_id`` (downloaded, or the cached copy offline).

    Raises:
        DatasetFormatError: when the hub is unreachable or ``HF_HUB_OFFLINE`` is set and the
            data set is not in the local hub cache; the message names the id and says to
            give a local ``path`` instead.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependencyError(f"{label}: loading '{repo_id}' from the hub needs "
                                     "huggingface_hub (pip install huggingface_hub)") from None
    offline = _offline()
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns,
                                      local_files_only=offline))
    except Exception as exc:
        why = ("HF_HUB_OFFLINE is set and it is not in the local hub cache" if offline
               else f"the hub is unreachable or refused it ({type(exc).__name__}: {exc})")
        raise DatasetFormatError(
            f"{label}: cannot load the hub data set '{repo_id}': {why}; download it "
            "while online, or give 'path': a local directory holding the published files"
        ) from None
