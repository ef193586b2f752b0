"""Attack success rate of a backdoor trigger (BadNets): how much of the backdoor is left."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from erasus.backdoor import BADNETS, TriggeredDataset, patch_size_for
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams
from erasus.transforms import TransformedDataset

__all__ = ["AttackSuccessRate", "AttackSuccessRateParams"]

_DEFAULTS = {"target_class": 0, "patch_size": None, "value": 1.0, "corner": "bottom_right"}


class AttackSuccessRateParams(MetricParams):
    """The trigger to test; every field left unset comes from the data set's backdoor."""

    target_class: int | None = Field(
        None, ge=0, description="The attack's target class (default: the data set's backdoor "
        "target, else 0).")
    patch_size: int | None = Field(
        None, ge=1, description="Side of the trigger patch (default: the data set's, else "
        "max(2, H // 8)).")
    value: float | None = Field(
        None, description="Value of the trigger pixels (default: the data set's, else 1.0).")
    corner: Literal["bottom_right", "bottom_left", "top_right", "top_left"] | None = Field(
        None, description="Corner of the trigger (default: the data set's, else bottom_right).")


class AttackSuccessRate(Metric):
    """Attack success rate (ASR): percent of triggered non-target images called the target.

    The share of the test images of the classes other than the target that the model
    classifies as the target class once the trigger is stamped on them (Gu et al., 2017).

    The trigger is the data set's backdoor (``info.extra["backdoor"]``, written by the
    ``backdoor`` forgetting option of the bundled data sets, see
    :func:`erasus.backdoor.backdoor_splits`), with any parameter given here overriding it;
    on a data set without a backdoor the defaults (target 0, bright bottom-right patch) are
    used and ``details["trigger_source"]`` says so. When the trigger is the data set's own,
    the cached outputs of its ``test_triggered`` split are used; otherwise the metric
    stamps the trigger on the test examples of the other classes and runs the model on
    them once.

    - ``ASR`` = 100 x share of triggered non-target test images predicted as the target
      (a backdoored model: near 100; after unlearning the poison: near ``ASR_clean``);
    - ``ASR_clean`` = the same share on the clean (untriggered) non-target test images:
      the rate a model without the backdoor reaches by ordinary mistakes.
    """

    name = "attack_success_rate"
    modalities = ("classification",)
    #: the trigger is a patch of pixels stamped on input tensors: the tensor classifier
    adapters = ("classifier",)
    needs = frozenset()
    Params = AttackSuccessRateParams
    paper = BADNETS
    outputs = ("ASR", "ASR_clean")
    scope = "model"

    def _trigger(self, ctx: Any) -> tuple[dict[str, Any], str]:
        p: AttackSuccessRateParams = self.params  # type: ignore[assignment]
        info = getattr(getattr(ctx, "splits", None), "info", None)
        data = dict((getattr(info, "extra", None) or {}).get("backdoor") or {})
        source = "data" if data else "defaults"
        trigger = {k: data.get(k, default) for k, default in _DEFAULTS.items()}
        given = {k: getattr(p, k) for k in _DEFAULTS if getattr(p, k) is not None}
        if given:
            trigger.update(given)
            source = f"{source} + metric parameters ({', '.join(sorted(given))})"
        return trigger, source

    def compute(self, ctx: Any) -> Measurement:
        import numpy as np

        trigger, source = self._trigger(ctx)
        target = int(trigger["target_class"])
        test = ctx.outputs("test")
        if "logits" not in test or "labels" not in test:
            raise IncompatibleComponentError(
                "attack_success_rate needs logits and labels, but the model adapter's outputs "
                f"have only {', '.join(sorted(test))}; use a classification adapter")
        n_classes = test["logits"].shape[-1]
        if not 0 <= target < n_classes:
            raise IncompatibleComponentError(
                f"attack_success_rate: target class {target} is not one of the model's "
                f"{n_classes} classes; set target_class")
        labels = np.asarray(test["labels"])
        others = np.flatnonzero(labels != target)
        if len(others) == 0:
            raise IncompatibleComponentError(
                "attack_success_rate: the test split has no example outside the target class")
        clean = float(100.0 * np.mean(np.argmax(test["logits"][others], axis=-1) == target))

        splits = ctx.splits
        data_trigger = (splits.info.extra or {}).get("backdoor")
        if data_trigger and "test_triggered" in splits.extra and all(
                data_trigger.get(k) == trigger[k] for k in _DEFAULTS):
            logits = ctx.outputs("test_triggered")["logits"]
            triggered_from = "test_triggered"
        else:
            logits = self._triggered_logits(ctx, others.tolist(), trigger)
            triggered_from = "test (stamped by the metric)"
        asr = float(100.0 * np.mean(np.argmax(logits, axis=-1) == target))
        return Measurement(values={"ASR": asr, "ASR_clean": clean},
                           details={"target_class": target, "n_triggered": len(logits),
                                    "trigger": trigger, "trigger_source": source,
                                    "triggered_split": triggered_from})

    @staticmethod
    def _triggered_logits(ctx: Any, positions: list[int], trigger: dict[str, Any]) -> Any:
        import numpy as np
        import torch

        from erasus.data import index_loader, subset

        splits = ctx.splits
        test = splits.get("test")
        first = test[positions[0]]
        if isinstance(first, dict):
            key = next((k for k in TransformedDataset._INPUT_KEYS if k in first), None)
            x0 = first[key] if key is not None else None
        else:
            x0 = first[0]
        size = patch_size_for(tuple(getattr(x0, "shape", ())), trigger["patch_size"])
        dataset = TriggeredDataset(subset(test, positions), patch_size=size,
                                   value=float(trigger["value"]), corner=trigger["corner"])
        adapter = ctx.adapter
        loader = index_loader(dataset, batch_size=getattr(ctx, "batch_size", 256),
                              collate_fn=splits.collate_fn,
                              min_batch_size=adapter.min_batch_size)
        model = adapter.model
        was_training = model.training
        model.eval()
        parts = []
        with torch.no_grad():
            for indices, raw in loader:
                batch = adapter.prepare_batch(raw)
                batch["index"] = indices.to(adapter.device)
                parts.append(adapter.outputs(batch)["logits"].detach().float().cpu().numpy())
                ctx.forward_passes = getattr(ctx, "forward_passes", 0) + 1
        model.train(was_training)
        return np.concatenate(parts)
