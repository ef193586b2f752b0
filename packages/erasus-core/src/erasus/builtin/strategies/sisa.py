"""SISA (Bourtoule et al., 2021): sharded, isolated, sliced, aggregated training, and exact
unlearning by retraining only the affected shards from their last clean slice checkpoint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import History, LoopParams, LossStrategy, Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter, TinyProblem
    from erasus.partition import SisaPartition
    from erasus.record import TrainingRecord
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["STATE_DIR", "Sisa", "SisaParams", "SisaState", "train_shard"]

#: The folder of a training record that holds SISA's state.
STATE_DIR = "sisa"
_STATE_FILE = "sisa.json"
#: The parameters that define how shards are trained (they must match at unlearning).
_RECIPE = ("shards", "slices", "epochs", "lr", "optimizer", "momentum", "weight_decay",
           "batch_size")


class SisaParams(StrategyParams):
    """Parameters of SISA: the partition and the per-shard training recipe (the same at
    training and at unlearning)."""

    shards: int = Field(4, ge=1, description="Disjoint shards of the training set, one "
                        "ensemble member each (the model needs ensemble: shards).")
    slices: int = Field(2, ge=1, description="Slices per shard; a checkpoint is kept after "
                        "each, so unlearning restarts from the last slice before the first "
                        "forgotten example.")
    epochs: int = Field(5, ge=1, description="Epochs of each incremental step (over the "
                        "shard's slices seen so far).")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimizer.")
    momentum: float = Field(0.9, ge=0, description="Momentum (SGD only).")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    batch_size: int = Field(32, ge=1, description="Examples per batch.")


def _digest(item: Any) -> str:
    """A short content hash of one data set item (tensors, arrays, numbers, strings)."""
    h = hashlib.blake2b(digest_size=8)

    def feed(obj: Any) -> None:
        if hasattr(obj, "detach"):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        elif hasattr(obj, "tobytes"):
            h.update(f"A{getattr(obj, 'dtype', '')}{getattr(obj, 'shape', '')}".encode())
            h.update(obj.tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj):
                h.update(f"K{key}".encode())
                feed(obj[key])
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}".encode())
            for value in obj:
                feed(value)
        else:
            h.update(f"V{obj!r}".encode())

    feed(item)
    return h.hexdigest()


@dataclass
class SisaState:
    """SISA's training state: the partition, the recipe, the removed training indices, a
    digest of every training example, and each shard's weights after each slice.

    ``checkpoints[(k, r)]`` holds shard ``k``'s member weights after ``r`` slices (``r =
    0``: its initialisation): a file path (read when needed) or a state dict in memory.
    On disk (``directory/sisa.json`` and ``directory/shard-KKK/slice-RRR.safetensors``) it
    lives in the ``sisa/`` folder of the original's training record.
    """

    partition: SisaPartition
    recipe: dict[str, Any]
    digests: list[str]
    removed: list[int] = field(default_factory=list)
    checkpoints: dict[tuple[int, int], Any] = field(default_factory=dict)

    def weights(self, k: int, r: int) -> dict[str, torch.Tensor]:
        """Shard ``k``'s member weights after ``r`` slices."""
        from safetensors.torch import load_file

        value = self.checkpoints[(k, r)]
        return load_file(str(value)) if isinstance(value, (str, Path)) else value

    def save(self, directory: str | Path) -> None:
        """Write the state (every checkpoint as safetensors) to ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {}
        for (k, r) in sorted(self.checkpoints):
            name = f"shard-{k:03d}/slice-{r:03d}.safetensors"
            (directory / name).parent.mkdir(exist_ok=True)
            save_file({n: t.contiguous() for n, t in self.weights(k, r).items()},
                      str(directory / name))
            files[f"{k}/{r}"] = name
        meta = {"partition": self.partition.to_dict(), "recipe": self.recipe,
                "digests": self.digests, "removed": sorted(self.removed),
                "checkpoints": files}
        (directory / _STATE_FILE).write_text(json.dumps(meta) + "\n")

    def save_record(self, directory: str | Path) -> TrainingRecord:
        """Write the state as a training record (``directory/sisa/``), to hand to a later
        ``sisa`` unlearning run as ``RunContext.record``."""
        from erasus.record import Recorder

        recorder = Recorder(directory, ["checkpoints"], self.partition.n)
        self.save(Path(directory) / STATE_DIR)
        return recorder.finish()

    @classmethod
    def load(cls, directory: str | Path) -> SisaState:
        directory = Path(directory)
        from erasus.partition import SisaPartition

        meta = json.loads((directory / _STATE_FILE).read_text())
        checkpoints: dict[tuple[int, int], Any] = {}
        for key, name in meta["checkpoints"].items():
            k, r = (int(v) for v in key.split("/"))
            checkpoints[(k, r)] = directory / name
        return cls(partition=SisaPartition.from_dict(meta["partition"]),
                   recipe=dict(meta["recipe"]), digests=list(meta["digests"]),
                   removed=[int(i) for i in meta["removed"]], checkpoints=checkpoints)

    @classmethod
    def from_record(cls, record: TrainingRecord | None) -> SisaState:
        """The state in a training record, or an error saying how to get one."""
        directory = record.directory / STATE_DIR if record is not None else None
        if directory is None or not (directory / _STATE_FILE).is_file():
            have = ("no training record was given" if record is None else
                    f"the training record in {record.directory} holds no {STATE_DIR}/ state")
            raise IncompatibleComponentError(
                f"'sisa' unlearning needs the SISA training state of the original ({have}). "
                "Train the original with SISA: train: {name: sisa, ...} and model: {ensemble: "
                "<shards>} with strategy: {name: sisa} (the pipeline then records the "
                "state), or pass training_record=SisaState.save_record(dir) to the Python API")
        return cls.load(directory)


class _ShardFit(LossStrategy):
    """Fits one shard model: the mean training loss on the shard's data seen so far."""

    name = "sisa_shard"
    paper = None
    effect = "fit_retain"
    epoch_over = "retain"
    pair_with = None

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
        return {"loss": loss, "retain_loss": loss}


