"""WMDP (Li et al. 2024): hazardous-knowledge unlearning, corpora plus multiple-choice sets.

Reads the published files: the forget and retain corpora of ``cais/wmdp-corpora``
(``bio-forget-corpus`` / ``cyber-forget-corpus`` and ``bio-retain-corpus`` /
``cyber-retain-corpus``, records with a ``text`` field; the WMDP repository's
``bio_remove_dataset.jsonl`` is accepted for the bio forget corpus) and the
multiple-choice set of ``cais/wmdp`` (``wmdp-bio`` / ``wmdp-cyber``: ``question``,
``choices`` (four strings), ``answer`` (the index of the right choice)), as JSON lines,
JSON or parquet (the hub's ``wmdp-bio/test-00000-of-00001.parquet``). By default it reads
the bundled WMDP-style set (:mod:`erasus_llm._author_bench`): made-up "lab protocols" for
fictitious organisms as the forget corpus with 40 questions on them (the hazard-style
set, harmless and clearly synthetic), and a made-up garden almanac as the retain corpus
with 40 general questions, so multiple-choice evaluation runs offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from erasus.components import Paper
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, subset
from pydantic import Field

from erasus_llm._published import (
    Records,
    hub_patterns,
    hub_snapshot,
    keep_records,
    read,
    require,
)
from erasus_llm.datasets import DatasetFormatError

__all__ = ["BUNDLED_WMDP", "WMDP_PAPER", "Wmdp", "WmdpParams", "load_mc"]

#: The bundled WMDP-style set (fictitious protocols, garden almanac) in WMDP's layout.
BUNDLED_WMDP = Path(__file__).with_name("data") / "wmdp_bundled"

WMDP_PAPER = Paper(
    title="The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning",
    authors="Nathaniel Li, Alexander Pan, Anjali Gopal, Summer Yue, Daniel Berrios, et al.",
    year=2024,
    url="https://arxiv.org/abs/2403.03218",
    venue="ICML",
)

_MC = {"question": str, "choices": list, "answer": int}


class WmdpParams(DatasetParams):
    """Parameters of the WMDP loader."""

    path: str | None = Field(
        None, description="Local directory holding the published files (bio-forget-corpus,"
        " bio-retain-corpus, wmdp-bio, ... as JSON lines, JSON or parquet); unset: the "
        "bundled WMDP-style set (files not taken from the hub are read here).")
    subset: Literal["bio", "cyber"] = Field(
        "bio", description="Which WMDP domain: its forget / retain corpora and its "
        "multiple-choice set wmdp-<subset>.")
    hub: str | None = Field(
        None, description="Hub id of the multiple-choice sets (cais/wmdp), read when given "
        "and reachable (or cached under HF_HUB_OFFLINE); an error otherwise.")
    corpora_hub: str | None = Field(
        None, description="Hub id of the corpora (cais/wmdp-corpora), read when given and "
        "reachable; an error otherwise.")
    general: str | None = Field(
        None, description="Name of a general-knowledge multiple-choice set in the same "
        "format under path (e.g. 'mmlu' for mmlu/test-*.parquet), loaded as the extra "
        "split mc_general; unset: the bundled general set when reading the bundled copy.")


def load_mc(paths: list[Path], label: str) -> list[dict[str, Any]]:
    """Multiple-choice records ``{question, choices, answer}`` with a valid answer index."""
    records = read(paths, label, _MC)
    for i, r in enumerate(records):
        if not 0 <= r["answer"] < len(r["choices"]):
            raise DatasetFormatError(f"{label}: record {i} of {paths[0]} has answer "
                                     f"{r['answer']} but {len(r['choices'])} choices")
    return records


class Wmdp(DatasetProvider):
    """WMDP's splits: forget the hazard corpus, keep the retain corpus.

    ``train`` is the retain corpus followed by the forget corpus (items ``{"text": str}``;
    ``forget_indices`` the forget positions); ``test`` and the extra split ``mc_hazard``
    are the multiple-choice set ``wmdp-<subset>`` (items ``{"question", "choices",
    "answer"}`` with ``answer`` the index of the right choice; the goal after unlearning
    is chance accuracy) and ``mc_general`` the general set (goal: unchanged accuracy)
    when there is one. The ``causal_lm`` adapter trains on the ``{"text"}`` items.
    ``info.extra["files"]`` lists the files read.
    """

    name = "wmdp"
    modalities = ("text",)
    Params = WmdpParams
    paper = WMDP_PAPER

    def load(self, *, seed: int) -> Splits:
        p: WmdpParams = self.params  # type: ignore[assignment]
        label = "dataset 'wmdp'"
        local = Path(p.path).expanduser() if p.path else BUNDLED_WMDP
        bundled = not p.path
        if not local.is_dir() and not (p.hub and p.corpora_hub):
            raise DatasetFormatError(f"{label}: path {local} is not a directory; give the "
                                     "directory holding WMDP's files")
        forget_names: tuple[str, ...] = (f"{p.subset}-forget-corpus",)
        if p.subset == "bio":
            forget_names += ("bio_remove_dataset", "bio-remove-dataset")
        retain_names = (f"{p.subset}-retain-corpus",)
        mc_root = (hub_snapshot(p.hub, label, hub_patterns([f"wmdp-{p.subset}"])) if p.hub
                   else local)
        corpora_root = (hub_snapshot(p.corpora_hub, label,
                                     hub_patterns([*forget_names, *retain_names]))
                        if p.corpora_hub else local)
        files: dict[str, list[str]] = {}

        def get(split: str, root: Path, names: tuple[str, ...], what: str) -> list[Path]:
            paths = require(root, names, label, what)
            files[split] = [str(q.relative_to(root)) for q in paths]
            return paths

        forget = read(get("forget", corpora_root, forget_names, "forget corpus"),
                      f"{label} (forget)", {"text": str})
        retain = read(get("retain", corpora_root, retain_names, "retain corpus"),
                      f"{label} (retain)", {"text": str})
        hazard = Records(load_mc(get("mc_hazard", mc_root, (f"wmdp-{p.subset}",),
                                     "multiple-choice"), f"{label} (mc_hazard)"))
        extra: dict[str, Any] = {"mc_hazard": hazard}
        general = p.general or ("general-mc" if bundled else None)
        if general:
            extra["mc_general"] = Records(load_mc(
                get("mc_general", local, (general,), "general multiple-choice"),
                f"{label} (mc_general)"))
        train = Records(retain + forget)
        forget_indices = list(range(len(retain), len(retain) + len(forget)))
        source = {"path": "bundled" if bundled else str(local), "hub": p.hub,
                  "corpora_hub": p.corpora_hub}
        info = DataInfo(modality="text", extra={
            "task": "text", "benchmark": "wmdp", "subset": p.subset, "source": source,
            "files": files})
        return Splits(train=train, forget=subset(train, forget_indices),
                      retain=subset(train, range(len(retain))), test=hazard, info=info,
                      forget_indices=forget_indices, collate_fn=keep_records, extra=extra)
