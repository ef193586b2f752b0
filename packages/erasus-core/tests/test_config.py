"""Run configuration: overrides, validation against each component's Params, and errors.

Every user mistake in a config must come back as one :class:`ConfigError` carrying one
problem per offending key (dotted path + message with a "did you mean"), and the CLI must
print those problems one per line, without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from erasus.config import apply_overrides, load_config
from erasus.errors import ConfigError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# A valid config (cheap components); every test below breaks it in one or more ways.
BASE: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "classifier", "arch": "mlp", "hidden": 16},
    "data": {"name": "digits", "forget": {"kind": "random", "fraction": 0.1}},
    "train": {"epochs": 1},
    "selector": {"name": "full"},
    "strategy": {"name": "gradient_difference", "epochs": 1, "lr": 1.0e-3},
    "oracle": {"strategy": "retrain"},
    "metrics": ["accuracy", {"name": "mia_efficacy", "seed": 0}, "avg_gap"],
    "run": {"output_dir": "runs"},
}


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    """The built-in registry only, so installed (or half-written) plugins cannot interfere."""
    from erasus.plugins import get_plugin_manager

    return get_plugin_manager(entrypoints=False).registry


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def problems_of(source: Any, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """``{path: message}`` of the ConfigError that loading ``source`` must raise."""
    with pytest.raises(ConfigError) as info:
        load_config(source, _registry(), overrides)
    return {p.path: p.message for p in info.value.problems}


def test_the_base_config_is_valid() -> None:
    resolved = load_config(base(), _registry())
    assert resolved.strategy.info.name == "gradient_difference"
    assert resolved.strategy.params.epochs == 1
    assert [m.info.name for m in resolved.metrics] == ["accuracy", "mia_efficacy", "avg_gap"]


def test_train_name_picks_the_training_strategy_and_validates_its_params() -> None:
    cfg = base()
    cfg["train"] = {"name": "finetune", "epochs": 2}
    resolved = load_config(cfg, _registry())
    assert resolved.train.info.name == "finetune" and resolved.train.params.epochs == 2
    assert resolved.to_dict()["train"]["name"] == "finetune"
    # the retrain oracle does not inherit another strategy's recipe
    assert resolved.oracle.info.name == "retrain" and resolved.oracle.params.epochs == 20
    cfg["train"] = {"name": "retrian"}
    assert "did you mean 'retrain'" in problems_of(cfg)["train.name"]
    cfg["train"] = {"name": "finetune", "shards": 3}
    assert "train.shards" in problems_of(cfg)


# -- overrides -------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("3", 3),
    ("1.5e-3", 1.5e-3),
    ("true", True),
    ("null", None),
    ("'7'", "7"),
    ("[a, 2]", ["a", 2]),
    ("{k: v}", {"k": "v"}),
    ("plain words", "plain words"),
    ("", ""),
    ("a=b", "a=b"),          # only the first '=' separates key and value
    ("{unclosed", "{unclosed"),  # not valid YAML: kept as the literal string
])
def test_override_values_are_typed_as_yaml(raw: str, expected: Any) -> None:
    out = apply_overrides({"strategy": {"name": "finetune"}}, [f"strategy.value={raw}"])
    assert out["strategy"]["value"] == expected
    assert type(out["strategy"]["value"]) is type(expected)


def test_overrides_create_nested_keys_and_leave_the_input_alone() -> None:
    data = {"strategy": "finetune", "seed": 0}
    out = apply_overrides(data, ["a.b.c=1", "strategy.lr=0.1", "seed=5", "run.name=x"])
    assert out["a"] == {"b": {"c": 1}}
    # a component given by name only becomes a mapping that keeps its name
    assert out["strategy"] == {"name": "finetune", "lr": 0.1}
    assert out["seed"] == 5
    assert out["run"] == {"name": "x"}
    assert data == {"strategy": "finetune", "seed": 0}


def test_overrides_apply_in_order_and_reach_the_resolved_config() -> None:
    resolved = load_config(base(), _registry(),
                           ["strategy.lr=0.5", "strategy.lr=0.25", "selector.name=random",
                            "selector.budget=0.5", "seed=3"])
    assert resolved.strategy.params.lr == 0.25
    assert resolved.selector.info.name == "random"
    assert resolved.selector.params.budget == 0.5
    assert resolved.config.seed == 3


@pytest.mark.parametrize("bad", ["no_equals_sign", "=1", "a..b=1", ".a=1", "a.=1", " =x"])
def test_malformed_override_is_a_problem_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, [bad])
    (problem,) = info.value.problems
    assert problem.path == "--set"
    assert repr(bad) in problem.message or bad in problem.message
    assert "key.path=value" in problem.message


def test_every_malformed_override_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({"seed": 0}, ["oops", "seed.deeper=1", "=2", "fine=3"])
    paths = [p.path for p in info.value.problems]
    assert paths == ["--set", "seed", "--set"]
    assert "is not a mapping" in info.value.problems[1].message


# -- unknown keys, names and bad values ---------------------------------------------------
def test_unknown_top_level_key_suggests_the_closest_one() -> None:
    data = base()
    data["strategi"] = data.pop("strategy")
    problems = problems_of(data)
    assert "did you mean 'strategy'" in problems["strategi"]
    assert "unknown key 'strategi'" in problems["strategi"]
    assert problems["strategy"] == "required key is missing"


def test_unknown_run_key_suggests_the_closest_one() -> None:
    problems = problems_of(base(), ["run.output_dri=x"])
    assert list(problems) == ["run.output_dri"]
    assert "did you mean 'output_dir'" in problems["run.output_dri"]


def test_strategy_params_are_validated_against_the_components_own_params() -> None:
    problems = problems_of(base(), ["strategy.epoch=3"])
    assert list(problems) == ["strategy.epoch"]
    assert "did you mean 'epochs'" in problems["strategy.epoch"]
    # forget_weight is a parameter of gradient_difference only ...
    assert load_config(base(), _registry(), ["strategy.forget_weight=2"]).strategy.params \
        .forget_weight == 2
    problems = problems_of(base(), ["strategy.forget_wieght=2"])
    assert "did you mean 'forget_weight'" in problems["strategy.forget_wieght"]
    # ... so the same key on finetune is an unknown key
    problems = problems_of(base(), ["strategy.name=finetune", "strategy.forget_weight=2"])
    assert list(problems) == ["strategy.forget_weight"]
    assert "unknown key 'forget_weight'" in problems["strategy.forget_weight"]


def test_nested_component_params_are_validated_with_their_full_path() -> None:
    problems = problems_of(base(), ["data.forget.fractoin=0.2"])
    assert "did you mean 'fraction'" in problems["data.forget.fractoin"]
    problems = problems_of(base(), ["data.forget.fraction=1.5"])
    assert list(problems) == ["data.forget.fraction"]


def test_unknown_component_name_lists_installed_ones_with_a_suggestion() -> None:
    problems = problems_of(base(), ["strategy.name=gradient_diference"])
    message = problems["strategy.name"]
    assert "'gradient_diference'" in message
    assert "did you mean 'gradient_difference'" in message
    for installed in ("finetune", "gradient_ascent", "gradient_difference", "retrain"):
        assert installed in message


def test_unknown_metric_and_selector_names_are_reported_with_their_paths() -> None:
    problems = problems_of(base(), ["metrics=[accuracy, acuracy]", "selector.name=randm"])
    assert "did you mean 'accuracy'" in problems["metrics[1].name"]
    assert "did you mean 'random'" in problems["selector.name"]


def test_unknown_oracle_strategy_is_reported_at_oracle_strategy() -> None:
    problems = problems_of(base(), ["oracle.strategy=retrian"])
    assert "did you mean 'retrain'" in problems["oracle.strategy"]


@pytest.mark.parametrize(("override", "path"), [
    ("seed=abc", "seed"),
    ("strategy.lr=fast", "strategy.lr"),
    ("strategy.lr=-1", "strategy.lr"),
    ("strategy.epochs=[1, 2]", "strategy.epochs"),
    ("run.eval_batch_size=0", "run.eval_batch_size"),
    ("model.arch=transformer", "model.arch"),
    ("selector.budget=0.5", "selector.budget"),  # 'full' refuses a fractional budget
    ("metrics=accuracy", "metrics"),
    ("train=[1]", "train"),
])
def test_wrong_types_and_values_are_problems_at_their_path(override: str, path: str) -> None:
    problems = problems_of(base(), [override])
    assert path in problems, problems
    assert problems[path]


def test_missing_required_sections_are_each_reported() -> None:
    data = base()
    for key in ("model", "data", "strategy"):
        del data[key]
    problems = problems_of(data)
    assert problems == {k: "required key is missing" for k in ("model", "data", "strategy")}


def test_an_empty_file_is_missing_its_sections(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert set(problems_of(path)) == {"model", "data", "strategy"}


def test_missing_model_and_oracle_directories_are_problems(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    problems = problems_of(base(), [f"model.path={missing}", f"oracle.path={missing}"])
    assert str(missing) in problems["model.path"]
    assert "does not exist" in problems["model.path"]
    assert str(missing) in problems["oracle.path"]
    # a file is not a model directory either
    afile = tmp_path / "weights.bin"
    afile.write_bytes(b"")
    assert "model.path" in problems_of(base(), [f"model.path={afile}"])
    # an existing directory is accepted by the config (loading it is the adapter's job)
    resolved = load_config(base(), _registry(), [f"model.path={tmp_path}"])
    assert resolved.model.params.path == str(tmp_path)


def test_metrics_that_need_other_metrics_say_which() -> None:
    problems = problems_of(base(), ["metrics=[avg_gap]"])
    message = problems["metrics[0]"]
    assert "avg_gap" in message and "accuracy" in message and "mia_efficacy" in message
    problems = problems_of(base(), ["metrics=[accuracy, avg_gap]"])
    assert "mia_efficacy" in problems["metrics[1]"]
    assert "accuracy," not in problems["metrics[1]"]
    load_config(base(), _registry(), ["metrics=[accuracy, mia_efficacy, avg_gap]"])


def test_several_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(base(), _registry(),
                    ["strategy.epoch=3", "selector.name=nosuch", "data.forget.fraction=2",
                     "metrics=[avg_gap]", "model.path=/nonexistent/erasus"])
    paths = [p.path for p in info.value.problems]
    assert {"strategy.epoch", "selector.name", "data.forget.fraction", "metrics[0]",
            "model.path"} <= set(paths)
    # the message carries one line per problem, after a header line
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert len(lines) == 1 + len(info.value.problems)
    for problem, line in zip(info.value.problems, lines[1:], strict=True):
        assert line.strip() == str(problem)


def test_several_schema_problems_are_reported_at_once() -> None:
    data = base()
    data["strategi"] = data.pop("strategy")
    problems = problems_of(data, ["run.output_dri=x", "seed=abc", "run.eval_batch_size=0"])
    assert {"strategi", "strategy", "run.output_dri", "seed", "run.eval_batch_size"} <= \
        set(problems)


def test_top_level_and_component_problems_are_reported_together() -> None:
    problems = problems_of(base(), ["seed=abc", "strategy.epoch=3", "metrics=[avg_gap]"])
    assert {"seed", "strategy.epoch", "metrics[0]"} <= set(problems)


# -- YAML files ---------------------------------------------------------------------------
def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 0\nmodel: {name: classifier\ndata: {name: digits}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, _registry())
    (problem,) = info.value.problems
    assert "YAML syntax error at line 3, column 5" in problem.message
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_yaml_tab_indentation_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("seed: 0\nstrategy:\n\tname: finetune\n")
    (message,) = problems_of(path).values()
    assert "line 3, column 1" in message


@pytest.mark.parametrize("text", ["- model\n- data\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "notamap.yaml"
    path.write_text(text)
    (message,) = problems_of(path).values()
    assert "top level must be a mapping" in message


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    (message,) = problems_of(tmp_path / "nope.yaml").values()
    assert "does not exist" in message and "nope.yaml" in message


def test_yaml_file_and_overrides_combine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(base()))
    resolved = load_config(path, _registry(), ["strategy.lr=0.02"])
    assert resolved.source == str(path)
    assert resolved.strategy.params.lr == 0.02
    assert resolved.raw["strategy"]["lr"] == 0.02


# -- property: malformed configs always give a ConfigError with located problems ----------
_TEXT = st.text(max_size=8)
_NOT_A_NUMBER = st.one_of(
    _TEXT.map(lambda s: "x" + s),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(_TEXT, st.integers(), max_size=2),
)
# (path, values that are invalid there)
_TYPED_FIELDS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("seed",), st.one_of(_NOT_A_NUMBER, st.floats(0.1, 0.9))),
    (("strategy", "epochs"), st.one_of(_NOT_A_NUMBER, st.integers(max_value=-1))),
    (("strategy", "lr"), st.one_of(_NOT_A_NUMBER, st.floats(max_value=0.0))),
    (("strategy", "optimizer"), _TEXT.map(lambda s: "zz" + s)),
    (("run", "eval_batch_size"), st.one_of(_NOT_A_NUMBER, st.integers(max_value=0))),
    (("run", "progress"), st.one_of(st.lists(st.integers(), max_size=2),
                                    _TEXT.map(lambda s: "zz" + s))),
    (("run", "cache_dir"), st.one_of(st.lists(_TEXT, max_size=2), st.integers())),
    (("data", "forget", "fraction"), st.one_of(_NOT_A_NUMBER, st.floats(min_value=1.0),
                                               st.floats(max_value=0.0))),
    (("data", "forget", "kind"), _TEXT.map(lambda s: "zz" + s)),
    (("model", "arch"), _TEXT.map(lambda s: "zz" + s)),
    (("model", "name"), st.one_of(st.integers(), st.lists(_TEXT, max_size=2))),
    (("selector", "budget"), st.one_of(_NOT_A_NUMBER, st.integers(max_value=0),
                                       st.floats(0.01, 0.99))),
    (("metrics",), st.one_of(st.integers(), _TEXT.map(lambda s: "zz" + s))),
    (("train",), st.one_of(st.integers(), st.lists(st.integers(), max_size=2))),
    (("model",), st.one_of(st.integers(), st.lists(_TEXT, max_size=2))),
    (("oracle",), st.one_of(st.integers(), _TEXT)),
]
_NAMED = [("model", "name"), ("data", "name"), ("selector", "name"), ("strategy", "name"),
          ("oracle", "strategy"), ("metrics", 0), ("tracking", "name"), ("reporters", 0)]


def _mappings(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(node, dict):
        found.append(path)
        for key, value in node.items():
            found.extend(_mappings(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_mappings(value, (*path, i)))
    return found


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict):
        node[path[-1]] = value
        return True
    if isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value
        return True
    return False


@st.composite
def malformed_configs(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """A config broken by 1-4 mutations; returns it and the top-level keys touched."""
    data = base()
    touched: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["unknown_key", "wrong_type", "unknown_name",
                                     "missing_path", "drop_section"]))
        if kind == "unknown_key":
            where = draw(st.sampled_from(_mappings(data)))
            key = draw(st.one_of(_TEXT.map(lambda s: "zz_" + s), st.integers(-3, 3)))
            value = draw(st.one_of(st.integers(), _TEXT, st.none(),
                                   st.dictionaries(_TEXT, st.integers(), max_size=2)))
            applied = _set(data, (*where, key), value)
            top = str(where[0]) if where else str(key)
        elif kind == "wrong_type":
            path, values = draw(st.sampled_from(_TYPED_FIELDS))
            applied = _set(data, path, draw(values))
            top = path[0]
        elif kind == "unknown_name":
            path = draw(st.sampled_from(_NAMED))
            name = "zz" + draw(_TEXT)
            if path[0] in ("tracking", "reporters"):
                data[path[0]] = {"name": name} if path[0] == "tracking" else [name]
                applied = True
            else:
                applied = _set(data, path, name)
            top = path[0]
        elif kind == "missing_path":
            which = draw(st.sampled_from(["model", "oracle"]))
            applied = _set(data, (which, "path"), "/nonexistent-erasus-dir/" + draw(_TEXT))
            top = which
        else:
            top = draw(st.sampled_from(["model", "data", "strategy"]))
            applied = data.pop(top, None) is not None
        if applied:
            touched.append(top)
    if not touched:  # every mutation hit a part an earlier one replaced: break it plainly
        data["zz_unknown"] = 1
        touched.append("zz_unknown")
    return data, touched


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=malformed_configs())
def test_malformed_configs_always_give_located_config_errors(case: Any) -> None:
    data, touched = case
    try:
        load_config(data, _registry())
    except ConfigError as exc:
        problems = exc.problems
    else:
        pytest.fail(f"load_config accepted a malformed config: {data!r}")
    assert problems
    for problem in problems:
        assert isinstance(problem.path, str) and problem.path.strip(), problem
        assert isinstance(problem.message, str) and problem.message.strip(), problem
    # at least one problem points into a part of the config that was broken
    tops = {re.match(r"\[?([^.\[\]]*)", p.path).group(1) for p in problems}  # type: ignore[union-attr]
    assert tops & set(touched), (tops, touched, data)


# -- the CLI: one line per problem, a traceback only with --debug -------------------------
def _bad_config(tmp_path: Path) -> Path:
    data = base()
    data["strategi"] = data.pop("strategy")
    data["seed"] = "abc"
    data["run"]["output_dri"] = "x"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _call_cli(argv: list[str]) -> int:
    from erasus.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_prints_one_line_per_problem_and_exits_1(tmp_path: Path, capsys: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASUS_DEBUG", "0")
    path = _bad_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path, _registry())
    problems = info.value.problems
    assert len(problems) >= 3

    code = _call_cli(["run", str(path), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines[0].startswith("error: invalid configuration in")
    assert len(lines) == 1 + len(problems), captured.err
    for problem in problems:
        assert any(line.strip() == str(problem) for line in lines[1:]), (problem, lines)
    assert "did you mean 'strategy'" in captured.err
    # nothing was written
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.partial").exists()


def test_cli_debug_raises_the_error_in_process(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASUS_DEBUG", "0")  # restored after the test (--debug sets it)
    with pytest.raises(ConfigError):
        _call_cli(["--debug", "run", str(_bad_config(tmp_path)), "-o", str(tmp_path / "o")])


def test_cli_traceback_only_with_debug_in_a_real_process(tmp_path: Path) -> None:
    path = _bad_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ERASUS_DEBUG"}
    env["ERASUS_PLUGINS"] = ""  # only the built-in plugin: fast start
    base_cmd = [sys.executable, "-m", "erasus.cli"]
    plain = subprocess.run([*base_cmd, "run", str(path), "-o", str(tmp_path / "a")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 1, plain.stderr
    assert "Traceback" not in plain.stdout + plain.stderr
    assert "strategi" in plain.stderr and "did you mean 'strategy'" in plain.stderr
    debug = subprocess.run([*base_cmd, "--debug", "run", str(path), "-o", str(tmp_path / "b")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "ConfigError" in debug.stderr


def test_a_bad_train_key_is_reported_once_not_again_under_oracle() -> None:
    problems = problems_of(base(), ["train.epoch=3"])
    assert "did you mean 'epochs'" in problems["train.epoch"]
    assert not [p for p in problems if p.startswith("oracle")]


def test_unknown_strategy_lists_installed_strategies_in_plain_english() -> None:
    problems = problems_of(base(), ["strategy.name=gradient_acent"])
    message = problems["strategy.name"]
    assert "did you mean 'gradient_ascent'" in message
    assert "installed strategies:" in message and "retrain" in message


def test_a_hub_id_is_a_model_path_only_for_adapters_that_load_from_the_hub() -> None:
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.hookspecs import hookimpl
    from erasus.plugins import get_plugin_manager

    assert "does not exist" in problems_of(base(), ["model.path=owner/model"])["model.path"]

    class HubClassifier(ClassifierAdapter):
        """A classifier adapter that also loads hub ids (a test double)."""

        name = "hub_classifier"
        paper = None
        accepts_hub_ids = True

    class Plugin:
        @hookimpl
        def erasus_register_models(self, register: Any) -> None:
            register(HubClassifier)

    registry = get_plugin_manager(entrypoints=False, plugins=(("hub", Plugin()),)).registry
    resolved = load_config(base(), registry, ["model.name=hub_classifier",
                                              "model.path=owner/model"])
    assert resolved.model.params.path == "owner/model"
    with pytest.raises(ConfigError) as info:  # a relative path is still a path
        load_config(base(), registry, ["model.name=hub_classifier", "model.path=./nowhere"])
    assert "or a hub id" in str(info.value)
