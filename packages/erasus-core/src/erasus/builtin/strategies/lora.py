"""LoRA: run any loss-based strategy on low-rank adapters (PEFT), then merge them in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError, MissingDependencyError
from erasus.strategy import Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, LossStrategy, RunContext, UnlearnData

__all__ = ["BaseModelView", "LoRA", "LoRAParams", "loss_strategies", "target_module_names"]

_INSTALL_HINT = ('strategy \'lora\' needs the peft package: pip install "erasus[lora]" '
                 "(or pip install peft)")


def loss_strategies() -> dict[str, type]:
    """The registered strategies ``lora`` can wrap, by name: every loss-based strategy
    (a :class:`~erasus.strategy.LossStrategy`) except those that retrain from scratch or
    need a training record (their edits are not low-rank updates of the original)."""
    from erasus.plugins import active_registry
    from erasus.record import record_kinds
    from erasus.strategy import LossStrategy

    out = {}
    for info in active_registry().entries("strategy"):
        cls = info.cls
        if not (isinstance(cls, type) and issubclass(cls, LossStrategy)):
            continue
        effect = getattr(cls, "effect", None)
        effects = (effect,) if isinstance(effect, str) else tuple(effect or ())
        if "retrain_from_scratch" in effects or record_kinds(info.needs):
            continue
        out[info.name] = cls
    return out


class LoRAParams(StrategyParams):
    """Parameters of LoRA unlearning: the wrapped strategy and the low-rank adapters."""

    strategy: str = Field(
        "simnpo", description="Registered name of the loss-based strategy to run "
        "on the adapters (e.g. gradient_difference, npo, negative_gradient, scrub).")
    strategy_params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of that strategy (its own Params).")
    r: int = Field(8, ge=1, description="Rank of each low-rank update B @ A.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator: the update added to "
                         "a weight is (alpha / r) * B @ A.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the input of the LoRA path.")
    target_modules: list[str] | None = Field(
        None, description="Names (or name suffixes) of the layers that get adapters (Linear, "
        "transformers Conv1D or Conv1d/2d/3d layers); default: every dense layer (Linear and "
        "transformers Conv1D, as the LoRA paper's attention and MLP projections) except a "
        "language model's output embedding.")
    lr: float | None = Field(
        5e-3, gt=0, description="Learning rate of the wrapped strategy (overrides "
        "strategy_params.lr; None: the strategy's own). The adapters start at zero and "
        "usually need a larger rate than full fine-tuning.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop the wrapped strategy after this many optimizer steps "
        "(overrides strategy_params.max_steps when set).")

    @model_validator(mode="after")
    def _known_strategy(self) -> LoRAParams:
        choices = loss_strategies()
        if self.strategy not in choices:
            raise ValueError(
                f"strategy '{self.strategy}' cannot run through LoRA: it is not a registered "
                "loss-based strategy (one-step strategies, retraining from scratch and "
                "training-record methods edit weights in ways a low-rank update cannot); "
                f"choose one of: {', '.join(sorted(choices))}")
        inner_params = choices[self.strategy].Params
        try:
            inner_params(**self.inner_overrides())
        except ValueError as exc:
            raise ValueError(f"strategy_params for '{self.strategy}': {exc}") from None
        return self

    def inner_overrides(self) -> dict[str, Any]:
        """The wrapped strategy's parameters: ``strategy_params`` with ``lr`` and
        ``max_steps`` when set."""
        out = dict(self.strategy_params)
        if self.lr is not None:
            out["lr"] = self.lr
        if self.max_steps is not None:
            out["max_steps"] = self.max_steps
        return out


def _layer_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """``(dense, supported)``: the default targets (Linear, transformers' Conv1D) and every
    layer type peft's LoRA supports here (those and Conv1d/2d/3d)."""
    import torch

    dense: list[type] = [torch.nn.Linear]
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is optional
        pass
    else:
        dense.append(Conv1D)
    return tuple(dense), (*dense, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def target_module_names(model: torch.nn.Module, targets: list[str] | None) -> list[str]:
    """The full names of the layers that get adapters (see ``LoRAParams.target_modules``)."""
    dense, supported = _layer_types()
    layers = [name for name, m in model.named_modules() if name and isinstance(m, supported)]
    if targets is None:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") \
            else None
        chosen = [name for name, m in model.named_modules()
                  if name and isinstance(m, dense) and m is not head]
        if not chosen:
            raise IncompatibleComponentError(
                f"strategy 'lora': {type(model).__name__} has no Linear or Conv1D layer to put "
                "low-rank adapters on; name convolution layers in target_modules")
        return chosen
    chosen, missing = [], []
    for target in targets:
        hits = [n for n in layers if n == target or n.endswith("." + target)]
        if not hits:
            missing.append(target)
        chosen += [n for n in hits if n not in chosen]
    if missing:
        shown = ", ".join(layers[:12]) + (" ..." if len(layers) > 12 else "")
        raise IncompatibleComponentError(
            f"strategy 'lora': target_modules {missing} match no Linear, Conv or Conv1D layer "
            f"of {type(model).__name__}; its layers are: {shown or 'none'}")
    return chosen


class BaseModelView:
    """A model adapter whose LoRA layers are switched off: the frozen original model's
    function, computed by the same module without a copy of its weights.

    While LoRA trains, the base weights are frozen and unchanged, so the module with its
    adapters disabled is exactly the original (the adapter-disabled base PEFT uses as the
    reference model). Every method call of the wrapped adapter runs with the adapters
    off and the module in eval mode (both restored afterwards). The layers are switched
    through peft's ``_disable_adapters`` flag, which its ``enable_adapters`` sets too,
    but without its ``requires_grad`` changes, which would disturb the running optimizer.
    ``clone()`` gives an independent copy of the original (the LoRA layers unwrapped).
    """

    def __init__(self, adapter: ModelAdapter, layers: list[Any]) -> None:
        self._adapter = adapter
        self._layers = layers

    def _base(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def switched() -> Any:
            model = self._adapter.model
            was_training, flags = model.training, [m._disable_adapters for m in self._layers]
            for m in self._layers:
                m._disable_adapters = True
            model.eval()
            try:
                yield
            finally:
                for m, flag in zip(self._layers, flags, strict=True):
                    m._disable_adapters = flag
                model.train(was_training)

        return switched()

    def __getattr__(self, name: str) -> Any:
        import functools

        value = getattr(self._adapter, name)
        if name.startswith("_") or not callable(value) or isinstance(value, type):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._base():
                return value(*args, **kwargs)

        return call

    def clone(self) -> ModelAdapter:
        """An independent copy of the original model (the base layers, no LoRA)."""
        import copy

        from peft.tuners.tuners_utils import BaseTunerLayer

        twin = copy.deepcopy(self._adapter)
        for name, module in list(twin.model.named_modules()):
            if isinstance(module, BaseTunerLayer) and name:
                parent, _, child = name.rpartition(".")
                owner = twin.model.get_submodule(parent) if parent else twin.model
                setattr(owner, child, module.get_base_layer())
        for param in twin.model.parameters():
            param.requires_grad_(False)
        twin.model.eval()
        return twin


class LoRA(Strategy):
    """LoRA (Hu et al. 2022): run a loss-based strategy on low-rank adapters, then merge them.

    Each target layer ``W`` gets a trainable update ``(alpha / r) * B @ A`` (``A`` random,
    ``B`` zero, so training starts from the original function) through the peft
    library's LoRA layers, injected in place into ``adapter.model``; every other weight is
    frozen. The wrapped strategy (``strategy``, any registered loss-based strategy, with
    ``strategy_params``) then runs its usual shared-loop training, which updates only
    ``A`` and ``B``. Finally the adapters are merged (``W <- W + (alpha / r) * B @ A``)
    and removed, so ``adapter.model`` keeps its class, its parameters and its state-dict
    keys (saving and loading work as before), every weight is trainable again, and each
    target weight changed by a matrix of rank at most ``r``.

    The adapters' random ``A`` is drawn from the torch RNG seeded with the run seed (the
    global RNG state is restored afterwards). A wrapped strategy that needs the frozen
    original (``reference_model``: scrub, bad_teacher) gets, when the run provides none,
    the adapter-disabled base (:class:`BaseModelView`: the same module with its LoRA
    layers off, no copy of the weights). Checkpoints of the wrapped loop
    hold the adapter weights, so a killed run resumes inside the loop.
    Wrapped strategies that retrain from scratch or need a training record are refused.
    Requires peft (``pip install "erasus[lora]"``).

    On a model loaded quantized (``quantization: nf4``, say) this is QLoRA (Dettmers et
    al. 2023, https://arxiv.org/abs/2305.14314): the adapters train on the frozen 4-bit
    (or 8-bit) base, computing in the model's float dtype. The merge then differs from
    peft's, which re-quantises ``W + delta``: each quantized target layer becomes a float
    ``Linear`` holding the dequantised ``W`` plus the update, and the layers without
    adapters are dequantised too, so the unlearned model is a dense model (its
    ``quantization`` cleared) whose update no rounding has undone.
    """

    name = "lora"
    shardable = False  # it wraps the model in PEFT adapters itself
    modalities = ("any",)
    needs = frozenset()
    Params = LoRAParams
    paper = Paper(
        title="LoRA: Low-Rank Adaptation of Large Language Models",
        authors="Edward J. Hu, Yelong Shen, Phillip Wallis, Zeyuan Allen-Zhu, Yuanzhi Li, "
        "Shean Wang, Lu Wang, Weizhu Chen",
        year=2022,
        url="https://arxiv.org/abs/2106.09685",
        venue="ICLR",
    )
    effect = "raise_forget_loss"
    trains_adapters = True

    def inner(self) -> LossStrategy:
        """A fresh instance of the wrapped strategy with its parameters."""
        p: LoRAParams = self.params  # type: ignore[assignment]
        cls = loss_strategies()[p.strategy]
        return cls(cls.Params(**p.inner_overrides()))

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import warnings
        from dataclasses import replace

        import torch

        try:
            from peft import LoraConfig, LoraModel
        except ImportError:
            raise MissingDependencyError(_INSTALL_HINT) from None
        from peft.tuners.tuners_utils import BaseTunerLayer

        p: LoRAParams = self.params  # type: ignore[assignment]
        inner = self.inner()
        model = adapter.model
        targets = target_module_names(model, p.target_modules)
        conv1d = [n for n in targets if type(model.get_submodule(n)).__name__ == "Conv1D"]
        config = LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                            target_modules=targets, bias="none",
                            fan_in_fan_out=bool(conv1d) and len(conv1d) == len(targets))
        trainable = {name: param.requires_grad for name, param in model.named_parameters()}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(run.seed))
                lora = LoraModel(model, config, "default")
        if "reference_model" in type(inner).needs and run.reference is None:
            layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
            run = replace(run, reference=BaseModelView(adapter, layers))
        try:
            history = inner.unlearn(adapter, data, run)
        finally:
            with torch.no_grad():
                if adapter.quantization:
                    _merge_into_float(model)
                merged = lora.merge_and_unload()
            if merged is not model:  # peft unwraps in place; keep the adapter's own module
                raise RuntimeError("peft returned another module from merge_and_unload()")
            if adapter.quantization:
                _dequantize(adapter)  # a dense model now: every weight trainable
            else:
                for name, param in model.named_parameters():
                    param.requires_grad_(trainable.get(name, True))
        model.eval()
        return history


def _merge_into_float(model: torch.nn.Module) -> None:
    """Replace every LoRA layer on a quantized base layer by a float ``Linear`` holding the
    dequantised base weight plus the LoRA update (QLoRA's merge without re-quantising:
    rounding the merged weight back to 4 bits could round a small unlearning update away
    and restore the forgotten behaviour). Float bases are left to peft's merge."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    dtype = getattr(model, "dtype", torch.float32)
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer) or not name:
            continue
        base = module.get_base_layer()
        if base.weight.is_floating_point():
            continue
        weight = dequantize_module_weight(base).float()
        for active in module.active_adapters:
            weight = weight + module.get_delta_weight(active).float()
        dense = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None,
                                device=weight.device, dtype=dtype)
        dense.weight.copy_(weight)
        if base.bias is not None:
            dense.bias.copy_(base.bias)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, dense)


def _dequantize(adapter: ModelAdapter) -> None:
    """Turn the rest of a quantized model (layers without adapters) into float layers and
    drop its quantization, so the unlearned model computes, saves and reloads as the dense
    model it now is (its ``quantization`` parameter is cleared too)."""
    model = adapter.model
    quantizer = getattr(model, "hf_quantizer", None)  # transformers' quantization state
    if quantizer is not None:
        if any(not p.is_floating_point() for p in model.parameters()):
            model.dequantize()  # the remaining quantized layers, then the config
        else:  # its dequantize() fails when no quantized layer is left
            quantizer.remove_quantization_config(model)
    left = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if left:
        raise IncompatibleComponentError(
            f"strategy 'lora': {type(model).__name__} keeps quantized weights after the "
            f"merge ({', '.join(left[:3])}), and only transformers models can be "
            "dequantised here; load the model without quantization")
    if "quantization" in type(adapter.params).model_fields:
        adapter.params = adapter.params.model_copy(update={"quantization": None})
    for param in model.parameters():
        param.requires_grad_(True)
