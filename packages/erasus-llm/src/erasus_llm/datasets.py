"""Question/answer data sets: synthetic fictitious facts, and QA records from a JSON file.

Items are ``{"question": str, "answer": str}`` dicts, the form the ``causal_lm`` adapter
tokenises. ``forget`` and ``retain`` are ``Subset`` views of ``train`` that partition it;
``forget_indices`` are the (sorted) positions of the forget records in ``train``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits
from erasus.errors import ErasusError
from pydantic import Field, model_validator

from erasus_llm._facts import ATTRIBUTES, people, person_facts

__all__ = [
    "SAMPLE_FILE",
    "DatasetFormatError",
    "QADataset",
    "QAForgetParams",
    "QAJson",
    "QAJsonParams",
    "SyntheticQA",
    "SyntheticQAParams",
    "json_rows",
    "load_records",
]

#: The example file ``qa_json`` reads when no path is given (fictitious facts, JSONL).
SAMPLE_FILE = Path(__file__).with_name("data") / "fictitious_qa.jsonl"

Attribute = Literal["colour", "city", "job", "pet", "year"]


class DatasetFormatError(ErasusError):
    """A data file is missing, unreadable or holds a malformed record (the message names it)."""


class QADataset:
    """A list of question/answer records as a map-style dataset of ``{question, answer}``."""

    def __init__(self, records: list[dict[str, str]]) -> None:
        self.records = [{"question": r["question"], "answer": r["answer"]} for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, str]:
        return dict(self.records[index])  # a copy: callers cannot edit the data set


def _splits(train: QADataset, forget_idx: list[int], test: QADataset,
            extra_info: dict[str, Any]) -> Splits:
    from erasus.data import subset

    forget_idx = sorted(int(i) for i in forget_idx)
    chosen = set(forget_idx)
    retain_idx = [i for i in range(len(train)) if i not in chosen]
    return Splits(train=train, forget=subset(train, forget_idx),
                  retain=subset(train, retain_idx), test=test,
                  info=DataInfo(modality="text", extra={"task": "qa", **extra_info}),
                  forget_indices=forget_idx)


# -- synthetic fictitious facts -------------------------------------------------------
class QAForgetParams(Params):
    """Which training records to forget."""

    kind: Literal["person", "random"] = Field(
        "person", description="'person': every fact of a fraction of the people (TOFU's "
        "forget-an-author setting); 'random': a fraction of the records.")
    fraction: float = Field(0.1, gt=0, lt=1, description="Share of the training people "
                            "(kind 'person') or records (kind 'random') to forget.")


class SyntheticQAParams(DatasetParams):
    """Parameters of the synthetic fictitious-facts QA data set."""

    people: int = Field(40, ge=2, le=500, description="Fictitious people in the training "
                        "set (each contributes one question per attribute).")
    holdout_people: int = Field(10, ge=1, le=100, description="Further people whose facts "
                                "form the held-out test split (never trained on).")
    attributes: list[Attribute] = Field(
        default_factory=lambda: list(ATTRIBUTES), min_length=1,
        description="Facts asked about each person: colour, city, job, pet, year.")
    forget: QAForgetParams = Field(default_factory=QAForgetParams,
                                   description="What to forget: {kind, fraction}.")
    split_seed: int = Field(0, description="Seed of the people and their facts (independent "
                            "of the run seed, which draws the forget set).")

    @model_validator(mode="after")
    def _enough_names(self) -> SyntheticQAParams:
        from erasus_llm._facts import FIRST_NAMES, SURNAMES

        total = len(FIRST_NAMES) * len(SURNAMES)
        if self.people + self.holdout_people > total:
            raise ValueError(f"people + holdout_people must be at most {total}")
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes repeat")
        return self


class SyntheticQA(DatasetProvider):
    """Deterministic facts about fictitious people, as question/answer pairs (offline).

    Each person (a first name and surname drawn with ``split_seed``) has one value per
    attribute: "What is the favourite colour of Liora Greaves?" -> "teal", "In which city
    was ... born?", "What is the profession of ...?", "What is the name of the pet of
    ...?", "In which year was ... born?". The values are random, so a model can answer
    only the facts it was trained on: the test split (the facts of ``holdout_people``
    further people) measures how an unseen fact scores, like TOFU's fictitious authors.
    The run seed draws the forget set: every fact of a ``forget.fraction`` of the people
    (default), or that fraction of the records.
    """

    name = "synthetic_qa"
    modalities = ("text",)
    Params = SyntheticQAParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        p: SyntheticQAParams = self.params  # type: ignore[assignment]
        names = people(p.people + p.holdout_people, p.split_seed)
        train_names, holdout_names = names[:p.people], names[p.people:]
        records: list[dict[str, str]] = []
        owner: list[int] = []
        for i, name in enumerate(train_names):
            facts = person_facts(name, p.split_seed, p.attributes)
            records += facts
            owner += [i] * len(facts)
        test = [r for name in holdout_names
                for r in person_facts(name, p.split_seed, p.attributes)]
        rng = random.Random(int(seed))
        if p.forget.kind == "person":
            k = min(p.people - 1, max(1, round(p.forget.fraction * p.people)))
            gone = set(rng.sample(range(p.people), k))
            forget_idx = [i for i, o in enumerate(owner) if o in gone]
        else:
            k = min(len(records) - 1, max(1, round(p.forget.fraction * len(records))))
            forget_idx = rng.sample(range(len(records)), k)
        return _splits(QADataset(records), forget_idx, QADataset(test),
                       {"source": "synthetic_qa", "people": p.people})


# -- QA records from a JSON / JSONL file ----------------------------------------------
class QAJsonParams(DatasetParams):
    """Parameters of the JSON question/answer loader."""

    path: str | None = Field(
        None, description="JSON file of the training records (a list of objects, or one "
        "object per line: JSONL); unset: the bundled example file of fictitious facts.")
    test_path: str | None = Field(
        None, description="File of held-out records for the test split; unset: hold out "
        "test_fraction of the records that are not forgotten.")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the non-forget records held out as the test "
        "split when test_path is unset (drawn with split_seed).")
    question_key: str = Field("question", description="Record field holding the question.")
    answer_key: str = Field("answer", description="Record field holding the answer.")
    forget_key: str | None = Field(
        "forget", description="Boolean record field marking the records to forget (used "
        "when neither forget_indices nor forget_fraction is given; null: no such field).")
    forget_indices: list[int] | None = Field(
        None, description="Positions (0-based) in the file of the records to forget.")
    forget_fraction: float | None = Field(
        None, gt=0, lt=1, description="Forget a random share of the records instead "
        "(drawn with the run seed).")
    split_seed: int = Field(0, description="Seed of the held-out test records (independent "
                            "of the run seed).")

    @model_validator(mode="after")
    def _one_forget_rule(self) -> QAJsonParams:
        if self.forget_indices is not None and self.forget_fraction is not None:
            raise ValueError("give forget_indices or forget_fraction, not both")
        return self


def json_rows(path: Path, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a JSON list or JSONL file, each with where it is (``"line 3"``).

    Raises:
        DatasetFormatError: naming ``dataset``, the file and the record that is wrong.
    """
    if not path.is_file():
        raise DatasetFormatError(f"{dataset}: data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    rows: list[tuple[str, Any]]
    try:
        whole = json.loads(text) if path.suffix != ".jsonl" else None
    except json.JSONDecodeError:
        whole = None  # JSON lines in a .json file (as TOFU's files are)
    if isinstance(whole, list):
        rows = [(f"record {i}", r) for i, r in enumerate(whole)]
    elif isinstance(whole, dict):
        rows = [("line 1", whole)]  # JSON lines with one record
    elif whole is not None:
        raise DatasetFormatError(f"{dataset}: {path} holds a JSON {type(whole).__name__}; "
                                 "expected a list of records or one record per line")
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{dataset}: {path} line {n} is not valid JSON: "
                                         f"{exc.msg}") from None
    if not rows:
        raise DatasetFormatError(f"{dataset}: {path} holds no records")
    for where, row in rows:
        if not isinstance(row, dict):
            raise DatasetFormatError(f"{dataset}: {path} {where} is a JSON "
                                     f"{type(row).__name__}, not an object")
    return rows


