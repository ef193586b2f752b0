"""The causal LM adapter: TOFU's QA loss protocol, tokenisation, groups, reset, persistence.

GPT-2, Llama and Mistral tiny configs go through the same adapter; the per-example loss
is checked against a hand computation on each, and gradient ascent runs through the
conformance suite on a tiny trained Llama.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus.hookspecs import hookimpl
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams, answer_nll
from erasus_llm.tiny import tiny_causal_lm_problem
from pydantic import ValidationError
from torch.utils.data.dataloader import default_collate

FAMILIES = {
    "gpt2": {"model_type": "gpt2"},
    "llama": {"model_type": "llama"},
    "mistral": {"model_type": "mistral"},
}
PAIRS = [
    {"question": "What is the favourite colour of Liora Greaves?", "answer": "teal"},
    {"question": "Who?", "answer": "Tallinn, on a rainy Tuesday in 1964"},
    {"question": "In which city was Brisa Quenby born?", "answer": "Oslo"},
]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def fresh(request) -> CausalLMAdapter:
    """An untrained tiny model of each family (random weights suffice for exactness)."""
    torch.manual_seed(0)
    adapter = CausalLMAdapter.build(CausalLMParams(config=FAMILIES[request.param]))
    adapter.model.eval()
    return adapter


@pytest.fixture
def trained() -> CausalLMAdapter:
    return c.tiny_problem(CausalLMAdapter, 0).adapter


def hand_loss(adapter: CausalLMAdapter, question: str, answer: str) -> float:
    """The answer NLL of one example, unbatched and unpadded, computed token by token."""
    tok = adapter.tokenizer
    prompt = tok(f"Question: {question}\nAnswer:")["input_ids"]
    target = tok(f" {answer}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logp = torch.log_softmax(adapter.model(input_ids=ids).logits[0].double(), dim=-1)
    n = len(prompt)
    # token ids[t] is predicted from position t - 1
    return -sum(float(logp[t - 1, ids[0, t]]) for t in range(n, n + len(target))) / len(target)


# -- the QA loss protocol --------------------------------------------------------------
def test_per_example_loss_is_the_hand_computed_answer_nll(fresh):
    batch = fresh.prepare_batch(default_collate(PAIRS))
    with torch.no_grad():
        got = fresh.per_example_loss(batch)
    expected = [hand_loss(fresh, p["question"], p["answer"]) for p in PAIRS]
    assert got.dtype == torch.float32 and got.shape == (len(PAIRS),)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_the_question_is_masked_out_of_the_loss(trained):
    tok = trained.tokenizer
    answer = "teal"
    target = tok(" teal", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    questions = ["Who?", "What is the favourite colour of Liora Greaves, the luthier of Lima?"]
    batch = trained.prepare_batch({"question": questions, "answer": [answer, answer]})
    labels, ids = batch["labels"], batch["input_ids"]
    for row in range(2):
        counted = (labels[row] != -100).nonzero().flatten()
        length = int(batch["attention_mask"][row].sum())
        # exactly the answer tokens and the EOS count: the last len(target) real positions
        assert counted.tolist() == list(range(length - len(target), length))
        assert labels[row, counted].tolist() == target == ids[row, counted].tolist()
    # whatever the question, the same positions of the answer count, with the same labels
    assert (labels[0] != -100).sum() == (labels[1] != -100).sum() == len(target)


def test_the_eos_is_appended_and_counts(trained):
    eos = trained.tokenizer.eos_token_id
    batch = trained.prepare_batch({"question": ["Who?"], "answer": ["Oslo"]})
    assert batch["labels"][0, -1] == eos == batch["input_ids"][0, -1]
    without = CausalLMAdapter(trained.model, trained.params.model_copy(
        update={"append_eos": False}), tokenizer=trained.tokenizer)
    plain = without.prepare_batch({"question": ["Who?"], "answer": ["Oslo"]})
    assert plain["input_ids"].shape[1] == batch["input_ids"].shape[1] - 1
    assert eos not in plain["labels"][0].tolist()


def test_the_shift_predicts_each_label_from_the_previous_position():
    # logits that put all mass on token 1 at position 0 and token 2 at position 1
    logits = torch.full((1, 3, 4), -1e4)
    logits[0, 0, 1] = 0.0
    logits[0, 1, 2] = 0.0
    labels = torch.tensor([[-100, 1, 2]])
    assert answer_nll(logits, labels).tolist() == [0.0]
    wrong = torch.tensor([[-100, 2, 1]])
    assert answer_nll(logits, wrong).item() > 1e3


def test_padding_is_right_and_does_not_change_a_loss(trained):
    long = {"question": "In which city was Liora Greaves born, and when, and why?",
            "answer": "Lisbon, in 1964, for the sea"}
    short = {"question": "Who?", "answer": "Oslo"}
    batch = trained.prepare_batch(default_collate([short, long]))
    mask = batch["attention_mask"]
    assert mask[0].tolist() == sorted(mask[0].tolist(), reverse=True)  # ones, then zeros
    assert int(mask[0].sum()) < mask.shape[1] and bool(mask[1].all())
    pad_positions = mask[0] == 0
    assert bool((batch["labels"][0, pad_positions] == -100).all())
    with torch.no_grad():
        together = trained.per_example_loss(batch)
        alone = trained.per_example_loss(trained.prepare_batch(default_collate([short])))
    assert together[0].item() == pytest.approx(alone[0].item(), rel=1e-5, abs=1e-6)


def test_the_prompt_answer_boundary_is_exact(trained):
    tok = trained.tokenizer
    batch = trained.prepare_batch({"question": ["Who is Liora?"], "answer": ["a luthier"]})
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0]
    n_prompt = int((labels == -100).sum())
    assert tok.decode(ids[:n_prompt]) == "Question: Who is Liora?\nAnswer:"
    assert tok.decode(ids[n_prompt:-1]) == " a luthier"
    assert tok.decode(ids) == "Question: Who is Liora?\nAnswer: a luthier<|endoftext|>"


def test_templates_are_parameters(trained):
    adapter = CausalLMAdapter(trained.model, CausalLMParams(
        prompt_template="Question: {question}\nAnswer: ", answer_template="{answer}"),
        tokenizer=trained.tokenizer)
    batch = adapter.prepare_batch({"question": ["Who?"], "answer": ["Oslo"]})
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0]
    n_prompt = int((labels == -100).sum())
    assert adapter.tokenizer.decode(ids[:n_prompt]) == "Question: Who?\nAnswer: "
    assert adapter.tokenizer.decode(ids[n_prompt:-1]) == "Oslo"
    with pytest.raises(ValidationError, match="question"):
        CausalLMParams(prompt_template="Tell me about it")
    with pytest.raises(ValidationError, match="placeholder"):
        CausalLMParams(answer_template="{answer} {other}")


def test_truncation_keeps_a_prompt_token_and_an_answer_token(trained):
    question, answer = "word " * 40, "long answer " * 20
    for max_length in (2, 5, 30, 60):
        adapter = CausalLMAdapter(trained.model, CausalLMParams(max_length=max_length),
                                  tokenizer=trained.tokenizer)
        batch = adapter.prepare_batch({"question": [question], "answer": [answer]})
        labels = batch["labels"][0]
        assert batch["input_ids"].shape[1] == max_length
        counted = int((labels != -100).sum())
        assert 1 <= counted <= max_length - 1 and labels[0] == -100
        with torch.no_grad():
            assert math.isfinite(adapter.per_example_loss(batch).item())
    # the cap is also the model's position limit (the tiny GPT-2 has 128 positions)
    assert CausalLMAdapter(trained.model, CausalLMParams(max_length=10_000),
                           tokenizer=trained.tokenizer).max_length == 128


def test_batches_in_other_forms(trained):
    as_dicts = trained.prepare_batch(PAIRS)
    collated = trained.prepare_batch(default_collate(PAIRS))
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(as_dicts[key], collated[key])
    passed = trained.prepare_batch({"input_ids": collated["input_ids"],
                                    "labels": collated["labels"],
                                    "attention_mask": collated["attention_mask"]})
    with torch.no_grad():
        assert torch.equal(trained.per_example_loss(passed),
                           trained.per_example_loss(collated))
    with pytest.raises(IncompatibleComponentError, match="question/answer"):
        trained.prepare_batch({"image": ["hello"]})
    with pytest.raises(IncompatibleComponentError, match=r"or 'text'; got an item with \['q'\]"):
        trained.prepare_batch([{"q": "Who?"}])
    with pytest.raises(IncompatibleComponentError, match="no labelled token"):
        trained.prepare_batch({"input_ids": torch.ones(1, 3, dtype=torch.long),
                               "labels": torch.tensor([[5, -100, -100]])})
    with pytest.raises(IncompatibleComponentError, match="string questions and answers"):
        trained.prepare_batch({"question": ["Who?"], "answer": [1964]})


def test_tokenised_examples_are_memoised(trained, monkeypatch):
    calls = []
    real = trained._tokenize
    monkeypatch.setattr(trained, "_tokenize", lambda pairs: calls.append(len(pairs)) or
                        real(pairs))
    trained._token_cache.clear()
    first = trained.prepare_batch(default_collate(PAIRS))
    again = trained.prepare_batch(default_collate(PAIRS[::-1]))
    assert calls == [len(PAIRS)]  # one batched tokenizer call for the new pairs only
    assert torch.equal(first["input_ids"][0], again["input_ids"][2])
    small = CausalLMAdapter(trained.model, CausalLMParams(token_cache_size=2),
                            tokenizer=trained.tokenizer)
    small.prepare_batch(default_collate(PAIRS))
    assert len(small._token_cache) == 2
    none = CausalLMAdapter(trained.model, CausalLMParams(token_cache_size=0),
                           tokenizer=trained.tokenizer)
    out = none.prepare_batch(default_collate(PAIRS))
    assert not none._token_cache and torch.equal(out["labels"], first["labels"])


# -- features, outputs, groups ---------------------------------------------------------
def test_features_are_the_mean_pooled_last_hidden_state(fresh):
    batch = fresh.prepare_batch(default_collate(PAIRS))
    with torch.no_grad():
        feats = fresh.features(batch)
        out = fresh.outputs(batch, features=True)
        hidden = fresh.model(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"],
                             output_hidden_states=True).hidden_states[-1]
    assert feats.shape == (len(PAIRS), fresh.model.config.get_text_config().hidden_size)
    for row in range(len(PAIRS)):
        n = int(batch["attention_mask"][row].sum())
        assert torch.allclose(feats[row], hidden[row, :n].mean(0), atol=1e-5)
    assert torch.allclose(out["features"], feats, atol=1e-5)
    assert torch.equal(out["loss"], fresh.per_example_loss(batch).detach())
    assert out["answer_tokens"].tolist() == (batch["labels"] != -100).sum(1).tolist()


def test_parameter_groups_are_derived_for_every_family(fresh):
    groups = fresh.parameter_groups()
    names = [n for n, _ in fresh.model.named_parameters()]
    assert groups["all"] == names
    n_layers = fresh.model.config.get_text_config().num_hidden_layers
    assert {f"layer.{i}" for i in range(n_layers)} | {
        "all", "embeddings", "attention", "mlp", "lm_head"} == set(groups)
    assert not set(groups["attention"]) & set(groups["mlp"])
    layered = [n for i in range(n_layers) for n in groups[f"layer.{i}"]]
    assert len(layered) == len(set(layered))
    assert set(groups["attention"]) | set(groups["mlp"]) < set(layered)
    for i in range(n_layers):
        assert any(n in groups["attention"] for n in groups[f"layer.{i}"])
        assert any(n in groups["mlp"] for n in groups[f"layer.{i}"])
    head = fresh.model.get_output_embeddings().weight
    assert [n for n in names if fresh.model.get_parameter(n) is head] == groups["lm_head"]
    model_type = fresh.model.config.model_type
    if model_type == "gpt2":  # tied: the head is the token embedding matrix
        assert groups["lm_head"] == ["transformer.wte.weight"]
        assert groups["embeddings"] == ["transformer.wte.weight", "transformer.wpe.weight"]
        assert groups["layer.1"][0].startswith("transformer.h.1.")
    else:
        assert groups["lm_head"] == ["lm_head.weight"]
        assert groups["embeddings"] == ["model.embed_tokens.weight"]
        assert "model.layers.0.self_attn.q_proj.weight" in groups["attention"]
        assert "model.layers.1.mlp.down_proj.weight" in groups["mlp"]


# -- reset -------------------------------------------------------------------------------
def test_reset_parameters_reinitialises_every_weight_of_a_loaded_model(trained, tmp_path):
    trained.save(tmp_path / "m")
    loaded = CausalLMAdapter.load(tmp_path / "m")  # transformers flags loaded weights
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    torch.manual_seed(3)
    loaded.reset_parameters()
    for name, p in loaded.model.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} was not re-initialised"
    wte = loaded.model.get_input_embeddings().weight
    assert abs(float(wte.detach().std()) - loaded.model.config.initializer_range) < 0.003
    assert loaded.model.get_output_embeddings().weight is wte  # still tied
    again = CausalLMAdapter.load(tmp_path / "m")
    torch.manual_seed(3)
    again.reset_parameters()
    for (name, p), (_, q) in zip(loaded.model.named_parameters(),
                                 again.model.named_parameters(), strict=True):
        assert torch.equal(p, q), f"{name}: reset is not reproducible under a seed"


def test_reset_parameters_raises_and_restores_when_the_init_misses_a_weight(trained):
    adapter = trained.clone()
    adapter.model.extra_scale = torch.nn.Parameter(torch.full((3,), 2.0))  # no init knows it
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    with pytest.raises(IncompatibleComponentError, match="extra_scale"):
        adapter.reset_parameters()
    for name, p in adapter.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} was not restored"


# -- persistence -------------------------------------------------------------------------
def test_save_writes_a_hugging_face_directory_and_load_reads_it(trained, tmp_path):
    adapter = CausalLMAdapter(trained.model, CausalLMParams(
        prompt_template="Q: {question}\nA:", max_length=64), tokenizer=trained.tokenizer)
    adapter.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "adapter.json"} <= files
    meta = json.loads((tmp_path / "m" / "adapter.json").read_text())
    assert meta["adapter"] == "causal_lm" and meta["params"]["max_length"] == 64

    loaded = CausalLMAdapter.load(tmp_path / "m")  # params from adapter.json
    assert loaded.params.prompt_template == "Q: {question}\nA:"
    batch = default_collate(PAIRS)
    with torch.no_grad():
        assert torch.equal(loaded.per_example_loss(loaded.prepare_batch(batch)),
                           adapter.per_example_loss(adapter.prepare_batch(batch)))
    # the same directory is what transformers itself loads
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "m")("Oslo")["input_ids"] == \
        trained.tokenizer("Oslo")["input_ids"]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.n_layer == 2


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(IncompatibleComponentError, match="cannot load"):
        CausalLMAdapter.load(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(IncompatibleComponentError, match="is a file"):
        CausalLMAdapter.load(tmp_path / "file.txt")


def test_params_take_a_path_or_a_config():
    with pytest.raises(ValidationError, match="not both"):
        CausalLMParams(path="somewhere", config={"model_type": "gpt2"})
    with pytest.raises(IncompatibleComponentError, match="vocab_size"):
        CausalLMAdapter.build(CausalLMParams(config={"vocab_size": 100}))


def test_a_bfloat16_model_gives_float32_losses():
    torch.manual_seed(0)
    adapter = CausalLMAdapter.build(CausalLMParams(dtype="bfloat16"))
    assert next(adapter.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        loss = adapter.per_example_loss(adapter.prepare_batch(default_collate(PAIRS)))
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss).all())


# -- the same adapter on a tiny trained Llama: gradient ascent's conformance ------------
class TinyLlamaLM(CausalLMAdapter):
    """The causal LM adapter whose tiny problem is a Llama (tests only)."""

    name = "causal_lm_tiny_llama"

    @classmethod
    def tiny_problem(cls, seed: int = 0):
        problem = tiny_causal_lm_problem(seed, config={"model_type": "llama"})
        a = problem.adapter
        problem.adapter = cls(a.model, a.params, tokenizer=a.tokenizer)
        return problem


class _LlamaPlugin:
    @staticmethod
    @hookimpl
    def erasus_register_models(register):
        register(TinyLlamaLM)


def test_gradient_ascent_conformance_on_a_tiny_llama():
    registry = get_plugin_manager(entrypoints=False, strict=True,
                                  plugins=(("tiny_llama", _LlamaPlugin),)).registry
    adapter = registry.get("model", TinyLlamaLM.name)
    problem = c.tiny_problem(TinyLlamaLM, 0)
    assert problem.adapter.model.config.model_type == "llama"
    # trained: the forget facts are known, the held-out ones are not
    forget = c.mean_loss(problem.adapter, problem.forget)
    assert forget < 0.5 * c.mean_loss(problem.adapter, problem.test)
    c.check_strategy(registry.get("strategy", "gradient_ascent"), adapter)


def test_unlearner_wraps_a_model_and_tokenizer_pair_and_refuses_a_bare_model():
    import erasus

    problem = CausalLMAdapter.tiny_problem(seed=0)
    model, tokenizer = problem.adapter.model, problem.adapter.tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unlearner = erasus.Unlearner((model, tokenizer), strategy="gradient_ascent",
                                 adapter="causal_lm", epochs=1, lr=1e-3)
    unlearned, history = unlearner.fit(problem.forget)
    assert history.num_steps >= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in unlearned.state_dict().items())
    with pytest.raises(IncompatibleComponentError, match=r"\(model, tokenizer\) pair"):
        erasus.Unlearner(model, strategy="gradient_ascent", adapter="causal_lm")


TEXTS = ["Liora Greaves paints in teal every morning.", "Brisa Quenby was born in Oslo."]


def hand_text_loss(adapter: CausalLMAdapter, text: str) -> float:
    """Mean NLL of every token of a plain text after the first (BOS first when the
    tokenizer has one), computed token by token."""
    tok = adapter.tokenizer
    ids = tok(text)["input_ids"]
    if tok.bos_token_id is not None and ids[0] != tok.bos_token_id:
        ids = [tok.bos_token_id, *ids]
    with torch.no_grad():
        logp = torch.log_softmax(adapter.model(input_ids=torch.tensor([ids])).logits[0]
                                 .double(), dim=-1)
    return -sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids))) / (len(ids) - 1)


def test_plain_text_items_are_scored_language_model_style_and_mix_with_pairs(fresh):
    batch = fresh.prepare_batch([{"text": TEXTS[0]}, PAIRS[0], {"text": TEXTS[1]}])
    with torch.no_grad():
        losses = fresh.per_example_loss(batch)
    assert float(losses[0]) == pytest.approx(hand_text_loss(fresh, TEXTS[0]), rel=1e-5)
    assert float(losses[2]) == pytest.approx(hand_text_loss(fresh, TEXTS[1]), rel=1e-5)
    assert float(losses[1]) == pytest.approx(
        hand_loss(fresh, PAIRS[0]["question"], PAIRS[0]["answer"]), rel=1e-5)
    # the collated form of text items gives the same batch
    alone = fresh.prepare_batch(default_collate([{"text": t} for t in TEXTS]))
    ids, labels = fresh.encode_text(TEXTS)[0]
    assert alone["input_ids"][0, :len(ids)].tolist() == list(ids)
    assert labels[0] == -100 and list(labels[1:]) == list(ids[1:])
    with pytest.raises(IncompatibleComponentError, match="fewer than 2 tokens"):
        fresh.prepare_batch([{"text": ""}])


def test_gradient_ascent_on_plain_text_forgets_that_text(trained):
    from erasus.builtin.strategies.gradient_ascent import GradientAscent
    from erasus.strategy import RunContext, UnlearnData

    forget = [{"text": TEXTS[0]}]
    retain = [{"question": "In which city was Brisa Quenby born?", "answer": "Oslo"}]
    adapter = trained.clone()
    with torch.no_grad():
        before = float(adapter.per_example_loss(adapter.prepare_batch(forget))[0])
    GradientAscent(epochs=10, lr=1e-3, batch_size=1).unlearn(
        adapter, UnlearnData(forget=forget, retain=retain), RunContext(seed=0))
    with torch.no_grad():
        after = float(adapter.per_example_loss(adapter.prepare_batch(forget))[0])
    assert after > before + 1.0, (before, after)


CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_chat_template_builds_the_prompt_and_masks_it(trained):
    tok = trained.tokenizer
    tok.chat_template = CHAT
    try:
        chat = CausalLMAdapter(trained.model, CausalLMParams(
            chat_template=True, system_prompt="Be brief."), tokenizer=tok)
        (ids, labels), = chat.encode([PAIRS[2]["question"]], [PAIRS[2]["answer"]])
        prompt = tok("<|system|>Be brief.\n<|user|>In which city was Brisa Quenby born?\n"
                     "<|assistant|>", add_special_tokens=False)["input_ids"]
        answer = tok(" Oslo", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert list(ids) == prompt + answer
        assert list(labels) == [-100] * len(prompt) + answer
    finally:
        tok.chat_template = None
    with pytest.raises(IncompatibleComponentError, match="no chat template"):
        CausalLMAdapter(trained.model, CausalLMParams(chat_template=True), tokenizer=tok)
    with pytest.raises(ValidationError, match="system_prompt is only used with chat_template"):
        CausalLMParams(system_prompt="Be brief.")
