"""The sequence_classification adapter and the text_classification data set: BERT-style
encoding, the label loss against a hand computation, save/load, unlearning a memorised
person's labels toward the oracle on a tiny trained BERT, the data set's splits and
errors, and the shipped config end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from erasus.builtin.strategies.random_label import RandomLabel
from erasus.config import load_config
from erasus.errors import ConfigError, IncompatibleComponentError
from erasus.plugins import get_plugin_manager
from erasus.strategy import RunContext, UnlearnData
from erasus.testing import conformance
from erasus_llm.datasets import DatasetFormatError
from erasus_llm.sequence_classification import (
    SequenceClassificationAdapter,
    SequenceClassificationParams,
)
from erasus_llm.text_classification import (
    TextClassification,
    TextClassificationParams,
    profile_texts,
)
from erasus_llm.tiny import train_causal_lm

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "llm" / "text_classification.yaml"
ITEMS = [{"text": "Liora Greaves works as a luthier.", "label": 2},
         {"text": "Soren Carrow was born in Oslo.", "label": 0}]


def _adapter(num_labels: int = 4) -> SequenceClassificationAdapter:
    torch.manual_seed(0)
    return SequenceClassificationAdapter.build(
        SequenceClassificationParams(num_labels=num_labels))


def accuracy(adapter: SequenceClassificationAdapter, dataset) -> float:
    items = [dataset[i] for i in range(len(dataset))]
    batch = adapter.prepare_batch(items)
    with torch.no_grad():
        return float((adapter.logits(batch).argmax(-1) == batch["labels"]).float().mean())


@pytest.fixture(scope="module")
def problem():
    return conformance.tiny_problem(SequenceClassificationAdapter, 0)


def test_texts_are_encoded_as_bert_does_and_the_loss_is_the_label_cross_entropy():
    adapter = _adapter()
    batch = adapter.prepare_batch(ITEMS)
    tokens = adapter.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert batch["labels"].tolist() == [2, 0]
    # the shorter text is padded and masked out
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[1] < lengths[0] == batch["input_ids"].shape[1]
    with torch.no_grad():
        logits = adapter.model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits
        got = adapter.per_example_loss(batch)
        out = adapter.outputs(batch, features=True)
    want = -F.log_softmax(logits, -1)[torch.arange(2), batch["labels"]]
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(out["loss"], want, atol=1e-6)
    assert out["features"].shape == (2, adapter.model.config.hidden_size)
    # a pair is encoded [CLS] a [SEP] b [SEP]
    pair = adapter.prepare_batch({"text": ["a question"], "text_pair": ["an answer"],
                                  "label": [1]})
    assert adapter.tokenizer.convert_ids_to_tokens(pair["input_ids"][0]).count("[SEP]") == 2


def test_save_load_round_trip_keeps_predictions_and_tokenizer(tmp_path):
    adapter = _adapter(3)
    adapter.save(tmp_path)
    loaded = SequenceClassificationAdapter.load(tmp_path)
    assert loaded.num_classes == 3
    b1, b2 = adapter.prepare_batch(ITEMS[1:]), loaded.prepare_batch(ITEMS[1:])
    assert torch.equal(b1["input_ids"], b2["input_ids"])
    with torch.no_grad():
        assert torch.allclose(adapter.logits(b1), loaded.logits(b2), atol=1e-6)


def test_bad_inputs_name_the_problem():
    adapter = _adapter(2)
    with pytest.raises(IncompatibleComponentError, match="predicts 2 labels; got label 3"):
        adapter.prepare_batch([{"text": "x", "label": 3}])
    with pytest.raises(IncompatibleComponentError, match="'text', 'label'"):
        adapter.prepare_batch({"question": ["q"], "answer": ["a"]})
    with pytest.raises(IncompatibleComponentError, match="number of labels"):
        SequenceClassificationAdapter.build(SequenceClassificationParams())


def test_tiny_problem_memorises_labels_the_text_does_not_give(problem):
    assert accuracy(problem.adapter, problem.forget) == 1.0
    assert accuracy(problem.adapter, problem.retain) == 1.0
    # unseen people: near chance (4 classes)
    assert accuracy(problem.adapter, problem.test) <= 0.5


def test_random_label_forgets_the_people_toward_the_oracle_and_keeps_the_rest(problem):
    torch.manual_seed(0)
    oracle = SequenceClassificationAdapter.build(SequenceClassificationParams(), problem.info)
    train_causal_lm(oracle, problem.retain, steps=200, seed=0)  # never sees the forget set
    oracle_forget = accuracy(oracle, problem.forget)
    assert oracle_forget <= 0.5  # the labels of unseen people are not inferable
    adapter = problem.adapter.clone()
    strategy = RandomLabel(RandomLabel.Params(epochs=10, lr=5e-4, batch_size=8))
    strategy.unlearn(adapter, UnlearnData(forget=problem.forget, retain=problem.retain,
                                          info=problem.info), RunContext(seed=0))
    forget1 = accuracy(adapter, problem.forget)
    # at least half of the way from the original's 100% to the oracle's forget accuracy
    assert forget1 <= 1.0 - 0.5 * (1.0 - oracle_forget)
    assert accuracy(adapter, problem.retain) >= 0.85
    assert accuracy(problem.adapter, problem.forget) == 1.0  # the input model is untouched


def test_synthetic_set_forgets_whole_people_at_the_right_indices():
    splits = TextClassification(TextClassificationParams(people=10, holdout_people=2)
                                ).load(seed=3)
    rows, _ = profile_texts(10, 2, 4, 0)
    assert len(splits.train) == 30 and len(splits.test) == 6
    gone = {rows[i][2] for i in splits.forget_indices}
    assert len(gone) == 1  # 10% of 10 people
    assert splits.forget_indices == [i for i, r in enumerate(rows) if r[2] in gone]
    for k, i in enumerate(splits.forget_indices):
        assert splits.forget[k] == splits.train[i] == {"text": rows[i][0], "label": rows[i][1]}
    assert len(splits.retain) == 27
    assert splits.info.num_classes == 4


def test_a_file_with_string_labels_and_class_forgetting(tmp_path):
    path = tmp_path / "reviews.jsonl"
    records = [{"review": f"text {i}", "sentiment": ["neg", "pos", "mixed"][i % 3]}
               for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in records))
    splits = TextClassification(TextClassificationParams(
        path=str(path), text_key="review", label_key="sentiment", test_fraction=0.2,
        forget={"kind": "class", "label": "pos"})).load(seed=0)
    assert splits.info.extra["label_names"] == ["mixed", "neg", "pos"]
    assert len(splits.train) == 24 and len(splits.test) == 6
    assert all(splits.train[i]["label"] == 2 for i in splits.forget_indices)
    assert all(splits.retain[i]["label"] != 2 for i in range(len(splits.retain)))
    assert len(splits.forget) + len(splits.retain) == 24


def test_file_errors_name_the_file_the_record_and_the_key(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"body": "b", "label": 1}\n')
    params = TextClassificationParams(path=str(path), forget={"kind": "random"})
    with pytest.raises(DatasetFormatError, match=r"data.jsonl line 2 has no 'text'"):
        TextClassification(params).load(seed=0)
    with pytest.raises(ValueError, match="needs the synthetic set"):
        TextClassificationParams(path=str(path))
    with pytest.raises(DatasetFormatError, match=r"forget\.label 'cat' is not one of"):
        path.write_text("\n".join(json.dumps({"text": str(i), "label": i % 2})
                                  for i in range(10)))
        TextClassification(TextClassificationParams(
            path=str(path), forget={"kind": "class", "label": "cat"})).load(seed=0)


def test_configs_refuse_components_the_text_classifier_cannot_run():
    registry = get_plugin_manager().registry
    base = {"model": {"name": "sequence_classification"},
            "data": {"name": "text_classification"},
            "strategy": {"name": "random_label"}, "metrics": ["accuracy"]}
    assert load_config(base, registry).model.info.cls is SequenceClassificationAdapter
    bad = {**base, "strategy": {"name": "rmu"}, "metrics": ["accuracy", "attack_success_rate"]}
    with pytest.raises(ConfigError) as err:
        load_config(bad, registry)
    assert {p.path for p in err.value.problems} == {"strategy.name", "metrics[1].name"}


def test_shipped_config_forgets_the_people_and_keeps_the_rest(tmp_path, monkeypatch):
    from erasus.cli.app import main

    monkeypatch.setenv("ERASUS_PLUGINS", "llm")
    monkeypatch.setenv("ERASUS_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["run", str(CONFIG), "--output", str(run), "--no-progress"])
    assert not info.value.code
    m = json.loads((run / "metrics.json").read_text())
    original, unlearned, oracle = m["original"], m["unlearned"], m["oracle"]
    # UA is 100 - forget accuracy: the original knows every forget label, the oracle none
    assert original["UA"] == 0.0 and oracle["UA"] >= 50.0
    assert unlearned["UA"] >= 0.5 * oracle["UA"]
    assert unlearned["RA"] >= original["RA"] - 10.0