def _member_adapter(adapter: ModelAdapter, k: int) -> ModelAdapter:
    """An adapter of the same family over ensemble member ``k`` (shares its weights)."""
    member = adapter.model.members[k]  # type: ignore[index, union-attr]
    params = adapter.params.model_copy(update={"ensemble": 1})
    return type(adapter)(member, params)


def _seed(seed: int, k: int, r: int) -> int:
    return int(seed) * 1_000_003 + 1_000 * int(k) + int(r)


def _loop_params(recipe: dict[str, Any]) -> LoopParams:
    return LoopParams(epochs=recipe["epochs"], lr=recipe["lr"], optimizer=recipe["optimizer"],
                      momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
                      batch_size=recipe["batch_size"], scheduler="constant",
                      checkpoint_every=0)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().clone() for n, t in module.state_dict().items()}


def train_shard(member: ModelAdapter, examples: Any, slices: list[list[int]], *,
                recipe: dict[str, Any], seed: int, k: int, start: int = 0,
                collate_fn: Any = None,
                on_slice: Any = None) -> list[dict[str, float]]:
    """Train shard model ``member`` incrementally over ``slices`` (lists of positions in
    ``examples``) from slice ``start`` on: after slice ``r`` it has been trained for
    ``recipe["epochs"]`` epochs on slices ``0..r`` together, by the shared training loop
    with seed ``(seed, k, r)``. ``on_slice(r, member)`` is called after each slice.

    The member must hold its weights after ``start`` slices (its initialisation for 0).
    Returns the last logged step of each slice.
    """
    from erasus.data import subset
    from erasus.strategy import RunContext, UnlearnData
    from erasus.training import train_loop

    logs = []
    fit = _ShardFit(_loop_params(recipe))
    for r in range(start, len(slices)):
        seen = [i for part in slices[:r + 1] for i in part]
        if seen:
            history = train_loop(fit, member, UnlearnData(
                forget=None, retain=subset(examples, seen), collate_fn=collate_fn),
                RunContext(seed=_seed(seed, k, r + 1)))
            logs.append({**history.steps[-1], "shard": float(k), "slice": float(r + 1)})
        if on_slice is not None:
            on_slice(r + 1, member)
    member.model.eval()
    return logs


