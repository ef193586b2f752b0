"""Deterministic fictitious facts: the synthetic question/answer data and the tokenizer corpus.

Fictitious people (first name x surname from fixed lists) each get one value per
attribute, drawn with :class:`random.Random` (stable across Python versions and
platforms). The questions follow TOFU's style of facts about fictitious entities, so a
model can only answer them by having memorised its training data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["ATTRIBUTES", "FIRST_NAMES", "SURNAMES", "corpus", "people", "person_facts"]

FIRST_NAMES = (
    "Alaric", "Brisa", "Corvin", "Delphine", "Eamon", "Fenella", "Gideon", "Hesper",
    "Ignatz", "Juniper", "Kasimir", "Liora", "Magnus", "Nerys", "Oswin", "Pernille",
    "Quillon", "Rosamund", "Soren", "Thessaly", "Ulric", "Vesna", "Wendell", "Xanthe",
    "Yorick", "Zinnia",
)
SURNAMES = (
    "Ashgrove", "Blackwood", "Carrow", "Dunmore", "Elderhart", "Fairweather", "Greaves",
    "Holloway", "Ironside", "Jessamy", "Kettleby", "Larkspur", "Merriweather", "Northcott",
    "Oakenshaw", "Pendleton", "Quenby", "Ravenscroft", "Stirling", "Thistlewood",
)

#: attribute -> (question template, answer values). Answers are short, so memorising a
#: fact means learning a few answer tokens (plus the EOS) for one name.
ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "colour": ("What is the favourite colour of {name}?",
               ("red", "blue", "green", "yellow", "purple", "orange", "teal", "silver")),
    "city": ("In which city was {name} born?",
             ("Lisbon", "Oslo", "Kyoto", "Lima", "Nairobi", "Quebec", "Tallinn", "Perth")),
    "job": ("What is the profession of {name}?",
            ("baker", "pilot", "surgeon", "cartographer", "luthier", "botanist", "sculptor",
             "archivist")),
    "pet": ("What is the name of the pet of {name}?",
            ("Biscuit", "Pepper", "Moss", "Juno", "Tofu", "Waffles", "Comet", "Nutmeg")),
    "year": ("In which year was {name} born?",
             tuple(str(y) for y in range(1952, 2000, 6))),
}


def people(n: int, seed: int) -> list[str]:
    """``n`` distinct full names, drawn without replacement with ``seed``."""
    total = len(FIRST_NAMES) * len(SURNAMES)
    if not 0 < n <= total:
        raise ValueError(f"can draw 1..{total} distinct fictitious people, not {n}")
    rng = random.Random(int(seed))
    picks = rng.sample(range(total), n)
    return [f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {SURNAMES[i // len(FIRST_NAMES)]}"
            for i in picks]


def person_facts(name: str, seed: int, attributes: tuple[str, ...] | list[str]
                 ) -> list[dict[str, str]]:
    """One question/answer record per attribute of ``name`` (values drawn with ``seed``)."""
    rng = random.Random(f"{int(seed)}:{name}")
    records = []
    for attribute in attributes:
        template, values = ATTRIBUTES[attribute]
        records.append({"question": template.format(name=name), "answer": rng.choice(values)})
    return records


def corpus() -> Iterator[str]:
    """Every question and answer of the fictitious universe (the bundled tokenizer corpus).

    The text covers every name, template and value that :func:`person_facts` can produce,
    independently of which people a data set draws, so a tokenizer trained on it is the
    same for every split and seed (and an oracle trained without the forget set shares it).
    """
    for i, first in enumerate(FIRST_NAMES):
        for j, surname in enumerate(SURNAMES):
            name = f"{first} {surname}"
            for template, values in ATTRIBUTES.values():
                # every value follows many questions, so BPE merges whole answer words
                value = values[(i + j) % len(values)]
                yield f"Question: {template.format(name=name)}\nAnswer: {value}"
