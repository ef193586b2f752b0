"""The ``text_classification`` data set: labelled texts, from a local JSON/JSONL file or
generated offline (profiles of fictitious people with a memorised label).

Items are ``{"text": str, "label": int}`` dicts, the form the ``sequence_classification``
adapter tokenises; string labels in a file are numbered in sorted order (the names are in
``info.extra["label_names"]``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits
from pydantic import Field, model_validator

from erasus_llm.datasets import DatasetFormatError, json_rows

__all__ = ["LabelledTexts", "TextClassification", "TextClassificationParams",
           "profile_texts"]

#: The profile sentences of the synthetic set; {name}, {job} and {city} are filled in.
TEMPLATES = ("{name} works as a {job}.", "{name} was born in {city}.",
             "{name}, a {job} from {city}.")
#: Label names of the synthetic set (each fictitious person holds one, drawn at random).
TIERS = ("bronze", "silver", "gold", "platinum")


class LabelledTexts:
    """A list of ``{"text", "label"}`` items."""

    def __init__(self, texts: list[str], labels: list[int]) -> None:
        self.texts, self.labels = texts, labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "label": self.labels[index]}


def profile_texts(people_count: int, holdout: int, classes: int, seed: int
                  ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """``(text, label, person)`` rows of the training and the held-out people.

    Each person has one label (a random "membership tier") and one sentence per template
    built from their synthetic facts; the label is not in the text, so a model can only
    predict the labels of the people it was trained on.
    """
    from erasus_llm._facts import people, person_facts

    names = people(people_count + holdout, seed)
    rng = random.Random(f"text_classification:{int(seed)}")
    rows = []
    for i, name in enumerate(names):
        job, city = (f["answer"] for f in person_facts(name, seed, ["job", "city"]))
        label = rng.randrange(classes)
        for template in TEMPLATES:
            rows.append((template.format(name=name, job=job, city=city), label, i))
    cut = people_count * len(TEMPLATES)
    return rows[:cut], rows[cut:]


class TextForgetParams(Params):
    """Which training texts to forget."""

    kind: Literal["person", "random", "class"] = Field(
        "person", description="'person': every text of a fraction of the people (synthetic "
        "set only); 'random': a fraction of the texts; 'class': every text of one label.")
    fraction: float = Field(0.1, gt=0, lt=1, description="Share of the people (kind "
                            "'person') or texts (kind 'random') to forget.")
    label: int | str | None = Field(None, description="The label to forget (kind 'class'): "
                                    "its number, or its name in the file.")


class TextClassificationParams(DatasetParams):
    """Parameters of the text classification data set."""

    path: str | None = Field(
        None, description="JSON/JSONL file of training records (objects with a text and a "
        "label); unset: the synthetic profiles of fictitious people.")
    test_path: str | None = Field(
        None, description="File of held-out records for the test split; unset: hold out "
        "test_fraction of the file's records (files only).")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the file's records "
                                 "held out as the test split when test_path is unset.")
    text_key: str = Field("text", description="Record field holding the text.")
    label_key: str = Field("label", description="Record field holding the label (an "
                           "integer, or a string: numbered in sorted order).")
    people: int = Field(32, ge=2, le=500, description="Synthetic set: fictitious people "
                        "trained on (three profile sentences each).")
    holdout_people: int = Field(8, ge=1, le=100, description="Synthetic set: further people "
                                "whose sentences form the test split.")
    classes: int = Field(4, ge=2, le=len(TIERS), description="Synthetic set: number of "
                         "labels (membership tiers), drawn at random per person.")
    forget: TextForgetParams = Field(default_factory=TextForgetParams,
                                     description="What to forget: {kind, fraction, label}.")
    split_seed: int = Field(0, description="Seed of the synthetic people and of the held-out "
                            "records (independent of the run seed, which draws the forget "
                            "set).")

    @model_validator(mode="after")
    def _forget_rule_fits(self) -> TextClassificationParams:
        if self.forget.kind == "person" and self.path:
            raise ValueError("forget.kind 'person' needs the synthetic set (no path); for "
                             "a file use kind 'random' or 'class'")
        if self.forget.kind == "class" and self.forget.label is None:
            raise ValueError("forget.kind 'class' needs forget.label")
        return self


class TextClassification(DatasetProvider):
    """Labelled texts for sequence classification (``sequence_classification`` adapter).

    From a file: the records' ``text_key`` and ``label_key`` fields; the test split is
    ``test_path`` or ``test_fraction`` of the records. Without a file: three profile
    sentences of each of ``people`` fictitious people ("Liora Greaves works as a
    luthier."), labelled with a tier drawn at random per person, so the labels are
    memorised, not inferred: the test split (``holdout_people`` unseen people) sits at
    chance, and a model retrained without the forget set predicts its labels at chance
    too -- the setting where forgetting is measurable. The run seed draws the forget set.
    """

    name = "text_classification"
    modalities = ("classification",)
    Params = TextClassificationParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        p: TextClassificationParams = self.params  # type: ignore[assignment]
        rng = random.Random(int(seed))
        if p.path is None:
            train_rows, test_rows = profile_texts(p.people, p.holdout_people, p.classes,
                                                  p.split_seed)
            names = list(TIERS[:p.classes])
            source = "synthetic profiles"
        else:
            path = Path(p.path).expanduser()
            train_rows, names = self._read(path, p, None)
            if p.test_path:
                test_rows, _ = self._read(Path(p.test_path).expanduser(), p, names)
            else:
                order = list(range(len(train_rows)))
                random.Random(f"text_classification:{p.split_seed}").shuffle(order)
                k = round(p.test_fraction * len(order))
                if k < 1 or k >= len(order) - 1:
                    raise DatasetFormatError(
                        f"text_classification: test_fraction {p.test_fraction} of the "
                        f"{len(order)} records of {path} leaves no test or training records "
                        "(give test_path or change test_fraction)")
                held = set(order[:k])
                test_rows = [r for i, r in enumerate(train_rows) if i in held]
                train_rows = [r for i, r in enumerate(train_rows) if i not in held]
            source = str(path)
        forget = self._forget(train_rows, names, p, rng)
        if not forget or len(forget) >= len(train_rows):
            raise DatasetFormatError(
                f"text_classification: the forget rule {p.forget.model_dump()} selects "
                f"{len(forget)} of {len(train_rows)} training texts; it must leave both a "
                "forget and a retain set")
        from erasus.data import subset

        train = LabelledTexts([r[0] for r in train_rows], [r[1] for r in train_rows])
        test = LabelledTexts([r[0] for r in test_rows], [r[1] for r in test_rows])
        chosen = set(forget)
        return Splits(train=train, forget=subset(train, forget),
                      retain=subset(train, [i for i in range(len(train)) if i not in chosen]),
                      test=test, forget_indices=forget,
                      info=DataInfo(modality="classification", num_classes=len(names),
                                    extra={"task": "text_classification", "source": source,
                                           "label_names": names}))

    @staticmethod
    def _read(path: Path, p: TextClassificationParams, names: list[str] | None
              ) -> tuple[list[tuple[str, int, int]], list[str]]:
        rows = json_rows(path, "text_classification")
        for where, row in rows:
            if not isinstance(row.get(p.text_key), str):
                raise DatasetFormatError(
                    f"text_classification: {path} {where} has no '{p.text_key}' string "
                    f"(keys: {', '.join(sorted(row))}); set text_key to the text's field")
            label = row.get(p.label_key)
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise DatasetFormatError(
                    f"text_classification: {path} {where}: '{p.label_key}' must be an integer "
                    f"or a string label, got {label!r}; set label_key to the label's field")
        labels = [row[p.label_key] for _, row in rows]
        if names is None:
            if all(isinstance(v, int) for v in labels):
                if min(labels) < 0:
                    raise DatasetFormatError(f"text_classification: {path} has negative "
                                             "integer labels; number them from 0")
                names = [str(i) for i in range(max(labels) + 1)]
            else:
                names = sorted({str(v) for v in labels})
        index = {name: i for i, name in enumerate(names)}
        out = []
        for (where, row), label in zip(rows, labels, strict=True):
            key = str(label)
            if key not in index:
                raise DatasetFormatError(f"text_classification: {path} {where} has label "
                                         f"{label!r}, not one of the training labels {names}")
            out.append((row[p.text_key], index[key], -1))
        return out, names

    @staticmethod
    def _forget(rows: list[tuple[str, int, int]], names: list[str],
                p: TextClassificationParams, rng: random.Random) -> list[int]:
        rule = p.forget
        if rule.kind == "person":
            owners = sorted({r[2] for r in rows})
            k = min(len(owners) - 1, max(1, round(rule.fraction * len(owners))))
            gone = set(rng.sample(owners, k))
            return [i for i, r in enumerate(rows) if r[2] in gone]
        if rule.kind == "random":
            k = min(len(rows) - 1, max(1, round(rule.fraction * len(rows))))
            return sorted(rng.sample(range(len(rows)), k))
        label = rule.label
        target = label if isinstance(label, int) else (
            names.index(str(label)) if str(label) in names else None)
        if target is None or not 0 <= target < len(names):
            raise DatasetFormatError(f"text_classification: forget.label {label!r} is not "
                                     f"one of the labels {names}")
        return [i for i, r in enumerate(rows) if r[1] == target]
