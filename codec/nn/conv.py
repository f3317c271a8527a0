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
        return self._conv(nn.functional.pad(x, (left, right)))

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """`self.conv(x)`. Outside autograd, a layer with one or two output channels
        (the decoder's last) is computed as one matrix product over its taps and a sum
        of shifted rows: on CPU, six times faster than oneDNN's convolution for it. A
        layer with at most 8 output channels (the full-rate residual units' 16 -> 8) is
        one matrix product per tap, accumulated: oneDNN's kernel for it is 2 to 6 times
        slower on CPU. A dilated layer on a small input (the postfilter's) is one matrix
        product over its taps stacked on the channels: PyTorch sends those to a
        per-column loop on CPU, 2.4 times slower."""
        conv = self.conv
        if conv.stride[0] != 1 or x.requires_grad:
            return conv(x)
        if conv.out_channels <= 2:
            return _narrow_conv(x, conv.weight, conv.bias, conv.dilation[0])
        if self._tapwise(x):
            return _tapwise_conv(x, conv.weight, conv.bias, conv.dilation[0])
        if conv.dilation[0] > 1 and x.is_cpu and x[0].numel() < SMALL_INPUT:
            return _stacked_conv(x, conv.weight, conv.bias, conv.dilation[0])
        return conv(x)

    def _forward_streaming(self, x: torch.Tensor) -> torch.Tensor:
        """The next `x.shape[-1] // stride` outputs; `x` must be a whole number of strides.
        The first call sees zeros before it, as the causal padding of a whole signal."""
        p = self.padding_total
        if p == 0:
            return self._conv(x)
        if self._tapwise(x):
            # The history and the input are read where they are, not concatenated (a
            # copy of the whole input at every call).
            conv = self.conv
            y = _tapwise_conv(x, conv.weight, conv.bias, conv.dilation[0], self.state)
            if x.shape[-1] >= p:
                self.state.copy_(x[..., x.shape[-1] - p :])
            else:
                self.state.copy_(torch.cat([self.state[..., x.shape[-1] :], x], dim=-1))
            return y
        buffer = torch.cat([self.state, x], dim=-1)
        # Updated in place, so torch.compile sees the same tensor at every call.
        self.state.copy_(buffer[..., buffer.shape[-1] - p :])
        return self._conv(buffer)

    def _tapwise(self, x: torch.Tensor) -> bool:
        """Whether this layer computes `x` by `_tapwise_conv`: CPU inference, stride 1,
        several taps, at most `TAPWISE_MAX_CHANNELS` output channels."""
        conv = self.conv
        return (
            conv.stride[0] == 1
            and conv.kernel_size[0] > 1
            and conv.out_channels <= TAPWISE_MAX_CHANNELS
            and x.is_cpu
            and not x.requires_grad
        )

    def _empty_state(self, batch_size: int) -> torch.Tensor:
        weight = self.conv.weight
        return weight.new_zeros(batch_size, weight.shape[1], self.padding_total)


# Up to this many output channels, a convolution is faster on CPU as one GEMM per tap
# than through oneDNN, which is slow for narrow layers over long inputs: for the 16 -> 8,
# 3-tap layers over a 2 s chunk at 16 kHz, 1.1 to 3.3 ms against 0.4 to 0.9 ms (1.7 to
# 6 times). At 16 channels the two are level, and oneDNN wins for few input channels
# (the encoder's 1 -> 16 input layer) and for wider layers. `benchmarks/conv_paths.py`
# measures each layer of a model both ways.
TAPWISE_MAX_CHANNELS = 8

# Below this many elements per batch item, PyTorch's CPU convolution of a kernel of 3 or
# less takes its im2col paths (for dilated kernels, a slow per-column loop), not oneDNN.
SMALL_INPUT = 20480


def _stacked_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int
) -> torch.Tensor:
    """Unpadded, stride-1 `conv1d(x [B, C, L], weight [O, C, K])` as one GEMM
    `[O, K * C] @ [K * C, steps]` over the K shifted copies of `x` stacked on channels."""
    out_ch, in_ch, taps = weight.shape
    steps = x.shape[-1] - dilation * (taps - 1)
    stacked = torch.cat([x[..., k * dilation : k * dilation + steps] for k in range(taps)], 1)
    rows = weight.permute(0, 2, 1).reshape(out_ch, taps * in_ch)
    y = torch.matmul(rows, stacked)
    return y + bias[:, None] if bias is not None else y


