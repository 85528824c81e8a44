"""The GPU fast path of training (DESIGN §6, §9): what changes on CUDA, and what does not.

A faithful epoch on one GPU spends more time around the network than in it when every batch is
read from host memory, copied, and waited for. On CUDA, :func:`cyclelib.train.train` therefore

- keeps every split's inputs resident on the GPU (:meth:`cyclelib.prepare.SplitData.resident`:
  features float16, waveforms float32), so a batch is a gather on the device;
- copies the few host-side numbers of a step (batch indices, the augmentation and group-mix draws,
  which stay on the CPU generator so a seed gives the same draws on every device) with
  :func:`to_device`: pinned and non-blocking, so the host never waits for the GPU within an epoch
  (loss sums and the divergence check stay on the device until the epoch ends);
- turns off the CPU-only memory savers of the faithful network (:func:`tuned_for`);
- uses Adam's fused CUDA kernel;
- runs at the chosen :data:`PRECISIONS` (:func:`precision`).

None of these changes what is learned: the draws, the batches and the objective are the CPU
path's; the values differ by float rounding (the GPU's kernels sum in other orders, and ``tf32``
and ``bf16`` round more). The CPU path is untouched: same seed, same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import torch

from cyclelib.model import ModelConfig

PRECISIONS = {  # name -> what it does on CUDA (the CPU always computes in float32)
    "fp32": "float32 everywhere, TF32 off (the reference)",
    "tf32": "TF32 matrix products and convolutions (10-bit mantissa inputs, float32 sums)",
    "bf16": "the group encoder under bfloat16 autocast (BatchNorm statistics in float32), "
            "clustering, fusion and losses in float32, TF32 elsewhere",
}


def check_precision(name: str, device: torch.device) -> None:
    """Refuse an unknown precision, or a reduced one on the CPU (where it would be slower)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name != "fp32" and device.type != "cuda":
        raise ValueError(f"precision {name!r} is for CUDA; training on {device} uses fp32")


@contextmanager
def precision(name: str, device: torch.device) -> Iterator[torch.dtype | None]:
    """Set TF32 for ``name`` (and cuDNN's algorithm search) while training on ``device``; yields
    the encoder's autocast dtype (bfloat16 for ``bf16``, else None). The previous settings come
    back on exit."""
    check_precision(name, device)
    if device.type != "cuda":
        yield None
        return
    backends = torch.backends
    saved = backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = name != "fp32"
    backends.cudnn.benchmark = True  # time cuDNN's algorithms once per shape, keep the fastest
    try:
        yield torch.bfloat16 if name == "bf16" else None
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark = saved


def encoder_autocast(dtype: torch.dtype | None, device: torch.device):
    """The context the group encoder runs in: bfloat16 autocast, or nothing (dtype None)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def tuned_for(config: ModelConfig, device: torch.device) -> ModelConfig:
    """``config`` for training on ``device``: on CUDA, without the CPU memory savers
    (recomputing the stem, the hand-written last-conv gradient), which compute the same values
    and are slower there than cuDNN's kernels with memory to spare."""
    if device.type != "cuda":
        return config
    return replace(config, recompute_stem=False, tap_grad_last_conv=False)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (a CPU tensor) on ``device``: pinned and non-blocking on CUDA (the host does not
    wait for the GPU's queue), a plain copy elsewhere."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
