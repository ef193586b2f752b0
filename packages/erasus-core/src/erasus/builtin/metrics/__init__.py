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
    "erasus.builtin.metrics.lira:LiRA",
    "erasus.builtin.metrics.confidence:Confidence",
    "erasus.builtin.metrics.feature_distance:FeatureDistance",
    "erasus.builtin.metrics.differential_privacy:DifferentialPrivacy",
    "erasus.builtin.metrics.metric_suite:MetricSuite",
    "erasus.builtin.metrics.attack_success_rate:AttackSuccessRate",
)
