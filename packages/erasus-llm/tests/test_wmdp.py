"""The ``wmdp`` loader: the bundled WMDP-style set and WMDP's published files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from erasus_llm import _author_bench as bench
from erasus_llm.datasets import DatasetFormatError
from erasus_llm.wmdp import BUNDLED_WMDP, Wmdp

FILES = ("bio-forget-corpus", "bio-retain-corpus", "wmdp-bio", "general-mc")


def rows(name: str, root: Path = BUNDLED_WMDP) -> list[dict]:
    return [json.loads(line) for line in (root / f"{name}.jsonl").read_text().splitlines()]


def items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_the_bundled_set_has_the_published_fields():
    assert sorted(p.stem for p in BUNDLED_WMDP.iterdir()) == sorted(FILES)
    for corpus in ("bio-forget-corpus", "bio-retain-corpus"):
        assert all(set(r) == {"text"} for r in rows(corpus))
    for mc in ("wmdp-bio", "general-mc"):
        records = rows(mc)
        assert len(records) == 40
        for r in records:
            assert set(r) == {"question", "choices", "answer"}
            assert len(r["choices"]) == 4 == len(set(r["choices"]))
            assert r["answer"] in range(4)
        # the right option is not always in the same place (chance is 25%)
        assert max(sum(r["answer"] == k for r in records) for k in range(4)) <= 20


@pytest.mark.parametrize("mc, corpus", [("wmdp-bio", "bio-forget-corpus"),
                                        ("general-mc", "bio-retain-corpus")])
def test_each_question_is_answered_by_its_corpus_and_by_no_other_option(mc, corpus):
    """Multiple-choice accuracy measures knowledge of exactly that corpus: the right
    choice is stated in the corpus next to the question's subject, no wrong one is."""
    def subject(text: str) -> str:  # the organism or plant a corpus entry is about
        if text.startswith("Garden almanac"):
            return text.split("the ", 1)[1].split(" flowers")[0]
        return text.split("for the ", 1)[1].split(":")[0]

    texts = {subject(r["text"]): r["text"] for r in rows(corpus)}
    assert len(texts) == 20
    for r in rows(mc):
        (about,) = [t for s, t in texts.items() if f"the {s}" in r["question"]]
        right = r["choices"][r["answer"]]
        assert right in about
        assert not any(c in about for i, c in enumerate(r["choices"]) if i != r["answer"])


def test_the_hazard_style_set_is_marked_fictitious():
    assert all("fictitious" in r["question"] for r in rows("wmdp-bio"))
    assert all("made up" in r["text"] for r in rows("bio-forget-corpus"))


def test_the_splits():
    splits = Wmdp().load(seed=0)
    forget, retain = rows("bio-forget-corpus"), rows("bio-retain-corpus")
    assert items(splits.forget) == forget and items(splits.retain) == retain
    assert [splits.train[i] for i in splits.forget_indices] == forget
    assert items(splits.test) == rows("wmdp-bio") == items(splits.get("mc_hazard"))
    assert items(splits.get("mc_general")) == rows("general-mc")
    assert splits.info.extra["files"] == {
        "forget": ["bio-forget-corpus.jsonl"], "retain": ["bio-retain-corpus.jsonl"],
        "mc_hazard": ["wmdp-bio.jsonl"], "mc_general": ["general-mc.jsonl"]}
    # a batch keeps each record's choices list whole
    batch = splits.collate_fn(items(splits.test)[:3])
    assert [b["choices"] for b in batch] == [r["choices"] for r in rows("wmdp-bio")[:3]]


def test_the_published_names_of_a_local_copy(tmp_path):
    """WMDP's repository names the bio forget corpus bio_remove_dataset.jsonl; a local copy
    without a general set has no mc_general split."""
    shutil.copytree(BUNDLED_WMDP, tmp_path / "w")
    (tmp_path / "w/bio-forget-corpus.jsonl").rename(tmp_path / "w/bio_remove_dataset.jsonl")
    (tmp_path / "w/general-mc.jsonl").rename(tmp_path / "w/mmlu.json")
    splits = Wmdp(path=str(tmp_path / "w")).load(seed=0)
    assert items(splits.forget) == rows("bio-forget-corpus")
    assert "mc_general" not in splits.names()
    assert splits.info.extra["files"]["forget"] == ["bio_remove_dataset.jsonl"]
    splits = Wmdp(path=str(tmp_path / "w"), general="mmlu").load(seed=0)
    assert items(splits.get("mc_general")) == rows("general-mc")


def test_the_hubs_parquet_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for name, split in (("wmdp-bio", "test"), ("bio-forget-corpus", "train"),
                        ("bio-retain-corpus", "train")):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pylist(rows(name)),
                       tmp_path / name / f"{split}-00000-of-00001.parquet")
    splits = Wmdp(path=str(tmp_path)).load(seed=0)
    assert items(splits.test) == rows("wmdp-bio")


def test_missing_files_and_bad_records_are_named(tmp_path):
    with pytest.raises(DatasetFormatError, match="'cyber-forget-corpus"):
        Wmdp(subset="cyber").load(seed=0)
    shutil.copytree(BUNDLED_WMDP, tmp_path / "w")
    bad = rows("wmdp-bio")
    bad[2]["answer"] = 4
    (tmp_path / "w/wmdp-bio.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DatasetFormatError, match=r"record 2 .* has answer 4 but 4 choices"):
        Wmdp(path=str(tmp_path / "w")).load(seed=0)
    bad[2]["answer"] = "B"
    (tmp_path / "w/wmdp-bio.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DatasetFormatError, match="'answer' must be an integer"):
        Wmdp(path=str(tmp_path / "w")).load(seed=0)
    with pytest.raises(DatasetFormatError, match="general multiple-choice"):
        Wmdp(path=str(BUNDLED_WMDP), general="mmlu").load(seed=0)


def test_a_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DatasetFormatError, match=r"'erasus-tests/no-wmdp'.*HF_HUB_OFFLINE"):
        Wmdp(hub="erasus-tests/no-wmdp").load(seed=0)


def test_the_bundled_files_are_the_generators():
    for rel, text in bench.all_files().items():
        if rel.startswith("wmdp_bundled/"):
            assert (bench.DATA_DIR / rel).read_text(encoding="utf-8") == text, rel
