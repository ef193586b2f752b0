"""The question/answer data sets: synthetic fictitious facts and JSON/JSONL records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from erasus_llm.datasets import SAMPLE_FILE, DatasetFormatError, QAJson, SyntheticQA
from pydantic import ValidationError


def items(dataset) -> list[dict[str, str]]:
    return [dataset[i] for i in range(len(dataset))]


def name_of(question: str) -> str:
    match = re.search(r"([A-Z]\w+ [A-Z]\w+)(?: born)?\?$", question)
    assert match, question
    return match.group(1)


# -- synthetic_qa ----------------------------------------------------------------------
def test_synthetic_qa_forgets_every_fact_of_some_people():
    splits = SyntheticQA().load(seed=0)
    assert (len(splits.train), len(splits.test)) == (40 * 5, 10 * 5)
    assert len(splits.forget) == 4 * 5  # 10% of 40 people, 5 facts each
    assert all(set(item) == {"question", "answer"} for item in items(splits.train))
    forgotten = {name_of(r["question"]) for r in items(splits.forget)}
    kept = {name_of(r["question"]) for r in items(splits.retain)}
    held_out = {name_of(r["question"]) for r in items(splits.test)}
    assert len(forgotten) == 4 and not forgotten & kept
    assert not held_out & (forgotten | kept) and len(held_out) == 10
    assert splits.info.modality == "text"
    assert [splits.train[i] for i in splits.forget_indices] == items(splits.forget)


def test_synthetic_qa_is_deterministic_and_the_run_seed_draws_the_forget_set():
    a, b, other = (SyntheticQA().load(seed=0), SyntheticQA().load(seed=0),
                   SyntheticQA().load(seed=1))
    assert items(a.train) == items(b.train) and a.forget_indices == b.forget_indices
    assert items(a.train) == items(other.train)  # split_seed fixes the facts
    assert a.forget_indices != other.forget_indices
    assert items(SyntheticQA(split_seed=1).load(seed=0).train) != items(a.train)
    assert a.train[0] == {"question": "What is the favourite colour of Eamon Pendleton?",
                          "answer": "yellow"}  # stable across versions and platforms


def test_synthetic_qa_parameters():
    splits = SyntheticQA(people=10, holdout_people=2, attributes=["year", "pet"],
                         forget={"kind": "random", "fraction": 0.25}).load(seed=0)
    assert (len(splits.train), len(splits.forget), len(splits.test)) == (20, 5, 4)
    assert splits.train[0]["question"].startswith("In which year")
    with pytest.raises(ValidationError):
        SyntheticQA(attributes=["shoe size"])
    with pytest.raises(ValidationError):
        SyntheticQA(people=500, holdout_people=100)


# -- qa_json ---------------------------------------------------------------------------
def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"question": f"Q{i}?", "answer": f"A{i}", "forget": i in (2, 7)} for i in range(20)]


def test_qa_json_reads_the_bundled_example_by_default():
    splits = QAJson().load(seed=0)
    records = [json.loads(line) for line in SAMPLE_FILE.read_text().splitlines()]
    marked = [{"question": r["question"], "answer": r["answer"]} for r in records
              if r["forget"]]
    assert items(splits.forget) == marked
    assert len(splits.train) + len(splits.test) == len(records)
    assert len(splits.test) == round(0.2 * (len(records) - len(marked)))


@pytest.mark.parametrize("fmt", ["jsonl", "json", "json_lines_named_json"])
def test_qa_json_forgets_the_flagged_records(tmp_path, fmt):
    if fmt == "json":
        path = tmp_path / "data.json"
        path.write_text(json.dumps(ROWS))
    else:
        path = write_jsonl(tmp_path / f"data.{'jsonl' if fmt == 'jsonl' else 'json'}", ROWS)
    splits = QAJson(path=str(path)).load(seed=0)
    assert [r["question"] for r in items(splits.forget)] == ["Q2?", "Q7?"]
    assert len(splits.test) == round(0.2 * 18) and len(splits.train) == 20 - len(splits.test)
    assert not {r["question"] for r in items(splits.test)} & {"Q2?", "Q7?"}
    assert [splits.train[i] for i in splits.forget_indices] == items(splits.forget)


def test_qa_json_forget_indices_fraction_and_test_file(tmp_path):
    rows = [{"q": f"Q{i}?", "a": f"A{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", [{"q": "T?", "a": "t"}])
    splits = QAJson(path=str(path), test_path=str(test), question_key="q", answer_key="a",
                    forget_indices=[3, 1]).load(seed=0)
    assert splits.forget_indices == [1, 3] and len(splits.train) == 10
    assert items(splits.forget) == [{"question": "Q1?", "answer": "A1"},
                                    {"question": "Q3?", "answer": "A3"}]
    assert items(splits.test) == [{"question": "T?", "answer": "t"}]
    by_fraction = QAJson(path=str(path), test_path=str(test), question_key="q",
                         answer_key="a", forget_fraction=0.3)
    assert len(by_fraction.load(seed=0).forget) == 3
    assert by_fraction.load(seed=0).forget_indices == by_fraction.load(seed=0).forget_indices
    with pytest.raises(ValidationError, match="not both"):
        QAJson(path=str(path), forget_indices=[1], forget_fraction=0.5)


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question": "Q?"}], "line 1 has no 'answer' string"),
    ([{"question": "Q?", "answer": 1964}], "line 1 has a non-string 'answer'"),
    ([{"question": "Q?", "answer": "A", "forget": "yes"}], "line 1: 'forget' must be true"),
    ([["Q?", "A"]], "line 1 is a JSON list, not an object"),
    ([{"question": "Q?", "answer": "A"}] * 3, "has a 'forget' field; say which"),
    ([{"question": "Q?", "answer": "A", "forget": False}] * 3, "no record .* is marked"),
])
def test_qa_json_bad_records_name_the_file_and_the_record(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DatasetFormatError, match=message) as info:
        QAJson(path=str(path)).load(seed=0)
    assert str(path) in str(info.value)


def test_qa_json_file_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        QAJson(path=str(tmp_path / "nope.jsonl")).load(seed=0)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "Q?", "answer": "A"}\n{"question": \n')
    with pytest.raises(DatasetFormatError, match="line 2 is not valid JSON"):
        QAJson(path=str(broken)).load(seed=0)
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(DatasetFormatError, match="outside the 20 records"):
        QAJson(path=str(path), forget_indices=[25]).load(seed=0)
    with pytest.raises(DatasetFormatError, match="no retain set"):
        QAJson(path=str(path), forget_indices=list(range(20)),
               test_path=str(path)).load(seed=0)
