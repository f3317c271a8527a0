"""Training a postfilter, storing it beside its codec, and decoding through it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from codec import pretrained
from codec.audio import load_audio, save_audio
from codec.cli import app
from codec.config import PostFilterConfig
from codec.errors import CodecError
from codec.inference import decode_file, encode_file
from codec.models.postfilter import PostFilter
from codec.train.losses import compressed_spectral_loss
from codec.train.postfilter import (
    CodedCorpus,
    PostFilterTraining,
    cached_code_corpus,
    code_corpus,
    evaluate,
    train_postfilter,
)
from tests.conftest import tone

SMALL = PostFilterConfig(n_fft=64, hop_length=16, channels=8, dilations=(1, 2))
runner = CliRunner()


def muffled_corpus(n: int = 4) -> CodedCorpus:
    """Inputs and a 'decoding' that lost 6 dB: what a postfilter can learn to undo."""
    clean = [np.round(tone(0.5, seed=i) * 32767).astype(np.int16) for i in range(n)]
    return CodedCorpus(clean, {6.0: [(x // 2).astype(np.int16) for x in clean]})


HALF = PostFilterConfig(n_fft=64, hop_length=32, channels=8, dilations=(1, 2))


@pytest.mark.parametrize(
    ("config", "resynthesis"),
    [(SMALL, False), (HALF, False), (HALF, True)],
    ids=["75%", "50%", "50%-rs"],
)
def test_training_learns_to_undo_a_lost_level(config, resynthesis):
    corpus = muffled_corpus()
    training = PostFilterTraining(
        bitrates=(6.0,), steps=150, batch_size=4, segment_frames=16, resynthesis=resynthesis
    )
    pf, metrics = train_postfilter(corpus, corpus, config, training, log=lambda s: None)
    assert metrics["valid_loss_6kbps"] < 0.5 * metrics["valid_loss_6kbps_unfiltered"]
    assert metrics["steps"] == 150
    assert evaluate(PostFilter(config).eval(), corpus)["valid_loss_6kbps"] == pytest.approx(
        metrics["valid_loss_6kbps_unfiltered"]
    )


def test_overshoot_weighs_only_the_bins_made_louder_than_the_input():
    target = torch.ones(2, 3)
    louder, quieter = torch.full((2, 3), 2.0), torch.full((2, 3), 0.5)
    for estimate, weight in ((louder, 3.0), (quieter, 1.0)):
        plain = compressed_spectral_loss(estimate, target)
        assert compressed_spectral_loss(estimate, target, overshoot=3.0) == pytest.approx(
            weight * plain.item()
        )


def test_a_filter_trained_against_overshoot_adds_less_where_the_input_is_quiet():
    # a 'decoding' that lost 6 dB in one half of the crops and gained 6 dB in the other:
    # one gain for both can only trade one error for the other, and the overshoot weight
    # tips the trade towards staying under the input
    clean = [np.round(tone(0.5, seed=i) * 32767 * 0.4).astype(np.int16) for i in range(4)]
    decoded = [(x // 2 if i % 2 else x * 2).astype(np.int16) for i, x in enumerate(clean)]
    corpus = CodedCorpus(clean, {6.0: decoded})

    def level_change(overshoot: float) -> float:
        training = PostFilterTraining(
            bitrates=(6.0,), steps=150, batch_size=4, segment_frames=16, overshoot=overshoot
        )
        pf, _ = train_postfilter(corpus, corpus, HALF, training, log=lambda s: None)
        with torch.no_grad():
            x = torch.from_numpy(np.concatenate(decoded).astype(np.float32) / 32767)
            return float(pf(x[None]).square().mean() / x.square().mean())

    assert level_change(4.0) < level_change(1.0)


def test_a_time_budget_trains_fewer_steps_to_the_end_of_the_cosine():
    corpus = muffled_corpus()
    training = PostFilterTraining(
        bitrates=(6.0,), steps=10**6, batch_size=4, segment_frames=16, seconds=2.0
    )
    lines: list[str] = []
    _, metrics = train_postfilter(corpus, corpus, SMALL, training, log=lines.append)
    assert 30 <= metrics["steps"] < 10**6
    assert f"step {metrics['steps']}/{metrics['steps']}" in lines[-1]  # the last step logged
    assert metrics["valid_loss_6kbps"] < metrics["valid_loss_6kbps_unfiltered"]


def test_code_corpus_codes_every_file_at_every_bitrate(tiny_model_dir, tmp_path):
    paths = []
    for i, seconds in enumerate((0.3, 0.7)):
        paths.append(tmp_path / f"{i}.wav")
        save_audio(paths[-1], tone(seconds, seed=i), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    logs = []
    corpus = code_corpus(
        pretrained.load(tiny_model_dir), [*paths, tmp_path / "bad.wav"], (1.0, 2.0), logs.append
    )
    assert [len(x) for x in corpus.clean] == [4800, 11200]
    assert {b: [len(y) for y in ys] for b, ys in corpus.decoded.items()} == {
        1.0: [4800, 11200],
        2.0: [4800, 11200],
    }
    assert any("bad.wav" in line for line in logs)


def test_a_cached_corpus_is_coded_once_and_recoded_when_unreadable(tiny_model_dir, tmp_path):
    paths = [tmp_path / f"{i}.wav" for i in range(2)]
    for i, path in enumerate(paths):
        save_audio(path, tone(0.3 + 0.2 * i, seed=i), 16000)
    model = pretrained.load(tiny_model_dir)
    model_id, cache = pretrained.id_of(model), tmp_path / "cache"

    def coded() -> tuple[CodedCorpus, list[str]]:
        logs: list[str] = []
        return cached_code_corpus(model, paths, (1.0, 2.0), cache, model_id, logs.append), logs

    first, logs = coded()
    assert not any("cache" in line for line in logs)
    again, logs = coded()
    assert any("from the cache" in line for line in logs)
    for a, b in zip(
        [first.clean, *first.decoded.values()], [again.clean, *again.decoded.values()], strict=True
    ):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    (stored,) = cache.glob("*.npz")
    stored.write_bytes(stored.read_bytes()[:100])  # truncated
    recoded, logs = coded()
    assert any("unreadable cache" in line for line in logs)
    assert [len(x) for x in recoded.clean] == [len(x) for x in first.clean]
    other = cached_code_corpus(model, paths[:1], (1.0, 2.0), cache, model_id, lambda _: None)
    assert len(other.clean) == 1 and len(list(cache.glob("*.npz"))) == 2


def with_postfilter(model_dir, tmp_path, codec_id: bytes | None = None):
    """A copy of `model_dir` holding a (trained-looking) postfilter for it."""
    folder = tmp_path / "with-pf"
    shutil.copytree(model_dir, folder)
    torch.manual_seed(0)
    pf = PostFilter(SMALL).eval()
    torch.nn.init.normal_(pf.out.weight, std=0.3)
    model = pretrained.load(folder)
    pretrained.save_postfilter(pf, folder, codec_id or pretrained.id_of(model), {"steps": 1})
    return folder, pf


def test_a_saved_postfilter_loads_as_it_was(tiny_model_dir, tmp_path):
    folder, pf = with_postfilter(tiny_model_dir, tmp_path)
    loaded = pretrained.load_postfilter(pretrained.load(folder))
    assert loaded.config == SMALL and loaded.metrics == {"steps": 1}
    x = torch.from_numpy(tone(0.4))[None]
    torch.testing.assert_close(loaded(x), pf(x), atol=2e-3, rtol=0)  # float16 weights
    assert pretrained.load_postfilter(pretrained.load(tiny_model_dir)) is None


def test_a_postfilter_for_another_codec_is_refused(tiny_model_dir, tmp_path):
    folder, _ = with_postfilter(tiny_model_dir, tmp_path, codec_id=bytes(16))
    with pytest.raises(CodecError, match="another codec"):
        pretrained.load_postfilter(pretrained.load(folder))


def test_decoding_goes_through_the_models_postfilter_unless_told_not_to(
    tiny_model_dir, tmp_path, speech_wav
):
    folder, _ = with_postfilter(tiny_model_dir, tmp_path)
    model, plain_model = pretrained.load(folder), pretrained.load(tiny_model_dir)
    codes = tmp_path / "x.codes"
    encode_file(model, speech_wav, codes, 2.0)
    decode_file(model, codes, tmp_path / "filtered.wav")
    decode_file(model, codes, tmp_path / "raw.wav", postfilter=False)
    decode_file(plain_model, codes, tmp_path / "plain.wav")  # a model without one
    filtered, raw, plain = (
        load_audio(tmp_path / f"{n}.wav", 16000) for n in ("filtered", "raw", "plain")
    )
    assert len(filtered) == len(raw) == len(load_audio(speech_wav, 16000))
    np.testing.assert_array_equal(raw, plain)
    assert np.abs(filtered - raw).max() > 1e-3


def test_cli_trains_a_postfilter_that_decode_then_uses(tiny_model_dir, tmp_path, speech_wav):
    data = tmp_path / "corpus"
    for split, n in (("train", 3), ("valid", 1)):
        (data / split).mkdir(parents=True)
        for i in range(n):
            save_audio(data / split / f"{i}.wav", tone(0.6, seed=i), 16000)
    rows = [f"{s}/{i}.wav\t{s}" for s, n in (("train", 3), ("valid", 1)) for i in range(n)]
    (data / "manifest.tsv").write_text("path\tsplit\n" + "\n".join(rows) + "\n")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    result = runner.invoke(
        app,
        ["postfilter", "train", str(model), str(data), "--out", str(tmp_path / "pf"),
         "--steps", "3", "--batch-size", "2", "--bitrates", "2", "--hop-length", "256",
         "--cache", str(tmp_path / "cache")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "valid_loss_2kbps" in result.output
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # the train and valid splits
    assert pretrained.load_postfilter_files(tmp_path / "pf").config.hop_length == 256
    for name in ("postfilter.safetensors", "postfilter.json"):
        shutil.copy(tmp_path / "pf" / name, model / name)
    codes = tmp_path / "x.codes"
    assert (
        runner.invoke(app, ["encode", str(speech_wav), str(codes), "-m", str(model)]).exit_code == 0
    )
    for flag, name in (([], "a.wav"), (["--no-postfilter"], "b.wav")):
        result = runner.invoke(
            app, ["decode", str(codes), str(tmp_path / name), "-m", str(model), *flag]
        )
        assert result.exit_code == 0, result.output
    a, b = load_audio(tmp_path / "a.wav", 16000), load_audio(tmp_path / "b.wav", 16000)
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bitrates", "six"], "--bitrates"),
        (["--steps", "0"], "steps"),
        (["--n-fft", "511", "--bitrates", "2"], "n_fft"),
        (["--hop-length", "100", "--bitrates", "2"], "n_fft"),
        (["--device", "tpu"], "--device"),
        (["--seconds", "-1"], "seconds"),
        (["--overshoot", "0"], "overshoot"),
    ],
)
def test_cli_bad_settings_are_one_line_errors(tiny_model_dir, tmp_path, args, message):
    result = runner.invoke(
        app,
        [
            "postfilter",
            "train",
            str(tiny_model_dir),
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            *args,
        ],
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a CPU-only machine")
def test_cli_asking_for_cuda_without_one_is_a_one_line_error(tiny_model_dir, tmp_path):
    args = ["postfilter", "train", str(tiny_model_dir), str(tmp_path), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code != 0
    assert "no CUDA device" in result.output and "Traceback" not in result.output


def test_eval_scores_the_postfiltered_output_unless_told_not_to(
    tiny_model_dir, tmp_path, speech_wav
):
    from codec.eval.runner import build_systems

    folder, _ = with_postfilter(tiny_model_dir, tmp_path)
    model = pretrained.load(folder)
    wav = load_audio(speech_wav, 16000)
    (filtered,) = build_systems(model, [2.0], [])
    (raw,) = build_systems(model, [2.0], [], postfilter=False)
    a = filtered.code(speech_wav, wav, 16000).decoded
    b = raw.code(speech_wav, wav, 16000).decoded
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3
