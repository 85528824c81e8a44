"""From the inference module to the files a phone runs (DESIGN §8): capture and lowering.

:func:`capture` is ``torch.export`` of :class:`~cyclelib.export.CycleGuardianInference` (the front
end is real-valued convolutions and matmuls; :class:`MobileRewrites` records two of its
operations in the form ExecuTorch runs fastest). From that one program come:

- ``.pte`` fp32: ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``, the
  ExecuTorch program a phone runs (:func:`export_pte`);
- ``.pte`` int8: the network quantised by PT2E, the front end kept fp32
  (:mod:`cyclelib.export.quantisation`), lowered the same way;
- ``.onnx``: ``torch.onnx.export(..., dynamo=True)``, the cross-check for other runtimes
  (:func:`export_onnx`).

ExecuTorch is an optional extra (it has no Windows wheel), imported inside functions;
:func:`require_executorch` turns its absence into a message saying how to install it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from cyclelib.constants import CYCLE_SAMPLES

INSTALL_HINT = 'install the export extra: pip install "cyclelib[export]" (not on Windows)'


class ExecutorchMissing(ImportError):
    """ExecuTorch is not installed; the message says how to install it."""


def require_executorch(purpose: str) -> None:
    """Import ``executorch`` or raise :class:`ExecutorchMissing` naming ``purpose`` and the fix."""
    try:
        import executorch  # noqa: F401
    except ImportError as err:
        raise ExecutorchMissing(
            f"{purpose} needs ExecuTorch, which is not installed here: {INSTALL_HINT}. "
            "ONNX export (--onnx) works without it."
        ) from err


def example_audio(seed: int = 0) -> torch.Tensor:
    """A (1, 176000) float32 example input for ``torch.export`` (seeded noise; shape is what
    matters: the exported program takes exactly this shape and dtype)."""
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(1, CYCLE_SAMPLES, generator=generator)


def capture(module: nn.Module, rewrites: bool = True) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` on :func:`example_audio`: one static graph, no Python.

    ``rewrites`` records two front-end operations in the form ExecuTorch runs fastest
    (:class:`MobileRewrites`); the ONNX export leaves them off (onnxruntime prefers the originals).
    """
    with torch.no_grad(), MobileRewrites() if rewrites else contextlib.nullcontext():
        return torch.export.export(module, (example_audio(),), strict=False)


class MobileRewrites(TorchFunctionMode):
    """While capturing, record two front-end operations in the form ExecuTorch runs fastest.

    Same arithmetic, other kernels (single-thread times of ExecuTorch 1.5.1 on x86):

    - a *framing* convolution, C kernels of k taps slid over one signal (B, 1, L) at a hop of at
      least FRAMING_STRIDE without padding (as conv1d or as a one-row conv2d), becomes unfold +
      one (frames x k) @ (k x C) matmul: XNNPACK runs the convolution over a k x 1 window of one
      channel, 2-3x slower. Since the STFT is computed by unfold + matmul in the front end
      itself, the only such calls are the CQT's polyphase decimation steps (32 kernels of 95
      taps, hop 64, once per lower octave);
    - a reflect padding of the last axis becomes a concatenation with two flipped slices: its
      decomposition into index arithmetic takes ~2 ms on a cycle, the concatenation ~0.2 ms.

    Every other call passes unchanged.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.conv1d, torch.conv2d):
            call = dict(zip(_CONV_ARGS, args, strict=False)) | kwargs
            if _is_framing(call):
                return _framing_matmul(call)
        if func is F.pad:
            call = dict(zip(("input", "pad", "mode", "value"), args, strict=False)) | kwargs
            if call.get("mode") == "reflect" and len(call["pad"]) == 2:
                signal, (left, right) = call["input"], call["pad"]
                return torch.cat([signal[..., 1 : left + 1].flip(-1), signal,
                                  signal[..., -right - 1 : -1].flip(-1)], dim=-1)
        return func(*args, **kwargs)


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
FRAMING_STRIDE = 64  # from this hop on, a one-channel convolution is a filterbank over frames


def _pair(value: int | tuple | list, rows: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * rows


def _is_framing(call: dict) -> bool:
    """One input channel, one-row kernels, hop >= FRAMING_STRIDE, no padding/dilation/groups."""
    signal, kernels = call["input"], call["weight"]
    rows = signal.ndim - 2  # 1 for conv1d (B, 1, L), 2 for conv2d (B, 1, 1, L)
    stride = _pair(call.get("stride", 1), rows)
    return (tuple(signal.shape[1:-1]) == (1,) * rows and tuple(kernels.shape[1:-1]) == (1,) * rows
            and stride[-1] >= FRAMING_STRIDE and set(stride[:-1]) <= {1}
            and set(_pair(call.get("padding", 0), rows)) == {0}
            and set(_pair(call.get("dilation", 1), rows)) == {1} and call.get("groups", 1) == 1)


def _framing_matmul(call: dict) -> torch.Tensor:
    """The framing convolution ``call`` as unfold + matmul: (B, C, [1,] frames)."""
    signal, kernels = call["input"], call["weight"]
    stride = _pair(call.get("stride", 1), signal.ndim - 2)[-1]
    frames = signal.flatten(1, -2)[:, 0].unfold(-1, kernels.shape[-1], stride)  # (B, T, k)
    out = torch.matmul(frames, kernels.flatten(1).transpose(0, 1)).transpose(1, 2)  # (B, C, T)
    if call.get("bias") is not None:
        out = out + call["bias"][:, None]
    return out.reshape(*out.shape[:2], *(1,) * (signal.ndim - 3), out.shape[-1])


def export_pte(program: torch.export.ExportedProgram, path: str | Path) -> dict[str, int]:
    """Lower ``program`` to ExecuTorch with the XNNPACK partitioner and write the ``.pte``.

    Operators XNNPACK takes (convolutions, matmuls, elementwise arithmetic, softmax, and their
    int8 forms) run in its delegate; the rest (log10, argmax, layer norm, ...) run on
    ExecuTorch's portable CPU kernels, inside the same file. Returns how much XNNPACK took:
    ``{"delegated_nodes", "portable_nodes", "delegated_subgraphs"}``.
    """
    require_executorch("Writing an ExecuTorch .pte")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(lowered.exported_program().graph_module)
    path.write_bytes(lowered.to_executorch().buffer)
    return {"delegated_nodes": info.num_delegated_nodes,
            "portable_nodes": info.num_non_delegated_nodes,
            "delegated_subgraphs": info.num_delegated_subgraphs}


def export_onnx(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Write ``program`` as one self-contained ONNX file (input ``audio``, output
    ``probabilities``), via the dynamo exporter (DESIGN §8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(program, f=str(path), dynamo=True, external_data=False, verbose=False,
                      input_names=["audio"], output_names=["probabilities"])
    return path
