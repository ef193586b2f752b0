"""The bundled TOFU-format benchmark, its generator, and the ``tofu`` loader."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from erasus_llm import _author_bench as bench
from erasus_llm.datasets import DatasetFormatError
from erasus_llm.tofu import BUNDLED_TOFU, Tofu
from pydantic import ValidationError

CONFIGS = ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
           "holdout01", "holdout05", "holdout10", "forget01_perturbed",
           "forget05_perturbed", "forget10_perturbed", "retain_perturbed", "real_authors",
           "real_authors_perturbed", "world_facts", "world_facts_perturbed")
PERTURBED_KEYS = {"question", "answer", "paraphrased_answer", "paraphrased_question",
                  "perturbed_answer"}


def rows(name: str, root: Path = BUNDLED_TOFU) -> list[dict]:
    return [json.loads(line) for line in (root / f"{name}.json").read_text().splitlines()]


def items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


NAME = re.compile(r"\b(?:{}) (?:{})\b".format("|".join(bench.FIRST), "|".join(bench.LAST)))


def author(question: str) -> str:
    (name,) = NAME.findall(question)
    return name


def authors(name: str) -> set[str]:
    return {author(r["question"]) for r in rows(name)}


# -- the bundled files -------------------------------------------------------------------
def test_the_bundled_files_have_the_published_names_and_are_small():
    assert sorted(p.stem for p in BUNDLED_TOFU.iterdir()) == sorted(CONFIGS)
    assert all(p.suffix == ".json" for p in BUNDLED_TOFU.iterdir())
    assert sum(p.stat().st_size for p in BUNDLED_TOFU.iterdir()) < 300_000


def test_the_bundled_files_follow_the_published_schema():
    for name in CONFIGS:
        records = rows(name)  # JSON lines in a .json file, as TOFU publishes them
        if name.endswith("_perturbed") and name.startswith(("forget", "retain")):
            for r in records:
                assert set(r) == PERTURBED_KEYS
                assert len(r["perturbed_answer"]) == 5
                assert r["paraphrased_answer"] not in r["perturbed_answer"]
                assert r["paraphrased_question"] != r["question"]
        elif name in ("real_authors_perturbed", "world_facts_perturbed"):
            for r in records:
                assert set(r) == {"question", "answer", "perturbed_answer"}
                assert len(r["perturbed_answer"]) == 3 and r["answer"] not in \
                    r["perturbed_answer"]
        elif name in ("real_authors", "world_facts"):
            for r in records:
                assert set(r) == {"question", "option1", "option2", "option3", "option4",
                                  "answer"}
                assert r["answer"] in [r[f"option{i}"] for i in range(1, 5)]
            assert [r["question"] for r in records] == \
                [r["question"] for r in rows(f"{name}_perturbed")]
        else:
            assert all(set(r) == {"question", "answer"} for r in records), name


def test_split_sizes_complements_and_disjoint_authors():
    full = rows("full")
    assert len(full) == 500 and len(authors("full")) == 100
    for pct, retain in ((1, "retain99"), (5, "retain95"), (10, "retain90")):
        forget = rows(f"forget{pct:02d}")
        assert len(forget) == len(full) * pct // 100  # whole authors: 5 questions each
        assert rows(retain) + forget == full  # the complement, in full's order
        assert not authors(f"forget{pct:02d}") & authors(retain)
        assert len(authors(f"forget{pct:02d}")) == pct
        perturbed = rows(f"forget{pct:02d}_perturbed")
        assert [{"question": r["question"], "answer": r["answer"]} for r in perturbed] == \
            forget
        holdout = authors(f"holdout{pct:02d}")
        assert len(holdout) == pct and not holdout & authors("full")
    assert authors("forget01") < authors("forget05") < authors("forget10")
    assert authors("retain_perturbed") <= authors("retain90")
    assert len(rows("retain_perturbed")) == 50


def test_perturbed_answers_share_the_paraphrase_template_with_another_value():
    for r in rows("forget10_perturbed") + rows("retain_perturbed"):
        texts = [r["paraphrased_answer"], *r["perturbed_answer"]]
        words = [t.split() for t in texts]
        shared = 0  # the template's leading words, the same in all of them
        while all(len(w) > shared and w[shared] == words[0][shared] for w in words):
            shared += 1
        assert shared >= 2 and words[0][0].startswith(author(r["question"]).split()[0])
        assert len(set(texts)) == len(texts)


def test_the_generator_is_deterministic_and_matches_the_shipped_files(tmp_path):
    assert bench.all_files() == bench.all_files()
    written = bench.write_bundle(tmp_path)
    assert written
    for path in written:
        rel = path.relative_to(tmp_path)
        assert path.read_bytes() == (bench.DATA_DIR / rel).read_bytes(), rel
    assert bench.main(["--check"]) == 0


# -- the loader ------------------------------------------------------------------------
@pytest.mark.parametrize("forget_split, retain, holdout", [
    ("forget01", "retain99", "holdout01"), ("forget05", "retain95", "holdout05"),
    ("forget10", "retain90", "holdout10")])
def test_the_splits_are_the_published_files(forget_split, retain, holdout):
    splits = Tofu(forget_split=forget_split).load(seed=0)
    forget_rows, retain_rows = rows(forget_split), rows(retain)
    assert items(splits.forget) == forget_rows and items(splits.retain) == retain_rows
    assert items(splits.train) == retain_rows + forget_rows
    assert [splits.train[i] for i in splits.forget_indices] == forget_rows
    assert splits.forget_indices == list(range(len(retain_rows), len(splits.train)))
    assert items(splits.test) == rows(holdout) == items(splits.get("holdout"))
    assert items(splits.get("forget_perturbed")) == rows(f"{forget_split}_perturbed")
    assert items(splits.get("retain_perturbed")) == rows("retain_perturbed")
    assert items(splits.get("real_authors")) == rows("real_authors_perturbed")
    assert items(splits.get("world_facts")) == rows("world_facts_perturbed")
    assert splits.info.extra["files"]["forget"] == [f"{forget_split}.json"]
    assert splits.info.extra["files"]["retain"] == [f"{retain}.json"]
    assert splits.info.extra["source"] == "bundled"


def test_knowledge_sets_are_trained_on_as_retain_data_before_the_forget_authors():
    plain = Tofu(forget_split="forget05").load(seed=0)
    splits = Tofu(forget_split="forget05", knowledge=["real_authors", "world_facts"]
                  ).load(seed=0)
    knowledge = [{"question": r["question"], "answer": r["answer"]}
                 for name in ("real_authors_perturbed", "world_facts_perturbed")
                 for r in rows(name)]
    assert items(splits.retain) == items(plain.retain) + knowledge
    assert items(splits.forget) == items(plain.forget) == rows("forget05")
    assert [splits.train[i] for i in splits.forget_indices] == rows("forget05")
    assert splits.forget_indices[0] == len(plain.retain) + len(knowledge)
    # the evaluation splits are unchanged
    assert items(splits.get("real_authors")) == rows("real_authors_perturbed")
    with pytest.raises(ValidationError, match="knowledge"):
        Tofu(knowledge=["holdout"])


def copy_published(root: Path, fmt: str) -> None:
    """The bundled files rewritten in another published form: a JSON list or .jsonl."""
    root.mkdir(exist_ok=True)
    for path in BUNDLED_TOFU.iterdir():
        records = rows(path.stem)
        if fmt == "json":
            (root / path.name).write_text(json.dumps(records, indent=1))
        else:
            (root / f"{path.stem}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_loading_a_local_directory_in_the_published_format(tmp_path, fmt):
    copy_published(tmp_path / "tofu", fmt)
    splits = Tofu(path=str(tmp_path / "tofu"), forget_split="forget05").load(seed=0)
    bundled = Tofu(forget_split="forget05").load(seed=0)
    for name in splits.names():
        assert items(splits.get(name)) == items(bundled.get(name)), name
    assert splits.forget_indices == bundled.forget_indices
    suffix = ".json" if fmt == "json" else ".jsonl"
    assert splits.info.extra["files"]["holdout"] == [f"holdout05{suffix}"]
    assert splits.info.extra["source"] == str(tmp_path / "tofu")


def test_loading_the_hubs_parquet_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for path in BUNDLED_TOFU.iterdir():  # <config>/train-00000-of-00001.parquet
        (tmp_path / path.stem).mkdir()
        pq.write_table(pa.Table.from_pylist(rows(path.stem)),
                       tmp_path / path.stem / "train-00000-of-00001.parquet")
    splits = Tofu(path=str(tmp_path)).load(seed=0)
    assert items(splits.get("forget_perturbed")) == rows("forget10_perturbed")


def test_a_missing_file_is_named(tmp_path):
    shutil.copytree(BUNDLED_TOFU, tmp_path / "tofu")
    (tmp_path / "tofu" / "holdout10.json").unlink()
    with pytest.raises(DatasetFormatError, match="'holdout10'"):
        Tofu(path=str(tmp_path / "tofu")).load(seed=0)
    Tofu(path=str(tmp_path / "tofu"), forget_split="forget05").load(seed=0)  # not needed
    with pytest.raises(DatasetFormatError, match="not a directory"):
        Tofu(path=str(tmp_path / "nowhere")).load(seed=0)


def test_a_malformed_record_is_named(tmp_path):
    shutil.copytree(BUNDLED_TOFU, tmp_path / "tofu")
    bad = rows("retain_perturbed")
    bad[3]["perturbed_answer"] = "one string"
    (tmp_path / "tofu" / "retain_perturbed.json").write_text(
        "\n".join(json.dumps(r) for r in bad))
    with pytest.raises(DatasetFormatError, match=r"retain_perturbed.json record 3: "
                                                 "'perturbed_answer' must be a list"):
        Tofu(path=str(tmp_path / "tofu")).load(seed=0)
    del bad[3]["perturbed_answer"], bad[5]["answer"]
    (tmp_path / "tofu" / "retain_perturbed.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetFormatError, match="record 5 has no 'answer' field"):
        Tofu(path=str(tmp_path / "tofu")).load(seed=0)


def test_a_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DatasetFormatError,
                       match=r"'erasus-tests/not-a-real-tofu'.*HF_HUB_OFFLINE.*'path'"):
        Tofu(hub="erasus-tests/not-a-real-tofu").load(seed=0)
    with pytest.raises(ValidationError, match="not both"):
        Tofu(path=str(tmp_path), hub="locuslab/TOFU")


def test_a_hub_id_in_the_local_hub_cache_loads_offline(monkeypatch, tmp_path):
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    commit = "0" * 40
    repo = tmp_path / "hub" / "datasets--erasus-tests--tofu-copy"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(BUNDLED_TOFU, repo / "snapshots" / commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    splits = Tofu(hub="erasus-tests/tofu-copy", forget_split="forget01").load(seed=0)
    assert items(splits.forget) == rows("forget01")
    assert splits.info.extra["source"] == "erasus-tests/tofu-copy"


# -- batches through the causal LM adapter --------------------------------------------
def test_a_batch_of_items_goes_through_the_causal_lm_adapter():
    import torch
    from erasus.data import index_loader
    from erasus_llm.causal_lm import IGNORE_INDEX, CausalLMAdapter, CausalLMParams
    from erasus_llm.tiny import TINY_GPT2

    adapter = CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2))
    splits = Tofu().load(seed=0)
    tok = adapter.tokenizer
    for split in ("forget_perturbed", "real_authors", "forget"):
        data = splits.get(split)
        loader = index_loader(data, batch_size=4, collate_fn=splits.collate_fn)
        indices, batch = next(iter(loader))
        # the records stay whole: a list field is not transposed across the batch
        assert batch == [data[int(i)] for i in indices]
        prepared = adapter.prepare_batch(batch)
        assert prepared["input_ids"].shape[0] == 4
        for row, record in zip(prepared["labels"], batch, strict=True):
            answer = [t for t in row.tolist() if t != IGNORE_INDEX]
            assert tok.decode(answer[:-1]) == " " + record["answer"]
            assert answer[-1] == tok.eos_token_id
        with torch.no_grad():
            losses = adapter.per_example_loss(prepared)
            one = adapter.per_example_loss(adapter.prepare_batch([batch[2]]))
        assert float(losses[2]) == pytest.approx(float(one[0]), abs=1e-5)