class Sisa(Strategy):
    """SISA training and exact unlearning by retraining only the affected shards
    (Bourtoule et al., 2021).

    Training (``train: {name: sisa}``: no forget set, the retain set is the training set):
    the training indices are partitioned by :func:`erasus.partition.sisa_partition` into
    ``shards`` disjoint shards of ``slices`` slices each (from the run seed). The model
    must be a classifier ensemble with one member per shard (``model: {ensemble:
    shards}``); member ``k`` is re-initialised (seeded by the run seed and ``k``) and
    trained incrementally: after slice ``r`` it has been trained ``epochs`` epochs on slices
    ``1..r`` of its shard by the shared training loop, and its weights are checkpointed.
    The ensemble predicts by aggregating the members (``aggregation``: mean of softmax or
    majority vote). The partition, recipe, checkpoints and a digest of every training
    example are written to the training record (``sisa/``), which the pipeline keeps when
    the unlearning strategy is ``sisa`` (it declares ``training_checkpoints``).

    Unlearning (a forget set with its training indices): only the shards holding forget
    examples change. Each affected shard is restored to its checkpoint before the first
    slice holding one and retrained slice by slice, with the same seeds and recipe, on its
    data minus every removed example, which is exactly what training that shard from
    scratch without them gives; the other members keep their weights bit for bit. The
    updated state (``strategy.state``; ``state.save_record(dir)`` writes it as a record)
    serves later requests. The data given must be the training set as forget + retain
    (retain in training-index order, previously removed examples left out); digests of
    the examples spot-check this.
    """

    name = "sisa"
    modalities = ("classification",)
    #: Runs only on the classifier adapter (its ensemble / linear arch).
    adapters = ("classifier",)
    needs = frozenset({"training_checkpoints"})
    Params = SisaParams
    paper = Paper(
        title="Machine Unlearning",
        authors="Lucas Bourtoule, Varun Chandrasekaran, Christopher A. Choquette-Choo, "
        "Hengrui Jia, Adelin Travers, Baiwu Zhang, David Lie, Nicolas Papernot",
        year=2021,
        url="https://doi.org/10.1109/SP40001.2021.00019",
        venue="IEEE Symposium on Security and Privacy",
    )
    effect = "raise_forget_loss"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The SISA state after the last ``unlearn`` (training or unlearning).
        self.state: SisaState | None = None

    # -- helpers ------------------------------------------------------------------------
    def _recipe(self) -> dict[str, Any]:
        p = self.params
        return {name: getattr(p, name) for name in _RECIPE}

    def _check_model(self, adapter: ModelAdapter) -> None:
        from erasus.ensemble import Ensemble

        shards = self.params.shards  # type: ignore[attr-defined]
        model = adapter.model
        if not isinstance(model, Ensemble) or len(model) != shards:
            got = (f"an ensemble of {len(model)}" if isinstance(model, Ensemble)
                   else f"a single {type(model).__name__}")
            raise IncompatibleComponentError(
                f"'sisa' with shards={shards} needs an ensemble model with one member per "
                f"shard, got {got}: set model: {{name: classifier, ensemble: {shards}}}")
        if not hasattr(adapter, "labels") or "ensemble" not in type(adapter.params).model_fields:
            raise IncompatibleComponentError(
                "'sisa' needs the classifier adapter (its members are classifiers)")

    # -- training -----------------------------------------------------------------------
    def _train(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch

        from erasus.partition import sisa_partition

        p: SisaParams = self.params  # type: ignore[assignment]
        train = data.retain
        if train is None or len(train) == 0:
            raise IncompatibleComponentError("'sisa' training needs a training set (retain)")
        recipe = self._recipe()
        try:
            partition = sisa_partition(len(train), p.shards, p.slices, run.seed)
        except ValueError as exc:
            raise IncompatibleComponentError(f"'sisa': {exc}") from None
        state = SisaState(partition=partition, recipe=recipe,
                          digests=[_digest(train[i]) for i in range(len(train))])
        history = History()
        for k in range(p.shards):
            member = _member_adapter(adapter, k)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(run.seed, k, 0))
                member.reset_parameters()
            state.checkpoints[(k, 0)] = _snapshot(member.model)

            def keep(r: int, m: ModelAdapter, k: int = k) -> None:
                state.checkpoints[(k, r)] = _snapshot(m.model)

            history.steps += train_shard(
                member, train, [list(s) for s in partition.assignment[k]], recipe=recipe,
                seed=run.seed, k=k, collate_fn=data.collate_fn, on_slice=keep)
        adapter.model.eval()
        if run.recorder is not None:
            state.save(Path(run.recorder.directory) / STATE_DIR)
        self.state = state
        return history

    # -- unlearning ---------------------------------------------------------------------
    def _examples(self, state: SisaState, data: UnlearnData) -> tuple[Any, list[int]]:
        """The training set (indexed by training index; removed ones absent) and the
        forget training indices, checked against the digests."""
        from torch.utils.data import ConcatDataset

        n = state.partition.n
        forget_idx = data.forget_train_indices
        if forget_idx is None:
            raise IncompatibleComponentError(
                "'sisa' needs the training indices of the forget examples "
                "(UnlearnData.forget_train_indices); the pipeline and the conformance suites "
                "give them")
        forget_idx = [int(i) for i in forget_idx]
        gone = set(state.removed)
        again = sorted(gone & set(forget_idx))
        if again:
            raise IncompatibleComponentError(f"'sisa': training indices {again[:5]} were "
                                             "already removed")
        bad = [i for i in forget_idx if not 0 <= i < n]
        if bad:
            raise IncompatibleComponentError(f"'sisa': forget training indices {bad[:5]} are "
                                             f"outside the training set of {n}")
        leaving = gone | set(forget_idx)
        retain_idx = [i for i in range(n) if i not in leaving]
        retain_len = len(data.retain) if data.retain is not None else 0
        if retain_len != len(retain_idx):
            raise IncompatibleComponentError(
                f"'sisa': the retain set holds {retain_len} examples, but the SISA-trained "
                f"training set of {n} leaves {len(retain_idx)} after the forget set and the "
                f"{len(gone)} examples removed earlier; pass the rest of the training set, in "
                "training-index order")
        where: dict[int, Any] = {}
        for pos, i in enumerate(forget_idx):
            where[i] = ("f", pos)
        for pos, i in enumerate(retain_idx):
            where[i] = ("r", pos)
        # spot-check the alignment (hashing every example would cost a pass over the data)
        for i in forget_idx[:50] + retain_idx[:50] + retain_idx[-50:]:
            src, pos = where[i]
            item = (data.forget if src == "f" else data.retain)[pos]
            if _digest(item) != state.digests[i]:
                raise IncompatibleComponentError(
                    f"'sisa': the example given for training index {i} is not the one the "
                    "model was trained on; give forget + retain as the training set split "
                    "(retain in training-index order)")
        # one data set addressed by training index: forget first, then retain
        order = {i: n_pos for n_pos, i in enumerate(forget_idx + retain_idx)}
        combined = ConcatDataset([data.forget, data.retain])

        class _ByIndex:
            def __len__(self) -> int:
                return n

            def __getitem__(self, i: int) -> Any:
                return combined[order[int(i)]]

        return _ByIndex(), forget_idx

    def _unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch

        state = self.state if self.state is not None and run.record is None else \
            SisaState.from_record(run.record)
        if state.recipe != self._recipe():
            diff = {k: (state.recipe.get(k), v) for k, v in self._recipe().items()
                    if state.recipe.get(k) != v}
            raise IncompatibleComponentError(
                f"'sisa' must unlearn with the recipe the original was trained with; "
                f"(trained, given) differ for {diff}")
        examples, forget_idx = self._examples(state, data)
        part = state.partition
        R = part.slices
        for k in range(part.shards):
            current = _member_adapter(adapter, k).model.state_dict()
            stored = state.weights(k, R)
            if any(not torch.equal(current[n].cpu(), t) for n, t in stored.items()):
                raise IncompatibleComponentError(
                    f"'sisa': ensemble member {k} does not hold the weights SISA trained "
                    "(its last slice checkpoint); the model was changed after SISA training")
        removed = set(state.removed) | set(forget_idx)
        history = History()
        for k, first in part.affected(forget_idx).items():
            member = _member_adapter(adapter, k)
            member.model.load_state_dict(state.weights(k, first))
            slices = [[i for i in s if i not in removed] for s in part.assignment[k]]

            def keep(r: int, m: ModelAdapter, k: int = k) -> None:
                state.checkpoints[(k, r)] = _snapshot(m.model)

            logs = train_shard(member, examples, slices, recipe=state.recipe, seed=part.seed,
                               k=k, start=first, collate_fn=data.collate_fn, on_slice=keep)
            for log in logs:
                history.steps.append(log)
                if run.on_step is not None:
                    run.on_step(len(history.steps), log)
        state.removed = sorted(removed)
        adapter.model.eval()
        self.state = state
        return history

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        self._check_model(adapter)
        if data.forget is None:
            return self._train(adapter, data, run)
        return self._unlearn(adapter, data, run)

    @classmethod
    def conformance_problem(cls, adapter_cls: type, seed: int = 0) -> TinyProblem | None:
        """The classifier's tiny problem with a SISA-trained ensemble and its record (what
        the conformance suites run ``sisa`` on)."""
        from erasus.builtin.models.classifier import ClassifierAdapter

        if not issubclass(adapter_cls, ClassifierAdapter):
            return None
        return _tiny_sisa_problem(adapter_cls, seed)


