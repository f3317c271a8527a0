"""1-D convolutions with weight norm and causal or centred padding (SEANet style).

Inputs must be a whole number of frames long (the model pads once at its input), so
every strided layer maps `T` samples to exactly `T / stride` steps and back.

Causal layers can also run in streaming mode (`set_streaming`): each keeps the tail of
its input (or, transposed, of its output) between calls, so a signal fed in pieces gives
the same output as the whole signal at once, with no overlap recomputed.
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
        self.streaming = False
        self.state: torch.Tensor | None = None  # last `padding_total` input steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming:
            return self._forward_streaming(x)
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return self.conv(nn.functional.pad(x, (left, right)))

    def _forward_streaming(self, x: torch.Tensor) -> torch.Tensor:
        """The next `x.shape[-1] // stride` outputs; `x` must be a whole number of strides.
        The first call sees zeros before it, as the causal padding of a whole signal."""
        p = self.padding_total
        if p == 0:
            return self.conv(x)
        buffer = torch.cat([self.state, x], dim=-1)
        # Updated in place, so torch.compile sees the same tensor at every call.
        self.state.copy_(buffer[..., buffer.shape[-1] - p :])
        return self.conv(buffer)

    def _empty_state(self, batch_size: int) -> torch.Tensor:
        weight = self.conv.weight
        return weight.new_zeros(batch_size, weight.shape[1], self.padding_total)


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
        self.stride = stride
        self.padding_total = kernel_size - stride
        self.streaming = False
        self.state: torch.Tensor | None = None  # overlap of the last call, bias removed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming:
            return self._forward_streaming(x)
        y = self.conv(x)
        if self.causal:
            left, right = 0, self.padding_total
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return y[..., left : y.shape[-1] - right]

    def _forward_streaming(self, x: torch.Tensor) -> torch.Tensor:
        """The next `x.shape[-1] * stride` outputs. Each input step also reaches the
        first `kernel_size - stride` outputs of the next call: that overlap is kept (less
        the bias, which the next call adds again) and added on then."""
        y = self.conv(x)
        n = x.shape[-1] * self.stride
        head = y[..., : self.padding_total] + self.state
        tail = y[..., n:]
        if self.conv.bias is not None:
            tail = tail - self.conv.bias[:, None]
        self.state.copy_(tail)
        return torch.cat([head, y[..., self.padding_total : n]], dim=-1)

    def _empty_state(self, batch_size: int) -> torch.Tensor:
        weight = self.conv.weight  # [C_in, C_out, kernel] for a transposed convolution
        return weight.new_zeros(batch_size, weight.shape[1], self.padding_total)


def set_streaming(module: nn.Module, streaming: bool = True, batch_size: int = 1) -> nn.Module:
    """Switch every convolution under `module` to streaming mode (or back), starting
    from an empty (all-zero) history of `batch_size` streams. Only causal layers can
    stream."""
    for m in module.modules():
        if isinstance(m, (Conv1d, ConvTranspose1d)):
            if streaming and not m.causal:
                raise ValueError("only a causal model can stream")
            m.streaming = streaming
            m.state = m._empty_state(batch_size) if streaming else None
    return module


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation under `module` by the plain weight it
    computes, so inference does not recompute `g * v / ||v||` at every call."""
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module
