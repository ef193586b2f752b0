"""RMU (Representation Misdirection for Unlearning): steer forget activations to a random vector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

from erasus_llm.strategies._common import answer_positions, capture_layer, require_causal_lm

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["RMU", "RMUParams", "control_vector", "masked_mse"]


class RMUParams(LoopParams):
    """Parameters of RMU (defaults suit the tiny 2-layer causal LM)."""

    epochs: int = Field(100, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-2, gt=0, description="Learning rate (the paper: 5e-5 on Zephyr-7B).")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adamw", description="Optimizer "
                                                       "(the paper: AdamW).")
    batch_size: int = Field(8, ge=1, description="Examples per batch of each set.")
    layer: int = Field(
        1, description="Decoder layer (0-based; negative counts from the end) whose output "
        "activations are steered (the paper: 7 of Zephyr-7B's 32).")
    update_layers: list[int] | None = Field(
        None, description="Decoder layers whose weights are updated; unset: the steered layer "
        "and the two before it (the paper: 5, 6, 7). None may come after 'layer'.")
    update: Literal["mlp_out", "mlp", "layer"] = Field(
        "mlp_out", description="What is updated in those layers: 'mlp_out' the MLP's output "
        "projection (down_proj / c_proj / dense_4h_to_h, as in the paper's code), 'mlp' the "
        "whole MLP, 'layer' every weight of the layer.")
    steering_coeff: float = Field(
        20.0, gt=0, description="Norm of the control vector (the paper's c: 6.5 for Zephyr-7B "
        "at layer 7, 20 in its code's defaults); it should exceed the typical activation "
        "norm at the layer.")
    positions: Literal["answer", "all"] = Field(
        "answer", description="Token positions both losses average over: 'answer' those "
        "whose output predicts an answer token (the last question token and the answer; "
        "open-unlearning's RMU on TOFU also restricts to the answer), 'all' every "
        "non-padding token (the paper, on raw text).")
    alpha: float = Field(30.0, ge=0, description="Weight of the retain activation loss (the "
                         "paper: 1200 for Zephyr-7B, 100 in its code's defaults).")


def control_vector(hidden_size: int, steering_coeff: float, seed: int) -> torch.Tensor:
    """``c * u / ||u||`` with ``u`` uniform on ``[0, 1)^hidden_size`` drawn from a generator
    seeded by ``seed`` (the paper's code draws ``torch.rand`` and normalises it)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(hidden_size, generator=g, dtype=torch.float32)
    return u / u.norm() * float(steering_coeff)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(a - b) ** 2`` over the hidden dimension and the unmasked positions.

    ``a`` is ``[batch, time, hidden]``; ``b`` broadcasts to it; ``mask`` is ``[batch, time]``.
    """
    m = mask.to(a.dtype).unsqueeze(-1)
    sq = (a.float() - b.float()) ** 2 * m
    return sq.sum() / (m.sum() * a.shape[-1]).clamp_min(1.0)


class RMU(LossStrategy):
    """RMU (Li et al. 2024, WMDP): map forget-text activations to noise, keep retain ones.

    One control vector ``c * u / ||u||`` (``u`` uniform random, drawn once per run from a
    generator seeded by the run seed; ``c = steering_coeff``) is fixed for the run. Each
    step, on a forget batch and a paired retain batch, minimises::

        mean ||h_theta(x_f) - c u/||u|| ||^2  +  alpha * mean ||h_theta(x_r) - h_frozen(x_r)||^2

    where ``h`` is the output of decoder layer ``layer`` and ``h_frozen`` that of the model
    as unlearning started, averaged over the ``positions``: by default those whose output
    predicts an answer token (the question's last token and the answer), as
    open-unlearning's RMU does on TOFU, or every non-padding token (the paper's setting,
    raw forget text); on QA data whose questions differ only in a name, steering the shared
    question tokens would fight the retain term. Only the ``update`` weights of
    ``update_layers`` train (by default the MLP output projections of the steered layer and
    the two before it, as in the paper's code); every other weight keeps
    ``requires_grad=False`` during the run and gets its flag back afterwards. The forward
    pass stops at the steered layer: later layers and the LM head do not enter the loss,
    so they are not run.

    Memory: no frozen copy of the model is kept (the paper's code holds a second full
    model). The frozen activations are computed per retain batch, under ``torch.no_grad``,
    with the model's own modules and the ORIGINAL values of the updated weights swapped in
    (``torch.func.functional_call``): layers below the updated ones never change, so those
    few tensors (a copy as large as the updated weights alone: three MLP projections
    instead of a whole model) are all that differs between the frozen and the updated
    model. Precomputing the frozen retain activations instead would cost
    ``retain examples x tokens x hidden`` floats, more than those weights on any
    realistic retain corpus. Padding positions are left out of both mean squared errors
    (the paper's code averages over padding too), so a loss does not depend on how a
    batch is padded. ``forget_mse`` and ``retain_mse`` log the two terms (unweighted).

    Needs the ``causal_lm`` adapter (its decoder layers and tokenised batches).
    """

    name = "rmu"
    shardable = False  # it hooks a layer and keeps frozen copies of weights
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset({"retain"})
    Params = RMUParams
    paper = Paper(
        title="The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning",
        authors="Nathaniel Li, Alexander Pan, Anjali Gopal, Summer Yue, Daniel Berrios, "
        "Alice Gatti, Justin D. Li, Ann-Kathrin Dombrowski, Shashwat Goel, Long Phan, et al., "
        "Dan Hendrycks",
        year=2024,
        url="https://arxiv.org/abs/2403.03218",
        venue="ICML",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The run's control vector (set by prepare()).
        self.control: torch.Tensor | None = None
        #: The original values of the updated weights, by parameter name (set by prepare()).
        self.frozen: dict[str, torch.Tensor] = {}
        #: The steered decoder layer's index (set by prepare()).
        self.layer_index: int | None = None

    # -- set-up -------------------------------------------------------------------------
    def _layers(self, adapter: ModelAdapter) -> tuple[list[Any], int, list[int]]:
        p: RMUParams = self.params  # type: ignore[assignment]
        lm = require_causal_lm(adapter, self.name, "steers the output of one of the "
                               "model's decoder layers")
        layers = lm._decoder_layers()
        n = len(layers)
        if n == 0:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': no decoder layers found in "
                f"{type(lm.model).__name__} (no ModuleList of num_hidden_layers layers)")
        layer = p.layer + n if p.layer < 0 else p.layer
        if not 0 <= layer < n:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': layer {p.layer} is out of range for a model with "
                f"{n} decoder layers; choose one in 0..{n - 1}")
        update = p.update_layers if p.update_layers is not None else \
            [i for i in (layer - 2, layer - 1, layer) if i >= 0]
        update = sorted({i + n if i < 0 else i for i in update})
        bad = [i for i in update if not 0 <= i <= layer]
        if not update or bad:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': update_layers {p.update_layers} must name layers "
                f"in 0..{layer} (at or below the steered layer {layer}, whose output they "
                "change)")
        return layers, layer, update

    def trainable_names(self, adapter: ModelAdapter) -> list[str]:
        """Names of the parameters RMU updates (``update`` of ``update_layers``)."""
        from erasus_llm.causal_lm import _MLP

        p: RMUParams = self.params  # type: ignore[assignment]
        layers, _, update = self._layers(adapter)
        by_tensor = {id(t): n for n, t in adapter.model.named_parameters()}
        names: list[str] = []
        for i in update:
            layer = layers[i]
            if p.update == "layer":
                modules = [layer]
            else:
                mlps = [c for n, c in layer.named_children() if _MLP.search(n)]
                if not mlps:
                    raise IncompatibleComponentError(
                        f"strategy '{self.name}': decoder layer {i} "
                        f"({type(layer).__name__}) has no child named like mlp/ffn/"
                        "feed_forward; use update: layer")
                modules = mlps
                if p.update == "mlp_out":
                    # the MLP's last child with weights is its output projection
                    with_weights = [c for c in mlps[0].children()
                                    if any(True for _ in c.parameters())]
                    modules = with_weights[-1:] or mlps
            for module in modules:
                names += [by_tensor[id(t)] for t in module.parameters() if id(t) in by_tensor]
        return list(dict.fromkeys(names))

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: RMUParams = self.params  # type: ignore[assignment]
        if p.stop_forget_loss is not None:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' never computes the forget answer loss (its forward "
                "pass stops at the steered layer), so stop_forget_loss cannot apply; bound "
                "the run with epochs or max_steps")
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' matches retain activations to the original "
                "model's, so it needs a non-empty retain set")
        _, self.layer_index, _ = self._layers(adapter)
        config = adapter.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.control = control_vector(int(text.hidden_size), p.steering_coeff, run.seed)
        params = dict(adapter.model.named_parameters())
        self.frozen = {n: params[n].detach().clone() for n in self.trainable_names(adapter)}

    # -- training -----------------------------------------------------------------------
    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.training import train_loop

        self.prepare(adapter, data, run)
        flags = {n: t.requires_grad for n, t in adapter.model.named_parameters()}
        try:
            for n, t in adapter.model.named_parameters():
                t.requires_grad_(n in self.frozen)
            return train_loop(self, adapter, data, run)
        finally:
            for n, t in adapter.model.named_parameters():
                t.requires_grad_(flags[n])

    def activations(self, adapter: ModelAdapter, batch: dict[str, Any], *,
                    frozen: bool = False) -> torch.Tensor:
        """The steered layer's output on ``batch`` (with the original weights if ``frozen``)."""
        import torch
        from torch.func import functional_call

        if self.layer_index is None:
            raise RuntimeError(f"{self.name}: prepare() must run before activations()")
        lm: Any = adapter
        layer = lm._decoder_layers()[self.layer_index]
        model = adapter.model
        out: list[Any] = []
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "use_cache": False}
        with capture_layer(layer, out, stop=True):
            if frozen:
                with torch.no_grad():
                    functional_call(model, self.frozen, args=(), kwargs=kwargs, strict=False)
            else:
                model(**kwargs)
        if not out:
            raise RuntimeError(f"{self.name}: the steered layer did not run")
        return out[0]

    def _positions(self, batch: dict[str, Any]) -> torch.Tensor:
        p: RMUParams = self.params  # type: ignore[assignment]
        if p.positions == "all":
            return batch["attention_mask"].bool()
        return answer_positions(batch["labels"])

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        if self.control is None or self.layer_index is None:
            raise RuntimeError(f"{self.name}: prepare() must run before loss()")
        p: RMUParams = self.params  # type: ignore[assignment]
        assert forget is not None and retain is not None
        h_forget = self.activations(adapter, forget)
        forget_mse = masked_mse(h_forget, self.control.to(h_forget.device),
                                self._positions(forget))
        h_retain = self.activations(adapter, retain)
        h_frozen = self.activations(adapter, retain, frozen=True)
        retain_mse = masked_mse(h_retain, h_frozen, self._positions(retain))
        total = forget_mse + p.alpha * retain_mse
        return {"loss": total, "forget_mse": forget_mse, "retain_mse": retain_mse}