_TINY: dict[tuple[type, int], Any] = {}
_TINY_RECIPE = {"shards": 3, "slices": 2, "epochs": 15, "lr": 1e-2, "batch_size": 32}


def _tiny_sisa_problem(adapter_cls: type, seed: int) -> TinyProblem:
    import tempfile

    import torch
    from torch.utils.data import ConcatDataset

    from erasus.adapters import TinyProblem
    from erasus.record import Recorder
    from erasus.strategy import RunContext, UnlearnData
    from erasus.testing.conformance import tiny_problem

    key = (adapter_cls, int(seed))
    if key not in _TINY:
        base = tiny_problem(adapter_cls, seed)
        torch.manual_seed(seed)
        adapter = adapter_cls.build(base.adapter.params.model_copy(
            update={"ensemble": _TINY_RECIPE["shards"]}), base.info)
        train = ConcatDataset([base.forget, base.retain])
        recorder = Recorder(tempfile.mkdtemp(prefix="erasus-sisa-"), ["checkpoints"],
                            len(train))
        Sisa(**_TINY_RECIPE).unlearn(adapter, UnlearnData(forget=None, retain=train,
                                                          info=base.info),
                                     RunContext(seed=seed, recorder=recorder))
        problem = TinyProblem(adapter, base.forget, base.retain, base.test, base.collate_fn,
                              base.info, base.extra, {"sisa": dict(_TINY_RECIPE)})
        problem.record = recorder.finish()
        problem.forget_train_indices = list(range(len(base.forget)))
        _TINY[key] = problem
    cached = _TINY[key]
    out = TinyProblem(cached.adapter.clone(), cached.forget, cached.retain, cached.test,
                      cached.collate_fn, cached.info, cached.extra, cached.strategy_params)
    out.record = cached.record
    out.forget_train_indices = cached.forget_train_indices
    return out
