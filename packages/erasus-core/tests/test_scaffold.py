"""``erasus new-plugin``: the scaffolded package is complete, valid and loads as a plugin."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from erasus._version import __version__
from erasus.errors import ErasusError
from erasus.plugins import get_plugin_manager
from erasus.scaffold import PluginNames, create_plugin, plugin_names

EXPECTED_FILES = {
    "README.md",
    "pyproject.toml",
    "src/{pkg}/__init__.py",
    "src/{pkg}/_version.py",
    "src/{pkg}/highest_loss.py",
    "src/{pkg}/plugin.py",
    "src/{pkg}/py.typed",
    "tests/conftest.py",
    "tests/test_conformance.py",
    "tests/test_highest_loss.py",
    "tests/test_plugin.py",
}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def import_from(monkeypatch: pytest.MonkeyPatch):
    """Import a module from a generated ``src`` dir; forget it (and sys.path) afterwards."""
    imported: list[str] = []

    def load(src: Path, module: str):
        monkeypatch.syspath_prepend(str(src))
        imported.append(module.split(".")[0])
        return importlib.import_module(module)

    yield load
    for name in list(sys.modules):
        if name.split(".")[0] in imported:
            del sys.modules[name]


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["my-plug", "My_Plug", "my.plug", "erasus-my-plug",
                                  "erasus_my_plug", "  my-plug  "])
def test_names_derive_from_one_normalized_slug(name: str):
    assert plugin_names(name) == PluginNames(
        distribution="erasus-my-plug", import_name="erasus_my_plug", entry_point="my_plug",
        selector="my_plug_highest_loss")


def test_a_short_name_gets_the_prefix():
    names = plugin_names("x2")
    assert (names.distribution, names.import_name, names.entry_point) == (
        "erasus-x2", "erasus_x2", "x2")


@pytest.mark.parametrize("name", ["", "   ", "1plug", "-plug", "plug-", "my plug", "my--plug",
                                  "my/plug", "plüg", "erasus-", "my_-plug"])
def test_invalid_names_are_rejected_with_a_hint(name: str):
    with pytest.raises(ErasusError, match=r"invalid plugin name.*for example 'my-selectors'"):
        plugin_names(name)


@pytest.mark.parametrize("name", ["erasus", "Erasus", "llm", "erasus-llm", "erasus_vlm",
                                  "diffusion", "audio-video", "erasus-audio-video", "viz",
                                  "builtin", "core"])
def test_names_of_erasus_itself_are_rejected(name: str):
    with pytest.raises(ErasusError, match="invalid plugin name"):
        plugin_names(name)


# -- files ------------------------------------------------------------------------------
def test_creates_a_complete_package(tmp_path: Path):
    target = tmp_path / "pkg"
    assert create_plugin("my-plug", target) == target
    assert files_under(target) == {f.format(pkg="erasus_my_plug") for f in EXPECTED_FILES}
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "${" not in text, f"unrendered placeholder in {path}"
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    plugin_py = (target / "src/erasus_my_plug/plugin.py").read_text()
    assert "@erasus.hookimpl" in plugin_py
    assert "def erasus_register_selectors(register: Any) -> None:" in plugin_py
    assert "import torch" not in plugin_py
    assert "my_plug_highest_loss" in (target / "README.md").read_text()


def test_pyproject_declares_the_entry_point_and_the_core(tmp_path: Path):
    tomllib = pytest.importorskip("tomllib")
    create_plugin("erasus-my-plug", tmp_path)
    data = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    project = data["project"]
    assert project["name"] == "erasus-my-plug"
    assert project["dependencies"] == [f"erasus>={__version__}"]
    assert project["entry-points"]["erasus"] == {"my_plug": "erasus_my_plug.plugin"}
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "erasus_my_plug._version.__version__"}
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"


def test_default_directory_is_the_distribution_name(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert create_plugin("my-plug") == tmp_path / "erasus-my-plug"
    assert (tmp_path / "erasus-my-plug" / "pyproject.toml").is_file()


def test_refuses_a_non_empty_directory_unless_forced(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ErasusError, match=r"not empty.*--force"):
        create_plugin("my-plug", tmp_path)
    assert files_under(tmp_path) == {"notes.txt"}
    (tmp_path / "README.md").write_text("old")
    create_plugin("my-plug", tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "README.md").read_text().startswith("# erasus-my-plug")


def test_refuses_a_file_as_target(tmp_path: Path):
    target = tmp_path / "taken"
    target.write_text("")
    with pytest.raises(ErasusError, match="is a file"):
        create_plugin("my-plug", target, force=True)


def test_a_bad_name_writes_nothing(tmp_path: Path):
    with pytest.raises(ErasusError):
        create_plugin("my plug", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


# -- the generated plugin works ---------------------------------------------------------
def test_generated_plugin_registers_its_selector_in_process(tmp_path: Path, import_from):
    create_plugin("scaffold-probe", tmp_path)
    module = import_from(tmp_path / "src", "erasus_scaffold_probe.plugin")
    pm = get_plugin_manager(entrypoints=False, plugins=(("scaffold_probe", module),))
    record = pm.records["scaffold_probe"]
    assert record.status == "loaded", record.error
    assert record.hooks == ["erasus_register_selectors"]
    info = pm.registry.get("selector", "scaffold_probe_highest_loss")
    assert info.plugin == "scaffold_probe"
    assert info.paper is None and info.summary
    assert info.modalities == ("any",)
    assert [p.name for p in info.params] == ["budget", "batch_size"]
    assert pm.registry.by_plugin("scaffold_probe") == {
        "selector": ["scaffold_probe_highest_loss"]}

    from erasus.testing import tiny_classifier_problem

    problem = tiny_classifier_problem(seed=0)
    selector = pm.registry.create("selector", "scaffold_probe_highest_loss", budget=5)
    selection = selector.select(problem.adapter, problem.forget)
    assert len(selection.indices) == 5
    assert list(selection.scores) == sorted(selection.scores, reverse=True)


def test_generated_selector_and_conformance_tests_pass(tmp_path: Path):
    target = create_plugin("scaffold-tests", tmp_path / "pkg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(target / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_highest_loss.py", "tests/test_conformance.py"],
        cwd=target, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


@pytest.mark.slow
def test_generated_package_installs_and_its_tests_pass(tmp_path: Path):
    """pip-install the package into a fresh venv that sees this environment's packages."""
    target = create_plugin("scaffold-installed", tmp_path / "pkg")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    # addsitedir (not a bare path) so this environment's own .pth files (editable
    # installs) are processed too; the fresh venv's site-packages stays first.
    host = sysconfig.get_paths()["purelib"]
    Path(purelib, "_host_env.pth").write_text(f"import site; site.addsitedir({host!r})\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), *args], cwd=target, capture_output=True,
                              text=True, timeout=600)

    install = run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                  "--quiet", ".")
    assert install.returncode == 0, install.stdout + install.stderr
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
