"""Where tensors live: the compute device, and how CPU memory is handed out (DESIGN §9).

- :func:`resolve_device`: ``auto`` is CUDA when torch sees a GPU, else the CPU (the code picks the
  device itself: CI has no GPU, the long runs do).
- :func:`use_huge_pages`: PyTorch's ``THP_MEM_ALLOC_ENABLE`` option, which backs CPU tensors of
  2 MB and more with transparent huge pages. A training step allocates its activations and
  gradients afresh, and with 4 KB pages a faithful CPU step is about a fifth slower on our 2-core
  machine (README, "Speed on a CPU"); the numbers do not change.

PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, at the process's first CPU tensor, and importing
torchaudio (which :mod:`cyclelib.data.audio` does) already makes one. So only an entry point
that runs before any of that can set it: the ``cyclelib`` command (:func:`cyclelib.cli.main`)
and the benchmarks do. Inside :func:`cyclelib.reproduce` or :func:`cyclelib.train.train` it
would come too late; a script or notebook that trains sets the variable before Python starts
(``THP_MEM_ALLOC_ENABLE=1 jupyter lab``) or calls :func:`use_huge_pages` before importing
anything that uses torch.
"""

from __future__ import annotations

import os

import torch

HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # PyTorch's CPU allocator option (c10/core/alloc_cpu)


def use_huge_pages() -> None:
    """Turn on huge-page-backed CPU tensors for this process unless the user chose already.

    Takes effect only before the process's first CPU tensor (see the module docstring); has no
    effect off Linux or where ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``never``.
    Set ``THP_MEM_ALLOC_ENABLE=0`` to keep 4 KB pages.
    """
    os.environ.setdefault(HUGE_PAGES_ENV, "1")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` or None (cuda when available, else cpu), ``cpu``, ``cuda`` or a torch.device
    (kept as is); a clear error otherwise, or when cuda is asked for and torch sees no GPU."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch sees no CUDA GPU")
    return torch.device(name)
