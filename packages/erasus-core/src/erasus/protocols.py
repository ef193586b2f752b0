"""The vocabulary of Erasus: the base class of every component kind, in one place.

Subclass these to write a component; register it through the matching hook in
:mod:`erasus.hookspecs`.
"""

from __future__ import annotations

from erasus.adapters import ModelAdapter, ModelParams, TinyProblem
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits
from erasus.evaluation import EvalContext, Measurement, Metric, MetricParams, RunEvalContext
from erasus.losses import Loss, LossParams
from erasus.reporting import Reporter, ReporterParams, RunSummary, Tracker, TrackerParams
from erasus.selection import Selection, Selector, SelectorParams
from erasus.strategy import (
    History,
    LoopParams,
    LossStrategy,
    RunContext,
    Strategy,
    StrategyParams,
    UnlearnData,
)

__all__ = [
    "DataInfo",
    "DatasetParams",
    "DatasetProvider",
    "EvalContext",
    "History",
    "LoopParams",
    "Loss",
    "LossParams",
    "LossStrategy",
    "Measurement",
    "Metric",
    "MetricParams",
    "ModelAdapter",
    "ModelParams",
    "Reporter",
    "ReporterParams",
    "RunContext",
    "RunEvalContext",
    "RunSummary",
    "Selection",
    "Selector",
    "SelectorParams",
    "Splits",
    "Strategy",
    "StrategyParams",
    "TinyProblem",
    "Tracker",
    "TrackerParams",
    "UnlearnData",
]
