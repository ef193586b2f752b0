"""The built-in plugin: registers the core's components through the public hooks.

Each hook imports its component modules when called, and those modules import torch only
inside functions, so building the registry (``erasus list-plugins``) stays fast.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus.builtin.models.classifier import ClassifierAdapter

    register(ClassifierAdapter)


@hookimpl
def erasus_register_selectors(register: Any) -> None:
    from erasus.builtin.selectors.full import FullSelector
    from erasus.builtin.selectors.random import RandomSelector

    register(FullSelector)
    register(RandomSelector)


@hookimpl
def erasus_register_strategies(register: Any) -> None:
    from erasus.builtin.strategies.finetune import Finetune
    from erasus.builtin.strategies.gradient_ascent import GradientAscent
    from erasus.builtin.strategies.gradient_difference import GradientDifference
    from erasus.builtin.strategies.random_label import RandomLabel
    from erasus.builtin.strategies.retrain import Retrain

    for cls in (Retrain, Finetune, GradientAscent, GradientDifference, RandomLabel):
        register(cls)


@hookimpl
def erasus_register_metrics(register: Any) -> None:
    from erasus.builtin.metrics.accuracy import Accuracy
    from erasus.builtin.metrics.avg_gap import AvgGap
    from erasus.builtin.metrics.loss import MeanLoss
    from erasus.builtin.metrics.memory import Memory
    from erasus.builtin.metrics.mia import LossMIA
    from erasus.builtin.metrics.mia_efficacy import MIAEfficacy
    from erasus.builtin.metrics.time import Time

    for cls in (Accuracy, MIAEfficacy, LossMIA, MeanLoss, AvgGap, Time, Memory):
        register(cls)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus.builtin.datasets.digits import Digits

    register(Digits)


@hookimpl
def erasus_register_reporters(register: Any) -> None:
    from erasus.builtin.reporters.markdown import MarkdownReporter

    register(MarkdownReporter)
