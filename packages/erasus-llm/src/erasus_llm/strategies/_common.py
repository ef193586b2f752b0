"""What the LLM strategies share: adapter checks, QA records, sequence log-probs, layer hooks."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from erasus.adapters import ModelAdapter

    from erasus_llm.causal_lm import CausalLMAdapter

__all__ = [
    "IDK_FILE",
    "answer_positions",
    "capture_layer",
    "load_refusals",
    "qa_batch",
    "qa_records",
    "require_causal_lm",
    "sequence_log_probs",
]

#: The refusal answers shipped with the package (one per line), the "I don't know"
#: alternates of ``dpo`` / ``idk_dpo``.
IDK_FILE = Path(__file__).resolve().parent.parent / "data" / "idk_answers.txt"


def require_causal_lm(adapter: ModelAdapter, name: str, why: str) -> CausalLMAdapter:
    """``adapter`` if it is the ``causal_lm`` adapter, else an error saying what works."""
    from erasus_llm.causal_lm import CausalLMAdapter

    if not isinstance(adapter, CausalLMAdapter):
        raise IncompatibleComponentError(
            f"strategy '{name}' {why}, so it runs on the 'causal_lm' model adapter only; got "
            f"'{getattr(adapter, 'name', type(adapter).__name__)}'. Use model: causal_lm, or a "
            "generic strategy (gradient_ascent, npo) on this model")
    return adapter


def qa_records(dataset: Any, name: str, what: str) -> list[dict[str, str]]:
    """Every item of ``dataset`` as ``{"question", "answer"}`` strings, in order."""
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                and isinstance(item.get("answer"), str)):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise IncompatibleComponentError(
                f"strategy '{name}' {what}, so it needs {{'question': str, 'answer': str}} "
                f"items (the synthetic_qa / qa_json data sets); item {i} is {got}")
        out.append({"question": item["question"], "answer": item["answer"]})
    return out


def load_refusals(path: str | Path | None = None) -> list[str]:
    """The non-empty lines of ``path`` (default: the shipped :data:`IDK_FILE`)."""
    file = Path(path) if path else IDK_FILE
    if not file.is_file():
        raise IncompatibleComponentError(
            f"refusal answers file {file} does not exist; give a text file with one answer "
            "per line (idk_path), or leave idk_path unset for the shipped one")
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    answers = [line for line in lines if line]
    if not answers:
        raise IncompatibleComponentError(f"refusal answers file {file} holds no answer")
    return answers


def qa_batch(adapter: CausalLMAdapter, records: list[dict[str, str]], indices: list[int]
             ) -> dict[str, Any]:
    """The tokenised batch of ``records[i]`` for ``i`` in ``indices``."""
    return adapter.prepare_batch({"question": [records[i]["question"] for i in indices],
                                  "answer": [records[i]["answer"] for i in indices]})


def sequence_log_probs(adapter: CausalLMAdapter, records: list[dict[str, str]],
                       batch_size: int) -> torch.Tensor:
    """``log p(answer | question)`` (sum over answer tokens, EOS included) of every record
    under the adapter's current weights, in eval mode without gradients; float32 on CPU."""
    import torch

    model = adapter.model
    was_training = model.training
    model.eval()
    out = torch.zeros(len(records), dtype=torch.float32)
    try:
        with torch.no_grad():
            for start in range(0, len(records), batch_size):
                idx = list(range(start, min(start + batch_size, len(records))))
                losses, mask = adapter.token_losses(qa_batch(adapter, records, idx))
                out[idx] = -(losses * mask.to(losses.dtype)).sum(dim=1).float().cpu()
    finally:
        model.train(was_training)
    return out


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Mask ``[batch, time]`` of the positions whose logits predict an answer token.

    The logits at ``t`` predict ``labels[:, t + 1]`` (the causal shift of
    :func:`erasus_llm.causal_lm.answer_token_nll`).
    """
    import torch.nn.functional as F

    from erasus_llm.causal_lm import IGNORE_INDEX

    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX) != IGNORE_INDEX


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass once the wanted layer has run."""


@contextmanager
def capture_layer(layer: torch.nn.Module, out: list[Any], *, stop: bool
                  ) -> Iterator[None]:
    """Append ``layer``'s output hidden state to ``out`` on each forward through it.

    With ``stop`` the forward pass ends right after ``layer`` (the later layers and the
    LM head are not run: their output is not needed); call the model inside the block.
    """
    def hook(module: Any, args: Any, output: Any) -> None:
        out.append(output[0] if isinstance(output, (tuple, list)) else output)
        if stop:
            raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        yield
    except _Stop:
        pass
    finally:
        handle.remove()
