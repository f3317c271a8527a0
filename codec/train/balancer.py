"""EnCodec's loss balancer (Défossez et al. 2022, section 3.4).

Losses on the decoded audio have gradients of very different sizes (an adversarial loss
can be a thousand times smaller than a mel loss), so fixed loss weights are hard to
choose and drift during training. The balancer instead normalises each loss's gradient
with respect to the decoded audio by an EMA of its norm, so that loss i contributes a
fraction `w_i / sum(w)` of a gradient of norm `total_norm`, whatever its scale.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from codec.errors import ConfigError


class Balancer:
    """Combines the gradients of several losses with respect to one output.

    Args:
        weights: loss name -> weight; a loss's share of the gradient is its weight over
            the sum of the weights of the losses given to `__call__`. Weight 0 skips it.
        ema_decay: decay of the bias-corrected EMA of each gradient norm.
        total_norm: norm of the combined gradient (for gradients in the same direction).
        epsilon: added to the norms before dividing.
    Usage:
        grad = balancer({"mel": mel, "adversarial": adv}, output=audio)  # [B, 1, T]
        torch.autograd.backward([audio, commitment_loss], [grad, None])

    Under torch.distributed the norms are averaged over ranks before the EMA, so every
    replica scales the gradients alike and all hold the same state.
    """

    def __init__(
        self,
        weights: dict[str, float],
        *,
        ema_decay: float = 0.999,
        total_norm: float = 1.0,
        epsilon: float = 1e-12,
    ) -> None:
        self.weights = dict(weights)
        self.ema_decay = ema_decay
        self.total_norm = total_norm
        self.epsilon = epsilon
        self._ema_sum: dict[str, float] = {}  # decayed sum of norms
        self._ema_count: dict[str, float] = {}  # decayed count, for bias correction
        self.last_norms: dict[str, float] = {}  # this step's norms, for logging

    def __call__(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """The gradient to apply to `output`: detached, same shape and dtype."""
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise ConfigError(
                f"no balancer weight for loss {', '.join(unknown)}; "
                f"weighted: {', '.join(sorted(self.weights))}"
            )
        active = [name for name in losses if self.weights[name] != 0]
        if not active:
            return torch.zeros_like(output).detach()
        grads = {
            name: torch.autograd.grad(losses[name], output, retain_graph=True)[0].float()
            for name in active
        }
        norms = self._average_over_ranks([self._norm(grads[name]) for name in active])
        self.last_norms = dict(zip(active, norms, strict=True))
        scales = self._update_ema(self.last_norms)
        weight_sum = sum(self.weights[name] for name in active)
        combined = torch.zeros_like(grads[active[0]])
        for name in active:
            ratio = self.weights[name] / weight_sum
            combined.add_(
                grads[name], alpha=self.total_norm * ratio / (scales[name] + self.epsilon)
            )
        return combined.to(output.dtype).detach()

    @staticmethod
    def _norm(grad: torch.Tensor) -> torch.Tensor:
        """L2 norm of each batch item's gradient, averaged over the batch (EnCodec)."""
        return torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1).mean()

    @staticmethod
    def _average_over_ranks(norms: list[torch.Tensor]) -> list[float]:
        """Mean of each norm over all ranks, read back with a single device sync."""
        stacked = torch.stack(norms)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
            stacked = stacked / dist.get_world_size()
        return stacked.tolist()

    def _update_ema(self, norms: dict[str, float]) -> dict[str, float]:
        """Bias-corrected EMA of each norm, as EnCodec's `flashy.averager`."""
        for name, norm in norms.items():
            self._ema_sum[name] = self._ema_sum.get(name, 0.0) * self.ema_decay + norm
            self._ema_count[name] = self._ema_count.get(name, 0.0) * self.ema_decay + 1.0
        return {name: self._ema_sum[name] / self._ema_count[name] for name in norms}

    def state_dict(self) -> dict[str, dict[str, float]]:
        """The EMA state as plain floats, loadable with `torch.load(weights_only=True)`."""
        return {"ema_sum": dict(self._ema_sum), "ema_count": dict(self._ema_count)}

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        """Restore what `state_dict` returned."""
        self._ema_sum = {k: float(v) for k, v in state["ema_sum"].items()}
        self._ema_count = {k: float(v) for k, v in state["ema_count"].items()}
