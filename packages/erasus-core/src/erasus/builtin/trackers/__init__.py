"""Built-in experiment trackers: MLflow and Weights & Biases (each an optional extra)."""

from erasus.builtin.trackers.mlflow import MLflowParams, MLflowTracker
from erasus.builtin.trackers.wandb import WandbParams, WandbTracker

__all__ = ["CATALOG", "MLflowParams", "MLflowTracker", "WandbParams", "WandbTracker"]

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.trackers.mlflow:MLflowTracker",
    "erasus.builtin.trackers.wandb:WandbTracker",
)
