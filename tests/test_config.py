"""Configs: dict and YAML loading, strict keys and types, overrides, derived quantities."""

import json
from pathlib import Path

import pytest

from codec.config import CodecConfig, Recipe, from_dict, load_json, load_recipe, to_dict
from codec.errors import ConfigError

RECIPE_YAML = """\
model:
  channels: 8
  ratios: [2, 4]
data:
  root: corpus
schedule:
  steps: 100
optim:
  betas: [0.5, 0.9]
"""


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipes" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(RECIPE_YAML)
    return path


# Dicts ------------------------------------------------------------------------------


def test_codec_config_round_trips_through_a_json_ready_dict():
    config = CodecConfig(channels=8, ratios=(2, 4), n_codebooks=3, causal=False)
    data = to_dict(config)
    assert data["ratios"] == [2, 4]
    json.dumps(data)  # nothing that JSON cannot hold
    assert from_dict(CodecConfig, data) == config


def test_recipe_round_trips_with_its_nested_sections():
    recipe = from_dict(Recipe, {"model": {"channels": 8}, "schedule": {"steps": 5}, "seed": 3})
    assert recipe.model.channels == 8 and recipe.schedule.steps == 5 and recipe.seed == 3
    assert from_dict(Recipe, to_dict(recipe)) == recipe


def test_lists_become_tuples_and_ints_become_floats_where_floats_are_expected():
    recipe = from_dict(Recipe, {"model": {"ratios": [2, 4]}, "optim": {"betas": [1, 0.9]}})
    assert recipe.model.ratios == (2, 4)
    assert recipe.optim.betas == (1.0, 0.9)
    assert isinstance(recipe.optim.betas[0], float)


def test_an_optional_field_is_converted_like_a_required_one_or_left_unset():
    assert from_dict(CodecConfig, {"outer_dilations": [1]}).outer_dilations == (1,)
    assert from_dict(CodecConfig, {"outer_dilations": None}).outer_dilations is None
    with pytest.raises(ConfigError, match="outer_dilations"):
        from_dict(CodecConfig, {"outer_dilations": 1})


def test_unknown_key_is_named_with_its_section():
    with pytest.raises(ConfigError, match=r"model: unknown key 'chanels'"):
        from_dict(Recipe, {"model": {"chanels": 8}})


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'optimiser'"):
        from_dict(Recipe, {"optimiser": {}})


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"model": {"channels": "16"}}, "model.channels"),
        ({"model": {"channels": 16.0}}, "model.channels"),
        ({"model": {"channels": True}}, "model.channels"),
        ({"model": {"causal": 1}}, "model.causal"),
        ({"model": {"ratios": 8}}, "model.ratios"),
        ({"model": {"ratios": [2, "4"]}}, "model.ratios"),
        ({"optim": {"learning_rate": "fast"}}, "optim.learning_rate"),
        ({"losses": {"balancer": "yes"}}, "losses.balancer"),
        ({"seed": "one"}, "seed"),
        ({"data": {"train_split": 3}}, "data.train_split"),
        ({"model": 16}, "model"),
    ],
)
def test_wrong_type_is_a_config_error_naming_the_field(data, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        from_dict(Recipe, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"precision": "fp16"}}, "precision"),
        ({"optim": {"accumulate": 0}}, "accumulate"),
        ({"schedule": {"decay": "linear"}}, "decay"),
        ({"schedule": {"steps": 0}}, "steps"),
    ],
)
def test_invalid_training_settings_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Recipe, data)


@pytest.mark.parametrize("size", [1000, 1, 0])
def test_codebook_size_must_be_a_power_of_two(size):
    with pytest.raises(ConfigError, match="power of two"):
        from_dict(CodecConfig, {"codebook_size": size})


def test_an_unknown_activation_is_refused_when_the_config_is_made():
    assert CodecConfig(activation="snake").activation == "snake"
    with pytest.raises(ConfigError, match="activation must be one of elu, snake, got 'gelu'"):
        CodecConfig(activation="gelu")


def test_at_least_one_codebook():
    with pytest.raises(ConfigError, match="n_codebooks"):
        CodecConfig(n_codebooks=0)


def test_derived_rates_of_the_default_model():
    config = CodecConfig()
    assert config.hop_length == 320
    assert config.frame_rate == 50.0
    assert config.bits_per_code == 10
    assert config.kbps_per_codebook == 0.5


def test_load_json_reads_a_saved_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(to_dict(CodecConfig(channels=8))))
    assert load_json(CodecConfig, path) == CodecConfig(channels=8)


def test_load_json_of_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_json(CodecConfig, tmp_path / "missing.json")


# Recipes ----------------------------------------------------------------------------


def test_load_recipe_reads_yaml_and_keeps_defaults_for_the_rest(recipe_file):
    recipe = load_recipe(recipe_file)
    assert recipe.model.channels == 8
    assert recipe.model.ratios == (2, 4)
    assert recipe.schedule.steps == 100
    assert recipe.optim.betas == (0.5, 0.9)
    assert recipe.data.batch_size == Recipe().data.batch_size


def test_relative_data_root_is_resolved_against_the_recipe_folder(recipe_file):
    recipe = load_recipe(recipe_file)
    assert recipe.data.root == str((recipe_file.parent / "corpus").resolve())


def test_absolute_data_root_is_kept(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file, [f"data.root={tmp_path / 'elsewhere'}"])
    assert recipe.data.root == str(tmp_path / "elsewhere")


def test_data_paths_given_on_the_command_line_are_relative_to_the_working_folder(
    recipe_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(recipe_file, ["data.root=audio", "data.manifest=lists/m.tsv"])
    assert recipe.data.root == str(tmp_path / "audio")
    assert recipe.data.manifest == str(tmp_path / "lists" / "m.tsv")


def test_overrides_are_parsed_as_yaml_values(recipe_file):
    recipe = load_recipe(
        recipe_file, ["schedule.steps=5", "model.causal=false", "model.ratios=[4, 2]", "seed=3"]
    )
    assert recipe.schedule.steps == 5
    assert recipe.model.causal is False
    assert recipe.model.ratios == (4, 2)
    assert recipe.seed == 3
    assert recipe.model.channels == 8  # untouched keys stay as the file has them


def test_override_of_an_unknown_key_is_a_config_error(recipe_file):
    with pytest.raises(ConfigError, match="unknown key 'stpes'"):
        load_recipe(recipe_file, ["schedule.stpes=5"])


def test_override_of_an_unknown_section_is_named(recipe_file):
    with pytest.raises(ConfigError, match="unknown key 'optimiser'"):
        load_recipe(recipe_file, ["optimiser.learning_rate=1"])


@pytest.mark.parametrize("override", ["=5", "schedule.steps"])
def test_malformed_override_is_a_config_error(recipe_file, override):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_recipe(recipe_file, [override])


def test_unreadable_recipe_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "name", ["speech16k/codec16k.yaml", "folder/codec16k.yaml", "librispeech/codec16k.yaml"]
)
def test_shipped_recipes_load(name):
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / name, ["data.root=x"])
    assert recipe.model.n_codebooks == 12
    assert Path(recipe.data.root).is_absolute()


def test_override_into_an_empty_section(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("schedule:\n")
    assert load_recipe(path, ["schedule.steps=5"]).schedule.steps == 5
