"""Run directories: written in a hidden partial directory, published with one rename.

While a run executes it writes into ``<parent>/.<name>.partial/``; only when everything
is written is that directory renamed to ``<parent>/<name>``, so a run directory either
exists complete or not at all. A killed run leaves its partial directory (with the last
checkpoint) for ``--resume``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from erasus.errors import RunDirectoryError

__all__ = ["RunDirectory", "atomic_write_json", "atomic_write_text"]

STATE_FILE = "run_state.json"


def _file_mode() -> int:
    """The mode a plainly created file gets under the current umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=float) + "\n")


class RunDirectory:
    """The final and the partial (working) directory of one run."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.work = final.parent / f".{final.name}.partial"

    @classmethod
    def create(cls, *, output: str | Path | None, parent: str | Path, stem: str,
               config_hash: str, resume: bool) -> RunDirectory:
        """Choose (or, with ``resume``, find) the run directory and prepare its work dir."""
        if resume:
            rd = cls._find_resumable(output, Path(parent), config_hash)
        else:
            if output is not None:
                final = Path(output)
            else:
                final = Path(parent) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
                n = 1
                while final.exists() or cls(final).work.exists():
                    n += 1
                    final = Path(parent) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
            rd = cls(final)
            if rd.final.exists():
                raise RunDirectoryError(
                    f"run directory '{rd.final}' already exists; choose another --output "
                    "or remove it")
            if rd.work.exists():
                raise RunDirectoryError(
                    f"an interrupted run is in '{rd.work}'; continue it with --resume or "
                    "delete that directory")
            rd.work.mkdir(parents=True)
            atomic_write_json(rd.work / STATE_FILE,
                              {"config_hash": config_hash, "status": "running",
                               "started": time.time()})
        return rd

    @classmethod
    def _find_resumable(cls, output: str | Path | None, parent: Path, config_hash: str
                        ) -> RunDirectory:
        if output is not None:
            rd = cls(Path(output))
            if rd.final.exists():
                raise RunDirectoryError(f"run '{rd.final}' already finished; nothing to resume")
            if not (rd.work / STATE_FILE).is_file():
                raise RunDirectoryError(
                    f"no interrupted run at '{rd.work}' to resume; start it without --resume")
            candidates = [rd]
        else:
            candidates = sorted(
                (cls(p.parent / p.name[1:-len(".partial")])
                 for p in parent.glob(".*.partial") if (p / STATE_FILE).is_file()),
                key=lambda r: (r.work / STATE_FILE).stat().st_mtime, reverse=True)
        for rd in candidates:
            state = json.loads((rd.work / STATE_FILE).read_text())
            if state.get("config_hash") == config_hash:
                return rd
            if output is not None:
                raise RunDirectoryError(
                    f"the interrupted run in '{rd.work}' used a different configuration; "
                    "resume it with the same config and --set overrides")
        raise RunDirectoryError(
            f"no interrupted run of this configuration under '{parent}' to resume; start it "
            "without --resume")

    def write_yaml(self, name: str, data: Any) -> None:
        atomic_write_text(self.work / name, yaml.safe_dump(data, sort_keys=False))

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_json(self.work / name, data)

    def set_status(self, status: str, **extra: Any) -> None:
        path = self.work / STATE_FILE
        state = json.loads(path.read_text()) if path.is_file() else {}
        state.update(status=status, **extra)
        atomic_write_json(path, state)

    def publish(self) -> Path:
        """Rename the finished work directory to the final run directory."""
        (self.work / STATE_FILE).unlink(missing_ok=True)
        os.replace(self.work, self.final)
        return self.final
