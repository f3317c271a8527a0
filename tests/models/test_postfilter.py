"""The learnt postfilter: identity when untrained, causal, and streamable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.config import PostFilterConfig
from codec.errors import ConfigError
from codec.models.postfilter import PostFilter
from codec.streaming import StreamingPostFilter
from tests.conftest import tone

SMALL = PostFilterConfig(n_fft=64, hop_length=16, channels=8, dilations=(1, 2))
HALF = PostFilterConfig(n_fft=64, hop_length=32, channels=8, dilations=(1, 2))  # 50% overlap
SHAPES = pytest.mark.parametrize("config", [SMALL, HALF], ids=["75%", "50%"])


def trained_looking(config: PostFilterConfig = SMALL, seed: int = 0) -> PostFilter:
    """A postfilter whose gains are not all zero, as after training."""
    torch.manual_seed(seed)
    pf = PostFilter(config).eval()
    torch.nn.init.normal_(pf.out.weight, std=0.3)
    return pf


@pytest.mark.parametrize("hop", [128, 256])
def test_an_untrained_postfilter_returns_its_input(hop):
    pf = PostFilter(PostFilterConfig(hop_length=hop)).eval()
    x = torch.from_numpy(tone(1.3))[None]
    torch.testing.assert_close(pf(x), x, atol=1e-5, rtol=0)


@SHAPES
def test_its_output_is_as_long_as_its_input_and_changes_it(config):
    pf = trained_looking(config)
    for n in (1, 15, 16, 1000, 1001):
        x = torch.randn(2, n)
        y = pf(x)
        assert y.shape == x.shape
    assert not torch.allclose(pf(x), x, atol=1e-3)


def test_gains_stay_within_max_gain_db():
    config = PostFilterConfig(n_fft=64, hop_length=16, channels=8, dilations=(1,), max_gain_db=6)
    pf = PostFilter(config).eval()
    torch.nn.init.normal_(pf.out.weight, std=100.0)
    g = pf.gains(torch.rand(1, 33, 50))
    assert g.abs().max() <= 6 / 20 + 1e-6


def test_the_gains_on_complex_spectra_are_the_gains_on_their_magnitudes():
    pf = trained_looking()
    spectra = pf.frames(torch.randn(2, 1000))
    torch.testing.assert_close(
        pf.apply_gains(spectra).abs(), pf.apply_gains(spectra.abs()), atol=1e-5, rtol=1e-5
    )


@SHAPES
def test_audio_after_a_hop_boundary_changes_nothing_more_than_the_latency_before_it(config):
    pf = trained_looking(config)
    x = torch.randn(1, 2000)
    y = pf(x)
    hop = config.hop_length
    cut = 1008 // hop * hop  # a stream has its output up to here, less the latency
    changed = x.clone()
    changed[:, cut:] = torch.randn(1, 2000 - cut)
    z = pf(changed)
    lag = config.latency
    torch.testing.assert_close(z[:, : cut - lag], y[:, : cut - lag], atol=1e-6, rtol=0)
    assert not torch.allclose(z[:, cut - 1 :], y[:, cut - 1 :])


@SHAPES
@pytest.mark.parametrize("sizes", [[3000], [16] * 188, [1, 999, 7, 1993], [700, 0, 2300]])
def test_streaming_in_any_pieces_equals_the_whole_signal(config, sizes):
    pf = trained_looking(config)
    x = torch.from_numpy(tone(3000 / 16000))
    stream = StreamingPostFilter(pf)
    pieces, start = [], 0
    for n in sizes:
        pieces.append(stream.push(x[start : start + n].numpy()))
        start += n
    pieces.append(stream.flush())
    torch.testing.assert_close(torch.cat(pieces), pf(x[None])[0], atol=1e-5, rtol=0)


@SHAPES
def test_streaming_output_lags_the_input_by_the_latency(config):
    pf = trained_looking(config)
    stream = StreamingPostFilter(pf)
    out = stream.push(np.zeros(1000, dtype=np.float32))
    lag = config.latency
    assert len(out) == 1000 - lag - (1000 - lag) % config.hop_length
    assert len(stream.flush()) == 1000 - len(out)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 512, "hop_length": 200},
        {"n_fft": 512, "hop_length": 512},
        {"channels": 0},
        {"dilations": (1, 0)},
        {"floor": 0.0},
        {"max_gain_db": 0.0},
    ],
)
def test_bad_shapes_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        PostFilterConfig(**kwargs)
