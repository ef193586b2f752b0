"""Peak host and accelerator memory of the run."""

from __future__ import annotations

from typing import Any

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["Memory"]


class Memory(Metric):
    """Peak host (RSS) and device memory of the run, in MiB, as the pipeline measured them.

    A run metric reading ``ctx.run_info["peak_host_mb"]`` and
    ``ctx.run_info["peak_device_mb"]`` (0 on a CPU-only run). It reports what the
    pipeline recorded and raises if either value was not recorded.
    """

    name = "memory"
    modalities = ("any",)
    needs = frozenset()
    Params = MetricParams
    paper = None
    outputs = ("peak_host_mb", "peak_device_mb")
    scope = "run"

    def compute(self, ctx: Any) -> Measurement:
        info: dict[str, Any] = ctx.run_info
        missing = [k for k in self.outputs if info.get(k) is None]
        if missing:
            raise IncompatibleComponentError(
                f"metric 'memory' found no {', '.join(missing)} in the run information; it "
                "must run inside a pipeline run that measured memory")
        return Measurement(values={k: float(info[k]) for k in self.outputs})
