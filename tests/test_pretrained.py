"""Loading, saving and identifying models; the shipped default model really works."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

import codec
from codec import pretrained
from codec.audio import load_audio
from codec.config import PostFilterConfig, to_dict
from codec.errors import CodecError, ModelNotFoundError
from codec.eval.metrics import mel_distance, stoi
from tests.conftest import TINY, make_tiny_model, tone

CLIP = pretrained.Path(codec.__file__).parent / "data" / "speech_en.flac"


def test_save_then_load_gives_the_same_model_and_id(tmp_path):
    model = make_tiny_model()
    saved_id = pretrained.save(model, tmp_path / "m")
    loaded = pretrained.load(tmp_path / "m")
    assert loaded.model_id == saved_id == pretrained.id_of(model)
    x = torch.from_numpy(tone(1.0))
    with torch.inference_mode():
        assert torch.equal(loaded.encode(x), model.encode(x))
        torch.testing.assert_close(loaded.decode(model.encode(x)), model.decode(model.encode(x)))


def test_a_snake_model_saves_and_loads_with_its_alphas(tmp_path):
    model = make_tiny_model(config=dataclasses.replace(TINY, activation="snake"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 2.0)
    pretrained.save(model, tmp_path / "m")
    loaded = pretrained.load(tmp_path / "m")
    assert loaded.config.activation == "snake"
    x = torch.from_numpy(tone(1.0))
    with torch.inference_mode():
        codes = model.encode(x)
        assert torch.equal(loaded.encode(x), codes)
        torch.testing.assert_close(loaded.decode(codes), model.decode(codes))


def test_different_weights_have_different_ids(tmp_path):
    assert pretrained.save(make_tiny_model(0), tmp_path / "a") != pretrained.save(
        make_tiny_model(1), tmp_path / "b"
    )


def test_a_config_field_left_unset_does_not_change_the_id():
    """Fields added to `CodecConfig` later default to None; models made before them
    (and the `.codes` files and priors tied to their ids) keep their ids."""
    config = make_tiny_model().config
    later = ("outer_dilations", "activation")
    assert all(getattr(config, name) is None for name in later)
    fields = {k: v for k, v in to_dict(config).items() if k not in later}
    canonical = json.dumps(fields, sort_keys=True).encode()
    assert pretrained.model_id(config, b"w") == hashlib.sha256(canonical + b"\0w").digest()[:16]
    pruned = dataclasses.replace(config, outer_dilations=(1,))
    assert pretrained.model_id(pruned, b"w") != pretrained.model_id(config, b"w")
    snake = dataclasses.replace(config, activation="snake")
    assert pretrained.model_id(snake, b"w") != pretrained.model_id(config, b"w")


def test_missing_and_broken_models_give_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        pretrained.load("no-such-model")
    pretrained.save(make_tiny_model(), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CodecError, match="cannot load model"):
        pretrained.load(tmp_path / "m")
    pretrained.save(make_tiny_model(), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["channels"] = 8
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CodecError, match="do not match"):
        pretrained.load(tmp_path / "m")


def test_the_default_model_is_shipped_and_listed():
    names = [m.name for m in pretrained.available_models()]
    assert pretrained.DEFAULT_MODEL in names
    card = pretrained.resolve(pretrained.DEFAULT_MODEL) / "README.md"
    assert "PESQ" in card.read_text()


def test_the_default_model_reconstructs_held_out_speech():
    model = codec.load()
    ref = load_audio(CLIP, model.sample_rate)
    with torch.inference_mode():
        out = model.decode(model.encode(torch.from_numpy(ref), 6.0))[: len(ref)].numpy()
    # Floors under the model card's figures that an untrained model misses by far
    # (it scores STOI 0.45 and mel distance 1.1 on this clip; the shipped one 0.81, 0.36).
    assert stoi(ref, out, 16000) > 0.7
    assert mel_distance(ref, out, 16000) < 0.6


def test_a_postfilter_trained_with_the_defaults_has_the_shipped_shape():
    # what `codec postfilter train` makes without flags is what decodes by default
    shipped = pretrained.load_postfilter(codec.load())
    assert PostFilterConfig() == shipped.config


def test_the_default_models_postfilter_brings_its_output_closer_to_the_input():
    model = codec.load()
    postfilter = pretrained.load_postfilter(model)
    assert postfilter is not None
    ref = load_audio(CLIP, model.sample_rate)
    with torch.inference_mode():
        raw = model.decode(model.encode(torch.from_numpy(ref), 3.0))[: len(ref)]
        filtered = postfilter(raw[None])[0]
    raw, filtered = raw.numpy(), filtered.numpy()
    # On the card's valid files it takes mel distance from 0.29 to 0.235 and adds 0.009 STOI.
    assert mel_distance(ref, filtered, 16000) < mel_distance(ref, raw, 16000) - 0.02
    assert stoi(ref, filtered, 16000) > stoi(ref, raw, 16000)


def test_more_codebooks_quantise_the_default_models_latents_more_finely():
    model = codec.load()
    x = torch.from_numpy(load_audio(CLIP, model.sample_rate))
    with torch.inference_mode():
        z = model.encoder(model._pad(x[None, None]))
        codes = model.quantizer.encode(z)
        errors = [
            (z - model.quantizer.decode(codes[:, :n])).pow(2).mean().item() for n in (3, 6, 12)
        ]
    assert errors[0] > errors[1] > errors[2], errors
