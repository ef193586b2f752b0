"""Built-in metrics."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.metrics.accuracy:Accuracy",
    "erasus.builtin.metrics.mia_efficacy:MIAEfficacy",
    "erasus.builtin.metrics.mia:LossMIA",
    "erasus.builtin.metrics.loss:MeanLoss",
    "erasus.builtin.metrics.avg_gap:AvgGap",
    "erasus.builtin.metrics.time:Time",
    "erasus.builtin.metrics.memory:Memory",
)