def _tapwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unpadded, stride-1 `conv1d(x [B, C, L], weight [O, C, K])` as
    `y = sum_k W_k @ x[..., k * dilation :][..., :steps]`: K GEMMs accumulated in place,
    each reading a shifted view of `x` (no copy of the input). With `history`
    `[B, C, H]`, the input is `history` then `x`, without concatenating them: a tap's
    window that starts in the history is two GEMMs, one on each side."""
    out_ch, in_ch, taps = weight.shape
    h_len = 0 if history is None else history.shape[-1]
    batch, steps = x.shape[0], h_len + x.shape[-1] - dilation * (taps - 1)
    taps_first = weight.permute(2, 0, 1).contiguous()  # [K, O, C]
    y = x.new_zeros(batch, out_ch, steps)
    if bias is not None:
        y += bias[:, None]
    for k, w in enumerate(taps_first):
        start = k * dilation - h_len  # where tap k's window starts in `x`
        split = min(max(-start, 0), steps)  # its first `split` steps are in the history
        if split:
            _accumulate(y[..., :split], w, history[..., k * dilation : k * dilation + split])
        if steps > split:
            _accumulate(y[..., split:], w, x[..., start + split : start + steps])
    return y


def _accumulate(y: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> None:
    """`y += w @ x` in place, for `y [B, O, T]`, `w [O, C]`, `x [B, C, T]`."""
    if y.shape[0] == 1:
        y[0].addmm_(w, x[0])
    else:
        y.baddbmm_(w.expand(y.shape[0], *w.shape), x)


def _narrow_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int
) -> torch.Tensor:
    """Unpadded, stride-1 `conv1d(x [B, C, L], weight [O, C, K])` as
    `y[o, t] = sum_k (W_k x)[o, t + k * dilation]`: one GEMM `[O * K, C] @ [C, L]`,
    then K shifted adds of rows that are only O channels wide."""
    out_ch, in_ch, taps = weight.shape
    steps = x.shape[-1] - dilation * (taps - 1)
    rows = weight.permute(0, 2, 1).reshape(out_ch * taps, in_ch).contiguous()
    per_tap = torch.matmul(rows, x)  # a transposed (strided) left side is 6x slower
    per_tap = per_tap.view(x.shape[0], out_ch, taps, -1)
    y = per_tap[:, :, 0, :steps].clone()
    if bias is not None:
        y += bias[:, None]
    for k in range(1, taps):
        y += per_tap[:, :, k, k * dilation : k * dilation + steps]
    return y


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
        self.state: torch.Tensor | None = None  # the last input steps, while streaming
        self._polyphase_cache: tuple[torch.Tensor, torch.Tensor | None] | None = None

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
        """The next `x.shape[-1] * stride` outputs, computed in polyphase form: with
        `kernel_size = m * stride`, the `stride` outputs of input step t are a plain
        convolution of steps t-m+1..t, one output channel per (channel, phase). So the
        history is the last m-1 input steps, as for a causal convolution, and one GEMM
        replaces the scatter of a transposed convolution (about 3x faster on CPU)."""
        weight, bias = self._polyphase()
        taps = weight.shape[-1]
        buffer = torch.cat([self.state, x], dim=-1) if taps > 1 else x
        if taps > 1:
            self.state.copy_(buffer[..., buffer.shape[-1] - (taps - 1) :])
        y = nn.functional.conv1d(buffer, weight, bias)  # [B, C_out * stride, T]
        b, _, t = y.shape
        return y.view(b, -1, self.stride, t).transpose(2, 3).reshape(b, -1, t * self.stride)

    def _polyphase(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight `[C_out * stride, C_in, m]` and bias of the polyphase convolution,
        taken from the weights as they are when streaming starts."""
        if self._polyphase_cache is None:
            w, bias = self.conv.weight.detach(), self.conv.bias  # w: [C_in, C_out, m * stride]
            c_in, c_out, k = w.shape
            m = k // self.stride
            phases = w.reshape(c_in, c_out, m, self.stride).flip(2)
            weight = phases.permute(1, 3, 0, 2).reshape(c_out * self.stride, c_in, m)
            pbias = None if bias is None else bias.detach().repeat_interleave(self.stride)
            self._polyphase_cache = (weight.contiguous(), pbias)
        return self._polyphase_cache

    def _empty_state(self, batch_size: int) -> torch.Tensor:
        weight = self.conv.weight  # [C_in, C_out, kernel] for a transposed convolution
        if weight.shape[-1] % self.stride:
            raise ValueError("streaming needs a kernel size that is a multiple of the stride")
        self._polyphase_cache = None
        self._polyphase()  # from the current weights, before any call (and any tracing)
        taps = weight.shape[-1] // self.stride
        return weight.new_zeros(batch_size, weight.shape[0], max(taps - 1, 0))


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
