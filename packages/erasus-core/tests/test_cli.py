"""The ``erasus`` command line, run in-process through ``erasus.cli.app.main``.

Errors the user can fix exit 1 with a one-line message, usage errors exit 2, and a broken
plugin never stops the CLI.
"""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path
from typing import Any

import erasus
import pytest

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
#: what the tests below rely on, pinned so that retuning the quickstart cannot break them
PINNED = ["strategy.epochs=1", "strategy.name=gradient_difference", "selector.name=full",
          "oracle.strategy=retrain", "metrics=[accuracy, mia_efficacy, mia, avg_gap, time, memory]"]


def call(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from erasus.cli.app import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print on a wide console so tables are not truncated; no debug mode left behind."""
    import erasus.cli.app as cli_app
    from rich.console import Console

    monkeypatch.setattr(cli_app, "out", Console(width=400))
    monkeypatch.setattr(cli_app, "err", Console(stderr=True, width=400))
    monkeypatch.setenv("ERASUS_DEBUG", "0")


@pytest.fixture
def only_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASUS_PLUGINS", "")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``erasus run`` of the quickstart (one unlearning epoch) and what it printed."""
    import erasus.cli.app as cli_app
    from erasus.cli.app import main
    from rich.console import Console

    out_dir = tmp_path_factory.mktemp("cli") / "run"
    cache = tmp_path_factory.getbasetemp() / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("ERASUS_PLUGINS", "")
    mp.setenv("ERASUS_CACHE_DIR", str(cache))
    mp.setenv("ERASUS_DEBUG", "0")
    console_file = out_dir.parent / "stdout.txt"
    with console_file.open("w") as fh:
        mp.setattr(cli_app, "out", Console(file=fh, width=400))
        try:
            main(["run", str(QUICKSTART), *[a for o in PINNED for a in ("--set", o)],
                  "-o", str(out_dir), "--no-progress"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        finally:
            mp.undo()
    return {"dir": out_dir, "stdout": console_file.read_text(),
            "metrics": json.loads((out_dir / "metrics.json").read_text())}


# -- version, plugins --------------------------------------------------------------------
def test_version(capsys: Any) -> None:
    code, out, _ = call(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"erasus {erasus.__version__}"


def _installed_entry_points() -> set[str]:
    return {ep.name for ep in md.entry_points(group="erasus")}


def test_list_plugins_table_shows_builtin_and_installed_plugins(capsys: Any) -> None:
    code, out, _ = call(["list-plugins"], capsys)
    assert code == 0
    assert "builtin (built-in)" in out
    for name in ("classifier", "gradient_difference", "digits", "accuracy", "markdown"):
        assert name in out
    for name in _installed_entry_points():
        assert name in out, f"installed plugin '{name}' is not listed"


def test_list_plugins_json_has_components_by_kind(capsys: Any) -> None:
    code, out, _ = call(["list-plugins", "--json"], capsys)
    assert code == 0
    records = json.loads(out)
    assert isinstance(records, list)
    by_name = {r["name"]: r for r in records}
    assert records[0]["name"] == "builtin"
    builtin = by_name["builtin"]
    assert builtin["status"] == "loaded" and builtin["builtin"] is True
    assert builtin["package"] == "erasus" and builtin["version"] == erasus.__version__
    assert builtin["error"] is None
    components = builtin["components"]
    assert {"gradient_difference", "gradient_ascent", "retrain", "finetune",
            "random_label"} <= set(components["strategy"])
    assert {"full", "random"} <= set(components["selector"])
    assert {"accuracy", "mia_efficacy", "avg_gap"} <= set(components["metric"])
    assert {"digits", "mnist5000"} <= set(components["dataset"])
    assert "classifier" in components["model"]
    for record in records:
        assert {"name", "status", "package", "version", "module", "hooks", "error",
                "components"} <= set(record)
        assert record["status"] in ("loaded", "failed")
        assert (record["error"] is None) == (record["status"] == "loaded")
    assert _installed_entry_points() <= set(by_name)


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution whose ``erasus`` entry point fails to import."""
    site = tmp_path / "site"
    dist = site / "erasus_broken_fixture-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: erasus-broken-fixture\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[erasus]\nbroken_fixture = "
                                           "erasus_broken_fixture_mod.plugin\n")
    pkg = site / "erasus_broken_fixture_mod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text("raise ImportError('needs the frobnicate package')\n")
    monkeypatch.syspath_prepend(str(site))
    return "broken_fixture"


def test_a_broken_plugin_is_listed_with_its_error(broken_plugin: str, capsys: Any) -> None:
    code, out, err = call(["list-plugins"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if broken_plugin in line)
    assert "failed" in row and "erasus-broken-fixture" in row
    assert f"plugin '{broken_plugin}' failed" in err
    assert "needs the frobnicate package" in err
    assert "builtin (built-in)" in out and "gradient_difference" in out

    code, out, _ = call(["list-plugins", "--json"], capsys)
    assert code == 0
    by_name = {r["name"]: r for r in json.loads(out)}
    broken = by_name[broken_plugin]
    assert broken["status"] == "failed"
    assert broken["package"] == "erasus-broken-fixture"
    assert "ImportError: needs the frobnicate package" in broken["error"]
    assert broken["components"] == {}
    assert by_name["builtin"]["status"] == "loaded"
    # the rest of the CLI keeps working
    code, out, _ = call(["describe", "gradient_difference"], capsys)
    assert code == 0 and "forget_weight" in out


def test_erasus_plugins_leaves_a_broken_plugin_unloaded(broken_plugin: str, capsys: Any,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("ERASUS_PLUGINS", "")
    code, out, err = call(["list-plugins", "--json"], capsys)
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert names == ["builtin"]
    assert "frobnicate" not in err
    code, out, _ = call(["list-plugins", "--json", "--all"], capsys)
    by_name = {r["name"]: r for r in json.loads(out)}
    assert by_name[broken_plugin]["status"] == "disabled"
    assert by_name[broken_plugin]["error"] is None
    monkeypatch.setenv("ERASUS_PLUGINS", broken_plugin)
    code, out, _ = call(["list-plugins", "--json"], capsys)
    assert code == 0
    by_name = {r["name"]: r for r in json.loads(out)}
    assert set(by_name) == {"builtin", broken_plugin}
    assert by_name[broken_plugin]["status"] == "failed"


# -- describe ---------------------------------------------------------------------------
def test_describe_shows_parameters_defaults_and_citation(capsys: Any) -> None:
    from erasus.builtin.strategies.gradient_difference import GradientDifferenceParams

    code, out, _ = call(["describe", "gradient_difference"], capsys)
    assert code == 0
    assert "gradient_difference" in out and "strategy" in out
    assert "Liu" in out and "2022" in out and "arxiv.org/abs/2203.12817" in out
    assert "retain" in out  # its needs
    defaults = GradientDifferenceParams()
    for name in ("epochs", "lr", "forget_weight", "retain_weight"):
        row = next(line for line in out.splitlines() if line.startswith(f"│ {name} "))
        assert json.dumps(getattr(defaults, name)) in row, row

    code, out, _ = call(["describe", "gradient_difference", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "strategy" and data["plugin"] == "builtin"
    params = {p["name"]: p for p in data["params"]}
    for name in ("epochs", "lr", "forget_weight", "retain_weight"):
        assert params[name]["default"] == getattr(defaults, name)
        assert params[name]["required"] is False
        assert params[name]["doc"]
    assert "2203.12817" in data["paper"]


def test_describe_unknown_name_exits_1_with_a_suggestion(capsys: Any) -> None:
    code, out, err = call(["describe", "nosuch"], capsys)
    assert code == 1
    assert "no component named 'nosuch'" in err and "erasus list-plugins" in err
    assert "Traceback" not in out + err
    code, _, err = call(["describe", "gradient_diference"], capsys)
    assert code == 1
    assert "did you mean 'gradient_difference'" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_describe_with_an_unknown_kind_is_a_usage_error(capsys: Any) -> None:
    code, _, err = call(["describe", "gradient_difference", "--kind", "nosuch"], capsys)
    assert code == 2
    assert "unknown kind 'nosuch'" in err


# -- run / evaluate ---------------------------------------------------------------------
def test_run_prints_the_metrics_table_and_the_run_directory(cli_run: dict[str, Any]) -> None:
    out, metrics = cli_run["stdout"], cli_run["metrics"]
    lines = out.splitlines()
    header = next(line for line in lines if " UA " in line)
    for column in ("RA", "TA", "MIA-efficacy", "MIA AUC"):
        assert column in header
    for role in ("original", "unlearned", "oracle"):
        row = next(line for line in lines if line.strip("│ ").startswith(role))
        for key in ("UA", "RA", "TA", "MIA_efficacy"):
            assert f"{metrics[role][key]:.2f}" in row, (role, key, row)
    assert f"Avg. Gap to the oracle: {metrics['run']['avg_gap']:.2f}" in out
    assert f"{metrics['run']['rte_ratio']:.3f} x retraining" in out
    assert "Peak memory" in out
    assert f"run directory: {cli_run['dir']}" in out
    assert (cli_run["dir"] / "model" / "model.safetensors").is_file()


def test_run_prints_a_long_run_directory_on_one_line(cli_run: dict[str, Any], capsys: Any,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    import erasus.cli.app as cli_app
    import erasus.pipeline
    from erasus.pipeline import RunResult
    from rich.console import Console

    long_dir = tmp_path / ("a-rather-long-run-directory-name-" * 3) / "run"
    config = {"strategy": {"name": "gradient_difference"}, "data": {"name": "digits"},
              "selector": {"name": "full"}, "seed": 0}
    monkeypatch.setattr(erasus.pipeline, "run", lambda *a, **k: RunResult(
        run_dir=long_dir, metrics=cli_run["metrics"], history=None, selection=None,
        config=config))
    monkeypatch.setattr(cli_app, "out", Console(width=80))
    code, out, _ = call(["run", str(QUICKSTART)], capsys)
    assert code == 0
    assert f"run directory: {long_dir}" in out.splitlines()


def test_evaluate_run_dir_reproduces_the_runs_metrics(cli_run: dict[str, Any], capsys: Any,
                                                     only_builtin: None) -> None:
    code, out, _ = call(["evaluate", str(cli_run["dir"]), "--json"], capsys)
    assert code == 0
    again = json.loads(out)
    recorded = cli_run["metrics"]
    for role in ("original", "unlearned", "oracle"):
        assert again[role] == recorded[role], role
    assert again["run"] == recorded["run"]  # timings come from the run's recorded facts

    code, out, _ = call(["evaluate", str(cli_run["dir"])], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("unlearned"))
    assert f"{recorded['unlearned']['UA']:.2f}" in row


def test_evaluate_config_shows_original_and_oracle(cli_run: dict[str, Any], capsys: Any,
                                                  only_builtin: None) -> None:
    pinned = [a for o in PINNED for a in ("--set", o)]
    code, out, _ = call(["evaluate", str(QUICKSTART), *pinned, "--json"], capsys)
    assert code == 0
    metrics = json.loads(out)
    assert "unlearned" not in metrics
    assert metrics["original"] == cli_run["metrics"]["original"]
    assert metrics["oracle"] == cli_run["metrics"]["oracle"]
    assert not metrics["run"]

    code, out, _ = call(["evaluate", str(QUICKSTART), *pinned], capsys)
    assert code == 0
    roles = [line.strip("│ ").split()[0] for line in out.splitlines()
             if line.startswith("│")]
    assert roles == ["original", "oracle"]


def test_evaluate_a_directory_that_is_not_a_run(tmp_path: Path, capsys: Any,
                                                only_builtin: None) -> None:
    code, _, err = call(["evaluate", str(tmp_path)], capsys)
    assert code == 1
    assert "not a run directory" in err


def test_an_error_naming_a_path_with_brackets_is_printed_verbatim(
        tmp_path: Path, capsys: Any, only_builtin: None) -> None:
    """Error messages are plain text, not rich markup: a '[/...]' in them (a path, a
    gloo source location in a process-group error) is printed as it is."""
    odd = tmp_path / "runs[" / "x]"  # the path reads .../runs[/x]
    odd.mkdir(parents=True)
    code, _, err = call(["evaluate", str(odd)], capsys)
    assert code == 1
    assert "error:" in err and "runs[/x]" in err and "not a run directory" in err


# -- new-plugin ---------------------------------------------------------------------------
def test_new_plugin_creates_the_package_and_prints_the_install_hint(
        tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("erasus.scaffold")
    target = tmp_path / "pkg"
    code, out, _ = call(["new-plugin", "my-selectors", "-d", str(target)], capsys)
    assert code == 0
    assert (target / "pyproject.toml").is_file()
    assert "erasus" in (target / "pyproject.toml").read_text()
    assert f"created plugin package in {target}" in out
    assert f"pip install -e {target}" in out
    # writing into it again is refused unless forced
    code, _, err = call(["new-plugin", "my-selectors", "-d", str(target)], capsys)
    assert code == 1 and "not empty" in err
    code, _, _ = call(["new-plugin", "my-selectors", "-d", str(target), "--force"], capsys)
    assert code == 0


def test_new_plugin_default_directory(tmp_path: Path, capsys: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("erasus.scaffold")
    monkeypatch.chdir(tmp_path)
    code, out, _ = call(["new-plugin", "my-selectors"], capsys)
    assert code == 0
    created = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(created) == 1 and (created[0] / "pyproject.toml").is_file()
    assert "pip install -e" in out


@pytest.mark.parametrize("name", ["9lives", "bad name!", "a--b", "erasus"])
def test_new_plugin_bad_name_exits_1_and_writes_nothing(name: str, tmp_path: Path,
                                                        capsys: Any) -> None:
    pytest.importorskip("erasus.scaffold")
    target = tmp_path / "pkg"
    code, out, err = call(["new-plugin", name, "-d", str(target)], capsys)
    assert code == 1
    assert "invalid plugin name" in err
    assert "Traceback" not in out + err
    assert not target.exists()


# -- usage errors -------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["run"],                                         # missing argument
    ["run", str(QUICKSTART), "--no-such-option"],    # unknown option
    ["describe"],
    ["no-such-command"],
    ["list-plugins", "--jsn"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: Any) -> None:
    code, out, err = call(argv, capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert err.strip()
