"""Causal tracing: locate the MLPs that carry the forget facts, then unlearn there only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

from erasus_llm.strategies._common import qa_batch, qa_records, require_causal_lm

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

    from erasus_llm.causal_lm import CausalLMAdapter

__all__ = ["CausalTracing", "CausalTracingParams", "TraceResult", "trace_layers"]


class CausalTracingParams(LoopParams):
    """Parameters of causal tracing + localized unlearning (defaults suit the tiny LM)."""

    epochs: int = Field(20, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per batch of each set.")
    top_k: int = Field(1, ge=1, description="How many located layers (highest mean indirect "
                       "effect) have their MLP updated.")
    trace: Literal["mlp", "layer"] = Field(
        "mlp", description="What is restored in the corrupted run: 'mlp' a layer's MLP "
        "output, 'layer' the decoder layer's output hidden state (both traced by ROME).")
    samples: int = Field(10, ge=1, description="Noise draws per traced example (ROME: 10).")
    noise_scale: float = Field(
        3.0, ge=0, description="Noise std as a multiple of the std of the clean embeddings "
        "of the corrupted tokens (ROME: 3).")
    subject_key: str | None = Field(
        None, description="Item field naming the subject, whose tokens in the question are "
        "corrupted (ROME's setting); unset: every token of the question is corrupted.")
    trace_examples: int | None = Field(
        None, ge=1, description="Trace only the first N forget examples (tracing costs "
        "layers x samples forward passes per example); unset: all.")
    forget_loss: Literal["npo", "ga"] = Field(
        "npo", description="Forget term: 'npo' (NPO on each answer's log-likelihood against "
        "the original's) or 'ga' (gradient ascent on the mean answer NLL).")
    beta: float = Field(1.0, gt=0, description="NPO's inverse temperature (forget_loss: npo).")
    retain_weight: float = Field(
        3.0, ge=0, description="Weight of the retain set's mean answer NLL (gradient "
        "difference / NPO+RT); 0: forget term only, no retain set needed.")


@dataclass
class TraceResult:
    """What causal tracing found, averaged over the traced forget examples."""

    #: Mean indirect effect of restoring each layer (index = layer).
    indirect_effects: list[float]
    #: Mean total effect ``p_clean - p_corrupt``.
    total_effect: float
    #: Mean probability of the answer's first token, clean and corrupted.
    p_clean: float
    p_corrupt: float
    #: The std of the added Gaussian noise.
    noise_std: float
    #: The located layers, highest effect first.
    layers: list[int] = field(default_factory=list)
    #: Per traced example: the indirect effect of each layer.
    per_example: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"indirect_effects": self.indirect_effects, "total_effect": self.total_effect,
                "p_clean": self.p_clean, "p_corrupt": self.p_corrupt,
                "noise_std": self.noise_std, "layers": self.layers}


def _modules(lm: CausalLMAdapter, trace: str, name: str) -> list[Any]:
    """The module traced in each decoder layer: its MLP, or the layer itself."""
    from erasus_llm.causal_lm import _MLP

    layers = lm._decoder_layers()
    if not layers:
        raise IncompatibleComponentError(
            f"strategy '{name}': no decoder layers found in {type(lm.model).__name__} (no "
            "ModuleList of num_hidden_layers layers)")
    if trace == "layer":
        return layers
    out = []
    for i, layer in enumerate(layers):
        mlps = [c for n, c in layer.named_children() if _MLP.search(n)]
        if not mlps:
            raise IncompatibleComponentError(
                f"strategy '{name}': decoder layer {i} ({type(layer).__name__}) has no child "
                "named like mlp/ffn/feed_forward; use trace: layer")
        out.append(mlps[0])
    return out


def _corrupted_positions(lm: CausalLMAdapter, question: str, subject: str | None,
                         prompt_ids: list[int], name: str) -> list[int]:
    """Prompt positions of the question's tokens (or the subject's, if given)."""
    template = lm.params.prompt_template  # type: ignore[attr-defined]
    prompt = template.format(question=question)
    start = template.index("{question}")
    lo, hi = start, start + len(question)
    if subject is not None:
        at = question.find(subject)
        if not subject or at < 0:
            raise IncompatibleComponentError(
                f"strategy '{name}': subject {subject!r} does not occur in question "
                f"{question!r}; give each item's subject as it is written in its question")
        lo, hi = start + at, start + at + len(subject)
    tok = lm.tokenizer
    if not getattr(tok, "is_fast", False):
        raise IncompatibleComponentError(
            f"strategy '{name}' finds the question's tokens by character offsets, which "
            f"needs a fast tokenizer; {type(tok).__name__} is not one")
    enc = tok(prompt, add_special_tokens=lm.params.add_special_tokens,  # type: ignore[attr-defined]
              return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(prompt_ids):
        raise IncompatibleComponentError(
            f"strategy '{name}': the prompt of {question!r} was truncated to fit max_length, "
            "so its question tokens cannot be located; shorten it or raise max_length")
    positions = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > lo and a < hi]
    if not positions:
        raise IncompatibleComponentError(
            f"strategy '{name}': no token of the prompt covers the question {question!r}")
    return positions


def _capture(store: dict[int, Any], k: int) -> Any:
    """A forward hook storing the module's output hidden states (first example) at ``k``."""
    def hook(module: Any, args: Any, output: Any) -> None:
        h = output[0] if isinstance(output, (tuple, list)) else output
        store[k] = h[0].detach().clone()
    return hook


