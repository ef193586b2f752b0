"""The ``muse`` loader: the bundled MUSE-style set and MUSE's published layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from erasus_llm import _author_bench as bench
from erasus_llm.datasets import DatasetFormatError
from erasus_llm.muse import BUNDLED_MUSE, Muse

REQUIRED = ("raw/forget", "raw/retain1", "raw/holdout", "verbmem/forget",
            "knowmem/forget_qa", "knowmem/retain_qa", "privleak/forget", "privleak/retain",
            "privleak/holdout")


def rows(name: str, root: Path = BUNDLED_MUSE) -> list[dict]:
    return [json.loads(line) for line in (root / f"{name}.json").read_text().splitlines()]


def items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_the_bundled_set_has_musees_layout_and_fields():
    for name in (*REQUIRED, "raw/retain2"):
        assert (BUNDLED_MUSE / f"{name}.json").is_file(), name
    assert all(set(r) == {"text"} for n in ("raw/forget", "privleak/holdout")
               for r in rows(n))
    assert all(set(r) == {"prompt", "gt"} for r in rows("verbmem/forget"))
    assert all(set(r) == {"question", "answer"} for r in rows("knowmem/forget_qa"))
    # verbatim memorisation: the prompt and its ground-truth continuation are forget text
    forget_texts = [r["text"] for r in rows("raw/forget")]
    assert [r["prompt"] + r["gt"] for r in rows("verbmem/forget")] == forget_texts
    # knowledge memorisation: each forget answer is stated in the forget corpus
    for qa in rows("knowmem/forget_qa"):
        assert any(qa["answer"] in t for t in forget_texts), qa
    holdout = {r["text"] for r in rows("raw/holdout")}
    assert not holdout & set(forget_texts) and not holdout & {
        r["text"] for r in rows("raw/retain1")}


def test_the_splits():
    splits = Muse().load(seed=0)
    forget, retain = rows("raw/forget"), rows("raw/retain1")
    assert items(splits.forget) == forget and items(splits.retain) == retain
    assert [splits.train[i] for i in splits.forget_indices] == forget
    assert items(splits.test) == rows("raw/holdout")
    assert items(splits.get("verbmem_forget")) == rows("verbmem/forget")
    assert items(splits.get("knowmem_retain_qa")) == rows("knowmem/retain_qa")
    assert items(splits.get("privleak_retain")) == rows("privleak/retain")
    assert items(splits.get("retain2")) == rows("raw/retain2")
    # the few-shot examples knowmem puts before each question (optional in a local copy)
    assert items(splits.get("knowmem_forget_qa_icl")) == rows("knowmem/forget_qa_icl")
    assert items(splits.get("knowmem_retain_qa_icl")) == rows("knowmem/retain_qa_icl")
    assert splits.info.extra["files"]["knowmem_retain_qa"] == ["knowmem/retain_qa.json"]
    assert splits.collate_fn(items(splits.get("verbmem_forget"))[:2]) == \
        rows("verbmem/forget")[:2]


def test_books_names_txt_raw_files_and_jsonl(tmp_path):
    """MUSE-Books names the retain QA and privleak files retain2; the MUSE repository ships
    raw corpora as .txt files."""
    root = tmp_path / "books"
    shutil.copytree(BUNDLED_MUSE, root)
    (root / "knowmem/retain_qa.json").rename(root / "knowmem/retain2_qa.json")
    (root / "privleak/retain.json").rename(root / "privleak/retain2.json")
    (root / "raw/forget.json").unlink()
    (root / "raw/forget.txt").write_text("One long forget document.\nIts second line.")
    qa = rows("knowmem/forget_qa")
    (root / "knowmem/forget_qa.json").unlink()
    (root / "knowmem/forget_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
    (root / "knowmem/forget_qa_icl.json").write_text(json.dumps(qa[:3]))
    splits = Muse(path=str(root), corpus="books").load(seed=0)
    assert items(splits.forget) == [{"text": "One long forget document.\nIts second line."}]
    assert items(splits.get("knowmem_retain_qa")) == rows("knowmem/retain_qa")
    assert items(splits.get("knowmem_forget_qa")) == qa
    assert items(splits.get("knowmem_forget_qa_icl")) == qa[:3]
    assert splits.info.extra["files"]["privleak_retain"] == ["privleak/retain2.json"]
    assert splits.info.extra["corpus"] == "books"


def test_the_hubs_parquet_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for name in REQUIRED:  # <config>/<split>-00000-of-00001.parquet
        (tmp_path / name).parent.mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows(name)),
                       tmp_path / f"{name}-00000-of-00001.parquet")
    splits = Muse(path=str(tmp_path)).load(seed=0)
    assert items(splits.get("verbmem_forget")) == rows("verbmem/forget")


def test_a_missing_file_is_named(tmp_path):
    shutil.copytree(BUNDLED_MUSE, tmp_path / "m")
    (tmp_path / "m/verbmem/forget.json").unlink()
    with pytest.raises(DatasetFormatError, match="'verbmem/forget'"):
        Muse(path=str(tmp_path / "m")).load(seed=0)
    shutil.rmtree(tmp_path / "m/privleak")
    (tmp_path / "m/verbmem/forget.json").write_text(json.dumps([{"prompt": "a"}]))
    with pytest.raises(DatasetFormatError, match="record 0 has no 'gt' field"):
        Muse(path=str(tmp_path / "m")).load(seed=0)


def test_a_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DatasetFormatError, match=r"'erasus-tests/no-muse'.*HF_HUB_OFFLINE"):
        Muse(hub="erasus-tests/no-muse").load(seed=0)


def test_the_bundled_files_are_the_generators():
    for rel, text in bench.all_files().items():
        if rel.startswith("muse_bundled/"):
            assert (bench.DATA_DIR / rel).read_text(encoding="utf-8") == text, rel
