"""Selective pruning: zero the units far more active on the forget set than on the retain set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["NeuronPruning", "NeuronPruningParams"]

_CONV = ("Conv1d", "Conv2d", "Conv3d")


class NeuronPruningParams(StrategyParams):
    """Parameters of selective neuron pruning (defaults suit the digits benchmark)."""

    fraction: float = Field(
        0.01, gt=0, lt=1, description="Share of all candidate units to prune: those with the "
        "highest forget/retain importance ratio (rounded, at least one).")
    batch_size: int = Field(64, ge=1, description="Examples per forward pass when "
                            "measuring activations.")
    eps: float = Field(1e-8, gt=0, description="Added to the retain importance in the "
                       "ratio's denominator (units silent on the retain set score high).")


def _units(module: Any) -> tuple[int, str] | None:
    """``(units, layout)`` of a prunable layer: ``rows`` (torch Linear/Conv: one output unit
    per row of ``weight``) or ``cols`` (Hugging Face ``Conv1D``: ``weight`` is in x out)."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.out_features, "rows"
    if type(module).__name__ in _CONV and isinstance(module, torch.nn.modules.conv._ConvNd):
        return module.out_channels, "rows"
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and getattr(module, "nf", None) is not None \
            and weight is not None and weight.dim() == 2:
        return int(module.nf), "cols"
    return None


class NeuronPruning(Strategy):
    """Selective pruning: zero the units most specific to the forget set, in one step.

    Every output unit of a linear layer, output channel of a convolution and output
    feature of a Hugging Face ``Conv1D`` is a unit; the last such layer the forward pass
    runs (the output layer: classifier head, LM head) is never pruned. With forward hooks,
    over forward passes of the adapter's ``per_example_loss`` on each set (eval mode, no
    gradients, the torch RNG seeded by the run seed), the importance of unit ``u`` on a
    set is its mean absolute activation ``I(u) = mean |a_u|`` (over examples and over
    positions/pixels); the score is ``I_forget(u) / (I_retain(u) + eps)``. The
    ``fraction`` share of all units with the highest scores (one global ranking, ties
    broken by position) is pruned: the unit's weights (its row, or column for ``Conv1D``)
    and bias are set to zero, so its output is zero for every input. No training follows.

    Pochinkov & Schoots, "Dissecting Language Models: Machine Unlearning via Selective
    Pruning", 2024 (their ``I_abs`` importance for feed-forward neurons, pruned in one
    step here).
    """

    name = "neuron_pruning"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = NeuronPruningParams
    paper = Paper(
        title="Dissecting Language Models: Machine Unlearning via Selective Pruning",
        authors="Nicholas Pochinkov, Nandi Schoots",
        year=2024,
        url="https://arxiv.org/abs/2403.01267",
        venue="arXiv",
    )
    effect = "raise_forget_loss"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: Each candidate layer's unit scores (forget/retain ratio), set by unlearn().
        self.scores: dict[str, torch.Tensor] | None = None
        #: The pruned units as (layer name, unit index) pairs, set by unlearn().
        self.pruned: list[tuple[str, int]] | None = None

    def importance(self, adapter: ModelAdapter, dataset: Any, collate_fn: Any, seed: int
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Mean |activation| of every unit on ``dataset``, and the layers in call order."""
        import torch

        from erasus.data import index_loader

        p: NeuronPruningParams = self.params  # type: ignore[assignment]
        layers = {n: m for n, m in adapter.model.named_modules() if _units(m) is not None}
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        order: list[str] = []

        def hook(name: str, module: Any) -> Any:
            units, _ = _units(module)  # type: ignore[misc]

            def record(_mod: Any, _inp: Any, out: Any) -> None:
                out = out[0] if isinstance(out, tuple) else out
                a = out.detach().abs().float()
                flat = (a.transpose(0, 1) if type(module).__name__ in _CONV
                        else a.movedim(-1, 0)).reshape(units, -1)
                sums[name] = sums.get(name, 0) + flat.sum(1).cpu()
                counts[name] = counts.get(name, 0) + flat.shape[1]
                if name in order:
                    order.remove(name)
                order.append(name)
            return record

        handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
        model = adapter.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                for _, raw in index_loader(dataset, batch_size=p.batch_size,
                                           collate_fn=collate_fn,
                                           min_batch_size=adapter.min_batch_size):
                    adapter.per_example_loss(adapter.prepare_batch(raw))
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        return {n: sums[n] / max(1, counts[n]) for n in sums}, order

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch

        from erasus.builtin.strategies._importance import top_fraction
        from erasus.errors import IncompatibleComponentError
        from erasus.strategy import History

        p: NeuronPruningParams = self.params  # type: ignore[assignment]
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                "strategy 'neuron_pruning' compares activations on the forget and the "
                "retain set; provide a non-empty retain set")
        forget, order = self.importance(adapter, data.forget, data.collate_fn, run.seed)
        retain, _ = self.importance(adapter, data.retain, data.collate_fn, run.seed)
        candidates = [n for n in order[:-1] if n in retain]
        if not candidates:
            raise IncompatibleComponentError(
                f"strategy 'neuron_pruning' found no prunable layer before the output layer "
                f"in model '{adapter.name}' (it prunes units of Linear, Conv and Conv1D "
                "layers that the forward pass runs)")
        self.scores = {n: forget[n] / (retain[n] + p.eps) for n in candidates}
        flat = torch.cat([self.scores[n] for n in candidates])
        chosen = top_fraction(flat, p.fraction)
        if not bool(chosen.any()):
            chosen[torch.argmax(flat)] = True
        modules = dict(adapter.model.named_modules())
        self.pruned = []
        start = 0
        with torch.no_grad():
            for name in candidates:
                size = self.scores[name].numel()
                units = torch.nonzero(chosen[start:start + size]).flatten().tolist()
                start += size
                module = modules[name]
                _, layout = _units(module)  # type: ignore[misc]
                for u in units:
                    if layout == "rows":
                        module.weight[u].zero_()
                    else:
                        module.weight[:, u].zero_()
                    if getattr(module, "bias", None) is not None:
                        module.bias[u] = 0.0
                    self.pruned.append((name, u))
        return History()