def _restore(clean: Any, j: int) -> Any:
    """A forward hook setting the module's output at position ``j`` to ``clean``."""
    def hook(module: Any, args: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, (tuple, list)) else output
        h = h.clone()
        h[:, j] = clean.to(h.dtype)
        if isinstance(output, tuple):
            return (h, *output[1:])
        if isinstance(output, list):
            return [h, *output[1:]]
        return h
    return hook


def _prob(logits: Any, target: int) -> float:
    """Mean probability of token ``target`` after the last position, over the batch."""
    import torch

    return float(torch.softmax(logits[:, -1].float(), -1)[:, target].mean())


def trace_layers(lm: CausalLMAdapter, records: list[dict[str, str]], *, trace: str = "mlp",
                 samples: int = 10, noise_scale: float = 3.0, seed: int = 0,
                 subjects: list[str] | None = None, name: str = "causal_tracing"
                 ) -> TraceResult:
    """ROME's causal tracing of the first answer token of each record, per decoder layer.

    For each record: the clean run gives ``p_clean``, the probability of the answer's first
    token after the prompt; the corrupted run adds Gaussian noise (std ``noise_scale``
    times the std of the clean embeddings of the corrupted tokens over all records) to the
    token embeddings of the question (or of ``subjects[i]``), ``samples`` draws, giving
    ``p_corrupt`` (mean over draws); the restored run for layer ``l`` and corrupted token
    ``i`` is the corrupted run with the output of layer ``l``'s MLP (``trace: mlp``) or of
    layer ``l`` (``trace: layer``) at token ``i`` set back to its clean value. The
    indirect effect ``IE(l, i) = p_restored(l, i) - p_corrupt`` is averaged over the
    draws; a layer's effect on a record is its largest over the corrupted tokens, and the
    result averages that over the records. Runs in eval mode without gradients.
    """
    import torch

    from erasus_llm.causal_lm import IGNORE_INDEX

    model = lm.model
    modules = _modules(lm, trace, name)
    embed = model.get_input_embeddings()
    prepared = []
    for i in range(len(records)):
        batch = qa_batch(lm, records, [i])
        labels = batch["labels"][0]
        prompt_len = int((labels == IGNORE_INDEX).long().cumprod(0).sum())
        ids = batch["input_ids"][0, :prompt_len]
        target = int(batch["input_ids"][0, prompt_len])
        pos = _corrupted_positions(lm, records[i]["question"],
                                   subjects[i] if subjects is not None else None,
                                   ids.tolist(), name)
        prepared.append((ids, target, pos))

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(int(seed))
    per_example: list[list[float]] = []
    clean_p, corrupt_p = [], []
    try:
        with torch.no_grad():
            picked = [embed(ids[None])[0, pos].float() for ids, _, pos in prepared]
            std = float(torch.cat(picked).std()) if sum(p.numel() for p in picked) > 1 else 0.0
            noise_std = noise_scale * std
            for ids, target, pos in prepared:
                clean_embeds = embed(ids[None])
                mask = torch.ones_like(ids)[None]
                captured: dict[int, torch.Tensor] = {}
                handles = [m.register_forward_hook(_capture(captured, k))
                           for k, m in enumerate(modules)]
                try:
                    logits = model(inputs_embeds=clean_embeds, attention_mask=mask,
                                   use_cache=False).logits
                finally:
                    for h in handles:
                        h.remove()
                p_clean = float(torch.softmax(logits[0, -1].float(), -1)[target])
                noise = torch.randn(samples, len(pos), clean_embeds.shape[-1], generator=g)
                corrupt = clean_embeds.repeat(samples, 1, 1)
                corrupt[:, pos] += (noise * noise_std).to(corrupt.device, corrupt.dtype)
                masks = mask.repeat(samples, 1)
                p_corrupt = _prob(model(inputs_embeds=corrupt, attention_mask=masks,
                                        use_cache=False).logits, target)
                effects = []
                for k, module in enumerate(modules):
                    best = None
                    for j in pos:
                        handle = module.register_forward_hook(_restore(captured[k][j], j))
                        try:
                            effect = _prob(model(inputs_embeds=corrupt, attention_mask=masks,
                                                 use_cache=False).logits, target) - p_corrupt
                        finally:
                            handle.remove()
                        best = effect if best is None else max(best, effect)
                    effects.append(float(best))
                per_example.append(effects)
                clean_p.append(p_clean)
                corrupt_p.append(p_corrupt)
    finally:
        model.train(was_training)
    n = max(1, len(per_example))
    mean = [sum(e[k] for e in per_example) / n for k in range(len(modules))]
    return TraceResult(indirect_effects=mean,
                       total_effect=(sum(clean_p) - sum(corrupt_p)) / n,
                       p_clean=sum(clean_p) / n, p_corrupt=sum(corrupt_p) / n,
                       noise_std=noise_std, per_example=per_example)


