"""configs/llm/tofu_bundled_npo.yaml end to end through ``erasus run``, offline.

The shipped config trains a tiny GPT-2 on the bundled fictitious-author benchmark (the
original) and on its retain authors (the oracle), forgets forget10 with NPO and reports
TOFU's forget quality and model utility. Stated bounds for the unlearned model: forget
ROUGE-L recall drops by at least 0.1 from the original's, model utility stays at least
95% of the oracle's, and privleak moves toward zero (the oracle's value) by at least half.
The second test points ``data.path`` at a copy of the data in TOFU's published layout
(the release's file names, parquet-free), as a user with a local copy of real TOFU would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "llm" / "tofu_bundled_npo.yaml"


def erasus(argv: list[str], monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    from erasus.cli.app import main

    monkeypatch.setenv("ERASUS_PLUGINS", "llm")
    monkeypatch.setenv("ERASUS_CACHE_DIR", str(cache))  # a fresh original and oracle
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, f"erasus {' '.join(argv)} exited with {exc.code}"


def metrics_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_shipped_config_forgets_and_reports_tofu_metrics_for_every_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    erasus(["run", str(CONFIG), "--output", str(run), "--no-progress"], monkeypatch,
           tmp_path / "cache")
    m = metrics_of(run)
    for role in ("original", "unlearned", "oracle"):
        assert 0.0 < m[role]["model_utility"] <= 1.0, (role, m[role])
    assert 0.0 <= m["run"]["forget_quality"] <= 1.0
    assert 0.0 <= m["run"]["forget_quality_original"] <= 1.0
    original, unlearned, oracle = m["original"], m["unlearned"], m["oracle"]
    assert unlearned["forget_rouge_l_recall"] <= original["forget_rouge_l_recall"] - 0.1
    assert unlearned["model_utility"] >= 0.95 * oracle["model_utility"], (unlearned, oracle)
    assert abs(m["run"]["privleak"]) <= 0.5 * abs(m["run"]["privleak_original"]), m["run"]
    # per-question values are saved beside the summaries
    details = m["details"]["run"]["forget_quality"]
    assert len(details["oracle_truth_ratios"]) == len(details["unlearned_truth_ratios"]) == 50
    assert (run / "model" / "model.safetensors").is_file()


def test_data_path_reads_a_local_copy_in_the_published_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from erasus_llm.tofu import BUNDLED_TOFU

    local = tmp_path / "TOFU"
    shutil.copytree(BUNDLED_TOFU, local)
    run = tmp_path / "run"
    # a short recipe: this checks that the run reads the directory, not how well it forgets
    erasus(["run", str(CONFIG), "--output", str(run), "--no-progress",
            "--set", f"data.path={local}", "--set", "train.epochs=1",
            "--set", "strategy.epochs=1", "--set", "metrics=[forget_quality]"],
           monkeypatch, tmp_path / "cache")
    m = metrics_of(run)
    assert 0.0 <= m["run"]["forget_quality"] <= 1.0
    resolved = (run / "config.resolved.yaml").read_text()
    assert str(local) in resolved
    # the data really came from that directory: a broken copy fails with the file named
    (local / "forget10_perturbed.json").write_text("not json")
    from erasus.cli.app import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["run", str(CONFIG), "--output", str(tmp_path / "run2"), "--no-progress",
              "--set", f"data.path={local}", "--set", "train.epochs=1"])
    assert info.value.code == 1
    out = capsys.readouterr()
    assert "forget10_perturbed.json" in out.out + out.err
    assert not (tmp_path / "run2").exists()


@pytest.mark.slow  # about 90 s: the config run by one process, by two, by two sharded
def test_two_processes_give_the_one_process_tofu_metrics(tmp_path: Path) -> None:
    """Data-parallel training (original, oracle, NPO) and evaluation (the one forward pass,
    greedy generation for ROUGE) over gloo reproduce every one-process number, and so does
    training sharded by ``accelerate launch`` with the shipped FSDP config (full_shard,
    each GPT-2 block its own unit, the tied embedding and LM head in the root's)."""
    import os
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate
    fsdp = CONFIG.parents[1] / "accelerate" / "fsdp.yaml"
    runs = {}
    for name, launcher in (("one", [sys.executable, "-m", "erasus"]),
                           ("two", [torchrun, "--nproc_per_node", "2", "-m", "erasus"]),
                           ("fsdp", [accelerate, "launch", "--config_file", str(fsdp),
                                     "-m", "erasus"])):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "ERASUS_PLUGINS": "llm", "ERASUS_CACHE_DIR": str(tmp_path / f"cache-{name}")}
        proc = subprocess.run([*launcher, "run", str(CONFIG), "-o", str(tmp_path / name),
                               "--no-progress", "--set", "train.epochs=4"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[name] = metrics_of(tmp_path / name)
    one = runs["one"]
    assert runs["fsdp"]["run_info"]["sharding"] == {
        "strategy": "full_shard", "source": "the accelerate FSDP config", "units": 3,
        "local_fraction": pytest.approx(0.5, abs=0.01)}
    for two in (runs["two"], runs["fsdp"]):
        assert two["run_info"]["processes"] == 2
        for role in ("original", "unlearned", "oracle"):
            for key, value in one[role].items():
                assert two[role][key] == pytest.approx(value, abs=1e-3), (role, key)
        for key in ("forget_quality", "forget_quality_original", "privleak"):
            assert two["run"][key] == pytest.approx(one["run"][key], abs=1e-3), key
        # per-question values are gathered from both processes in order
        d1 = one["details"]["run"]["forget_quality"]
        d2 = two["details"]["run"]["forget_quality"]
        assert d2["unlearned_truth_ratios"] == pytest.approx(d1["unlearned_truth_ratios"],
                                                             abs=1e-4)
