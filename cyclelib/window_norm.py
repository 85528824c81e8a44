"""BatchNorm with the statistics of each group window, as the original trained (DESIGN §5).

The original ran its group encoder once per group window, in a Python loop of 45 calls on B
inputs each. So in training every BatchNorm of the encoder normalised window k with the mean and
variance of window k alone (over the B samples and the spatial positions), and its running
statistics took 45 momentum updates per pass, in window order. :class:`WindowBatchNorm2d` and
:class:`WindowBatchNorm1d` compute the same in one call on all B·45 groups:

- the input's rows are ordered sample-major, row b·45 + k is window k of sample b (as
  :meth:`cyclelib.model.CycleGuardian.embed` flattens its groups), and are seen as
  (B, 45, S, C): S spatial positions, C channels;
- the sums over B are one matrix-vector product with a vector of ones, then a sum over S; the
  normalisation is one broadcast multiply-add (a few passes over the activations, as native
  BatchNorm);
- running statistics: 45 sequential updates r ← (1 − m)·r + m·s_k (m the momentum, s_k window
  k's mean, or its unbiased variance as ``nn.BatchNorm`` uses) are, in closed form,
  r ← (1 − m)^45·r + Σ_k m·(1 − m)^(44 − k)·s_k. Inside :func:`running_stat_passes` a call
  counts as several passes of the original over the same batch and applies that update again
  for each (``num_batches_tracked`` counts 45 per pass, one per call of the original).

Evaluation (``.eval()``) is the parent class's: running statistics, the same graph for
``torch.export``, the same state dict. Under autocast (the GPU fast path's ``bf16``,
:mod:`cyclelib.gpu`) the statistics and the normalisation run at the weights' precision
(float32), not in bfloat16.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _rows(t: torch.Tensor, windows: int) -> torch.Tensor:
    """(B·K, C, *spatial) -> (B, K, S, C); a view for channels-last or (N, C) input."""
    return t.movedim(1, -1).reshape(t.shape[0] // windows, windows, -1, t.shape[1])


def _window_sums(rows: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
    """(B, K, S, C) -> (K, C): the sum over the batch and the spatial positions of each window.

    The sum over B is one matrix-vector product (a single fast pass; ``rows.sum((0, 2))`` over
    these strides is several times slower on a CPU).
    """
    batch, windows, spatial, channels = rows.shape
    return (ones @ rows.reshape(batch, -1)).view(windows, spatial, channels).sum(1)


def _empty_like(x: torch.Tensor, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty tensor shaped as ``x`` (channels-last when 4-D) and its (B, K, S, C) view."""
    layout = torch.channels_last if x.ndim == 4 else torch.contiguous_format
    out = torch.empty_like(x, memory_format=layout)
    return out, _rows(out, windows)


class _WindowBatchNorm(torch.autograd.Function):
    """Training-mode batch norm, each window with its own statistics (:func:`window_batch_norm`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, windows: int, eps: float):
        rows = _rows(x, windows)
        count = rows.shape[0] * rows.shape[2]
        ones = x.new_ones(rows.shape[0])
        mean = _window_sums(rows, ones) / count
        out, out_rows = _empty_like(x, windows)
        torch.sub(rows, mean[:, None], out=out_rows)
        var = _window_sums(out_rows.square_(), ones) / count  # centred first: no cancellation
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        torch.addcmul((bias - mean * scale)[:, None], rows, scale[:, None], out=out_rows)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.windows = windows
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        """dx = a·dy + b·x + c per window and channel; the weight and bias gradients sum windows."""
        x, weight, mean, invstd = ctx.saved_tensors
        rows, grad_rows = _rows(x, ctx.windows), _rows(grad, ctx.windows)
        count = rows.shape[0] * rows.shape[2]
        ones = x.new_ones(rows.shape[0])
        sum_dy = _window_sums(grad_rows, ones)  # (K, C)
        grad_x, buffer = _empty_like(x, ctx.windows)
        dot = _window_sums(torch.mul(grad_rows, rows, out=buffer), ones) - mean * sum_dy
        a = weight * invstd  # dot = Σ dy·(x − mean); then dx = a·dy + b·x + c
        b = -a * invstd.square() * dot / count
        c = -a * sum_dy / count - b * mean
        torch.addcmul(c[:, None], rows, b[:, None], out=buffer).addcmul_(grad_rows, a[:, None])
        grad_weight = (dot * invstd).sum(0) if ctx.needs_input_grad[1] else None
        grad_bias = sum_dy.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None


def window_batch_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, windows: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch norm of each window with its own statistics, in one call.

    ``x`` (B·K, C, *spatial), rows sample-major (row b·K + k is window k of sample b); weight
    and bias (C,) shared by the windows. Returns the output (the shape of ``x``; channels-last
    for 4-D input), and each window's mean and biased variance (K, C) over its B·S values
    (S = the product of the spatial sizes), the statistics it was normalised with.
    """
    return _WindowBatchNorm.apply(x, weight, bias, windows, eps)


