"""int8 post-training quantisation of the exported network by PT2E (DESIGN §8).

The flow is torchao's PT2E with ExecuTorch's XNNPACK quantizer:

1. ``torch.export`` the :class:`~cyclelib.export.CycleGuardianInference` graph;
2. ``prepare_pt2e`` folds BatchNorm into the convolutions and inserts observers where the
   quantizer annotates (convolutions, linear layers, adds, ... of the ``network`` submodule);
3. calibration: a few hundred real cycles run through the observed graph, which records the
   range of every activation (histogram observers);
4. ``convert_pt2e`` replaces the observers with quantize/dequantize pairs: int8 weights
   (symmetric, one scale per output channel) and int8 activations (one scale per tensor), which
   XNNPACK fuses into int8 kernels when the graph is lowered.

Only the network is quantised; the front end stays fp32. Its filter outputs are spectra whose
dB maps span far more than 42 dB within one cycle (notebook 05 measures it), and one symmetric
int8 scale per tensor resolves 20·log10(127) = 42 dB of amplitude: every quieter bin would
collapse onto the same few levels before the log. The network's input, in contrast, is
standardised (zero mean, unit variance per row), which int8 represents well.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from cyclelib.export.lowering import capture, require_executorch
from cyclelib.progress import progress_bar

QUANTISED_PART = "network"  # submodule of CycleGuardianInference that becomes int8


def quantize_int8(
    module: nn.Module, calibration: np.ndarray | Iterable[np.ndarray], progress: bool = True
) -> torch.fx.GraphModule:
    """PT2E int8 of ``module.network`` calibrated on ``calibration`` waveforms (N, 176000).

    Returns the converted graph module (fp32 in, fp32 out, quantize/dequantize pairs inside);
    pass it to :func:`cyclelib.export.capture` and :func:`cyclelib.export.export_pte`.
    """
    require_executorch("int8 quantisation with the XNNPACK quantizer")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    waves = list(calibration)
    if not waves:
        raise ValueError("calibration needs at least one waveform (N, 176000); got none")
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer().set_global(config).set_filter_function(_in_quantised_part)
    observed = prepare_pt2e(capture(module).module(), quantizer)
    with torch.no_grad():
        for wave in progress_bar(waves, desc="calibration", unit="cycle", disable=not progress):
            observed(torch.from_numpy(np.asarray(wave, dtype=np.float32).reshape(1, -1)))
    return convert_pt2e(observed)


def _module_path(node: torch.fx.Node) -> str:
    """Qualified name of the innermost module ``node`` comes from ('' for weights and inputs)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    return stack[-1][0].removeprefix("L['self'].") if stack else ""


def _in_quantised_part(node: torch.fx.Node) -> bool:
    """Quantizer filter: nodes of ``network`` and nodes of no module (weights, constants).

    (``XNNPACKQuantizer.set_module_name`` would reject a conv-BatchNorm pattern outright: the
    pattern includes the weight nodes, which belong to no module.)
    """
    path = _module_path(node)
    return path == "" or path.split(".")[0] == QUANTISED_PART


def layer_precision(graph_module: torch.fx.GraphModule) -> dict[str, dict[str, int]]:
    """Convolution and linear layers of a converted graph by top-level submodule and precision:
    ``{"frontend": {"fp32": 14, "int8": 0}, "network": {"fp32": 0, "int8": 12}}`` (a layer is
    int8 when its weight comes through a dequantize node)."""
    counts: dict[str, dict[str, int]] = {}
    for node in graph_module.graph.nodes:
        name = getattr(node.target, "__name__", "")
        if node.op != "call_function" or not name.startswith(("conv", "linear")):
            continue
        weight = node.args[1]
        int8 = getattr(weight, "op", "") == "call_function" and "dequantize" in str(weight.target)
        part = counts.setdefault(_module_path(node).split(".")[0], {"fp32": 0, "int8": 0})
        part["int8" if int8 else "fp32"] += 1
    return counts
