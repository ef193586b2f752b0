"""Robustness to weight quantization: the metrics again after round-to-nearest 8/4-bit."""

from __future__ import annotations

from typing import Any, Literal

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_llm.metrics._reevaluate import AttackedReevaluation, ReevaluationParams

__all__ = ["QuantizationRobustness", "QuantizationRobustnessParams", "rtn_quantize"]


def rtn_quantize(weight: Any, bits: int, group_size: int | None = None) -> Any:
    """Round-to-nearest symmetric quantization of a 2-D weight, returned dequantized.

    Each output row (or each ``group_size`` block of a row) is scaled by its absolute
    maximum onto the integers ``-(2^(b-1) - 1) .. 2^(b-1) - 1`` and rounded; the result is
    what the quantized model computes with.
    """
    import torch

    w = weight.detach().float()
    rows, cols = w.shape
    size = cols if group_size is None else group_size
    if cols % size:
        raise IncompatibleComponentError(
            f"quantization: a weight of {cols} columns does not split into groups of {size}")
    groups = w.reshape(rows, cols // size, size)
    qmax = 2 ** (bits - 1) - 1
    scale = groups.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / qmax
    q = torch.round(groups / scale).clamp(-qmax, qmax)
    return (q * scale).reshape(rows, cols).to(weight.dtype)


class QuantizationRobustnessParams(ReevaluationParams):
    """Parameters of the quantization robustness check."""

    bits: Literal[4, 8] = Field(4, description="Bits per weight (8 or 4).")
    group_size: int | None = Field(None, ge=1, description="Columns sharing one scale; "
                                   "unset: one scale per output row (per channel).")


class QuantizationRobustness(AttackedReevaluation):
    """Unlearning that quantization undoes (Zhang et al. 2025): ``metrics`` recomputed on a
    copy of the unlearned model whose decoder-layer weight matrices are quantized with
    round-to-nearest (RTN) to ``bits`` bits, symmetric, per output channel (or per
    ``group_size`` block), and dequantized. The paper finds 4-bit quantization restores
    much of the "forgotten" knowledge of gradient-ascent-style methods: compare
    ``quant<b>_forget_answer_prob`` with ``forget_answer_prob``. Embeddings and the output
    head stay in full precision, as weight-only quantizers leave them. A run metric; the
    evaluated models are not modified.
    """

    name = "quantization_robustness"
    Params = QuantizationRobustnessParams
    paper = Paper(title="Catastrophic Failure of LLM Unlearning via Quantization",
                  authors="Zhiwei Zhang, Fali Wang, Xiaomin Li, Zongyu Wu, Xianfeng Tang, "
                  "Hui Liu, Qi He, Wenpeng Yin, Suhang Wang", year=2025,
                  url="https://arxiv.org/abs/2410.16454", venue="ICLR")
    outputs = ("quant4_forget_answer_prob", "quant4_forget_perturbed_truth_ratio_closer_to_one",
               "quant4_forget_perturbed_truth_ratio_true_better")

    def prefix(self) -> str:
        return f"quant{self.params.bits}"

    def attack(self, adapter: Any, ctx: Any) -> None:
        import torch

        p: QuantizationRobustnessParams = self.params  # type: ignore[assignment]
        groups = adapter.parameter_groups() if hasattr(adapter, "parameter_groups") else {}
        names = {n for g, ns in groups.items() if g.startswith("layer.") for n in ns}
        if not names:
            raise IncompatibleComponentError(
                f"metric '{self.name}' quantizes the decoder layers' weights, but the model "
                "adapter names no 'layer.<i>' parameter groups")
        with torch.no_grad():
            for name, param in adapter.model.named_parameters():
                if name in names and param.ndim == 2 and param.is_floating_point():
                    param.copy_(rtn_quantize(param, p.bits, p.group_size))