def load_records(path: str | Path, question_key: str = "question",
                 answer_key: str = "answer", flag_key: str | None = None
                 ) -> tuple[list[dict[str, str]], list[bool] | None]:
    """The question/answer records of a JSON list or JSONL file, and their ``flag_key``
    booleans (``None`` when no record has that field).

    Raises:
        DatasetFormatError: naming the file and the record that is wrong.
    """
    path = Path(path)
    rows = json_rows(path, "qa_json")
    records, flags = [], []
    has_flag = flag_key is not None and any(flag_key in r for _, r in rows)
    for where, row in rows:
        for key in (question_key, answer_key):
            if not isinstance(row.get(key), str):
                problem = "has no" if key not in row else "has a non-string"
                raise DatasetFormatError(
                    f"qa_json: {path} {where} {problem} '{key}' string (keys: "
                    f"{', '.join(sorted(row))}); set question_key/answer_key to the fields "
                    "holding the question and the answer")
        records.append({"question": row[question_key], "answer": row[answer_key]})
        if has_flag:
            flag = row.get(flag_key, False)
            if not isinstance(flag, bool):
                raise DatasetFormatError(f"qa_json: {path} {where}: '{flag_key}' must be "
                                         f"true or false, got {flag!r}")
            flags.append(flag)
    return records, (flags if has_flag else None)


