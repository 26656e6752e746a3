from pathlib import Path

import pytest
from pydantic import BaseModel

from gatewatch.flows.config import Config, ConfigError, check_paths, example_toml, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_file_is_generated_from_the_models_and_loads_to_the_defaults():
    example = ROOT / "gatewatch.example.toml"
    assert example.read_text() == example_toml(), "run: gatewatch validate --print-example > gatewatch.example.toml"
    assert load_config(example) == Config()


def test_every_key_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            if isinstance(field.default, BaseModel):
                yield from walk(type(field.default))
            else:
                yield name, field.description

    missing = [name for name, desc in walk(Config) if not desc]
    assert missing == []


def test_every_problem_is_listed_with_its_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline]\nwindow_s = 0\ntypo_s = 3\n[input]\nformat = "syslog"\n[nope]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    problems = err.value.problems
    assert len(problems) == 4
    assert any(p.startswith("pipeline.window_s:") for p in problems)
    assert "pipeline.typo_s: unknown key" in problems
    assert any(p.startswith("input.format:") and "syslog" in p for p in problems)
    assert "nope: unknown key" in problems


def test_unreadable_and_invalid_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[pipeline\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_store_path_that_is_a_file_is_reported(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    cfg = Config.model_validate({"store": {"path": str(f / "store")}})
    assert check_paths(cfg) == [f"store.path: {f} is not a folder"]
    assert check_paths(Config.model_validate({"store": {"path": str(tmp_path / "new")}})) == []


# -- [dashboard] operators ---------------------------------------------------------------


def test_dashboard_operators_come_from_one_source_and_hosts_are_names(tmp_path):
    both = tmp_path / "both.toml"
    both.write_text('[dashboard]\noperators_env = "OPS"\noperators_file = "/etc/gatewatch/operators"\n')
    with pytest.raises(ConfigError) as err:
        load_config(both)
    assert err.value.problems[0].startswith("dashboard: Value error, set operators_env or operators_file, not both")

    only_file = tmp_path / "file.toml"
    only_file.write_text('[dashboard]\noperators_file = "/etc/gatewatch/operators"\n')
    assert load_config(only_file).dashboard.operators_file == "/etc/gatewatch/operators"

    star = tmp_path / "star.toml"
    star.write_text('[dashboard]\nallowed_hosts = ["gatewatch.example.com", "*"]\n')  # "*" would accept any Host
    with pytest.raises(ConfigError) as err:
        load_config(star)
    assert [p.split(":")[0] for p in err.value.problems] == ["dashboard.allowed_hosts.1"]


def test_bad_operator_tokens_name_the_key_and_the_entry_never_the_token(tmp_path):
    from gatewatch.flows.credentials import CredentialsError, name_of, read_operators

    good = "alice-0123456789abcdef"
    path = tmp_path / "operators"
    path.write_text(f"# who:token\nalice:{good}\n\nbob:bob-0123456789abcdef\n")
    operators = read_operators("", str(path), {})
    assert operators == {good: "alice", "bob-0123456789abcdef": "bob"}
    assert name_of(operators, good) == "alice"
    assert name_of(operators, good[:-1]) is None and name_of(operators, "") is None
    # the variable, when no file is named; unset or empty: no operators (read-only), not an error
    assert read_operators("OPS", "", {"OPS": f"alice:{good}"}) == {good: "alice"}
    assert read_operators("OPS", "", {}) is None and read_operators("OPS", "", {"OPS": ""}) is None
    assert read_operators("", "", {}) is None

    cases = {
        f"alice:{good}\nbob:short-token\n": "dashboard.operators_file: {path}: entry 2 is not NAME:TOKEN with a token of 16 characters or more",
        f"alice {good}\n": "dashboard.operators_file: {path}: entry 1 is not NAME:TOKEN",
        f"[alice](https://x):{good}\n": "dashboard.operators_file: {path}: entry 1: the name must be 1 to 64 letters",
        f"alice:{good}\nbob:{good}\n": "dashboard.operators_file: {path}: entry 2 has the token of entry 1, for another name",
        "# nobody yet\n": "dashboard.operators_file: {path} holds no NAME:TOKEN entry",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(CredentialsError) as err:
            read_operators("", str(path), {})
        assert str(err.value).startswith(message.format(path=path)), text
        assert "short-token" not in str(err.value) and good not in str(err.value)
    with pytest.raises(CredentialsError, match=r"dashboard.operators_env: environment variable OPS: entry 1 is not NAME:TOKEN"):
        read_operators("OPS", "", {"OPS": "alice:short"})
    with pytest.raises(CredentialsError, match=r"dashboard.operators_file: .*missing: cannot read it \(No such file"):
        read_operators("", str(tmp_path / "missing"), {})
