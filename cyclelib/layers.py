"""Circular padding with a hand-written backward pass, for the group encoder (DESIGN §5).

The original's last conv pads circularly (``padding_mode="circular"``). :class:`CircularPad`
computes the same values by concatenation; only its backward is written by hand, because
autograd's own was slow on a CPU: it gave each of the four edge slices a zero gradient the size
of the whole input, then added them up, about 0.3 s of a 2.2 s faithful training step at batch
32 (1,440 groups; ``benchmarks/bench_model.py``). Without gradients (evaluation,
``torch.export``) it is the plain concatenation.
"""

from __future__ import annotations

import torch
from torch import nn


def circular_pad(x: torch.Tensor) -> torch.Tensor:
    """Wrap-around padding by one row and column: (N, C, H, W) -> (N, C, H + 2, W + 2).

    The values of ``nn.Conv2d(..., padding=1, padding_mode="circular")`` (the original's last
    conv), built by concatenation.
    """
    x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
    return torch.cat([x[..., -1:, :], x, x[..., :1, :]], dim=-2)


class _CircularPadFunction(torch.autograd.Function):
    """:func:`circular_pad`; backward: the interior of the padded gradient plus its borders."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return circular_pad(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        """(N, C, H + 2, W + 2) -> (N, C, H, W): every padded cell goes back to its source."""
        x = grad[..., 1:-1, 1:-1].clone()  # the interior, one input-sized buffer
        x[..., -1, :] += grad[..., 0, 1:-1]  # top pad row: copies of the last row
        x[..., 0, :] += grad[..., -1, 1:-1]  # bottom pad row: the first row
        x[..., :, -1] += grad[..., 1:-1, 0]  # left pad column: the last column
        x[..., :, 0] += grad[..., 1:-1, -1]  # right pad column: the first column
        x[..., -1, -1] += grad[..., 0, 0]  # the four pad corners wrap both ways
        x[..., -1, 0] += grad[..., 0, -1]
        x[..., 0, -1] += grad[..., -1, 0]
        x[..., 0, 0] += grad[..., -1, -1]
        return x


class CircularPad(nn.Module):
    """Wrap-around padding by one row and column: (N, C, H, W) -> (N, C, H + 2, W + 2).

    Same values as ``nn.Conv2d(..., padding=1, padding_mode="circular")``, with a backward
    that needs one input-sized buffer (``F.pad(mode="circular")``'s needs about three).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H + 2, W + 2)."""
        if torch.is_grad_enabled() and x.requires_grad:
            return _CircularPadFunction.apply(x)
        return circular_pad(x)
