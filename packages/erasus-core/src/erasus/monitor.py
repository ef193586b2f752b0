"""Wall-clock and peak-memory measurement of one phase of a run."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from typing import Any

__all__ = ["ResourceMonitor", "current_rss_mb"]


def current_rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; else the lifetime peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class ResourceMonitor:
    """Context manager: elapsed seconds, peak host RSS (sampled) and peak device memory."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.seconds = 0.0
        self.peak_host_mb = 0.0
        self.peak_device_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_host_mb = max(self.peak_host_mb, current_rss_mb())

    def __enter__(self) -> ResourceMonitor:
        cuda = sys.modules.get("torch")
        if cuda is not None and cuda.cuda.is_available():
            cuda.cuda.reset_peak_memory_stats()
        self.peak_host_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_host_mb = max(self.peak_host_mb, current_rss_mb())
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            self.peak_device_mb = torch.cuda.max_memory_allocated() / 2**20