class CausalTracing(LossStrategy):
    """Causal tracing (Meng et al. 2022, ROME) to locate the forget facts' MLPs, then
    unlearning of those MLPs only.

    Localisation, once in ``prepare`` on the original weights (:func:`trace_layers`): for
    each traced forget example, the question's token embeddings (or, with
    ``subject_key``, the subject's, as in ROME) get Gaussian noise of std ``noise_scale``
    times the empirical std of those embeddings (ROME: 3x, over subject embeddings);
    with ``samples`` draws, the probability of the answer's first token falls from
    ``p_clean`` to ``p_corrupt``. For each decoder layer ``l`` and corrupted token ``i``,
    the corrupted run is repeated with the output of ``l``'s MLP (``trace: mlp``;
    ``layer``: its output hidden state) at ``i`` restored to its clean value; the indirect
    effect ``IE(l, i) = p_restored(l, i) - p_corrupt`` is averaged over the draws, a
    layer's effect on an example is its largest ``IE(l, i)`` over the corrupted tokens,
    and the layer's score is the mean of that over the traced examples. The ``top_k``
    layers of highest score are located (``trace_result``; every step's log
    carries ``located_<r>`` / ``effect_<r>`` for the r-th located layer and
    ``total_effect``).

    Unlearning: only the MLP weights of the located layers train (every other weight has
    ``requires_grad=False`` during the run and gets its flag back afterwards). Each step
    minimises, over a forget batch, ``forget_loss: npo``:
    ``(2 / beta) * mean log(1 + (p_theta(y|x) / p_ref(y|x))^beta)`` (``log p(y|x)`` the
    answer's summed token log-likelihood, ``p_ref`` the original model's, stored per
    forget example in ``prepare``: no reference model is kept), or ``forget_loss: ga``:
    minus the mean answer NLL; plus ``retain_weight`` times the retain batch's mean answer
    NLL (gradient difference / NPO+RT).

    Departures from ROME: ROME traces one prompt at a time to find where a fact is stored
    and then edits one MLP by a rank-one update; here the indirect effects are averaged
    over the forget set to pick layers for gradient-based unlearning. Without a subject
    annotation the whole question is corrupted (the data sets carry none). Only the
    corrupted tokens are restored, and a layer is scored by its strongest one (ROME traces
    every position and reads the effect at the last subject token, which is not known
    without a subject; the prompt's tokens after the question are not restored, since
    restoring the last layer's hidden state at the last token restores the output
    trivially). MLP traces restore one layer (ROME: a window of 10 layers, which would
    cover the whole of a small model).

    Needs the ``causal_lm`` adapter, a fast tokenizer and ``{"question", "answer"}`` items.
    """

    name = "causal_tracing"
    shardable = False  # it patches activations with hooks, edits chosen weights
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset()
    Params = CausalTracingParams
    paper = Paper(
        title="Locating and Editing Factual Associations in GPT",
        authors="Kevin Meng, David Bau, Alex Andonian, Yonatan Belinkov",
        year=2022,
        url="https://arxiv.org/abs/2202.05262",
        venue="NeurIPS",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: CausalTracingParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None
        #: The localisation (set by prepare()).
        self.trace_result: TraceResult | None = None
        #: Names of the parameters that train (set by prepare()).
        self.trainable: list[str] = []
        #: ``log p_ref(y|x)`` of every forget example (set by prepare()).
        self.ref_log_prob: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        from erasus_llm.strategies._common import sequence_log_probs

        p: CausalTracingParams = self.params  # type: ignore[assignment]
        lm = require_causal_lm(adapter, self.name, "traces and restores the hidden states "
                               "of the model's decoder layers")
        if self.pair_with and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or set retain_weight: 0")
        records = qa_records(data.forget, self.name, "corrupts each question and measures "
                             "the answer's probability")
        n_layers = len(lm._decoder_layers())
        if p.top_k > n_layers:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': top_k {p.top_k} exceeds the model's {n_layers} "
                f"decoder layers; choose 1..{n_layers}")
        traced = records[:p.trace_examples] if p.trace_examples else records
        subjects = None
        if p.subject_key is not None:
            subjects = []
            for i in range(len(traced)):
                item = data.forget[i]
                value = item.get(p.subject_key) if isinstance(item, dict) else None
                if not isinstance(value, str):
                    raise IncompatibleComponentError(
                        f"strategy '{self.name}': subject_key '{p.subject_key}' names no "
                        f"string field of forget item {i}; add it to every item, or unset "
                        "subject_key to corrupt the whole question")
                subjects.append(value)
        result = trace_layers(lm, traced, trace=p.trace, samples=p.samples,
                              noise_scale=p.noise_scale, seed=run.seed, subjects=subjects,
                              name=self.name)
        order = sorted(range(n_layers), key=lambda k: (-result.indirect_effects[k], k))
        result.layers = order[:p.top_k]
        self.trace_result = result
        mlps = _modules(lm, "mlp", self.name)
        by_tensor = {id(t): n for n, t in lm.model.named_parameters()}
        self.trainable = [by_tensor[id(t)] for k in result.layers
                          for t in mlps[k].parameters() if id(t) in by_tensor]
        if p.forget_loss == "npo":
            self.ref_log_prob = sequence_log_probs(lm, records, p.batch_size)

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.training import train_loop

        self.prepare(adapter, data, run)
        keep = set(self.trainable)
        flags = {n: t.requires_grad for n, t in adapter.model.named_parameters()}
        try:
            for n, t in adapter.model.named_parameters():
                t.requires_grad_(n in keep)
            return train_loop(self, adapter, data, run)
        finally:
            for n, t in adapter.model.named_parameters():
                t.requires_grad_(flags[n])

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        import torch
        from erasus.builtin.strategies.npo import npo_loss

        if self.trace_result is None:
            raise RuntimeError(f"{self.name}: prepare() must run before loss()")
        p: CausalTracingParams = self.params  # type: ignore[assignment]
        assert forget is not None
        nll, mask = adapter.token_losses(forget)
        m = mask.to(nll.dtype)
        mean_nll = ((nll * m).sum(1) / m.sum(1)).mean()
        if p.forget_loss == "npo":
            if self.ref_log_prob is None or "index" not in forget:
                raise IncompatibleComponentError(
                    f"strategy '{self.name}' (forget_loss: npo) looks the original "
                    "likelihood up by forget-set position: a forget batch needs 'index' (the "
                    "training loop adds it)")
            ref = self.ref_log_prob.to(nll.device)[forget["index"]]
            forget_term = npo_loss(-(nll * m).sum(1).float(), ref, p.beta)
        else:
            forget_term = -mean_nll
        total = forget_term
        parts: dict[str, torch.Tensor] = {f"{p.forget_loss}_loss": forget_term,
                                          "forget_loss": mean_nll.detach()}
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        result = self.trace_result
        parts["total_effect"] = torch.tensor(result.total_effect)
        for r, k in enumerate(result.layers):
            parts[f"located_{r}"] = torch.tensor(float(k))
            parts[f"effect_{r}"] = torch.tensor(result.indirect_effects[k])
        return {"loss": total, **parts}
