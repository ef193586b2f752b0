"""Rich progress bars for a run's long loops, shown only when asked for and on rank 0.

``erasus run`` asks for them on an interactive terminal (``--progress/--no-progress``,
``run.progress``); a non-interactive run stays quiet and its log (``run.log``,
``log.jsonl``) records what happened.
"""

from __future__ import annotations

from typing import Any

from erasus import distributed

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    """One transient rich progress bar: ``description``, done/total (a pulsing bar when
    the total is unknown), time remaining and a free text field (``note``)."""

    def __init__(self, description: str, total: int | None, completed: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
        columns += [MofNCompleteColumn(), TimeRemainingColumn()] if total is not None \
            else [TimeElapsedColumn()]
        self._progress = Progress(*columns, TextColumn("{task.fields[note]}"),
                                  transient=True)
        self._task = self._progress.add_task(description, total=total, completed=completed,
                                             note="")
        self._progress.start()

    def advance(self, steps: int = 1, note: str | None = None) -> None:
        fields = {} if note is None else {"note": note}
        self._progress.update(self._task, advance=steps, **fields)

    def close(self) -> None:
        self._progress.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Quiet:
    """The bar of a run without progress output: every call does nothing."""

    def advance(self, steps: int = 1, note: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(enabled: bool, description: str, total: int | None = None,
                 completed: int = 0) -> ProgressBar | _Quiet:
    """A :class:`ProgressBar` when ``enabled`` on the main process, else a silent one."""
    if not enabled or not distributed.is_main():
        return _Quiet()
    return ProgressBar(description, total, completed)
