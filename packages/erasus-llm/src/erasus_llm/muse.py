"""MUSE (Shi et al. 2024): six-way machine unlearning evaluation on news and books.

Reads ``muse-bench/MUSE-News`` / ``MUSE-Books`` in their published layout,
``<config>/<split>`` for the configs ``raw`` (forget, retain1, retain2, holdout: text),
``verbmem`` (forget: prompt, gt), ``knowmem`` (forget_qa, retain_qa or Books' retain2_qa:
question, answer; optionally their few-shot examples forget_qa_icl, retain_qa_icl) and
``privleak`` (forget, retain or retain2, holdout: text), each as the hub's parquet shards
(``raw/forget-00000-of-00001.parquet``), JSON / JSON lines, or a plain-text file
(``raw/forget.txt``, as the MUSE repository ships the raw corpora).
By default it reads a small bundled MUSE-style set: biographies of the bundled TOFU-style
fictitious authors (:mod:`erasus_llm._author_bench`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from erasus.components import Paper
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, subset
from pydantic import Field, model_validator

from erasus_llm._published import (
    Records,
    find,
    hub_patterns,
    hub_snapshot,
    keep_records,
    read,
    require,
)
from erasus_llm.datasets import DatasetFormatError

__all__ = ["BUNDLED_MUSE", "MUSE_PAPER", "Muse", "MuseParams"]

#: The bundled MUSE-style set (fictitious-author biographies) in MUSE's layout.
BUNDLED_MUSE = Path(__file__).with_name("data") / "muse_bundled"

MUSE_PAPER = Paper(
    title="MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
    authors="Weijia Shi, Jaechan Lee, Yangsibo Huang, Sadhika Malladi, Jieyu Zhao, Ari "
            "Holtzman, Daogao Liu, Luke Zettlemoyer, Noah A. Smith, Chiyuan Zhang",
    year=2024,
    url="https://arxiv.org/abs/2407.06460",
)

_TEXT = {"text": str}

# split name -> (candidate files, fields, required); News and Books name the retain
# knowmem / privleak files differently (retain_qa / retain2_qa, retain / retain2).
_FILES: dict[str, tuple[tuple[str, ...], dict[str, Any], bool]] = {
    "forget": (("raw/forget",), _TEXT, True),
    "retain": (("raw/retain1",), _TEXT, True),
    "holdout": (("raw/holdout",), _TEXT, True),
    "retain2": (("raw/retain2",), _TEXT, False),
    "verbmem_forget": (("verbmem/forget",), {"prompt": str, "gt": str}, True),
    "knowmem_forget_qa": (("knowmem/forget_qa",), {"question": str, "answer": str}, True),
    "knowmem_retain_qa": (("knowmem/retain_qa", "knowmem/retain2_qa"),
                          {"question": str, "answer": str}, True),
    "knowmem_forget_qa_icl": (("knowmem/forget_qa_icl",), {"question": str, "answer": str},
                              False),
    "knowmem_retain_qa_icl": (("knowmem/retain_qa_icl", "knowmem/retain2_qa_icl"),
                              {"question": str, "answer": str}, False),
    "privleak_forget": (("privleak/forget",), _TEXT, True),
    "privleak_retain": (("privleak/retain", "privleak/retain2"), _TEXT, True),
    "privleak_holdout": (("privleak/holdout",), _TEXT, True),
}


class MuseParams(DatasetParams):
    """Parameters of the MUSE loader."""

    path: str | None = Field(
        None, description="Local directory in MUSE's layout (raw/, verbmem/, knowmem/, "
        "privleak/, each split as parquet shards, JSON, JSON lines or .txt); unset (and "
        "no hub): the bundled MUSE-style set of fictitious-author biographies.")
    corpus: Literal["news", "books"] = Field(
        "news", description="Which MUSE corpus the data is (recorded in the data info).")
    hub: str | None = Field(
        None, description="Hub data set id (muse-bench/MUSE-News or muse-bench/MUSE-Books), "
        "read when given and the hub is reachable (or the data set is in the local hub "
        "cache under HF_HUB_OFFLINE); an error otherwise, never a silent fallback.")

    @model_validator(mode="after")
    def _one_source(self) -> MuseParams:
        if self.path and self.hub:
            raise ValueError("give path (a local directory) or hub (a data set id), not both")
        return self


class Muse(DatasetProvider):
    """MUSE's splits: forget the forget corpus, keep retain1.

    Items of the raw and privleak splits are ``{"text": str}``, of verbmem
    ``{"prompt", "gt"}`` and of knowmem ``{"question", "answer"}``. ``train`` is
    ``raw/retain1`` followed by ``raw/forget`` (``forget_indices`` the forget positions),
    ``test`` is ``raw/holdout``; extra splits ``verbmem_forget``, ``knowmem_forget_qa``,
    ``knowmem_retain_qa``, ``privleak_forget``, ``privleak_retain``, ``privleak_holdout``,
    and ``retain2`` / the ICL sets where present. The ``causal_lm`` adapter trains on the
    ``{"text"}`` items. ``info.extra["files"]`` lists the files read.
    """

    name = "muse"
    modalities = ("text",)
    Params = MuseParams
    paper = MUSE_PAPER

    def load(self, *, seed: int) -> Splits:
        p: MuseParams = self.params  # type: ignore[assignment]
        label = "dataset 'muse'"
        if p.hub:
            names = [n for files, _, _ in _FILES.values() for n in files]
            root, source = hub_snapshot(p.hub, label, hub_patterns(names)), p.hub
        else:
            root = Path(p.path).expanduser() if p.path else BUNDLED_MUSE
            source = str(root) if p.path else "bundled"
            if not root.is_dir():
                raise DatasetFormatError(f"{label}: path {root} is not a directory; give "
                                         "the directory holding MUSE's raw/, verbmem/, "
                                         "knowmem/ and privleak/ folders")
        data: dict[str, list[dict[str, Any]]] = {}
        files: dict[str, list[str]] = {}
        for split, (names, fields, required) in _FILES.items():
            if required:
                paths = require(root, names, label, "MUSE")
            else:
                paths = next((found for n in names if (found := find(root, n))), [])
                if not paths:
                    continue
            data[split] = read(paths, f"{label} ({split})", fields)
            files[split] = [str(q.relative_to(root)) for q in paths]
        forget, retain = data.pop("forget"), data.pop("retain")
        train = Records(retain + forget)
        forget_indices = list(range(len(retain), len(retain) + len(forget)))
        info = DataInfo(modality="text", extra={
            "task": "text", "benchmark": "muse", "corpus": p.corpus, "source": source,
            "root": str(root), "files": files})
        holdout = Records(data.pop("holdout"))
        return Splits(train=train, forget=subset(train, forget_indices),
                      retain=subset(train, range(len(retain))), test=holdout, info=info,
                      forget_indices=forget_indices, collate_fn=keep_records,
                      extra={k: Records(v) for k, v in data.items()})
