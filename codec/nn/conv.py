"""1-D convolutions with weight norm and causal or centred padding (SEANet style).

Inputs must be a whole number of frames long (the model pads once at its input), so
every strided layer maps `T` samples to exactly `T / stride` steps and back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Conv1d(nn.Module):
    """Weight-normalised `nn.Conv1d` that keeps length `T -> T // stride`.

    Args:
        causal: pad only on the left, so output step t sees no input after t.
    Shapes: `[B, C_in, T] -> [B, C_out, T // stride]`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.conv = weight_norm(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        )
        self.causal = causal
        self.padding_total = (kernel_size - 1) * dilation + 1 - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return self.conv(nn.functional.pad(x, (left, right)))


class ConvTranspose1d(nn.Module):
    """Weight-normalised `nn.ConvTranspose1d` that maps `T -> T * stride` exactly.

    The `kernel_size - stride` extra output samples are trimmed on the right when causal
    (the output never depends on future frames), split evenly otherwise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride))
        self.causal = causal
        self.padding_total = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.causal:
            left, right = 0, self.padding_total
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return y[..., left : y.shape[-1] - right]


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation under `module` by the plain weight it
    computes, so inference does not recompute `g * v / ||v||` at every call."""
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module
