"""The group encoder's last convolution, written for speed on a CPU (DESIGN §5).

The same values as ``nn.Conv2d(..., padding=1, padding_mode="circular")`` (the original's last
conv), split into two layers whose training passes are written by hand; without gradients
(evaluation, ``torch.export``) both are the plain operations.

- :class:`CircularPad`: autograd's backward through the padding gave each of the four edge
  slices a zero gradient the size of the whole input, then added them up: about 0.3 s of a
  2.2 s faithful training step at batch 32 (1,440 groups; ``benchmarks/bench_model.py``).
- :class:`TapGradConv2d`: oneDNN's weight gradient for the 3×3 stride-2 conv from 128 to 256
  channels (17 GFLOP at 1,440 groups) took about 205 ms on these 2 cores (83 GFLOP/s); as nine
  matrix products, 125 ms (135 GFLOP/s).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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


class _TapGradConv(torch.autograd.Function):
    """``F.conv2d`` without padding; backward: the weight gradient tap by tap."""

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return F.conv2d(x, weight, bias, stride)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """grad (N, O, Ho, Wo) -> grads of x (N, C, H, W), weight (O, C, kh, kw), bias (O,).

        Weight gradient of tap (i, j): grad as an (N·Ho·Wo, O) matrix, transposed, times the
        (N·Ho·Wo, C) inputs the tap saw (channels-last, a view of grad and a copy of the strided
        taps), one large matrix product each; the input gradient stays oneDNN's.
        """
        x, weight = ctx.saved_tensors
        g = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1])  # (N·Ho·Wo, O)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, bias_sizes=None, stride=ctx.stride, padding=(0, 0),
                dilation=(1, 1), transposed=False, output_padding=(0, 0), groups=1,
                output_mask=(True, False, False),
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad_by_taps(x, g, weight.shape, ctx.stride, grad.shape[-2:])
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None


def _weight_grad_by_taps(
    x: torch.Tensor,
    g: torch.Tensor,
    weight_shape: torch.Size,
    stride: tuple[int, int],
    out_size: tuple[int, int],
) -> torch.Tensor:
    """x (N, C, H, W) and g (N·Ho·Wo, O) -> the weight gradient (O, C, kh, kw), tap by tap."""
    c_out, c_in, kh, kw = weight_shape
    (sh, sw), (ho, wo) = stride, out_size
    x_nhwc = x.permute(0, 2, 3, 1)  # (N, H, W, C)
    grad_w = x.new_empty(kh, kw, c_out, c_in)
    for i in range(kh):
        for j in range(kw):
            tap = x_nhwc[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
            torch.mm(g.t(), tap.reshape(-1, c_in), out=grad_w[i, j])
    return grad_w.permute(2, 3, 0, 1)


class TapGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no padding, no dilation, one group) whose training backward computes the
    weight gradient as one matrix product per kernel tap: (N, C, H, W) -> (N, O, H', W').

    Same parameters, state dict and values as ``nn.Conv2d``; gradients equal to rounding. Only
    training on a CPU takes the hand-written path. It pays for wide layers (the faithful last
    conv, 128 -> 256 channels: 485 -> 414 ms per training pass at 1,440 groups); for narrow
    ones (the small config's 16 -> 32: 29 -> 37 ms) oneDNN's own kernel is faster.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1:
            raise ValueError(
                "TapGradConv2d supports padding=0, dilation=1, groups=1 only; got "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, O, (H - kh) // sh + 1, (W - kw) // sw + 1)."""
        if self.training and torch.is_grad_enabled() and x.device.type == "cpu":
            return _TapGradConv.apply(x, self.weight, self.bias, self.stride)
        return super().forward(x)  # evaluation, export, and GPUs (cuDNN's kernels are fast)
