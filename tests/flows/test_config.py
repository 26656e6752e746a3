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
