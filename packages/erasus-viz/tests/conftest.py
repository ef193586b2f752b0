"""Test settings (offline, one torch thread, an isolated cache and plugin environment) and
the runs the tests share: small class-wise digits runs of the quickstart config."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
#: Reporter parameters that keep the runs small.
SMALL_REPORTERS: list[Any] = [
    "markdown",
    "loss_curves",
    {"name": "mia_plots", "max_examples": 200},
    {"name": "embeddings", "max_examples": 40},
    {"name": "loss_landscape", "resolution": 5, "max_examples": 64, "span": 0.5},
    "gradient_flow",
    "html_report",
    "dashboard",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("ERASUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("ERASUS_PLUGINS", raising=False)
    monkeypatch.delenv("ERASUS_STRICT_PLUGINS", raising=False)
    yield


def small_config(tmp_path_factory: pytest.TempPathFactory, **changes: Any) -> dict[str, Any]:
    """The quickstart config, cut down: one unlearning epoch, class-wise forgetting of
    digit 3 (the oracle never saw the class, so the original's membership signal on the
    forget set is far stronger than the oracle's), three metrics, the shared cache (the
    session fixtures run before the autouse fixture sets ERASUS_CACHE_DIR)."""
    config = yaml.safe_load(QUICKSTART.read_text())
    config["data"]["forget"] = {"kind": "class", "class_id": 3}
    config["strategy"] = {**config["strategy"], "epochs": 1}
    config["metrics"] = ["accuracy", "mia_efficacy", "mia", "avg_gap"]
    config["reporters"] = SMALL_REPORTERS
    config["run"] = {**config.get("run", {}),
                     "cache_dir": str(tmp_path_factory.getbasetemp() / "cache"),
                     "progress": False}
    for key, value in changes.items():
        config[key] = value
    return config


def viz_plugin_manager() -> Any:
    """The built-in plugin and erasus-viz only (other installed plugins stay out)."""
    import erasus_viz.plugin
    from erasus.plugins import get_plugin_manager

    return get_plugin_manager(entrypoints=False, plugins=(("viz", erasus_viz.plugin),))


@pytest.fixture(scope="session")
def make_config(tmp_path_factory) -> Any:
    """:func:`small_config` for tests: ``make_config(**changes)``."""
    return lambda **changes: small_config(tmp_path_factory, **changes)


@pytest.fixture(scope="session")
def viz_pm() -> Any:
    """:func:`viz_plugin_manager`, for tests (conftest is not importable from them)."""
    return viz_plugin_manager()


@pytest.fixture(scope="session")
def viz_run(tmp_path_factory) -> Path:
    """A finished run with every erasus-viz reporter (the quickstart's gradient
    difference, one epoch)."""
    from erasus.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "viz-run"
    result = run(small_config(tmp_path_factory), output=out,
                 plugin_manager=viz_plugin_manager(), progress=False)
    return Path(result.run_dir)


@pytest.fixture(scope="session")
def three_runs(tmp_path_factory) -> list[Path]:
    """Three finished runs of three strategies on the same data, seed and original (from
    the cache), with the cheap reporters only."""
    from erasus.pipeline import run

    parent = tmp_path_factory.mktemp("three")
    dirs = []
    for strategy in ("gradient_difference", "random_label", "negative_gradient"):
        config = small_config(tmp_path_factory,
                              strategy={"name": strategy, "epochs": 1, "batch_size": 64},
                              reporters=["loss_curves", "html_report"])
        dirs.append(Path(run(config, output=parent / f"run-{strategy}",
                             plugin_manager=viz_plugin_manager(), progress=False).run_dir))
    return dirs


def call_cli(argv: list[str]) -> int:
    """Run ``erasus ARGV`` in-process; its exit code (also the ``cli`` fixture)."""
    from erasus.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="session")
def dashboard(three_runs, tmp_path_factory) -> Path:
    """``erasus report RUN RUN RUN --output DIR``: the dashboard.html it writes."""
    out = tmp_path_factory.mktemp("comparison")
    assert call_cli(["report", *map(str, three_runs), "--output", str(out)]) == 0
    return out / "dashboard.html"


@pytest.fixture
def cli() -> Any:
    """:func:`call_cli`, for the test modules (conftest is not importable under
    ``--import-mode=importlib``)."""
    return call_cli