def momentum_updates(running: torch.Tensor, stats: torch.Tensor, momentum: float) -> None:
    """Apply K momentum updates ``running ← (1 − m)·running + m·stats[k]``, k = 0..K−1, at once.

    ``running`` (C,) in place, ``stats`` (K, C): the closed form
    (1 − m)^K·running + Σ_k m·(1 − m)^(K−1−k)·stats[k]. Momentum 0 leaves ``running`` unchanged.
    """
    windows = stats.shape[0]
    decay = 1.0 - momentum
    powers = torch.arange(windows - 1, -1, -1, dtype=stats.dtype, device=stats.device)
    running.mul_(decay**windows).add_((momentum * decay**powers) @ stats)


class _WindowStats:
    """Training forward of :class:`WindowBatchNorm1d` and :class:`WindowBatchNorm2d`."""

    windows: int
    passes: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B·K, C, *spatial) -> the same shape. Training: per-window statistics; eval: running."""
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        count = x.numel() // (x.shape[1] * self.windows)  # B·S values per window and channel
        if x.shape[0] % self.windows or count < 2:
            raise ValueError(
                f"{type(self).__name__} needs B·{self.windows} rows, B·spatial >= 2 in training; "
                f"got input of shape {tuple(x.shape)}"
            )
        with torch.autocast(x.device.type, enabled=False):  # statistics at the weights' precision
            out, mean, var = window_batch_norm(x.to(self.weight.dtype), self.weight, self.bias,
                                               self.windows, self.eps)
        with torch.no_grad():
            unbiased = var * (count / (count - 1))
            for _ in range(self.passes):
                momentum_updates(self.running_mean, mean, self.momentum)
                momentum_updates(self.running_var, unbiased, self.momentum)
            self.num_batches_tracked.add_(self.windows * self.passes)
        return out


class WindowBatchNorm2d(_WindowStats, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of each of ``windows`` windows.

    Input (B·K, C, H, W), rows sample-major; see :mod:`cyclelib.window_norm`. Same parameters,
    buffers and state dict as ``nn.BatchNorm2d``; the momentum must be a number (the original's
    0.1), not None.
    """

    def __init__(self, num_features: int, windows: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.windows, self.passes = windows, 1


class WindowBatchNorm1d(_WindowStats, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on (B·K, C) whose training statistics are those of each window.

    Same parameters, buffers and state dict as ``nn.BatchNorm1d``; see
    :class:`WindowBatchNorm2d`.
    """

    def __init__(self, num_features: int, windows: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.windows, self.passes = windows, 1


@contextmanager
def running_stat_passes(module: nn.Module, passes: int) -> Iterator[None]:
    """Inside, each call of a window BatchNorm in ``module`` counts as ``passes`` passes.

    The original ran its whole network twice per training step on the same batch (the normal
    pass and the group-mix pass, DESIGN §6), so its BatchNorms updated their running statistics
    with the same batch twice; ours runs the encoder once and applies the update ``passes``
    times. Plain BatchNorms are not affected.
    """
    norms = [m for m in module.modules() if isinstance(m, _WindowStats)]
    for m in norms:
        m.passes = passes
    try:
        yield
    finally:
        for m in norms:
            m.passes = 1