class QAJson(DatasetProvider):
    """Question/answer records from a local JSON or JSONL file (TOFU-style data).

    Each record is an object with a question and an answer string (``question_key``,
    ``answer_key``). What to forget: ``forget_indices`` (positions in the file),
    ``forget_fraction`` (a random share, drawn with the run seed), or else the records'
    boolean ``forget_key`` field. The test split is the records of ``test_path``, or
    ``test_fraction`` of the records that are not forgotten. Without ``path`` it reads
    the bundled example (fictitious facts, one person's marked ``"forget": true``).
    """

    name = "qa_json"
    modalities = ("text",)
    Params = QAJsonParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        p: QAJsonParams = self.params  # type: ignore[assignment]
        path = Path(p.path).expanduser() if p.path else SAMPLE_FILE
        use_flag = p.forget_indices is None and p.forget_fraction is None
        records, flags = load_records(path, p.question_key, p.answer_key,
                                      p.forget_key if use_flag else None)
        n = len(records)
        if p.forget_indices is not None:
            bad = [i for i in p.forget_indices if not 0 <= i < n]
            if bad:
                raise DatasetFormatError(f"qa_json: forget_indices {bad[:5]} are outside the "
                                         f"{n} records of {path}")
            forget = sorted(set(p.forget_indices))
        elif p.forget_fraction is not None:
            k = min(n - 1, max(1, round(p.forget_fraction * n)))
            forget = sorted(random.Random(int(seed)).sample(range(n), k))
        elif flags is not None:
            forget = [i for i, f in enumerate(flags) if f]
        else:
            raise DatasetFormatError(
                f"qa_json: no record of {path} has a '{p.forget_key}' field; say which "
                "records to forget with forget_indices, forget_fraction or forget_key")
        if not forget:
            raise DatasetFormatError(f"qa_json: no record of {path} is marked to forget")

        if p.test_path:
            test, _ = load_records(Path(p.test_path).expanduser(), p.question_key,
                                   p.answer_key)
            held: set[int] = set()
        else:
            chosen = set(forget)
            others = [i for i in range(n) if i not in chosen]
            k = round(p.test_fraction * len(others))
            if k < 1 or k >= len(others):
                raise DatasetFormatError(
                    f"qa_json: {path} has {len(others)} records that are not forgotten; "
                    f"test_fraction {p.test_fraction} leaves no test or no retain records "
                    "(give test_path or change test_fraction)")
            held = set(random.Random(f"qa_json:{p.split_seed}").sample(others, k))
            test = [records[i] for i in sorted(held)]
        position = {}
        train = []
        for i, record in enumerate(records):
            if i not in held:
                position[i] = len(train)
                train.append(record)
        if len(forget) >= len(train):
            raise DatasetFormatError(f"qa_json: every training record of {path} is marked "
                                     "to forget, so there is no retain set")
        return _splits(QADataset(train), [position[i] for i in forget], QADataset(test),
                       {"source": str(path)})
